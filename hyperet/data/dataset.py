"""Seeded dataset splits: scenes, images, captions at every level, balanced VQA and MC items.

Each split draws from its own seed stream, ``np.random.SeedSequence([seed, crc32(name)])``,
spawned into four independent generators (scenes, background noise, questions, multiple
choice), so the same ``(name, seed)`` gives byte-identical images and identical text, different
split names give independent data, and changing ``questions_per_scene`` leaves the scenes and
images unchanged.

>>> split = build_split("val", n_scenes=8, seed=0)
>>> split.images.shape, split.images.dtype
((8, 3, 32, 32), dtype('uint8'))
>>> len(split.captions["detailed"]), len(split.qa), len(split.mc)
(8, 32, 8)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from hyperet.choices import SPLITS

from .captions import LEVELS, caption
from .multiple_choice import MCItem, mc_for
from .questions import QA, AnswerBalance, questions_for
from .scenes import Scene, render, sample_scene

SPLIT_NAMES: tuple[str, ...] = SPLITS
"""Conventional split names (any name works; each name has its own seed stream)."""


@dataclass
class Split:
    """One split. ``qa`` and ``mc`` pair each item with the index of its scene."""

    name: str
    scenes: list[Scene]
    images: np.ndarray  # (N, 3, H, W) uint8
    captions: dict[str, list[str]]
    qa: list[tuple[int, QA]]
    mc: list[tuple[int, MCItem]]


def split_seed_sequence(name: str, seed: int) -> np.random.SeedSequence:
    """The seed stream of split ``name``: ``SeedSequence([seed, crc32(name)])``."""
    if seed < 0:
        raise ValueError(f"seed: must be >= 0, got {seed}")
    return np.random.SeedSequence([seed, zlib.crc32(name.encode("utf-8"))])


def build_split(
    name: str,
    *,
    n_scenes: int,
    seed: int,
    image_size: int = 32,
    min_objects: int = 1,
    max_objects: int = 4,
    questions_per_scene: int = 4,
    mc_per_scene: int = 1,
) -> Split:
    """Generate split ``name`` of ``n_scenes`` scenes.

    Every scene gets one caption per level in ``LEVELS``, up to ``questions_per_scene`` VQA
    questions of different types and up to ``mc_per_scene`` multiple-choice items of different
    categories, answers balanced within each question type (and MC category) over the split.
    """
    if n_scenes < 0:
        raise ValueError(f"n_scenes: must be >= 0, got {n_scenes}")
    scene_rng, noise_rng, qa_rng, mc_rng = (
        np.random.default_rng(s) for s in split_seed_sequence(name, seed).spawn(4)
    )
    scenes = [
        sample_scene(
            scene_rng, min_objects=min_objects, max_objects=max_objects, image_size=image_size
        )
        for _ in range(n_scenes)
    ]
    images = np.empty((n_scenes, 3, image_size, image_size), dtype=np.uint8)  # (N, 3, H, W)
    for i, scene in enumerate(scenes):
        images[i] = render(scene, rng=noise_rng)
    captions = {level: [caption(scene, level) for scene in scenes] for level in LEVELS}
    qa_balance, mc_balance = AnswerBalance(), AnswerBalance()
    qa: list[tuple[int, QA]] = []
    mc: list[tuple[int, MCItem]] = []
    for i, scene in enumerate(scenes):  # one pass, so both see the scene's cached referents
        qa_items = questions_for(
            scene, qa_rng, max_per_scene=questions_per_scene, balance=qa_balance
        )
        qa.extend((i, item) for item in qa_items)
        mc_items = mc_for(
            scene, mc_rng, max_per_scene=mc_per_scene, max_objects=max_objects, balance=mc_balance
        )
        mc.extend((i, item) for item in mc_items)
    return Split(name, scenes, images, captions, qa, mc)
