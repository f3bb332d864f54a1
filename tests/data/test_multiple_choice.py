"""Multiple choice: correct by construction, uniform answer position, QCM layout, parsing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperet.data.captions import caption
from hyperet.data.multiple_choice import (
    CATEGORY_TYPES,
    CONTEXT_LEVEL,
    MC_CATEGORIES,
    MCItem,
    answer_text,
    format_prompt,
    mc_for,
    parse_answer,
)
from hyperet.data.scenes import sample_scene

from . import facts

KINDS = [
    set(facts.COLORS), set(facts.SHAPES), {"left", "right"}, {"top", "bottom"}, {"yes", "no"},
    set(facts.NUMBERS),
]  # fmt: skip


def _check_item(scene, item: MCItem, max_objects: int) -> None:
    qtype, truth = facts.answer(scene, item.question)
    assert qtype in CATEGORY_TYPES[item.category]
    assert 2 <= len(item.options) <= 4
    assert len(set(item.options)) == len(item.options)
    assert item.options[item.answer_index] == truth
    assert any(set(item.options) <= kind for kind in KINDS), item.options
    if truth in facts.NUMBERS:
        assert all(facts.NUMBERS.index(o) <= max_objects for o in item.options)
    assert item.context in ("", caption(scene, CONTEXT_LEVEL[item.category]))


def test_split_items_are_correct(split, crowded_split) -> None:
    for s, max_objects in ((split, 4), (crowded_split, 6)):
        for i, item in s.mc:
            _check_item(s.scenes[i], item, max_objects)


@given(seed=st.integers(0, 2**32 - 1))
def test_unbalanced_items_are_correct(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, max_objects=6)
    items = mc_for(scene, rng, max_per_scene=5, max_objects=6)
    assert len({item.category for item in items}) == len(items)
    for item in items:
        _check_item(scene, item, 6)


def test_answer_position_is_uniform_for_each_option_count(split, crowded_split) -> None:
    items = [item for _, item in split.mc] + [item for _, item in crowded_split.mc]
    for n in (2, 3, 4):
        positions = np.bincount([it.answer_index for it in items if len(it.options) == n],
                                minlength=n)  # fmt: skip
        expected = positions.sum() / n
        assert positions.sum() > 300
        assert (np.abs(positions - expected) < 4 * np.sqrt(expected)).all(), (n, positions)


def test_categories_and_contexts_are_mixed(split) -> None:
    categories = Counter(item.category for _, item in split.mc)
    assert set(categories) == set(MC_CATEGORIES)
    assert max(categories.values()) - min(categories.values()) <= 1
    with_context = sum(bool(item.context) for _, item in split.mc) / len(split.mc)
    assert 0.45 < with_context < 0.55


def test_answers_are_balanced_within_each_category(split) -> None:
    for category in MC_CATEGORIES:
        items = [it for _, it in split.mc if it.category == category]
        counts = Counter(it.options[it.answer_index] for it in items)
        if category != "spatial":  # spatial mixes three question types with different domains
            values = np.array(list(counts.values()))
            assert values.max() - values.min() <= max(1, 0.1 * values.mean()), counts


def test_prompt_layout_and_answer_text() -> None:
    item = MCItem("how many circles are there?", "", ("two", "zero", "one"), 2, "counting")
    assert format_prompt(item) == (
        "Question: how many circles are there?\nContext: N/A\n"
        "Options: (A) two (B) zero (C) one\nAnswer:"
    )
    assert answer_text(item) == "The answer is C."


def test_parse_round_trip(split) -> None:
    for _, item in split.mc:
        text = answer_text(item)
        assert parse_answer(text) == item.answer_index
        assert parse_answer(text.lower()) == item.answer_index
        assert parse_answer(f"{format_prompt(item)} {text}") == item.answer_index


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is A.", 0),
        ("the answer is d", 3),
        ("The answer is (B).", 1),
        ("Well... the answer is c. Because.", 2),
        ("  C  ", 2),
        ("(d)", 3),
        ("The answer is E.", None),
        ("The answer is a red circle.", None),
        ("The answer is", None),
        ("", None),
        ("I do not know", None),
        ("A red circle", None),
    ],
)
def test_parse_answer(text: str, expected: int | None) -> None:
    assert parse_answer(text) == expected


def test_parse_answer_respects_the_option_count() -> None:
    assert parse_answer("The answer is C.", n_options=3) == 2
    assert parse_answer("The answer is D.", n_options=3) is None


def test_invalid_arguments_raise() -> None:
    scene = sample_scene(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^max_per_scene"):
        mc_for(scene, np.random.default_rng(0), max_per_scene=-1)
    with pytest.raises(ValueError, match=r"^max_objects"):
        mc_for(scene, np.random.default_rng(0), max_per_scene=1, max_objects=9)


def test_a_restated_answer_names_the_option_then_its_letter_and_parses() -> None:
    item = MCItem("what color is the circle?", "", ("blue", "red", "green"), 2, "color")
    assert answer_text(item) == "The answer is C."
    assert answer_text(item, restate=True) == "green. The answer is C."
    for index in range(3):
        chosen = MCItem(item.question, item.context, item.options, index, item.category)
        assert parse_answer(answer_text(chosen, restate=True).lower(), n_options=3) == index
