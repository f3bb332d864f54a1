"""Caption-granularity mixtures for CLIP-style vision pretraining (stage 0a).

Web-scale CLIP sees captions of every granularity, most of them coarse ("a photo of a dog"),
fewer fine ("a small brown dog on the left of a red sofa"). :data:`CAPTION_MIXTURE` imitates
that on the generator's five caption levels: each training pair draws its caption's level
independently with these probabilities, skewed towards the coarse end (weights fall with the
level's fineness):

============  ======  =====================================================
level         weight  example
============  ======  =====================================================
count         0.30    ``two objects.``
categories    0.25    ``a circle and a square.``
objects       0.20    ``a red circle and a blue square.``
detailed      0.15    ``a small red circle at the top left and ...``
relations     0.10    the detailed caption plus one relation per neighbour pair
============  ======  =====================================================

so 55 % of the pairs name no colour, size or position, and 25 % do (``detailed`` and
``relations``). A single level (``--vision-level count`` etc.) is the degenerate mixture with
one weight of 1, kept for single-granularity ablations.

Draws are a pure function of ``(seed, step)``: the ``n`` levels of step ``s`` come from
``np.random.default_rng([*seed, s])``, so resuming a run mid-stage draws the same levels
without any saved state.

>>> mix = CaptionMixture.named("mixture")
>>> mix.levels, mix.weights
(('count', 'categories', 'objects', 'detailed', 'relations'), (0.3, 0.25, 0.2, 0.15, 0.1))
>>> CaptionMixture.named("count").draw([0, 1], step=5, n=4).tolist()
[0, 0, 0, 0]
>>> bool((mix.draw([0, 1], step=5, n=4) == mix.draw([0, 1], step=5, n=4)).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .captions import LEVELS

#: Name of the default mixture accepted wherever a caption level is (``--vision-level mixture``).
MIXTURE_NAME = "mixture"

#: Probability of each caption level in the default mixture (coarse levels most frequent).
CAPTION_MIXTURE: dict[str, float] = {
    "count": 0.30,
    "categories": 0.25,
    "objects": 0.20,
    "detailed": 0.15,
    "relations": 0.10,
}

#: Values accepted by ``train.vision_level``: one caption level, or the default mixture.
VISION_LEVELS: tuple[str, ...] = (*LEVELS, MIXTURE_NAME)


@dataclass(frozen=True)
class CaptionMixture:
    """Caption levels and their sampling probabilities (``weights`` sum to 1)."""

    levels: tuple[str, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.levels or len(self.levels) != len(self.weights):
            raise ValueError("weights: need one weight per level (and at least one level)")
        unknown = [lv for lv in self.levels if lv not in LEVELS]
        if unknown or len(set(self.levels)) != len(self.levels):
            raise ValueError(f"levels: {self.levels} must be distinct members of {LEVELS}")
        if any(not (w > 0 and math.isfinite(w)) for w in self.weights):
            raise ValueError(f"weights: must be positive and finite, got {self.weights}")
        if abs(sum(self.weights) - 1.0) > 1e-9:
            raise ValueError(f"weights: must sum to 1, got {sum(self.weights)}")

    @classmethod
    def named(cls, name: str) -> CaptionMixture:
        """``"mixture"`` -> :data:`CAPTION_MIXTURE`; a caption level -> that level alone."""
        if name == MIXTURE_NAME:
            return cls(tuple(CAPTION_MIXTURE), tuple(CAPTION_MIXTURE.values()))
        if name in LEVELS:
            return cls((name,), (1.0,))
        raise ValueError(f"vision_level: {name!r} is not one of {VISION_LEVELS}")

    def draw(self, seed: Sequence[int], step: int, n: int) -> np.ndarray:
        """Level indices ``(n,)`` (into :attr:`levels`) of the ``n`` pairs of step ``step``.

        A single level draws nothing (all zeros); otherwise the draws are i.i.d. categorical
        with probabilities :attr:`weights`, from ``default_rng([*seed, step])``.
        """
        if n < 0 or step < 0:
            raise ValueError(f"n, step: must be >= 0, got n={n}, step={step}")
        if len(self.levels) == 1:
            return np.zeros(n, dtype=np.int64)
        rng = np.random.default_rng([*seed, step])
        return rng.choice(len(self.levels), size=n, p=np.asarray(self.weights)).astype(np.int64)


__all__ = ["CAPTION_MIXTURE", "MIXTURE_NAME", "VISION_LEVELS", "CaptionMixture"]
