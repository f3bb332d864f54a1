"""Splits: deterministic, independent per name and seed, well-formed; module doctests run."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from hyperet.data.captions import LEVELS
from hyperet.data.dataset import build_split


def _text(split) -> tuple:
    return (
        split.captions,
        [(i, qa) for i, qa in split.qa],
        [(i, item) for i, item in split.mc],
        split.scenes,
    )


def test_same_seed_gives_identical_bytes_and_text() -> None:
    a = build_split("train", n_scenes=300, seed=11)
    b = build_split("train", n_scenes=300, seed=11)
    assert a.images.tobytes() == b.images.tobytes()
    assert _text(a) == _text(b)


def test_names_and_seeds_give_independent_streams() -> None:
    base = build_split("train", n_scenes=100, seed=11)
    for other in (build_split("val", n_scenes=100, seed=11),
                  build_split("train", n_scenes=100, seed=12)):  # fmt: skip
        assert not np.array_equal(base.images, other.images)
        assert base.captions["detailed"] != other.captions["detailed"]


def test_question_settings_leave_scenes_and_images_unchanged() -> None:
    a = build_split("val", n_scenes=100, seed=5, questions_per_scene=2, mc_per_scene=0)
    b = build_split("val", n_scenes=100, seed=5, questions_per_scene=6, mc_per_scene=2)
    assert a.images.tobytes() == b.images.tobytes() and a.scenes == b.scenes
    assert a.mc == [] and len(b.mc) == 200
    assert len(a.qa) == 200 and len(b.qa) == 600


def test_split_is_well_formed(split) -> None:
    n = len(split.scenes)
    assert split.name == "test"
    assert split.images.shape == (n, 3, 32, 32) and split.images.dtype == np.uint8
    assert set(split.captions) == set(LEVELS)
    assert all(len(split.captions[level]) == n for level in LEVELS)
    qa_scenes = [i for i, _ in split.qa]
    assert qa_scenes == sorted(qa_scenes) and set(qa_scenes) == set(range(n))
    assert np.bincount(qa_scenes).max() == 4
    assert [i for i, _ in split.mc] == list(range(n))


def test_other_image_sizes_and_object_counts() -> None:
    split = build_split("train", n_scenes=20, seed=0, image_size=48, min_objects=3, max_objects=5)
    assert split.images.shape == (20, 3, 48, 48)
    assert all(3 <= len(s.objects) <= 5 for s in split.scenes)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"n_scenes": -1}, "n_scenes"), ({"seed": -1}, "seed"), ({"max_objects": 7}, "max_objects")],
)
def test_invalid_arguments_raise(kwargs: dict[str, int], argument: str) -> None:
    arguments = {"n_scenes": 2, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=rf"^{argument}"):
        build_split("train", **arguments)


@pytest.mark.parametrize(
    "module", ["scenes", "captions", "questions", "multiple_choice", "tokenizer", "dataset"]
)
def test_module_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(f"hyperet.data.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
