"""``--device``, ``python -m hyperet.cli`` and the documented torchrun launch line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hyperet.cli.console import device_option
from hyperet.cli.main import main

from hyperet import distributed
from hyperet.config import preset
from hyperet.device import DEVICES, place, resolve_device
from hyperet.evaluate import evaluate
from hyperet.train import train

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


def test_python_m_hyperet_cli_is_the_hyperet_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hyperet.cli", "train", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert done.stdout.startswith("Usage: hyperet train")
    assert "--device [auto|cpu|cuda]" in done.stdout and "torchrun" in done.stdout


def test_cli_device_choices_are_the_library_ones() -> None:
    import click

    @device_option
    def probe(device: str) -> None: ...

    (option,) = click.command()(probe).params
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == DEVICES


@no_cuda
def test_cuda_without_a_gpu_is_a_clear_usage_error(tmp_path: Path) -> None:
    for command in (["train", "--preset", "nano", "--out", str(tmp_path / "r")], ["eval", "x"]):
        result = CliRunner().invoke(main, [*command, "--device", "cuda"])
        assert result.exit_code == 2
        assert "device: 'cuda' requested but torch sees no CUDA device" in result.stderr
    assert not (tmp_path / "r").exists()
    assert resolve_device("auto") == torch.device("cpu")


def test_resolve_device_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"device: expected one of \('auto', 'cpu', 'cuda'\)"):
        resolve_device("tpu")


def test_placing_on_the_cpu_changes_nothing() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert place(model, torch.device("cpu"), outputs_to_cpu=True) is model
    assert not model._forward_pre_hooks and not model[0]._forward_hooks


def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match=r"train\.stages\.vision\.batch_size: batch size 16 does"):
        train(preset("nano"), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything is written


@pytest.mark.slow
def test_the_documented_torchrun_line_trains_and_evaluates(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun is not None
    out = tmp_path / "run"
    launch = "--nproc-per-node 2 -m hyperet.cli train --preset nano --out".split()
    subprocess.run(
        [torchrun, *launch, str(out)],
        check=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "config.json",
        "metrics.json",
        "tokenizer.json",
    ]
    result = CliRunner().invoke(main, ["eval", str(out), "--limit", "12", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["scenes"] == 12


@pytest.mark.cuda
def test_training_and_evaluation_on_cuda_match_the_cpu(tmp_path: Path) -> None:
    config = preset("nano")
    cpu = train(config, tmp_path / "cpu")
    gpu = train(config, tmp_path / "gpu", device="cuda")
    for name, stage in cpu["stages"].items():
        np.testing.assert_allclose(gpu["stages"][name]["losses"], stage["losses"], rtol=1e-3)
    on_cpu = evaluate(tmp_path / "gpu", limit=24)
    on_gpu = evaluate(tmp_path / "gpu", limit=24, device="cuda")
    assert on_gpu["vqa"]["n"] == on_cpu["vqa"]["n"]
    assert abs(on_gpu["vqa"]["overall"] - on_cpu["vqa"]["overall"]) <= 0.1


@pytest.mark.cuda
def test_resume_on_cuda(tmp_path: Path) -> None:
    from hyperet.train import StepDone

    def stop(event: object) -> None:
        if isinstance(event, StepDone) and event.stage == "align" and event.step == 5:
            raise KeyboardInterrupt

    full = train(preset("nano"), tmp_path / "full", device="cuda")
    with pytest.raises(KeyboardInterrupt):
        train(preset("nano"), tmp_path / "cut", device="cuda", on_event=stop)
    resumed = train(preset("nano"), tmp_path / "cut", device="cuda", resume=True)
    for name, stage in full["stages"].items():
        np.testing.assert_allclose(resumed["stages"][name]["losses"], stage["losses"], rtol=1e-5)
