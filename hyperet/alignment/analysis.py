"""Evaluation of a trained aligner: retrieval per caption level and radius as uncertainty.

Given an :class:`~hyperet.alignment.aligner.ImageTextAligner`, a frozen vision encoder and a
dataset split (scenes, images, one caption per granularity level), :func:`evaluate_alignment`
measures:

- **Retrieval**, image->text and text->image Recall@1/5/10 (:mod:`~hyperet.alignment.metrics`:
  a hit on any caption string of the image counts; ties count against the query), over the
  captions of every level pooled (``overall``) and per level, each beside the Recall@k of a
  random ranking (``chance``).
- **Radius as uncertainty**. An image's radius is the mean ``Rad`` of its ``K`` query
  embeddings, a caption's the ``Rad`` of its embedding (for the Euclidean baseline: the norm).
  Spearman correlations of the radius with the caption level (index in ``LEVELS``, coarse = 0),
  with the number of objects in the scene, and with image corruption strength (Gaussian pixel
  noise of standard deviation ``s * 255`` for each ``s`` in ``noise_levels``, drawn from
  ``noise_seed``); AUROC of the uncertainty ``-Rad`` (small radius = uncertain) as a predictor
  of a retrieval error (the query's rank is not 1) in both directions; radius histograms per
  modality and level (common bin edges), optionally drawn to a PNG.

Undefined statistics (``nan``: constant input, one class) are reported as ``None`` so the result
is strict JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hyperet import ops
from hyperet.alignment.aligner import ImageTextAligner
from hyperet.alignment.metrics import (
    KS,
    auroc,
    caption_relevance,
    chance_recall,
    entailment_accuracy,
    hierarchy_pairs,
    plot_radius_histograms,
    radius_histogram,
    recall_at_k,
    retrieval_ranks,
    spearman,
)
from hyperet.batching import collate, encode_text
from hyperet.data import LEVELS, Split, Tokenizer

#: Default corruption strengths (noise standard deviation as a fraction of the pixel range).
NOISE_LEVELS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4)


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def corrupt(images: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian pixel noise (std ``strength * 255``) to ``uint8`` images, clipped to 0..255."""
    if strength < 0:
        raise ValueError(f"strength: must be >= 0, got {strength}")
    if strength == 0:
        return images
    noisy = images.astype(np.float64) + rng.normal(0.0, strength * 255.0, size=images.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


@torch.no_grad()
def encode_images(
    aligner: ImageTextAligner, vision: Callable[[Tensor], Tensor], images: np.ndarray, batch: int
) -> Tensor:
    """Query embeddings ``(N, K, E)`` of ``uint8`` images ``(N, 3, H, W)`` via ``vision``."""
    imgs = torch.from_numpy(np.ascontiguousarray(images))
    out = [aligner.encode_image(vision(imgs[s : s + batch])) for s in range(0, len(imgs), batch)]
    return torch.cat(out)


@torch.no_grad()
def encode_captions(
    aligner: ImageTextAligner, tokenizer: Tokenizer, texts: Sequence[str], batch: int
) -> Tensor:
    """Caption embeddings ``(N, E)`` of ``<bos> caption <eos>`` (no pruning)."""
    encoded = [encode_text(tokenizer, t) for t in texts]
    out = []
    for s in range(0, len(encoded), batch):
        out.append(aligner.encode_text(collate(encoded[s : s + batch]).input_ids))
    return torch.cat(out)


def radii(aligner: ImageTextAligner, x: Tensor) -> np.ndarray:
    """``Rad`` of ball points (norm of Euclidean embeddings) as float64, over the last axis."""
    return aligner.radius(x.detach()).to(torch.float64).numpy()


def _retrieval(
    sim: np.ndarray, relevant: np.ndarray
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    i2t, t2i = retrieval_ranks(sim, relevant), retrieval_ranks(sim.T, relevant.T)
    result = {
        "image_to_text": recall_at_k(i2t, KS),
        "text_to_image": recall_at_k(t2i, KS),
        "chance": {
            "image_to_text": chance_recall(relevant, KS),
            "text_to_image": chance_recall(relevant.T, KS),
        },
        "images": int(sim.shape[0]),
        "texts": int(sim.shape[1]),
    }
    return result, i2t, t2i


@torch.no_grad()
def evaluate_alignment(
    aligner: ImageTextAligner,
    *,
    vision: Callable[[Tensor], Tensor],
    split: Split,
    tokenizer: Tokenizer,
    noise_levels: Sequence[float] = NOISE_LEVELS,
    noise_seed: int = 0,
    batch: int = 256,
    bins: int = 20,
    plot_path: Path | None = None,
) -> dict[str, Any]:
    """Retrieval per level and the radius-uncertainty analysis (see the module docstring)."""
    was_training = aligner.training
    aligner.eval()
    try:
        return _evaluate(
            aligner, vision, split, tokenizer, noise_levels, noise_seed, batch, bins, plot_path
        )
    finally:
        aligner.train(was_training)


def _evaluate(
    aligner: ImageTextAligner,
    vision: Callable[[Tensor], Tensor],
    split: Split,
    tokenizer: Tokenizer,
    noise_levels: Sequence[float],
    noise_seed: int,
    batch: int,
    bins: int,
    plot_path: Path | None,
) -> dict[str, Any]:
    levels = [level for level in LEVELS if level in split.captions]
    n = len(split.scenes)
    c = aligner.c()
    image = encode_images(aligner, vision, split.images, batch)  # (N, K, E)
    text = {lv: encode_captions(aligner, tokenizer, split.captions[lv], batch) for lv in levels}
    per_image = [[split.captions[lv][i] for lv in levels] for i in range(n)]

    def scores(t: Tensor) -> np.ndarray:
        return aligner.loss.scores(image, t, c=c).to(torch.float64).numpy()  # (N, T)

    all_texts = [t for lv in levels for t in split.captions[lv]]
    overall, i2t_ranks, t2i_ranks = _retrieval(
        scores(torch.cat([text[lv] for lv in levels])), caption_relevance(per_image, all_texts)
    )
    per_level = {
        lv: _retrieval(scores(text[lv]), caption_relevance(per_image, split.captions[lv]))[0]
        for lv in levels
    }

    image_rad = radii(aligner, image).mean(axis=1)  # (N,) mean over the K queries
    text_rad = {lv: radii(aligner, text[lv]) for lv in levels}  # level -> (N,)
    all_text_rad = np.concatenate([text_rad[lv] for lv in levels])  # order of all_texts
    level_index = np.repeat([LEVELS.index(lv) for lv in levels], n)
    objects = np.asarray([len(scene.objects) for scene in split.scenes], dtype=np.float64)

    rng = np.random.default_rng(noise_seed)
    noisy_rad = [
        radii(aligner, encode_images(aligner, vision, corrupt(split.images, s, rng), batch)).mean(1)
        for s in noise_levels
    ]
    strengths = np.repeat(np.asarray(noise_levels, dtype=np.float64), n)

    everything = np.concatenate([image_rad, all_text_rad])
    value_range = (float(everything.min()), float(everything.max()))
    if value_range[0] == value_range[1]:
        value_range = (value_range[0] - 0.5, value_range[1] + 0.5)
    histograms = {"image": radius_histogram(image_rad, bins=bins, value_range=value_range)}
    for lv in levels:
        histograms[f"text/{lv}"] = radius_histogram(
            text_rad[lv], bins=bins, value_range=value_range
        )
    png = None
    if plot_path is not None:
        groups = {"image": image_rad, **{f"text/{lv}": text_rad[lv] for lv in levels}}
        if plot_radius_histograms(groups, plot_path, bins=bins):
            png = str(plot_path)

    def stats(r: np.ndarray) -> dict[str, float]:
        return {"mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()),
                "max": float(r.max())}  # fmt: skip

    return {
        "objective": aligner.config.objective or None,
        "similarity": aligner.config.similarity,
        "scalars": aligner.scalars(),
        "scenes": n,
        "retrieval": {"overall": overall, "per_level": per_level},
        "radius": {
            "kind": "hyperbolic" if aligner.hyperbolic else "euclidean_norm",
            "image": stats(image_rad),
            "text_by_level": {lv: stats(text_rad[lv]) for lv in levels},
            "spearman": {
                "text_vs_level": _none_if_nan(spearman(all_text_rad, level_index)),
                "image_vs_object_count": _none_if_nan(spearman(image_rad, objects)),
                "image_vs_corruption": _none_if_nan(spearman(np.concatenate(noisy_rad), strengths)),
            },
            "corruption": {
                "noise_levels": [float(s) for s in noise_levels],
                "mean_image_radius": [float(r.mean()) for r in noisy_rad],
                "noise_seed": noise_seed,
            },
            "auroc_uncertainty_predicts_error": {
                "image_to_text": _none_if_nan(auroc(-image_rad, i2t_ranks > 1)),
                "text_to_image": _none_if_nan(auroc(-all_text_rad, t2i_ranks > 1)),
            },
            "histograms": histograms,
            "histogram_png": png,
        },
        "entailment": _entailment(
            aligner, [text[lv] for lv in levels], [split.captions[lv] for lv in levels]
        ),
    }


def _entailment(
    aligner: ImageTextAligner, embeddings: list[Tensor], captions: list[Sequence[str]]
) -> dict[str, Any] | None:
    """AUROC and accuracy of :math:`\\psi_c(t_a) - \\Xi_c(t_a, t_b)` separating the true
    (coarse, fine) caption pairs of one scene from false pairs across scenes
    (:func:`~hyperet.alignment.metrics.hierarchy_pairs`); ``None`` for Euclidean embeddings.

    The cones use the aligner's curvature and aperture scale ``K`` (0.1 for objectives trained
    without cones), in float64 with the ``train`` policy: an apex inside the cone-free core
    (:math:`\\sqrt c|x| < r_{in}`) gets the aperture :math:`\\approx \\pi/2` rather than an error.
    """
    if not aligner.hyperbolic:
        return None
    c, K = aligner.c().detach().double(), aligner.config.aperture_K
    ball = [aligner.ball_points(e.double()) for e in embeddings]
    pairs = hierarchy_pairs(captions)
    points = torch.stack(ball)  # (levels, N, E)
    coarse = points[torch.from_numpy(pairs.coarse_level), torch.from_numpy(pairs.coarse_scene)]
    fine = points[torch.from_numpy(pairs.fine_level), torch.from_numpy(pairs.fine_scene)]
    psi = ops.entailment_aperture(coarse, c=c, K=K, policy="train")
    xi = ops.entailment_angle(coarse, fine, c=c, policy="train")
    score = (psi - xi).numpy()
    return {
        "K": K,
        "true_pairs": int(pairs.label.sum()),
        "false_pairs": int((~pairs.label).sum()),
        "auroc": _none_if_nan(auroc(score, pairs.label)),
        "accuracy": entailment_accuracy(score, pairs.label),
        "true_inside_fraction": float(np.mean(score[pairs.label] >= 0)),
        "false_inside_fraction": float(np.mean(score[~pairs.label] >= 0)),
    }
