"""Kill a run at every commit point of every atomic write, then resume: nothing is lost.

The failure is injected through ``hyperet._io.commit_hook`` at its N-th call: a
``BaseException`` (like a kill, it skips the writers' cleanup) raised when a temporary is
complete but not yet in place (``written``), or when a checkpoint's previous version is moved
aside but the new one not yet in place (``swapped``). The resumed run must reach bitwise the
losses and weights of an uninterrupted one, and leave no temporary behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from hyperet import _io
from hyperet.config import preset, with_overrides
from hyperet.train import RunDirectoryError, train

NANO = preset("nano")
#: Commit points of a nano run: marker, config, tokenizer; per stage a mid-stage checkpoint,
#: the final checkpoint (written, then swapped with the mid-stage one) and metrics.json; the
#: final metrics.json.
COMMITS = 3 + 4 * 4 + 1


class SimulatedKill(BaseException):
    """Raised from the commit hook; not an ``Exception``, so no writer cleans up after it."""


def _outcome(out: Path) -> dict[str, Any]:
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    weights = load_file(str(out / "checkpoints" / "instruct" / "model.safetensors"))
    return {
        "losses": {name: s["losses"] for name, s in metrics["stages"].items()},
        "weights": weights,
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["losses"] == b["losses"]
        and all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
        and set(a["weights"]) == set(b["weights"])
    )


def _temporaries(out: Path) -> list[str]:
    return [str(p.relative_to(out)) for p in out.rglob("*") if _io.is_temporary(p.name)]


def _kill_at(n: int, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def hook(path: Path, phase: str) -> None:
        seen.append((path.name, phase))
        if len(seen) == n + 1:
            raise SimulatedKill(f"{path} {phase}")

    monkeypatch.setattr(_io, "commit_hook", hook)
    return seen


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("kill") / "run"
    seen: list[tuple[str, str]] = []
    _io.commit_hook = lambda path, phase: seen.append((path.name, phase))
    try:
        train(NANO, out)
    finally:
        _io.commit_hook = None
    return {"outcome": _outcome(out), "commits": seen}


def test_the_commit_points_are_the_ones_listed(uninterrupted: dict[str, Any]) -> None:
    names = [name for name, _ in uninterrupted["commits"]]
    assert len(names) == COMMITS
    assert names[:3] == ["hyperet-run.json", "config.json", "tokenizer.json"]
    assert names.count("metrics.json") == 5
    assert [p for _, p in uninterrupted["commits"]].count("swapped") == 4


def _resume(out: Path) -> None:
    try:
        train(NANO, out, resume=True)
    except RunDirectoryError as err:  # killed before the marker was in place: start again
        assert "nothing to resume" in str(err)
        train(NANO, out)


@pytest.mark.parametrize("n", range(COMMITS))
def test_kill_at_each_commit_then_resume_is_bitwise_identical(
    n: int, uninterrupted: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    _kill_at(n, monkeypatch)
    with pytest.raises(SimulatedKill):
        train(NANO, out)
    monkeypatch.setattr(_io, "commit_hook", None)
    _resume(out)
    assert _temporaries(out) == []
    assert _same(_outcome(out), uninterrupted["outcome"])


@pytest.mark.slow
@pytest.mark.parametrize("n", range(0, 3 + 5 * 4 + 1, 3))  # 24 commits: itc is a 5th stage
def test_kill_twice_then_resume_with_hyperet_and_itc(
    n: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run with HRA and the ITC stage, killed at commit n and again during its resume."""
    config = with_overrides(NANO, hyperet="block", hyperet_stage="both", objective="hyperbolic-itc")
    train(config, tmp_path / "reference")
    expected = _outcome(tmp_path / "reference")
    out = tmp_path / "run"
    _kill_at(n, monkeypatch)
    with pytest.raises(SimulatedKill):
        train(config, out)
    _kill_at(5, monkeypatch)
    try:
        train(config, out, resume=True)
    except (SimulatedKill, RunDirectoryError):
        pass
    monkeypatch.setattr(_io, "commit_hook", None)
    try:
        train(config, out, resume=True)
    except RunDirectoryError:
        train(config, out)
    assert _temporaries(out) == []
    assert _same(_outcome(out), expected)
