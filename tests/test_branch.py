"""Branching a run after a stage equals training the new config from scratch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hyperet.cli.main import main
from safetensors.torch import load_file

from hyperet.branch import branch_run, config_changes
from hyperet.config import preset
from hyperet.overrides import apply_settings
from hyperet.train import RunDirectoryError, train

NANO = preset("nano")


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "instruct" / "model.safetensors"))


def _losses(metrics: dict) -> dict[str, list[float]]:  # type: ignore[type-arg]
    return {k: v["losses"] for k, v in metrics["stages"].items()}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("branch") / "src"
    train(NANO, out)  # one torch thread: the root conftest
    return out


@pytest.mark.parametrize(
    ("after", "settings"),
    [
        (
            "align",
            ["train.stages.instruct.steps=9", "train.mc_fraction=0.5", "train.mc_restate=true"],
        ),
        ("align", ["hyperet.structure=diagonal", "hyperet.stage=finetune"]),
        pytest.param(
            "lm",
            [
                "train.stages.align.lr=1e-3",
                "train.stages.instruct.warmup_steps=1",
                "projector.feature_layer=1",
            ],
            marks=pytest.mark.slow,
        ),
        pytest.param("vision", ["train.stages.lm.steps=4"], marks=pytest.mark.slow),
    ],
)
def test_branch_then_resume_equals_training_from_scratch(
    source: Path, tmp_path: Path, after: str, settings: list[str]
) -> None:
    new = apply_settings(NANO, settings)
    changes = branch_run(source, tmp_path / "branch", new, after=after)
    assert changes == config_changes(NANO, new) and changes
    branched = train(new, tmp_path / "branch", resume=True)
    scratch = train(new, tmp_path / "scratch")
    assert _losses(branched) == _losses(scratch)
    a, b = _weights(tmp_path / "branch"), _weights(tmp_path / "scratch")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert branched["branched_from"] == {"run": str(source), "after": after, "changed": changes}
    stored = json.loads((tmp_path / "branch" / "metrics.json").read_text())
    assert stored["branched_from"]["after"] == after


@pytest.mark.parametrize(
    ("after", "settings", "match"),
    [
        ("align", ["projector.hidden=32"], "projector.hidden are read by stages up to 'align'"),
        ("align", ["projector.feature_layer=0"], "projector.feature_layer"),
        ("lm", ["train.stages.lm.lr=1e-2"], "train.stages.lm.lr"),
        ("vision", ["language.layers=2"], "language.layers"),
        ("align", ["hyperet.structure=diagonal", "hyperet.stage=both"], "hyperet"),
        ("instruct", [], "is not one of the stages"),
        ("vision", ["seed=3"], "seed"),
    ],
)
def test_branch_refuses_changes_to_stages_it_keeps(
    source: Path, tmp_path: Path, after: str, settings: list[str], match: str
) -> None:
    with pytest.raises(RunDirectoryError, match=match):
        branch_run(source, tmp_path / "b", apply_settings(NANO, settings), after=after)
    assert not (tmp_path / "b").exists()


def test_branch_cli(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        main, ["branch", str(source), str(out), "--after", "align", "--steps", "instruct=3"]
    )
    assert result.exit_code == 0, result.stderr
    assert "train.stages.instruct.steps" in result.stderr and "--resume" in result.stderr
    assert (
        json.loads((out / "config.json").read_text())["train"]["stages"]["instruct"]["steps"] == 3
    )
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["align", "lm", "vision"]
    again = CliRunner().invoke(main, ["branch", str(source), str(out), "--after", "align"])
    assert again.exit_code == 2 and "not" in again.stderr and "empty" in again.stderr
    bad = CliRunner().invoke(
        main, ["branch", str(source), str(tmp_path / "x"), "--after", "align", "--set", "seed=2"]
    )
    assert bad.exit_code == 2 and "seed" in bad.stderr
