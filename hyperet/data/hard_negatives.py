"""Hard-negative captions for contrastive vision pretraining (NegCLIP-style).

With a batch of 64 distinct scenes, CLIP's loss is satisfied by the cheapest cue that tells the
scenes apart - colour and count - and never has to learn shape or which colour belongs to which
shape (Yuksekgonul et al., "When and why vision-language models behave like bags-of-words",
ICLR 2023, whose NegCLIP adds such captions as extra negatives). A *hard negative* of a scene is a
caption of the same level that is false for it in exactly one fact:

==============  ==========================================================================
level           edits (one drawn uniformly among those the scene allows)
==============  ==========================================================================
``count``       the number of objects, one more or one fewer (kept within ``1..MAX_OBJECTS``)
``categories``  one object's shape replaced by another shape
``objects``     one object's shape or colour replaced, or the colours of two objects of
                different shapes and colours swapped (the binding edit)
``detailed``,   as ``objects``, or one object's size flipped
``relations``
==============  ==========================================================================

The edited caption is rendered by :func:`~hyperet.data.captions.caption` from the edited
scene, so it has the level's grammar and object order, and it always differs from the true
caption (checked).

>>> import numpy as np
>>> from hyperet.data.scenes import Scene, SceneObject
>>> scene = Scene((SceneObject("circle", "red", "small", 5, 5),
...                SceneObject("square", "blue", "large", 26, 24)))
>>> hard_negative(scene, "categories", np.random.default_rng(0)) in (
...     "a circle and a circle.", "a circle and a triangle.", "a circle and a cross.",
...     "a square and a square.", "a triangle and a square.", "a cross and a square.")
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .captions import LEVELS, NUMBER_WORDS, caption
from .scenes import COLORS, MAX_OBJECTS, SHAPES, SIZES, Scene

#: Edits allowed at each caption level (see the module docstring).
EDITS: dict[str, tuple[str, ...]] = {
    "count": ("count",),
    "categories": ("shape",),
    "objects": ("shape", "color", "swap"),
    "detailed": ("shape", "color", "swap", "size"),
    "relations": ("shape", "color", "swap", "size"),
}


def _replace(scene: Scene, index: int, attribute: str, value: str) -> Scene:
    objects = list(scene.objects)
    change: dict[str, Any] = {attribute: value}
    objects[index] = dataclasses.replace(objects[index], **change)
    return Scene(tuple(objects), scene.image_size)


def _other(values: tuple[str, ...], current: str, rng: np.random.Generator) -> str:
    choices = [v for v in values if v != current]
    return choices[int(rng.integers(len(choices)))]


def _swappable(scene: Scene) -> list[tuple[int, int]]:
    objs = scene.objects
    return [
        (i, j)
        for i in range(len(objs))
        for j in range(i + 1, len(objs))
        if objs[i].color != objs[j].color and objs[i].shape != objs[j].shape
    ]


def _edited(scene: Scene, edit: str, rng: np.random.Generator) -> Scene:
    objs = scene.objects
    if edit == "swap":
        pairs = _swappable(scene)
        i, j = pairs[int(rng.integers(len(pairs)))]
        swapped = list(objs)
        swapped[i] = dataclasses.replace(objs[i], color=objs[j].color)
        swapped[j] = dataclasses.replace(objs[j], color=objs[i].color)
        return Scene(tuple(swapped), scene.image_size)
    k = int(rng.integers(len(objs)))
    values = {"shape": SHAPES, "color": COLORS, "size": SIZES}[edit]
    return _replace(scene, k, edit, _other(values, getattr(objs[k], edit), rng))


def hard_negative(scene: Scene, level: str, rng: np.random.Generator) -> str:
    """A caption at ``level`` that is false for ``scene`` in one fact (see the module docstring).

    Parameters
    ----------
    scene : Scene
        At least one object.
    level : str
        One of :data:`~hyperet.data.captions.LEVELS`.
    rng : numpy.random.Generator
        Draws the edit, the object and the replacement value.
    """
    if level not in LEVELS:
        raise ValueError(f"level: expected one of {LEVELS}, got {level!r}")
    n = len(scene.objects)
    if n == 0:
        raise ValueError("scene: needs at least one object")
    if level == "count":
        counts = [m for m in (n - 1, n + 1) if 1 <= m <= MAX_OBJECTS]
        m = counts[int(rng.integers(len(counts)))]
        return f"{NUMBER_WORDS[m]} {'object' if m == 1 else 'objects'}."
    edits = [e for e in EDITS[level] if e != "swap" or _swappable(scene)]
    edit = edits[int(rng.integers(len(edits)))]
    text = caption(_edited(scene, edit, rng), level)
    if text == caption(scene, level):  # cannot happen: every edit changes a stated fact
        raise AssertionError(f"hard negative equals the caption: {text!r}")
    return text


__all__ = ["EDITS", "hard_negative"]
