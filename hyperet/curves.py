"""Learning curves: validation accuracy every ``train.val_every`` steps of stages 1 and 2.

A point is measured on a fixed subset of the validation split (its first
:data:`CURVE_SCENES` scenes) in one teacher-forced forward pass per batch - no generation, so a
point costs a few training steps:

- ``align`` (stage 1): ``caption_token_accuracy``, the fraction of caption tokens (and
  ``<eos>``) that are the argmax given the image and the caption so far, and
  ``caption_exact``, the fraction of captions whose every token is;
- ``instruct`` (stage 2): ``vqa`` overall and ``vqa_per_type``, ``mc`` (multiple choice, the
  sentence ``the answer is x .``).

*Exact* means: every supervised token (the answer and ``<eos>``) is the argmax under teacher
forcing. Then greedy decoding reproduces the answer exactly, so this is a lower bound of the
greedy exact match of ``hyperet eval`` (equal unless greedy decoding emits special tokens
around a correct answer).

Each point also carries ``step`` and ``train_loss`` (mean loss of the steps since the previous
point). The points of a stage are stored in its metrics (``metrics.json``: ``stages.<stage>.
val_curve``) and in its checkpoints, so a resumed run keeps them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hyperet.batching import Encoded, collate, encode_caption, encode_mc, encode_vqa
from hyperet.data import Tokenizer, build_split
from hyperet.model import IGNORE, MLLM

#: Stages that record a learning curve.
CURVE_STAGES: tuple[str, ...] = ("align", "instruct")
#: Validation scenes a point is measured on (the first ones of the val split).
CURVE_SCENES = 250
#: Rows per forward pass.
CURVE_BATCH = 256


def exact_and_token_hits(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per row: all supervised tokens right, the number right, the number supervised.

    ``logits[:, t]`` predicts ``labels[:, t + 1]`` (as in the training loss); rows ``(B,)``.
    """
    target = labels[:, 1:]  # (B, T-1)
    mask = target != IGNORE
    right = (logits[:, :-1].argmax(dim=-1) == target) & mask
    n_right, n_total = right.sum(dim=1), mask.sum(dim=1)
    return n_right == n_total, n_right, n_total


class ValidationCurve:
    """Measures the validation points of one stage (see the module docstring)."""

    def __init__(
        self, stage: str, config: Any, tokenizer: Tokenizer, model: MLLM, every: int
    ) -> None:
        if stage not in CURVE_STAGES:
            raise ValueError(f"stage: {stage!r} records no curve (only {CURVE_STAGES})")
        if every < 1:
            raise ValueError(f"every: must be >= 1, got {every}")
        d = config.data
        split = build_split(
            "val",
            n_scenes=min(CURVE_SCENES, d.val_scenes),
            seed=config.seed,
            image_size=d.image_size,
            min_objects=d.min_objects,
            max_objects=d.max_objects,
        )
        self.stage, self.model, self.every = stage, model, every
        self.images = torch.from_numpy(np.ascontiguousarray(split.images))
        self.groups: dict[str, list[tuple[int, Encoded]]] = defaultdict(list)
        if stage == "align":
            for i, text in enumerate(split.captions["detailed"]):
                self.groups["caption"].append((i, encode_caption(tokenizer, text)))
        else:
            for i, qa in split.qa:
                self.groups[f"vqa/{qa.qtype}"].append((i, encode_vqa(tokenizer, qa)))
            restate = config.train.mc_restate
            self.groups["mc"] = [
                (i, encode_mc(tokenizer, item, restate=restate)) for i, item in split.mc
            ]
        self.features: Tensor | None = None

    def due(self, step: int, total: int) -> bool:
        """Whether a point is measured after ``step`` completed steps of ``total``."""
        return step % self.every == 0 or step == total

    @torch.no_grad()
    def measure(self, *, frozen_vision: bool) -> dict[str, Any]:
        """One point (without ``step``/``train_loss``); ``frozen_vision`` allows caching."""
        if self.features is None or not frozen_vision:
            self.features = torch.cat(
                [
                    self.model.visual_features(self.images[s : s + CURVE_BATCH])
                    for s in range(0, len(self.images), CURVE_BATCH)
                ]
            )
        exact: dict[str, list[bool]] = {}
        tokens = [0, 0]
        for name, items in self.groups.items():
            hits: list[bool] = []
            for s in range(0, len(items), CURVE_BATCH):
                chunk = items[s : s + CURVE_BATCH]
                batch = collate([e for _, e in chunk])
                idx = torch.tensor([i for i, _ in chunk])
                logits, _ = self.model(batch.input_ids, features=self.features[idx])
                labels = batch.labels.to(logits.device)  # the model may sit on a GPU
                ok, n_right, n_total = exact_and_token_hits(logits, labels)
                hits.extend(ok.tolist())
                tokens[0] += int(n_right.sum())
                tokens[1] += int(n_total.sum())
            exact[name] = hits
        if self.stage == "align":
            return {
                "caption_token_accuracy": tokens[0] / tokens[1],
                "caption_exact": float(np.mean(exact["caption"])),
            }
        vqa = {k.split("/", 1)[1]: v for k, v in exact.items() if k.startswith("vqa/")}
        return {
            "vqa": float(np.mean([h for v in vqa.values() for h in v])),
            "vqa_per_type": {t: float(np.mean(v)) for t, v in sorted(vqa.items())},
            "mc": float(np.mean(exact["mc"])) if exact["mc"] else None,
        }

    def point(
        self, step: int, losses: list[float], *, since: int, frozen_vision: bool
    ) -> dict[str, Any]:
        """The point after ``step`` steps; ``losses`` are the stage's losses so far and
        ``since`` the step of the previous point (0 for none): ``train_loss`` averages the
        losses in between. ``seconds`` is the time the measurement took."""
        t0 = time.perf_counter()
        recent = losses[since:step] or losses[-1:]
        measured = self.measure(frozen_vision=frozen_vision)
        return {
            "step": step,
            "train_loss": float(np.mean(recent)) if recent else None,
            **measured,
            "seconds": time.perf_counter() - t0,
        }


__all__ = ["CURVE_SCENES", "CURVE_STAGES", "ValidationCurve", "exact_and_token_hits"]
