"""Shared generated splits (built once per session; each takes well under a second)."""

from __future__ import annotations

import pytest

from hyperet.data.dataset import Split, build_split


@pytest.fixture(scope="session")
def split() -> Split:
    """A 2,000-scene split with the default settings."""
    return build_split("test", n_scenes=2000, seed=7)


@pytest.fixture(scope="session")
def crowded_split() -> Split:
    """A split with up to six objects per scene and three MC items per scene."""
    return build_split("train", n_scenes=600, seed=3, max_objects=6, mc_per_scene=3)
