"""Interrupt a training run at a step, resume it, and compare with an uninterrupted run.

Import as ``import resume_helpers`` (``tests/`` is on ``sys.path`` through its conftest).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from hyperet.train import StepDone, train


class Interrupt(Exception):
    """Raised by the event handler to stop training at a chosen step."""


def interrupted_and_reference(
    config: Any,
    tmp_path: Path,
    stage: str,
    step: int,
    after_interrupt: Callable[[Path], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics of a run interrupted after ``step`` of ``stage`` then resumed (in
    ``tmp_path / "run"``), and of the uninterrupted run (``tmp_path / "ref"``).

    ``after_interrupt(run_dir)`` inspects the interrupted run before it is resumed."""
    reference = train(config, tmp_path / "ref")

    def interrupt(event: object) -> None:
        if isinstance(event, StepDone) and event.stage == stage and event.step == step:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, tmp_path / "run", on_event=interrupt)
    if after_interrupt is not None:
        after_interrupt(tmp_path / "run")
    return train(config, tmp_path / "run", resume=True), reference


def same_final_weights(a: Path, b: Path) -> bool:
    """Whether two runs' final checkpoints hold bitwise equal tensors."""
    ta = load_file(str(a / "checkpoints" / "instruct" / "model.safetensors"))
    tb = load_file(str(b / "checkpoints" / "instruct" / "model.safetensors"))
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
