"""Scenes: valid attributes, footprints that never touch, renders that show every object."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperet.data.scenes import (
    BACKGROUND_NOISE,
    COLOR_RGB,
    Scene,
    SceneObject,
    render,
    sample_scene,
)

from .facts import COLORS, HALF_EXTENT_32, SHAPES, SIZES

seeds = st.integers(0, 2**32 - 1)


def _check_scene(scene: Scene, lo: int, hi: int) -> None:
    objs = scene.objects
    assert lo <= len(objs) <= hi
    assert list(objs) == sorted(objs, key=lambda o: (o.x, o.y))
    triples = [(o.size, o.color, o.shape) for o in objs]
    assert len(set(triples)) == len(triples), "duplicate size+colour+shape"
    for o in objs:
        assert o.color in COLORS and o.shape in SHAPES and o.size in SIZES
        r = HALF_EXTENT_32[o.size]
        assert r <= o.x <= 31 - r and r <= o.y <= 31 - r, "footprint leaves the image"
        assert o.x not in (15, 16) and o.y not in (15, 16), "centre in the midline dead band"
    for a, b in itertools.combinations(objs, 2):
        gap = HALF_EXTENT_32[a.size] + HALF_EXTENT_32[b.size] + 2
        assert max(abs(a.x - b.x), abs(a.y - b.y)) >= gap, f"footprints touch: {a} {b}"


def _check_render(scene: Scene, image: np.ndarray) -> None:
    assert image.shape == (3, 32, 32) and image.dtype == np.uint8
    pixels = image.transpose(1, 2, 0).astype(int)  # (H, W, 3)
    painted = np.zeros((32, 32), dtype=bool)
    for o in scene.objects:
        rgb = np.array(COLOR_RGB[o.color])
        assert (pixels[o.y, o.x] == rgb).all(), f"centre pixel of {o} is {pixels[o.y, o.x]}"
        r = HALF_EXTENT_32[o.size]
        box = pixels[o.y - r : o.y + r + 1, o.x - r : o.x + r + 1]  # (2r+1, 2r+1, 3)
        is_mine = (box == rgb).all(axis=-1)
        is_background = (box < BACKGROUND_NOISE).all(axis=-1)
        assert (is_mine | is_background).all(), "another colour inside a footprint"
        assert is_mine.sum() >= 9, "object too small to see"
        painted[o.y - r : o.y + r + 1, o.x - r : o.x + r + 1] = True
    assert (pixels[~painted] < BACKGROUND_NOISE).all(), "paint outside every footprint"


@given(seed=seeds, bounds=st.sampled_from([(1, 1), (1, 4), (2, 4), (4, 4), (1, 6), (6, 6)]))
def test_any_seed_gives_a_valid_scene_and_render(seed: int, bounds: tuple[int, int]) -> None:
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, min_objects=bounds[0], max_objects=bounds[1])
    _check_scene(scene, *bounds)
    _check_render(scene, render(scene, rng=rng))


def test_split_scenes_and_images(split) -> None:
    for scene, image in zip(split.scenes, split.images, strict=True):
        _check_scene(scene, 1, 4)
        _check_render(scene, image)


def test_object_counts_are_uniform(split) -> None:
    counts = np.bincount([len(s.objects) for s in split.scenes], minlength=5)[1:]
    expected = len(split.scenes) / 4
    assert (np.abs(counts - expected) < 4 * np.sqrt(expected)).all(), counts


def test_attributes_are_all_used(split) -> None:
    objs = [o for s in split.scenes for o in s.objects]
    for field, values in (("color", COLORS), ("shape", SHAPES), ("size", SIZES)):
        counts = np.array([sum(getattr(o, field) == v for o in objs) for v in values])
        assert counts.min() > 0.6 * counts.mean(), (field, counts)


def test_colours_are_far_apart_in_rgb() -> None:
    rgb = np.array([COLOR_RGB[c] for c in COLORS], dtype=float)
    gaps = [np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2)]
    assert min(gaps) >= 100
    assert (rgb.max(axis=1) > 3 * BACKGROUND_NOISE).all(), "a colour too close to the background"


def test_noiseless_render_is_black_outside_objects() -> None:
    scene = Scene((SceneObject("circle", "red", "small", 5, 5),))
    image = render(scene)
    assert image[:, 5, 5].tolist() == list(COLOR_RGB["red"])
    assert image[:, 20, 20].tolist() == [0, 0, 0]
    # the circle's radius is 3.3 pixels: (5 + 3, 5) is inside, the corner (5 + 3, 5 + 3) is not
    assert image[:, 5, 8].tolist() == list(COLOR_RGB["red"])
    assert image[:, 8, 8].tolist() == [0, 0, 0]


def test_scene_keeps_objects_sorted_left_to_right() -> None:
    a = SceneObject("circle", "red", "small", 20, 5)
    b = SceneObject("square", "blue", "small", 5, 20)
    assert Scene((a, b)).objects == (b, a)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"min_objects": 0}, "min_objects"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects"),
        ({"max_objects": 7}, "max_objects"),
        ({"image_size": 8}, "image_size"),
    ],
)
def test_invalid_sampling_arguments_raise(kwargs: dict[str, int], argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument}"):
        sample_scene(np.random.default_rng(0), **kwargs)


def test_render_rejects_a_different_image_size() -> None:
    scene = sample_scene(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^image_size"):
        render(scene, image_size=64)


def test_larger_images_scale_the_objects() -> None:
    scene = sample_scene(np.random.default_rng(1), min_objects=4, max_objects=4, image_size=64)
    image = render(scene)
    assert image.shape == (3, 64, 64)
    for o in scene.objects:
        assert image[:, o.y, o.x].tolist() == list(COLOR_RGB[o.color])
