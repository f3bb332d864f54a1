"""VQA questions about a scene: nine types, single-word answers, unambiguous referents.

Every question names its objects by a *referent* phrase built from the object's attributes,
``[size] [colour] (shape | "object")`` - e.g. ``"circle"``, ``"red object"``,
``"small red circle"`` - and a referent is used only when exactly one object of the scene
matches it. Questions asking for an attribute never use that attribute in the referent.

============  ==========  =======================================================  ================
type          relational  templates                                                answers
============  ==========  =======================================================  ================
``count``     no          how many objects / {shape}s / {colour} objects /          ``zero``-``six``
                          {size} objects are there?
``exist``     no          is there a {shape} / {colour} object / {colour} {shape}?  ``yes``/``no``
``color``     no          what color is the {ref}?                                  colours
``shape``     no          what shape is the {ref}?                                  shapes
``size``      no          what size is the {ref}?                                   sizes
``position``  no          is the {ref} on the left or the right? /                  ``left``,
                          is the {ref} at the top or the bottom?                    ``right``,
                                                                                    ``top``,
                                                                                    ``bottom``
``relation``  yes         what color / shape is the object {relation} the {ref}?    colours, shapes
``closest``   yes         what color / shape is the object closest to the {ref}?    colours, shapes
``compare``   yes         are there more {shape}s than {shape}s? /                  ``yes``/``no``
                          are there more {colour} objects than {colour} objects?
============  ==========  =======================================================  ================

``relation`` uses ``scenes.spatial_relation`` and is asked only when exactly one object stands in
that relation to the referent; ``closest`` only when the nearest object (centre distance) is
nearer than every other one by at least ``CLOSEST_MARGIN`` pixels.

Balance: ``questions_for`` with an ``AnswerBalance`` picks, for each scene, the question types
asked least so far, and within a type the answer given least so far among those the scene can
support - so answers are balanced at dataset level, not per scene.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from .captions import NUMBER_WORDS, RELATIONS
from .scenes import (
    COLORS,
    PLURALS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    horizontal_side,
    spatial_relation,
    vertical_side,
)

QUESTION_TYPES: tuple[str, ...] = (
    "count", "exist", "color", "shape", "size", "position", "relation", "closest", "compare",
)  # fmt: skip
RELATIONAL_TYPES: frozenset[str] = frozenset({"relation", "closest", "compare"})

CLOSEST_MARGIN = 2.0
"""Pixels by which the closest object must beat the second closest."""

ANSWERS: dict[str, tuple[str, ...]] = {
    "count": NUMBER_WORDS,
    "exist": ("yes", "no"),
    "color": COLORS,
    "shape": SHAPES,
    "size": SIZES,
    "position": ("left", "right", "top", "bottom"),
    "relation": (*COLORS, *SHAPES),
    "closest": (*COLORS, *SHAPES),
    "compare": ("yes", "no"),
}
"""The answer domain of each question type."""

WORDS: tuple[str, ...] = (
    "how", "many", "are", "there", "is", "a", "what", "color", "shape", "size", "the", "on",
    "or", "at", "object", "objects", "closest", "to", "more", "than", "left", "right", "top",
    "bottom", "of", "above", "below", "yes", "no", "?", *NUMBER_WORDS, *PLURALS.values(),
)  # fmt: skip
"""Every word and punctuation token a question or answer uses, besides colours, shapes, sizes."""

_ATTRIBUTE_SETS: tuple[tuple[str, ...], ...] = (
    ("shape",), ("color",), ("size",), ("color", "shape"), ("size", "shape"), ("size", "color"),
    ("size", "color", "shape"),
)  # fmt: skip


@dataclass(frozen=True)
class QA:
    """A question, its single-word answer, its type and whether it is relational."""

    question: str
    answer: str
    qtype: str
    relational: bool


@dataclass
class AnswerBalance:
    """Running counts of question types and of (type, answer) pairs over a dataset."""

    types: Counter[str] = field(default_factory=Counter)
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)


def referent(obj: SceneObject, attributes: tuple[str, ...]) -> str:
    """The phrase naming ``obj`` by ``attributes`` (in the order size, colour, shape).

    >>> referent(SceneObject("circle", "red", "small", 4, 4), ("size", "color"))
    'small red object'
    """
    words = [getattr(obj, a) for a in ("size", "color") if a in attributes]
    words.append(obj.shape if "shape" in attributes else "object")
    return " ".join(words)


def unique_referents(scene: Scene, obj: SceneObject, *, exclude: str | None = None) -> list[str]:
    """All referent phrases that match ``obj`` and no other object, never using ``exclude``."""
    return [
        phrase for attributes, phrase in _referent_table(scene)[obj] if exclude not in attributes
    ]


@functools.lru_cache(maxsize=64)
def _referent_table(
    scene: Scene,
) -> dict[SceneObject, tuple[tuple[tuple[str, ...], str], ...]]:
    """For each object, the (attributes, phrase) pairs that identify it uniquely (cached)."""
    table: dict[SceneObject, list[tuple[tuple[str, ...], str]]] = {o: [] for o in scene.objects}
    for attributes in _ATTRIBUTE_SETS:
        keys = [tuple(getattr(o, a) for a in attributes) for o in scene.objects]
        counts = Counter(keys)
        for obj, key in zip(scene.objects, keys, strict=True):
            if counts[key] == 1:
                table[obj].append((attributes, referent(obj, attributes)))
    return {obj: tuple(pairs) for obj, pairs in table.items()}


def _count_candidates(scene: Scene) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    objs = scene.objects

    def add(question: str, n: int) -> None:
        out.setdefault(NUMBER_WORDS[n], []).append(question)

    add("how many objects are there?", len(objs))
    for shape in SHAPES:
        add(f"how many {PLURALS[shape]} are there?", sum(o.shape == shape for o in objs))
    for color in COLORS:
        add(f"how many {color} objects are there?", sum(o.color == color for o in objs))
    for size in SIZES:
        add(f"how many {size} objects are there?", sum(o.size == size for o in objs))
    return out


def _exist_candidates(scene: Scene) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"yes": [], "no": []}
    shapes = {o.shape for o in scene.objects}
    colors = {o.color for o in scene.objects}
    pairs = {(o.color, o.shape) for o in scene.objects}
    for shape in SHAPES:
        out["yes" if shape in shapes else "no"].append(f"is there a {shape}?")
    for color in COLORS:
        out["yes" if color in colors else "no"].append(f"is there a {color} object?")
    for color in COLORS:
        for shape in SHAPES:
            answer = "yes" if (color, shape) in pairs else "no"
            out[answer].append(f"is there a {color} {shape}?")
    return out


def _attribute_candidates(scene: Scene, attribute: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for obj in scene.objects:
        for ref in unique_referents(scene, obj, exclude=attribute):
            out.setdefault(getattr(obj, attribute), []).append(f"what {attribute} is the {ref}?")
    return out


def _position_candidates(scene: Scene) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    size = scene.image_size
    for obj in scene.objects:
        for ref in unique_referents(scene, obj):
            out.setdefault(horizontal_side(obj, size), []).append(
                f"is the {ref} on the left or the right?"
            )
            out.setdefault(vertical_side(obj, size), []).append(
                f"is the {ref} at the top or the bottom?"
            )
    return out


def _about_target(
    out: dict[str, list[str]], target: SceneObject, phrase: str, refs: list[str]
) -> None:
    """Add "what color/shape is the object {phrase} the {ref}?" for each referent phrase."""
    for ref in refs:
        out.setdefault(target.color, []).append(f"what color is the object {phrase} the {ref}?")
        out.setdefault(target.shape, []).append(f"what shape is the object {phrase} the {ref}?")


def _relation_candidates(scene: Scene) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for anchor in scene.objects:
        for relation in RELATIONS:
            matches = [
                o for o in scene.objects
                if o is not anchor and spatial_relation(o, anchor) == relation
            ]  # fmt: skip
            if len(matches) == 1:
                _about_target(out, matches[0], relation, unique_referents(scene, anchor))
    return out


def closest_object(scene: Scene, anchor: SceneObject) -> SceneObject | None:
    """The object nearest to ``anchor`` (centre distance), or ``None`` when not clear-cut.

    Clear-cut means the nearest is nearer than every other object by ``CLOSEST_MARGIN`` pixels.
    """
    others = sorted(
        (math.hypot(o.x - anchor.x, o.y - anchor.y), i)
        for i, o in enumerate(scene.objects)
        if o is not anchor
    )
    if not others:
        return None
    if len(others) > 1 and others[1][0] - others[0][0] < CLOSEST_MARGIN:
        return None
    return scene.objects[others[0][1]]


def _closest_candidates(scene: Scene) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for anchor in scene.objects:
        target = closest_object(scene, anchor)
        if target is not None:
            _about_target(out, target, "closest to", unique_referents(scene, anchor))
    return out


def _compare_candidates(scene: Scene) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"yes": [], "no": []}
    shape_counts = Counter(o.shape for o in scene.objects)
    color_counts = Counter(o.color for o in scene.objects)
    for a in SHAPES:
        for b in SHAPES:
            if a != b and shape_counts[a] + shape_counts[b] > 0:
                answer = "yes" if shape_counts[a] > shape_counts[b] else "no"
                out[answer].append(f"are there more {PLURALS[a]} than {PLURALS[b]}?")
    for a in COLORS:
        for b in COLORS:
            if a != b and color_counts[a] + color_counts[b] > 0:
                answer = "yes" if color_counts[a] > color_counts[b] else "no"
                out[answer].append(f"are there more {a} objects than {b} objects?")
    return out


def candidates(scene: Scene, qtype: str) -> Mapping[str, tuple[str, ...]]:
    """Every question of type ``qtype`` the scene supports, grouped by answer.

    Maps each answer to a non-empty tuple of question texts. The mapping is read-only and
    cached (the last few scenes), so question and multiple-choice generation share the work.
    """
    return _cached_candidates(scene, qtype)


@functools.lru_cache(maxsize=64)
def _cached_candidates(scene: Scene, qtype: str) -> Mapping[str, tuple[str, ...]]:
    if qtype == "count":
        out = _count_candidates(scene)
    elif qtype == "exist":
        out = _exist_candidates(scene)
    elif qtype in ("color", "shape", "size"):
        out = _attribute_candidates(scene, qtype)
    elif qtype == "position":
        out = _position_candidates(scene)
    elif qtype == "relation":
        out = _relation_candidates(scene)
    elif qtype == "closest":
        out = _closest_candidates(scene)
    elif qtype == "compare":
        out = _compare_candidates(scene)
    else:
        raise ValueError(f"qtype: expected one of {QUESTION_TYPES}, got {qtype!r}")
    return MappingProxyType({answer: tuple(qs) for answer, qs in out.items() if qs})


def least_used(keys: list[str], counts: Mapping[str, int], rng: np.random.Generator) -> list[str]:
    """``keys`` ordered by ascending count (missing keys count 0), ties broken at random."""
    ties = rng.permutation(len(keys))
    order = sorted(range(len(keys)), key=lambda i: (counts.get(keys[i], 0), ties[i]))
    return [keys[i] for i in order]


def draw_balanced(
    keys: list[str],
    pool: Callable[[str], Mapping[str, tuple[str, ...]]],
    rng: np.random.Generator,
    *,
    n: int,
    balance: AnswerBalance | None,
) -> list[tuple[str, str, str]]:
    """Up to ``n`` ``(key, answer, question)`` triples, each of a different key.

    ``pool(key)`` maps answers to questions (empty when the key has none). Without ``balance``
    keys, answers and questions are uniform draws. With ``balance`` the keys used least so far
    come first, and each key takes the answer it gave least so far; the counts are updated.
    Pools are only asked for until ``n`` keys have questions.
    """
    if n < 0:
        raise ValueError(f"n: must be >= 0, got {n}")
    if balance is None:
        order = [keys[i] for i in rng.permutation(len(keys))]
    else:
        order = least_used(keys, balance.types, rng)
    out: list[tuple[str, str, str]] = []
    for key in order:
        if len(out) == n:
            break
        by_answer = pool(key)
        if not by_answer:
            continue
        answers = sorted(by_answer)
        if balance is None:
            answer = answers[rng.integers(len(answers))]
        else:
            answer = least_used(answers, {a: balance.answers[(key, a)] for a in answers}, rng)[0]
            balance.types[key] += 1
            balance.answers[(key, answer)] += 1
        questions = by_answer[answer]
        out.append((key, answer, questions[rng.integers(len(questions))]))
    return out


def questions_for(
    scene: Scene,
    rng: np.random.Generator,
    *,
    max_per_scene: int,
    balance: AnswerBalance | None = None,
) -> list[QA]:
    """Up to ``max_per_scene`` questions about ``scene``, each of a different type.

    Without ``balance`` the types, answers and questions are drawn uniformly. With ``balance``
    (shared across a dataset and updated in place) the scene gets the types asked least so far,
    and each type the answer given least so far among those the scene supports, so that answers
    are balanced within every type at dataset level.
    """
    if max_per_scene < 0:
        raise ValueError(f"max_per_scene: must be >= 0, got {max_per_scene}")
    drawn = draw_balanced(
        list(QUESTION_TYPES),
        lambda qtype: candidates(scene, qtype),
        rng,
        n=max_per_scene,
        balance=balance,
    )
    return [QA(q, a, t, t in RELATIONAL_TYPES) for t, a, q in drawn]
