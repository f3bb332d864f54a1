"""VQA: every question's answer is recomputed from the scene facts; referents are unique."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperet.data.questions import (
    ANSWERS,
    QUESTION_TYPES,
    RELATIONAL_TYPES,
    AnswerBalance,
    candidates,
    questions_for,
)
from hyperet.data.scenes import Scene, SceneObject, sample_scene

from . import facts


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6))
def test_every_candidate_question_is_unambiguous_and_correct(seed: int, n: int) -> None:
    scene = sample_scene(np.random.default_rng(seed), min_objects=n, max_objects=n)
    for qtype in QUESTION_TYPES:
        for answer, questions in candidates(scene, qtype).items():
            assert answer in ANSWERS[qtype]
            for question in questions:
                assert facts.answer(scene, question) == (qtype, answer), question


@given(seed=st.integers(0, 2**32 - 1))
def test_unbalanced_draws_are_correct_and_of_distinct_types(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, max_objects=5)
    qas = questions_for(scene, rng, max_per_scene=5)
    assert len({qa.qtype for qa in qas}) == len(qas) <= 5
    for qa in qas:
        assert facts.answer(scene, qa.question) == (qa.qtype, qa.answer)
        assert qa.relational == (qa.qtype in {"relation", "closest", "compare"})


def test_split_answers_are_correct(split, crowded_split) -> None:
    for s in (split, crowded_split):
        for i, qa in s.qa:
            assert facts.answer(s.scenes[i], qa.question) == (qa.qtype, qa.answer), qa
            assert len(qa.answer.split()) == 1


def test_every_type_is_asked_evenly(split) -> None:
    per_type = Counter(qa.qtype for _, qa in split.qa)
    assert set(per_type) == set(QUESTION_TYPES)
    assert max(per_type.values()) - min(per_type.values()) <= 0.05 * len(split.qa) / 9


@pytest.mark.parametrize("qtype", QUESTION_TYPES)
def test_answers_are_balanced_within_each_type(split, qtype: str) -> None:
    counts = Counter(qa.answer for _, qa in split.qa if qa.qtype == qtype)
    expected = {"count": {"zero", "one", "two", "three", "four"}}.get(qtype, set(ANSWERS[qtype]))
    assert set(counts) == expected
    values = np.array(list(counts.values()))
    # greedy balancing: answers within 10 % of the mean; "four" is the scarce count answer
    assert values.max() - values.min() <= max(1, 0.1 * values.mean()), counts


def test_yes_no_is_fifty_fifty(split) -> None:
    for qtype in ("exist", "compare"):
        counts = Counter(qa.answer for _, qa in split.qa if qa.qtype == qtype)
        assert abs(counts["yes"] - counts["no"]) <= 1, (qtype, counts)


def test_crowded_scenes_balance_counts_up_to_six(crowded_split) -> None:
    counts = Counter(qa.answer for _, qa in crowded_split.qa if qa.qtype == "count")
    assert set(counts) == {"zero", "one", "two", "three", "four", "five", "six"}


def test_relational_flag_marks_the_relational_types(split) -> None:
    assert RELATIONAL_TYPES == {"relation", "closest", "compare"}
    for _, qa in split.qa:
        assert qa.relational == (qa.qtype in RELATIONAL_TYPES)


def test_ambiguous_referents_are_never_used() -> None:
    # two red circles (small and large): "the red circle" is ambiguous, "the small red circle" not
    scene = Scene(
        (
            SceneObject("circle", "red", "small", 5, 5),
            SceneObject("circle", "red", "large", 8, 24),
            SceneObject("square", "blue", "small", 26, 14),
        )
    )
    texts = [q for t in QUESTION_TYPES for qs in candidates(scene, t).values() for q in qs]
    assert not any("the red circle" in q for q in texts)
    assert "what size is the red circle?" not in texts
    assert "is the small red circle on the left or the right?" in texts
    assert "what color is the square?" in texts
    # both circles are left of the square: "the object left of the square" is ambiguous
    assert not any("left of the" in q and "square" in q for q in texts)


def test_relation_and_closest_examples() -> None:
    scene = Scene(
        (
            SceneObject("circle", "red", "small", 5, 24),
            SceneObject("square", "blue", "small", 13, 24),
            SceneObject("triangle", "green", "large", 25, 6),
        )
    )
    relation = candidates(scene, "relation")
    assert "what color is the object left of the square?" in relation["red"]
    # square: dx = -12, dy = 18 from the triangle (below); circle: dx = -20, dy = 18 (left of)
    assert "what shape is the object below the triangle?" in relation["square"]
    # both the square and the triangle are right of the circle: never asked
    assert not any("right of the circle" in q for qs in relation.values() for q in qs)
    closest = candidates(scene, "closest")
    assert "what color is the object closest to the circle?" in closest["blue"]
    assert "what shape is the object closest to the triangle?" in closest["square"]


def test_balance_counts_are_updated() -> None:
    balance = AnswerBalance()
    rng = np.random.default_rng(0)
    scene = sample_scene(rng)
    qas = questions_for(scene, rng, max_per_scene=3, balance=balance)
    assert sum(balance.types.values()) == len(qas) == 3
    assert all(balance.answers[(qa.qtype, qa.answer)] == 1 for qa in qas)


def test_invalid_arguments_raise() -> None:
    scene = sample_scene(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^qtype"):
        candidates(scene, "why")
    with pytest.raises(ValueError, match=r"^max_per_scene"):
        questions_for(scene, np.random.default_rng(0), max_per_scene=-1)


_ATTRIBUTE_WORD = re.compile(
    r"\b(red|green|blue|yellow|purple|cyan|circles?|squares?|triangles?|cross(es)?|small|large)\b"
)


@pytest.mark.parametrize("qtype", ["exist", "color", "shape", "size", "position", "compare"])
def test_wording_does_not_predict_the_answer(split, qtype: str) -> None:
    """Within each wording (attribute words masked) the answers stay near uniform."""
    by_wording: dict[str, Counter[str]] = {}
    for _, qa in split.qa:
        if qa.qtype == qtype:
            by_wording.setdefault(_ATTRIBUTE_WORD.sub("_", qa.question), Counter())[qa.answer] += 1
    for wording, counts in by_wording.items():
        total = sum(counts.values())
        if total < 100:
            continue
        k = 2 if qtype in ("exist", "size", "position", "compare") else len(ANSWERS[qtype])
        top = counts.most_common(1)[0][1] / total
        assert top < 1 / k + 4 * np.sqrt((1 / k) * (1 - 1 / k) / total), (wording, counts)
