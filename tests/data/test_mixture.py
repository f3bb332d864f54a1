"""The caption-level mixture of vision pretraining: proportions, determinism, validation."""

from __future__ import annotations

import numpy as np
import pytest

from hyperet.data.captions import LEVELS
from hyperet.data.mixture import CAPTION_MIXTURE, VISION_LEVELS, CaptionMixture


def test_default_mixture_is_skewed_to_the_coarse_levels() -> None:
    weights = [CAPTION_MIXTURE[level] for level in LEVELS]  # LEVELS runs coarse -> fine
    assert weights == sorted(weights, reverse=True) and len(set(weights)) == len(weights)
    assert sum(weights) == pytest.approx(1.0, abs=1e-12)
    assert VISION_LEVELS == (*LEVELS, "mixture")


def test_draw_proportions_within_binomial_tolerance() -> None:
    mix = CaptionMixture.named("mixture")
    draws = np.concatenate([mix.draw([0, 0, 1], step, 64) for step in range(500)])  # 32,000
    n = len(draws)
    for k, p in enumerate(mix.weights):
        count = int((draws == k).sum())
        sigma = np.sqrt(n * p * (1 - p))
        assert abs(count - n * p) < 4.5 * sigma, (mix.levels[k], count, n * p)


def test_draws_depend_on_seed_and_step_only() -> None:
    mix = CaptionMixture.named("mixture")
    a = mix.draw([3, 0, 1], 17, 64)
    assert np.array_equal(a, mix.draw([3, 0, 1], 17, 64))  # resume: same (seed, step), same draw
    assert not np.array_equal(a, mix.draw([3, 0, 1], 18, 64))
    assert not np.array_equal(a, mix.draw([4, 0, 1], 17, 64))
    assert a.dtype == np.int64 and a.min() >= 0 and a.max() < len(LEVELS)


@pytest.mark.parametrize("level", LEVELS)
def test_a_single_level_is_the_degenerate_mixture(level: str) -> None:
    mix = CaptionMixture.named(level)
    assert mix.levels == (level,) and mix.weights == (1.0,)
    assert mix.draw([0], 3, 5).tolist() == [0] * 5


@pytest.mark.parametrize(
    ("levels", "weights", "match"),
    [
        (("count",), (0.5,), "sum to 1"),
        (("count", "count"), (0.5, 0.5), "distinct"),
        (("fine",), (1.0,), "distinct members"),
        (("count", "objects"), (1.5, -0.5), "positive"),
        ((), (), "one weight per level"),
    ],
)
def test_invalid_mixtures_are_refused(
    levels: tuple[str, ...], weights: tuple[float, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        CaptionMixture(levels, weights)


def test_unknown_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^vision_level"):
        CaptionMixture.named("fine")
