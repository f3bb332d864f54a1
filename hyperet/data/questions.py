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
    """Running counts over a dataset: types, (type, answer), (type, family), (type, family, answer).

    "Type" is a question type for VQA and a category for multiple choice.
    """

    types: Counter[str] = field(default_factory=Counter)
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)
    families: Counter[tuple[str, str]] = field(default_factory=Counter)
    family_answers: Counter[tuple[str, str, str]] = field(default_factory=Counter)


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


Candidates = dict[str, dict[str, list[str]]]
"""Questions grouped by template family, then by answer."""

Pool = Mapping[str, Mapping[str, tuple[str, ...]]]
"""Read-only ``Candidates``."""


def _add(out: Candidates, family: str, answer: str, question: str) -> None:
    out.setdefault(family, {}).setdefault(answer, []).append(question)


def _count_candidates(scene: Scene) -> Candidates:
    out: Candidates = {}
    objs = scene.objects
    _add(out, "how many objects", NUMBER_WORDS[len(objs)], "how many objects are there?")
    for shape in SHAPES:
        n = sum(o.shape == shape for o in objs)
        _add(out, "how many {shape}s", NUMBER_WORDS[n], f"how many {PLURALS[shape]} are there?")
    for color in COLORS:
        n = sum(o.color == color for o in objs)
        _add(out, "how many {color}", NUMBER_WORDS[n], f"how many {color} objects are there?")
    for size in SIZES:
        n = sum(o.size == size for o in objs)
        _add(out, "how many {size}", NUMBER_WORDS[n], f"how many {size} objects are there?")
    return out


def _exist_candidates(scene: Scene) -> Candidates:
    out: Candidates = {}
    shapes = {o.shape for o in scene.objects}
    colors = {o.color for o in scene.objects}
    pairs = {(o.color, o.shape) for o in scene.objects}
    for shape in SHAPES:
        _add(out, "{shape}", "yes" if shape in shapes else "no", f"is there a {shape}?")
    for color in COLORS:
        _add(out, "{color}", "yes" if color in colors else "no", f"is there a {color} object?")
    for color in COLORS:
        for shape in SHAPES:
            answer = "yes" if (color, shape) in pairs else "no"
            _add(out, "{color} {shape}", answer, f"is there a {color} {shape}?")
    return out


def _attribute_candidates(scene: Scene, attribute: str) -> Candidates:
    out: Candidates = {}
    for obj in scene.objects:
        for ref in unique_referents(scene, obj, exclude=attribute):
            _add(out, attribute, getattr(obj, attribute), f"what {attribute} is the {ref}?")
    return out


def _position_candidates(scene: Scene) -> Candidates:
    out: Candidates = {}
    size = scene.image_size
    for obj in scene.objects:
        for ref in unique_referents(scene, obj):
            _add(out, "horizontal", horizontal_side(obj, size),
                 f"is the {ref} on the left or the right?")  # fmt: skip
            _add(out, "vertical", vertical_side(obj, size),
                 f"is the {ref} at the top or the bottom?")  # fmt: skip
    return out


def _about_target(out: Candidates, target: SceneObject, phrase: str, refs: list[str]) -> None:
    """Add "what color/shape is the object {phrase} the {ref}?" for each referent phrase."""
    for ref in refs:
        for attribute in ("color", "shape"):
            question = f"what {attribute} is the object {phrase} the {ref}?"
            _add(out, f"{attribute} {phrase}", getattr(target, attribute), question)


def _relation_candidates(scene: Scene) -> Candidates:
    out: Candidates = {}
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


def _closest_candidates(scene: Scene) -> Candidates:
    out: Candidates = {}
    for anchor in scene.objects:
        target = closest_object(scene, anchor)
        if target is not None:
            _about_target(out, target, "closest to", unique_referents(scene, anchor))
    return out


def _compare_candidates(scene: Scene) -> Candidates:
    out: Candidates = {}
    shape_counts = Counter(o.shape for o in scene.objects)
    color_counts = Counter(o.color for o in scene.objects)
    for a in SHAPES:
        for b in SHAPES:
            if a != b and shape_counts[a] + shape_counts[b] > 0:
                answer = "yes" if shape_counts[a] > shape_counts[b] else "no"
                question = f"are there more {PLURALS[a]} than {PLURALS[b]}?"
                _add(out, "{shape}s", answer, question)
    for a in COLORS:
        for b in COLORS:
            if a != b and color_counts[a] + color_counts[b] > 0:
                answer = "yes" if color_counts[a] > color_counts[b] else "no"
                _add(out, "{color}", answer, f"are there more {a} objects than {b} objects?")
    return out


