"""Evaluation of a run directory: results, independent checks, and bad run directories."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hyperet.checkpoint import CheckpointError
from hyperet.config import preset, with_overrides
from hyperet.data import QUESTION_TYPES, build_split
from hyperet.evaluate import RADIUS_BINS, _radius, evaluate, majority_answers, radius_histogram
from hyperet.train import StepDone, train

NANO = preset("nano")


@pytest.fixture(scope="module")
def nano_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("eval") / "run"
    train(NANO, out)
    torch.set_num_threads(threads)
    return out


def _in_unit(x: Any) -> bool:
    return x is None or 0.0 <= x <= 1.0


def test_evaluation_reports_every_measurement(nano_run: Path) -> None:
    r = evaluate(nano_run, limit=16)
    assert r["scenes"] == 16
    assert r["vqa"]["n"] == sum(1 for i, _ in build_split("test", n_scenes=48, seed=0).qa if i < 16)
    for block in (r["vqa"], r["text_only_prior"], r["majority_baseline"]):
        assert _in_unit(block["overall"])
        assert set(block["per_type"]) <= set(QUESTION_TYPES)
        assert all(_in_unit(v) for v in block["per_type"].values())
    mc = r["multiple_choice"]
    assert mc["n"] == 16
    assert _in_unit(mc["generated"]["parse_failure_rate"])
    assert _in_unit(mc["likelihood"]["overall"])
    for level, v in r["retrieval"].items():
        if isinstance(v, dict):
            assert 0 <= v["recall@1"] <= v["recall@5"] <= 1, level
    probe = r["radius_probe"]["visual"]["without_hyperet"]
    assert probe["mean"] > 0 and set(probe["by_object_count"]) <= {"1", "2", "3", "4"}
    p = r["parameters"]
    assert p["hyperet"] == 0 and p["total"] == sum(p["by_part"].values())


def test_evaluation_is_deterministic(nano_run: Path) -> None:
    a = evaluate(nano_run, limit=8)
    b = evaluate(nano_run, limit=8)
    assert a == b


def test_majority_answers_are_the_most_frequent_training_answers() -> None:
    majority = majority_answers(NANO)
    split = build_split("train", n_scenes=NANO.data.train_scenes, seed=NANO.seed)
    counts: dict[str, Counter[str]] = {}
    for _, qa in split.qa:
        counts.setdefault(qa.qtype, Counter())[qa.answer] += 1
    for qtype, answer in majority.items():
        assert counts[qtype][answer] == max(counts[qtype].values())


def test_radius_probe_is_twice_the_euclidean_norm() -> None:
    """Rad(expmap0(u)) = 2 |u| for every c (an identity of the Poincaré ball)."""
    torch.manual_seed(0)
    u = torch.randn(5, 7) * 3
    torch.testing.assert_close(_radius(u), 2 * u.double().norm(dim=-1), rtol=1e-12, atol=0)


def test_radius_histogram_counts_each_value_in_its_bin() -> None:
    """edges[i] = i top / RADIUS_BINS; bin i holds edges[i] <= r < edges[i+1], r = top last."""
    rng = np.random.default_rng(0)
    r = rng.uniform(0, 7, size=(6, 9))
    r[0, 0], r[0, 1] = 0.0, r.max()  # both ends
    top = float(r.max())
    h = radius_histogram(r, top)
    width = top / RADIUS_BINS
    assert h["edges"] == pytest.approx([i * width for i in range(RADIUS_BINS + 1)], rel=1e-15)
    expected = [0] * RADIUS_BINS
    for value in r.ravel():  # independent count: the bin is floor(r / width), top in the last
        expected[min(int(value // width), RADIUS_BINS - 1)] += 1
    assert h["counts"] == expected and sum(h["counts"]) == r.size
    assert radius_histogram(np.zeros((2, 3)), 0.0) == {"edges": [0.0, 1.0], "counts": [6]}
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="top"):
            radius_histogram(r, bad)


def test_hyperet_run_reports_with_and_without(tmp_path: Path) -> None:
    config = with_overrides(NANO, hyperet="diagonal", steps={"vision": 2, "lm": 1, "align": 1})
    train(config, tmp_path / "run")
    r = evaluate(tmp_path / "run", limit=8)
    visual = r["radius_probe"]["visual"]
    assert set(visual) == {"with_hyperet", "without_hyperet"}
    with_h, without = visual["with_hyperet"]["histogram"], visual["without_hyperet"]["histogram"]
    assert with_h["edges"] == without["edges"]  # one set of bins for both
    tokens = 8 * (NANO.data.image_size // NANO.vision.patch_size) ** 2  # 8 scenes x patches
    assert sum(with_h["counts"]) == sum(without["counts"]) == tokens
    # diagonal HRA on q and v of every ViT block: 2 * layers * width parameters
    assert r["parameters"]["hyperet"] == 2 * NANO.vision.layers * NANO.vision.width
    assert r["parameters"]["hyperet_percent"] > 0


def test_bad_run_directories_raise_checkpoint_errors(nano_run: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="run directory not found"):
        evaluate(tmp_path / "missing")
    broken = tmp_path / "broken"
    shutil.copytree(nano_run, broken)
    (broken / "checkpoints" / "instruct" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        evaluate(broken)
    shutil.rmtree(broken)
    shutil.copytree(nano_run, broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        evaluate(broken)
    shutil.rmtree(broken)
    shutil.copytree(nano_run, broken)
    (broken / "config.json").write_text(with_overrides(NANO, seed=5).to_json())
    with pytest.raises(CheckpointError, match=r"does not match hyperet-run\.json"):
        evaluate(broken)
    with pytest.raises(ValueError, match=r"^split"):
        evaluate(nano_run, split="dev")


def test_an_unfinished_run_is_refused(tmp_path: Path) -> None:
    def stop(event: object) -> None:
        if isinstance(event, StepDone) and event.stage == "instruct" and event.step == 5:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        train(NANO, tmp_path / "run", on_event=stop)
    with pytest.raises(CheckpointError, match="resume the run first"):
        evaluate(tmp_path / "run")


def test_retrieval_reads_the_vit_output_whatever_layer_the_projector_reads(
    nano_run: Path, tmp_path: Path
) -> None:
    """The CLIP head pools the ViT's output: a run whose projector reads block 0 (same seed, so
    the same ViT and text tower, frozen after stage 0a) retrieves exactly as the default."""
    import dataclasses

    config = dataclasses.replace(
        NANO, projector=dataclasses.replace(NANO.projector, feature_layer=0)
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config, tmp_path / "layer0")
    finally:
        torch.set_num_threads(threads)
    a = evaluate(nano_run, limit=16)
    b = evaluate(tmp_path / "layer0", limit=16)
    assert a["retrieval"] == b["retrieval"]
    assert a["vqa"] != b["vqa"] or a["radius_probe"] != b["radius_probe"]
