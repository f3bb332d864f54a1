"""evaluate_alignment end to end on a tiny split with an untrained model: shape of the report,
strict JSON, recalls and chance levels consistent with their definitions."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest
import torch

from hyperet.alignment.aligner import AlignerConfig, ImageTextAligner
from hyperet.alignment.analysis import corrupt, evaluate_alignment
from hyperet.config import VisionConfig
from hyperet.data import LEVELS, Tokenizer, build_split
from hyperet.model.vision import VisionEncoder


def test_corrupt_adds_noise_of_the_requested_strength() -> None:
    images = np.full((50, 3, 16, 16), 128, dtype=np.uint8)
    rng = np.random.default_rng(0)
    assert corrupt(images, 0.0, rng) is images
    noisy = corrupt(images, 0.1, rng)
    assert noisy.dtype == np.uint8 and noisy.shape == images.shape
    assert float((noisy.astype(float) - 128).std()) == pytest.approx(25.5, rel=0.02)
    with pytest.raises(ValueError, match=r"^strength:"):
        corrupt(images, -0.1, rng)


@pytest.mark.parametrize("objective", ["hyperbolic-itc", "euclidean-itc"])
def test_evaluate_alignment_report(objective: str) -> None:
    torch.manual_seed(0)
    tok = Tokenizer.build()
    split = build_split("val", n_scenes=24, seed=0)
    vision = VisionEncoder(VisionConfig(patch_size=8, width=16, layers=1, heads=2), image_size=32)
    vision.eval()
    cfg = AlignerConfig.for_objective(
        objective, vision_dim=16, vocab_size=tok.vocab_size, width=16, embed_dim=8,
        num_queries=2, depth=1, heads=2, max_text_len=96,
    )  # fmt: skip
    report = evaluate_alignment(
        ImageTextAligner(cfg), vision=vision, split=split, tokenizer=tok, batch=10
    )
    json.dumps(report, allow_nan=False)  # strict JSON
    overall = report["retrieval"]["overall"]
    assert overall["images"] == 24 and overall["texts"] == 24 * len(LEVELS)
    for level in LEVELS:
        block = report["retrieval"]["per_level"][level]
        assert block["texts"] == 24
        # a level whose 24 captions are all distinct has chance R@1 = 1/24 for image->text
        distinct = len(set(split.captions[level]))
        if distinct == 24:
            assert block["chance"]["image_to_text"]["R@1"] == pytest.approx(1 / 24)
            assert block["chance"]["text_to_image"]["R@5"] == pytest.approx(
                1 - comb(23, 5) / comb(24, 5)
            )
        for direction in ("image_to_text", "text_to_image"):
            r = block[direction]
            assert 0 <= r["R@1"] <= r["R@5"] <= r["R@10"] <= 1
    radius = report["radius"]
    assert radius["kind"] == ("hyperbolic" if objective == "hyperbolic-itc" else "euclidean_norm")
    assert sum(radius["histograms"]["image"]["counts"]) == 24
    for level in LEVELS:
        assert sum(radius["histograms"][f"text/{level}"]["counts"]) == 24
    assert radius["corruption"]["noise_levels"] == [0.0, 0.1, 0.2, 0.4]
    for value in (
        *radius["spearman"].values(),
        *radius["auroc_uncertainty_predicts_error"].values(),
    ):
        assert value is None or -1 <= value <= 1
    assert radius["histogram_png"] is None