_GENERATORS: dict[str, Callable[[Scene], Candidates]] = {
    "count": _count_candidates,
    "exist": _exist_candidates,
    "color": lambda scene: _attribute_candidates(scene, "color"),
    "shape": lambda scene: _attribute_candidates(scene, "shape"),
    "size": lambda scene: _attribute_candidates(scene, "size"),
    "position": _position_candidates,
    "relation": _relation_candidates,
    "closest": _closest_candidates,
    "compare": _compare_candidates,
}


@functools.lru_cache(maxsize=64)
def candidate_pool(scene: Scene, qtype: str) -> Pool:
    """Every question of type ``qtype`` the scene supports, by template family, then by answer.

    Read-only and cached for the last few scenes, so that question and multiple-choice
    generation share the work. Families are short labels such as ``"how many {shape}s"``.
    """
    generate = _GENERATORS.get(qtype)
    if generate is None:
        raise ValueError(f"qtype: expected one of {QUESTION_TYPES}, got {qtype!r}")
    return MappingProxyType(
        {
            family: MappingProxyType({answer: tuple(qs) for answer, qs in by_answer.items()})
            for family, by_answer in generate(scene).items()
        }
    )


def candidates(scene: Scene, qtype: str) -> dict[str, tuple[str, ...]]:
    """Every question of type ``qtype`` the scene supports, grouped by answer (all families)."""
    out: dict[str, tuple[str, ...]] = {}
    for by_answer in candidate_pool(scene, qtype).values():
        for answer, questions in by_answer.items():
            out[answer] = out.get(answer, ()) + questions
    return out


def least_used(keys: list[str], counts: Mapping[str, int], rng: np.random.Generator) -> list[str]:
    """``keys`` ordered by ascending count (missing keys count 0), ties broken at random."""
    ties = rng.permutation(len(keys))
    order = sorted(range(len(keys)), key=lambda i: (counts.get(keys[i], 0), ties[i]))
    return [keys[i] for i in order]


def draw_balanced(
    keys: list[str],
    pool: Callable[[str], Pool],
    rng: np.random.Generator,
    *,
    n: int,
    balance: AnswerBalance | None,
) -> list[tuple[str, str, str]]:
    """Up to ``n`` ``(key, answer, question)`` triples, each of a different key.

    ``pool(key)`` maps template families to answers to questions (empty when the key has
    none). Without ``balance``, keys, families, answers and questions are uniform draws. With
    ``balance`` the keys used least so far come first; each key takes the answer it gave least
    so far among those the scene supports, then, among the families offering that answer, the
    one that gave it least often - so each answer is spread evenly over the template families
    and the wording predicts the answer as little as the scenes allow. The counts are updated.
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
        by_family = pool(key)
        if not by_family:
            continue
        families = sorted(by_family)
        if balance is None:
            family = families[rng.integers(len(families))]
            answers = sorted(by_family[family])
            answer = answers[rng.integers(len(answers))]
        else:
            answers = sorted({a for f in families for a in by_family[f]})
            answer = least_used(answers, {a: balance.answers[(key, a)] for a in answers}, rng)[0]
            offering = [f for f in families if answer in by_family[f]]
            ties = rng.permutation(len(offering))
            family = min(
                zip(offering, ties, strict=True),
                key=lambda ft: (
                    balance.family_answers[(key, ft[0], answer)],
                    balance.families[(key, ft[0])],
                    ft[1],
                ),
            )[0]
            balance.types[key] += 1
            balance.answers[(key, answer)] += 1
            balance.families[(key, family)] += 1
            balance.family_answers[(key, family, answer)] += 1
        questions = by_family[family][answer]
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
        lambda qtype: candidate_pool(scene, qtype),
        rng,
        n=max_per_scene,
        balance=balance,
    )
    return [QA(q, a, t, t in RELATIONAL_TYPES) for t, a, q in drawn]
