"""Linear probes of the frozen ViT: ridge solution, pooling and accuracy against brute force."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hyperet.checkpoint import CheckpointError
from hyperet.config import preset
from hyperet.data import build_split
from hyperet.data.scenes import shape_mask
from hyperet.probe import (
    PROBE_TARGETS,
    accuracy,
    fit_ridge,
    object_features,
    patch_coverage,
    probe_run,
    probe_scores,
    scene_features,
)
from hyperet.train import train


def test_ridge_weights_equal_a_brute_force_least_squares_solve() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)) * [1, 2, 3, 4, 5] + 7
    labels = [str(v) for v in rng.integers(0, 3, 60)]
    lam = 0.7
    probe = fit_ridge(x, labels, lam)
    # independent route: ridge as ordinary least squares on [A; sqrt(lam) I] w = [Y; 0]
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    a = np.hstack([z, np.ones((60, 1))])
    y = np.eye(3)[[int(v) for v in labels]]
    stacked_a = np.vstack([a, np.sqrt(lam) * np.eye(6)])
    stacked_y = np.vstack([y, np.zeros((6, 3))])
    expected, *_ = np.linalg.lstsq(stacked_a, stacked_y, rcond=None)
    np.testing.assert_allclose(probe.weights, expected, rtol=1e-10, atol=1e-12)
    # and the prediction is the argmax of the scores, class by class
    scores = a @ expected
    assert probe.predict(x) == [probe.classes[int(np.argmax(row))] for row in scores]


def test_accuracy_and_majority_against_a_loop() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 8)) * 3
    cls = rng.integers(0, 4, 400)
    x = centres[cls] + rng.normal(size=(400, 8))
    labels = {"c": [f"k{c}" for c in cls]}
    train_part = (x[:300], {"c": labels["c"][:300]})
    test_part = (x[300:], {"c": labels["c"][300:]})
    got = probe_scores(train_part, test_part)["c"]
    probe = fit_ridge(x[:300], labels["c"][:300])
    predicted = probe.predict(x[300:])
    hits = 0
    for p, t in zip(predicted, labels["c"][300:], strict=True):
        hits += p == t
    assert got["accuracy"] == hits / 100
    counts: dict[str, int] = {}
    for t in labels["c"][:300]:
        counts[t] = counts.get(t, 0) + 1
    top = sorted(counts, key=lambda k: (-counts[k], k))[0]
    assert got["majority"] == sum(t == top for t in labels["c"][300:]) / 100
    assert got["accuracy"] > 0.9  # well-separated clusters are linearly decodable
    assert got["n_train"] == 300 and got["n_test"] == 100 and got["classes"] == 4


def test_random_labels_stay_near_chance() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2000, 16))
    labels = [str(v) for v in rng.integers(0, 4, 2000)]
    got = probe_scores((x[:1500], {"r": labels[:1500]}), (x[1500:], {"r": labels[1500:]}))
    assert 0.15 < got["r"]["accuracy"] < 0.35


def test_patch_coverage_against_a_pixel_loop() -> None:
    split = build_split("val", n_scenes=12, seed=3)
    for scene in split.scenes:
        for k, obj in enumerate(scene.objects):
            for patch in (4, 8):
                mask = shape_mask(obj, scene.image_size)
                g = scene.image_size // patch
                expected = np.zeros(g * g, dtype=bool)
                for row in range(scene.image_size):
                    for col in range(scene.image_size):
                        if mask[row, col]:
                            expected[(row // patch) * g + col // patch] = True
                assert np.array_equal(patch_coverage(scene, k, patch), expected)


def test_object_and_scene_features_average_the_right_tokens() -> None:
    split = build_split("val", n_scenes=6, seed=4)
    g = 8
    tokens = np.random.default_rng(5).normal(size=(6, g * g, 3))
    feats, labels = object_features(tokens, split.scenes, patch_size=4)
    row = 0
    for i, scene in enumerate(split.scenes):
        for k, obj in enumerate(scene.objects):
            covered = [p for p in range(g * g) if patch_coverage(scene, k, 4)[p]]
            np.testing.assert_allclose(
                feats[row], sum(tokens[i, p] for p in covered) / len(covered)
            )
            assert labels["color"][row] == obj.color and labels["shape"][row] == obj.shape
            assert labels["size"][row] == obj.size
            assert labels["position"][row].split() == [
                "top" if obj.y < 15.5 else "bottom",
                "left" if obj.x < 15.5 else "right",
            ]
            row += 1
    assert row == len(feats)
    pooled, counts = scene_features(tokens, split.scenes)
    np.testing.assert_allclose(pooled, tokens.mean(axis=1))
    assert counts["count"] == [str(len(s.objects)) for s in split.scenes]


def test_bad_probe_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^lam"):
        fit_ridge(np.ones((3, 2)), ["a", "b", "a"], lam=0.0)
    with pytest.raises(ValueError, match=r"^x"):
        fit_ridge(np.ones((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match=r"^predicted"):
        accuracy([], [])


@pytest.fixture(scope="module")
def nano_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("probe") / "run"
    train(preset("nano"), out)  # one torch thread: the root conftest
    return out


def test_probe_run_and_cli(nano_run: Path) -> None:
    from hyperet.cli.main import main

    r = probe_run(nano_run, limit=20, train_scenes=100)
    assert tuple(r["targets"]) == PROBE_TARGETS
    assert r["train_scenes"] == 100 and r["test_scenes"] == 20
    for v in r["targets"].values():
        assert 0 <= v["accuracy"] <= 1 and 0 <= v["majority"] <= 1
    result = CliRunner().invoke(
        main, ["probe", str(nano_run), "--limit", "20", "--train-scenes", "100", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["targets"] == r["targets"]
    assert "linear probes" in result.stderr
    control = CliRunner().invoke(
        main, ["probe", str(nano_run), "--stage", "untrained", "--limit", "20", "--json"]
    )
    assert control.exit_code == 0 and json.loads(control.stdout)["stage"] == "untrained"
    assert json.loads(control.stdout)["targets"] != payload["targets"]
    bad = CliRunner().invoke(main, ["probe", str(nano_run / "missing")])
    assert bad.exit_code == 2 and "not found" in bad.stderr


def test_probe_picks_the_stage_checkpoint(nano_run: Path, tmp_path: Path) -> None:
    import shutil

    assert probe_run(nano_run, limit=8, train_scenes=50)["stage"] == "instruct"
    # the ViT is frozen after vision: every later checkpoint probes the same
    by_stage = [
        probe_run(nano_run, stage=s, limit=8, train_scenes=50)["targets"]
        for s in ("vision", "align")
    ]
    assert by_stage[0] == by_stage[1]
    partial = tmp_path / "partial"
    shutil.copytree(nano_run, partial)
    shutil.rmtree(partial / "checkpoints" / "instruct")
    shutil.rmtree(partial / "checkpoints" / "align")
    assert probe_run(partial, limit=8, train_scenes=50)["stage"] == "lm"
    with pytest.raises(CheckpointError, match="no complete checkpoint of stage align"):
        probe_run(partial, stage="align", limit=8, train_scenes=50)
    with pytest.raises(ValueError, match="is not one of"):
        probe_run(partial, stage="warp", limit=8, train_scenes=50)


def test_block_tokens_are_the_encoders_intermediate_tokens() -> None:
    from hyperet.data import Tokenizer
    from hyperet.probe import block_tokens
    from hyperet.train import build_model

    config = preset("nano")
    vision = build_model(config, Tokenizer.build()).vision.eval()
    images = build_split("val", n_scenes=5, seed=0).images
    imgs = torch.from_numpy(images)
    with torch.no_grad():
        x = imgs.float() / 127.5 - 1.0
        x = vision.conv1(x).flatten(2).transpose(1, 2)
        expected = [vision.ln_pre(x + vision.positional_embedding)]  # layer 0
        for block in vision.blocks:
            expected.append(block(expected[-1]))
        output = vision(imgs)
    for layer, want in enumerate(expected):
        got = block_tokens(vision, images, layer, batch=2)
        torch.testing.assert_close(torch.from_numpy(got), want)
    last = torch.from_numpy(block_tokens(vision, images, len(vision.blocks), batch=3))
    torch.testing.assert_close(vision.ln_post(last), output)
    with pytest.raises(ValueError, match="layer"):
        block_tokens(vision, images, len(vision.blocks) + 1, batch=2)
