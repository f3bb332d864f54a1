"""An independent oracle for the data generator: parses its texts and answers from scene facts.

Nothing here calls the generator's helpers (referents, relations, sides, captions); geometry and
wording are re-derived from the specification in docs/data.md, so a test comparing the two can fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from hyperet.data.scenes import Scene, SceneObject

COLORS = ("red", "green", "blue", "yellow", "purple", "cyan")
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = ("small", "large")
PLURAL_TO_SHAPE = {"circles": "circle", "squares": "square", "triangles": "triangle",
                   "crosses": "cross"}  # fmt: skip
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six")
HALF_EXTENT_32 = {"small": 3, "large": 5}  # pixels at image size 32 (docs/data.md)


class Ambiguous(AssertionError):
    """A referent phrase that names no object or more than one."""


@dataclass(frozen=True)
class Referent:
    size: str | None
    color: str | None
    shape: str | None  # None for "object"

    def attributes(self) -> set[str]:
        return {a for a in ("size", "color", "shape") if getattr(self, a) is not None}


def parse_referent(phrase: str) -> Referent:
    words = phrase.split()
    size = words.pop(0) if words and words[0] in SIZES else None
    color = words.pop(0) if words and words[0] in COLORS else None
    assert len(words) == 1, f"bad referent {phrase!r}"
    noun = words[0]
    assert noun in (*SHAPES, "object"), f"bad referent noun {phrase!r}"
    referent = Referent(size, color, None if noun == "object" else noun)
    assert referent.attributes(), f"empty referent {phrase!r}"
    return referent


def matches(scene: Scene, ref: Referent) -> list[SceneObject]:
    return [
        o for o in scene.objects
        if (ref.size is None or o.size == ref.size)
        and (ref.color is None or o.color == ref.color)
        and (ref.shape is None or o.shape == ref.shape)
    ]  # fmt: skip


def resolve(scene: Scene, phrase: str) -> SceneObject:
    found = matches(scene, parse_referent(phrase))
    if len(found) != 1:
        raise Ambiguous(f"{phrase!r} names {len(found)} objects")
    return found[0]


def side(obj: SceneObject, image_size: int) -> tuple[str, str]:
    """(vertical, horizontal) half of the image holding the centre; 2x < S - 1 means left."""
    horizontal = "left" if 2 * obj.x < image_size - 1 else "right"
    vertical = "top" if 2 * obj.y < image_size - 1 else "bottom"
    return vertical, horizontal


def relation(a: SceneObject, b: SceneObject) -> str:
    """Where a lies relative to b, along the axis of the larger centre offset (ties: x)."""
    dx, dy = a.x - b.x, a.y - b.y
    if dx * dx >= dy * dy:
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def closest(scene: Scene, anchor: SceneObject, margin: float = 2.0) -> SceneObject:
    others = [o for o in scene.objects if o != anchor]
    dist = np.array([np.hypot(o.x - anchor.x, o.y - anchor.y) for o in others])
    order = np.argsort(dist)
    if len(others) == 0 or (len(others) > 1 and dist[order[1]] - dist[order[0]] < margin):
        raise Ambiguous("no clear-cut closest object")
    return others[int(order[0])]


_REL = r"(left of|right of|above|below|closest to)"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("count_all", re.compile(r"how many objects are there\?")),
    ("count_attr", re.compile(r"how many (\w+) objects are there\?")),
    ("count_shape", re.compile(r"how many (\w+) are there\?")),
    ("exist", re.compile(r"is there an? (.+)\?")),
    ("relation", re.compile(rf"what (color|shape) is the object {_REL} the (.+)\?")),
    ("attribute", re.compile(r"what (color|shape|size) is the (.+)\?")),
    ("horizontal", re.compile(r"is the (.+) on the left or the right\?")),
    ("vertical", re.compile(r"is the (.+) at the top or the bottom\?")),
    ("compare_color", re.compile(r"are there more (\w+) objects than (\w+) objects\?")),
    ("compare_shape", re.compile(r"are there more (\w+) than (\w+)\?")),
]


def answer(scene: Scene, question: str) -> tuple[str, str]:
    """(question type, answer) of ``question`` about ``scene``, derived from the scene facts.

    Raises ``Ambiguous`` when a referent is not unique and ``AssertionError`` for an unknown
    question form or a referent that uses the asked attribute.
    """
    objs = scene.objects
    for kind, pattern in _PATTERNS:
        m = pattern.fullmatch(question)
        if m is None:
            continue
        if kind == "count_all":
            return "count", NUMBERS[len(objs)]
        if kind == "count_attr":
            word = m.group(1)
            assert word in COLORS or word in SIZES, question
            n = sum(word in (o.color, o.size) for o in objs)
            return "count", NUMBERS[n]
        if kind == "count_shape":
            shape = PLURAL_TO_SHAPE[m.group(1)]
            return "count", NUMBERS[sum(o.shape == shape for o in objs)]
        if kind == "exist":
            found = matches(scene, parse_referent(m.group(1)))
            return "exist", "yes" if found else "no"
        if kind == "relation":
            asked, rel, phrase = m.groups()
            anchor = resolve(scene, phrase)
            if rel == "closest to":
                target = closest(scene, anchor)
                qtype = "closest"
            else:
                related = [o for o in objs if o != anchor and relation(o, anchor) == rel]
                if len(related) != 1:
                    raise Ambiguous(f"{len(related)} objects {rel} {phrase!r}")
                target = related[0]
                qtype = "relation"
            return qtype, getattr(target, asked)
        if kind == "attribute":
            asked, phrase = m.groups()
            assert asked not in parse_referent(phrase).attributes(), f"leaks answer: {question}"
            return asked, getattr(resolve(scene, phrase), asked)
        if kind in ("horizontal", "vertical"):
            vertical, horizontal = side(resolve(scene, m.group(1)), scene.image_size)
            return "position", horizontal if kind == "horizontal" else vertical
        if kind == "compare_color":
            a, b = m.groups()
            assert a in COLORS and b in COLORS and a != b, question
            more = sum(o.color == a for o in objs) > sum(o.color == b for o in objs)
            return "compare", "yes" if more else "no"
        if kind == "compare_shape":
            a, b = PLURAL_TO_SHAPE[m.group(1)], PLURAL_TO_SHAPE[m.group(2)]
            assert a != b, question
            more = sum(o.shape == a for o in objs) > sum(o.shape == b for o in objs)
            return "compare", "yes" if more else "no"
    raise AssertionError(f"unknown question form: {question!r}")


# ---- captions -------------------------------------------------------------------------------


def _split_list(text: str) -> list[str]:
    """'x, y and z' -> ['x', 'y', 'z']."""
    head, _, last = text.rpartition(" and ")
    return [*head.split(", "), last] if head else [last]


def parse_count(text: str) -> int:
    m = re.fullmatch(r"(\w+) objects?\.", text)
    assert m, text
    n = NUMBERS.index(m.group(1))
    assert text.endswith("object." if n == 1 else "objects."), text
    return n


def parse_categories(text: str) -> list[str]:
    assert text.endswith("."), text
    items = _split_list(text[:-1])
    shapes = []
    for item in items:
        m = re.fullmatch(r"a (\w+)", item)
        assert m and m.group(1) in SHAPES, text
        shapes.append(m.group(1))
    return shapes


def parse_objects(text: str) -> list[tuple[str, str]]:
    assert text.endswith("."), text
    out = []
    for item in _split_list(text[:-1]):
        m = re.fullmatch(r"a (\w+) (\w+)", item)
        assert m and m.group(1) in COLORS and m.group(2) in SHAPES, text
        out.append((m.group(1), m.group(2)))
    return out


def parse_detailed(text: str) -> list[tuple[str, str, str, str, str]]:
    """[(size, color, shape, vertical, horizontal)] in caption order."""
    assert text.endswith("."), text
    out = []
    for item in _split_list(text[:-1]):
        m = re.fullmatch(r"a (small|large) (\w+) (\w+) at the (top|bottom) (left|right)", item)
        assert m and m.group(2) in COLORS and m.group(3) in SHAPES, text
        out.append(m.groups())
    return out


def parse_relations(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """(detailed part, [(description a, relation, description b)])."""
    first, *sentences = re.split(r"(?<=\.) (?=the )", text)
    triples = []
    for sentence in sentences:
        m = re.fullmatch(r"the (\w+ \w+ \w+) is (left of|right of|above|below) the (\w+ \w+ \w+)\.",
                         sentence)  # fmt: skip
        assert m, sentence
        triples.append(m.groups())
    return first, triples


def scene_facts(scene: Scene) -> list[tuple[str, str, str, str, str]]:
    """[(size, color, shape, vertical, horizontal)] sorted left to right (x, then y)."""
    ordered = sorted(scene.objects, key=lambda o: (o.x, o.y))
    return [(o.size, o.color, o.shape, *side(o, scene.image_size)) for o in ordered]
