"""Captions of a scene at five granularity levels, coarse to fine.

Objects are always listed left to right (the order of ``Scene.objects``: by ``x``, then ``y``),
so every caption is a deterministic function of the scene. Each level lists every object, so a
coarser caption is a function of the facts stated by any finer one:

======================  ===========================================================================
level                   example (two objects)
======================  ===========================================================================
``count``               ``two objects.``
``categories``          ``a circle and a square.``
``objects``             ``a red circle and a blue square.``
``detailed``            ``a small red circle at the top left and a large blue square at the
                        bottom right.``
``relations``           the ``detailed`` caption, then one sentence per pair of neighbours in the
                        list: ``the small red circle is left of the large blue square.``
======================  ===========================================================================

>>> from hyperet.data.scenes import Scene, SceneObject
>>> scene = Scene((SceneObject("circle", "red", "small", 5, 5),
...                SceneObject("square", "blue", "large", 26, 24)))
>>> for level in LEVELS:  # doctest: +NORMALIZE_WHITESPACE
...     print(caption(scene, level))
two objects.
a circle and a square.
a red circle and a blue square.
a small red circle at the top left and a large blue square at the bottom right.
a small red circle at the top left and a large blue square at the bottom right.
    the small red circle is left of the large blue square.
"""

from __future__ import annotations

import itertools

from .scenes import Scene, SceneObject, horizontal_side, spatial_relation, vertical_side

LEVELS: tuple[str, ...] = ("count", "categories", "objects", "detailed", "relations")
"""Caption levels, coarse to fine."""

NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six")
"""``NUMBER_WORDS[k]`` is the word for ``k``."""

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
"""Spatial relations (see ``scenes.spatial_relation``)."""

WORDS: tuple[str, ...] = (
    *NUMBER_WORDS,
    "object", "objects", "a", "and", "at", "the", "is", "top", "bottom", "left", "right",
    "of", "above", "below", ".", ",",
)  # fmt: skip
"""Every word and punctuation token (besides colours, shapes and sizes) a caption can contain."""


def describe(obj: SceneObject) -> str:
    """The full description ``"small red circle"``; unique within a scene by construction."""
    return f"{obj.size} {obj.color} {obj.shape}"


def _join(phrases: list[str]) -> str:
    """``"x"``, ``"x and y"``, ``"x, y and z"``."""
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _position(obj: SceneObject, image_size: int) -> str:
    return f"{vertical_side(obj, image_size)} {horizontal_side(obj, image_size)}"


def caption(scene: Scene, level: str) -> str:
    """The caption of ``scene`` at ``level`` (one of ``LEVELS``)."""
    objs = scene.objects
    if level == "count":
        n = len(objs)
        return f"{NUMBER_WORDS[n]} {'object' if n == 1 else 'objects'}."
    if level == "categories":
        return _join([f"a {o.shape}" for o in objs]) + "."
    if level == "objects":
        return _join([f"a {o.color} {o.shape}" for o in objs]) + "."
    if level == "detailed":
        size = scene.image_size
        return _join([f"a {describe(o)} at the {_position(o, size)}" for o in objs]) + "."
    if level == "relations":
        sentences = [
            f"the {describe(a)} is {spatial_relation(a, b)} the {describe(b)}."
            for a, b in itertools.pairwise(objs)
        ]
        return " ".join([caption(scene, "detailed"), *sentences])
    raise ValueError(f"level: expected one of {LEVELS}, got {level!r}")
