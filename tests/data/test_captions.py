"""Captions: each level parses, states the scene's facts, and is implied by every finer level."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperet.data.captions import LEVELS, caption
from hyperet.data.scenes import Scene, SceneObject, sample_scene

from .facts import (
    parse_categories,
    parse_count,
    parse_detailed,
    parse_objects,
    parse_relations,
    relation,
    scene_facts,
)


def _check_levels(scene: Scene, texts: dict[str, str]) -> None:
    facts = scene_facts(scene)
    detailed = parse_detailed(texts["detailed"])
    assert detailed == facts, "the detailed caption misstates the scene"
    # each coarser level is a function of the finer level's facts
    assert parse_objects(texts["objects"]) == [(c, s) for _, c, s, _, _ in detailed]
    assert parse_categories(texts["categories"]) == [s for _, s in parse_objects(texts["objects"])]
    assert parse_count(texts["count"]) == len(parse_categories(texts["categories"]))
    first, triples = parse_relations(texts["relations"])
    assert first == texts["detailed"]
    ordered = sorted(scene.objects, key=lambda o: (o.x, o.y))
    expected = [
        (f"{a.size} {a.color} {a.shape}", relation(a, b), f"{b.size} {b.color} {b.shape}")
        for a, b in itertools.pairwise(ordered)
    ]
    assert triples == expected


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6))
def test_any_scene_has_consistent_caption_levels(seed: int, n: int) -> None:
    scene = sample_scene(np.random.default_rng(seed), min_objects=n, max_objects=n)
    _check_levels(scene, {level: caption(scene, level) for level in LEVELS})


def test_split_captions_are_consistent(split) -> None:
    for i, scene in enumerate(split.scenes):
        _check_levels(scene, {level: split.captions[level][i] for level in LEVELS})


def test_levels_run_coarse_to_fine() -> None:
    assert LEVELS == ("count", "categories", "objects", "detailed", "relations")


def test_worked_example() -> None:
    scene = Scene(
        (
            SceneObject("triangle", "green", "large", 24, 6),
            SceneObject("circle", "red", "small", 5, 25),
            SceneObject("cross", "cyan", "small", 12, 12),
        )
    )
    assert caption(scene, "count") == "three objects."
    assert caption(scene, "categories") == "a circle, a cross and a triangle."
    assert caption(scene, "objects") == "a red circle, a cyan cross and a green triangle."
    assert caption(scene, "detailed") == (
        "a small red circle at the bottom left, a small cyan cross at the top left and "
        "a large green triangle at the top right."
    )
    # circle -> cross: dx = 7, dy = -13 (vertical dominates: the circle is below);
    # cross -> triangle: dx = -12, dy = 6 (horizontal dominates: the cross is left of it)
    assert caption(scene, "relations") == (
        caption(scene, "detailed") + " the small red circle is below the small cyan cross."
        " the small cyan cross is left of the large green triangle."
    )
    assert caption(Scene((SceneObject("square", "blue", "large", 6, 6),)), "count") == "one object."


def test_unknown_level_raises() -> None:
    with pytest.raises(ValueError, match=r"^level"):
        caption(Scene(()), "poem")
