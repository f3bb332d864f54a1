"""ITC objectives through `hyperet train` / `hyperet eval` (nano preset) and exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from hyperet.cli.main import main
from safetensors.torch import load_file

from hyperet.config import preset, with_overrides
from hyperet.data import LEVELS
from hyperet.train import StepDone, train


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def itc_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nano with a longer vision stage (300 steps) and ITC stage (150 steps): about 10 s CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("itc") / "run"
    result = _run(
        "train", "--preset", "nano", "--objective", "hyperbolic-itc", "--out", str(out),
        "--steps", "vision=300", "--steps", "itc=150",
    )  # fmt: skip
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.stderr
    return out


def test_itc_run_adds_the_itc_stage_and_its_monitors(itc_run: Path) -> None:
    metrics = json.loads((itc_run / "metrics.json").read_text())
    assert list(metrics["stages"]) == ["vision", "itc", "lm", "align", "instruct"]
    itc = metrics["stages"]["itc"]
    assert itc["steps"] == 150 and len(itc["losses"]) == 150
    assert itc["cached_features"] and itc["trainable_parameters"] > 0
    alignment = itc["alignment"]
    assert alignment["objective"] == "hyperbolic-itc"
    monitors = alignment["monitors"]
    assert monitors["grad_norm_max"] > 0
    assert all(m["nonfinite_total"] == 0 for m in monitors["modalities"].values())
    for modality in ("image", "text"):
        stats = monitors["modalities"][modality]
        assert 0 < stats["radius_min"] <= stats["radius_max"]
        assert stats["boundary_fraction_max"] == 0.0  # the cosine loss leaves the radius alone
    assert (itc_run / "checkpoints" / "itc" / "model.safetensors").is_file()
    final = load_file(str(itc_run / "checkpoints" / "instruct" / "model.safetensors"))
    after_itc = load_file(str(itc_run / "checkpoints" / "itc" / "model.safetensors"))
    aligner_keys = [k for k in final if k.startswith("aligner.")]
    assert aligner_keys and all(torch.equal(final[k], after_itc[k]) for k in aligner_keys)


def test_itc_eval_reports_retrieval_well_above_chance(itc_run: Path) -> None:
    result = _run("eval", str(itc_run), "--json")
    assert result.exit_code == 0, result.stderr
    alignment = json.loads(result.stdout)["alignment"]
    overall = alignment["retrieval"]["overall"]
    for direction in ("image_to_text", "text_to_image"):
        assert overall[direction]["R@1"] >= 2 * overall["chance"][direction]["R@1"], overall
    assert set(alignment["retrieval"]["per_level"]) == set(LEVELS)
    radius = alignment["radius"]
    assert radius["kind"] == "hyperbolic"
    scenes = overall["images"]
    assert sum(radius["histograms"]["image"]["counts"]) == scenes
    assert set(radius["spearman"]) == {
        "text_vs_level",
        "image_vs_object_count",
        "image_vs_corruption",
    }
    assert "image-text retrieval" in result.stderr and "radius as uncertainty" in result.stderr


@pytest.mark.parametrize("objective", ["poincare-itc", "euclidean-itc"])
def test_other_itc_objectives_train_and_evaluate(objective: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _run("train", "--preset", "nano", "--objective", objective, "--out", str(out))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stages"]["itc"]["alignment"]["objective"] == objective
    result = _run("eval", str(out), "--limit", "12", "--json")
    assert result.exit_code == 0, result.stderr
    radius = json.loads(result.stdout)["alignment"]["radius"]
    assert radius["kind"] == ("euclidean_norm" if objective == "euclidean-itc" else "hyperbolic")


class Interrupt(Exception):
    pass


def test_resume_inside_the_itc_stage_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    config = with_overrides(
        preset("nano"), objective="hyperbolic-itc", steps={"itc": 8}, checkpoint_every=3
    )
    reference = train(config, tmp_path / "ref")

    def interrupt(event: object) -> None:
        if isinstance(event, StepDone) and event.stage == "itc" and event.step == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, tmp_path / "run", on_event=interrupt)
    resumed = train(config, tmp_path / "run", resume=True)
    assert {k: v["losses"] for k, v in resumed["stages"].items()} == {
        k: v["losses"] for k, v in reference["stages"].items()
    }
    ref = load_file(str(tmp_path / "ref" / "checkpoints" / "instruct" / "model.safetensors"))
    got = load_file(str(tmp_path / "run" / "checkpoints" / "instruct" / "model.safetensors"))
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
