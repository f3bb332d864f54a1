"""Procedural scenes: a few coloured shapes on a dark, lightly noisy background.

A scene is a list of objects, each a shape of one colour and one size whose centre sits on an
integer pixel. Every object is drawn inside its square *footprint* of half-extent ``r`` pixels
(``r`` depends on the size word and the image size); footprints never touch (at least one blank
pixel between them), so every object is fully visible. No two objects of a scene share the same
(size, colour, shape) triple, so the full description ``"the small red circle"`` always names
exactly one object. Centres keep clear of the image's midlines (a dead band of 3 pixels for an
even image size), so "left"/"right" and "top"/"bottom" are never a one-pixel call.

Pixel ``(row, col)`` has coordinates ``x = col``, ``y = row`` (``y`` grows downwards).

>>> import numpy as np
>>> scene = sample_scene(np.random.default_rng(0), min_objects=2, max_objects=2)
>>> len(scene.objects), scene.image_size
(2, 32)
>>> render(scene).shape, render(scene).dtype
((3, 32, 32), dtype('uint8'))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "cyan")
"""Colour words; their RGB values (``COLOR_RGB``) are at least 130 apart in Euclidean RGB."""

COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (35, 195, 55),
    "blue": (45, 85, 235),
    "yellow": (235, 215, 40),
    "purple": (175, 55, 225),
    "cyan": (50, 215, 220),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
"""Shape words (singular). Plurals are in ``PLURALS``."""

PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "cross": "crosses",
}

SIZES: tuple[str, ...] = ("small", "large")

MAX_OBJECTS = 6
"""Largest supported number of objects per scene (number words go up to ``"six"``)."""

BACKGROUND_NOISE = 20
"""Background pixels are uniform integers in ``[0, BACKGROUND_NOISE)`` per channel."""

_PLACEMENT_TRIES = 64
_SCENE_RESTARTS = 1000


@dataclass(frozen=True)
class SceneObject:
    """One object: ``shape``, ``color`` and ``size`` words and its centre ``(x, y)`` in pixels."""

    shape: str
    color: str
    size: str
    x: int
    y: int


@dataclass(frozen=True)
class Scene:
    """The objects of one image, kept sorted left to right (by ``x``, then ``y``)."""

    objects: tuple[SceneObject, ...]
    image_size: int = 32
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.objects, key=lambda o: (o.x, o.y)))
        object.__setattr__(self, "objects", ordered)
        object.__setattr__(self, "_hash", hash((ordered, self.image_size)))

    def __hash__(self) -> int:  # computed once: scenes key the question caches
        return self._hash


def half_extent(size: str, image_size: int) -> int:
    """Half-extent ``r`` in pixels of an object's square footprint.

    .. math:: r_\\text{small} = \\max(2, \\operatorname{round}(3 S / 32)),\\quad
              r_\\text{large} = \\max(3, \\operatorname{round}(5 S / 32))

    for image size :math:`S` (3 and 5 pixels at :math:`S = 32`).

    >>> half_extent("small", 32), half_extent("large", 32), half_extent("large", 64)
    (3, 5, 10)
    """
    if size == "small":
        return max(2, round(3 * image_size / 32))
    if size == "large":
        return max(3, round(5 * image_size / 32))
    raise ValueError(f"size: expected one of {SIZES}, got {size!r}")


def midline(image_size: int) -> float:
    """Coordinate of the vertical (and horizontal) midline, :math:`(S - 1) / 2`."""
    return (image_size - 1) / 2


def horizontal_side(obj: SceneObject, image_size: int) -> str:
    """``"left"`` when the centre lies left of the midline (``x < (S-1)/2``), else ``"right"``."""
    return "left" if obj.x < midline(image_size) else "right"


def vertical_side(obj: SceneObject, image_size: int) -> str:
    """``"top"`` when the centre lies above the midline (``y < (S-1)/2``), else ``"bottom"``."""
    return "top" if obj.y < midline(image_size) else "bottom"


def spatial_relation(a: SceneObject, b: SceneObject) -> str:
    """How ``a`` lies relative to ``b``, along the axis where their centres differ most.

    With :math:`\\Delta x = x_a - x_b`, :math:`\\Delta y = y_a - y_b`: if
    :math:`|\\Delta x| \\ge |\\Delta y|` the relation is ``"left of"`` (:math:`\\Delta x < 0`) or
    ``"right of"``; otherwise ``"above"`` (:math:`\\Delta y < 0`) or ``"below"``.

    >>> a = SceneObject("circle", "red", "small", 4, 20)
    >>> b = SceneObject("square", "blue", "small", 12, 22)
    >>> spatial_relation(a, b), spatial_relation(b, a)
    ('left of', 'right of')
    """
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def footprints_touch(a: SceneObject, b: SceneObject, image_size: int) -> bool:
    """True when the square footprints of ``a`` and ``b`` overlap or leave no blank pixel between.

    Footprints are separated when :math:`|x_a - x_b| \\ge r_a + r_b + 2` or the same in ``y``.
    """
    gap = half_extent(a.size, image_size) + half_extent(b.size, image_size) + 2
    return abs(a.x - b.x) < gap and abs(a.y - b.y) < gap


def _allowed_coordinates(r: int, image_size: int) -> np.ndarray:
    """Centre coordinates that keep the footprint inside the image and out of the dead band."""
    coords = np.arange(r, image_size - r)
    return coords[np.abs(coords - midline(image_size)) >= 1.5]


def sample_scene(
    rng: np.random.Generator, *, min_objects: int = 1, max_objects: int = 4, image_size: int = 32
) -> Scene:
    """Draw a scene: a uniform number of objects, uniform attributes, non-touching positions.

    The object count is uniform in ``[min_objects, max_objects]``; shape, colour and size are
    uniform (redrawn when the (size, colour, shape) triple is already taken). Positions are placed
    one object at a time by rejection sampling; when an object finds no free spot the whole
    scene is redrawn (which favours small objects in crowded scenes).

    Raises
    ------
    ValueError
        If the bounds are invalid or no scene fits after many restarts.
    """
    if not 1 <= min_objects <= max_objects:
        raise ValueError(
            f"min_objects: need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}"
        )
    if max_objects > MAX_OBJECTS:
        raise ValueError(f"max_objects: at most {MAX_OBJECTS}, got {max_objects}")
    if image_size < 16:
        raise ValueError(f"image_size: at least 16 pixels, got {image_size}")
    n = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(_SCENE_RESTARTS):
        objects = _try_place(rng, n, image_size)
        if objects is not None:
            return Scene(tuple(objects), image_size)
    raise ValueError(f"max_objects: {n} objects do not fit in a {image_size}px image")


def _try_place(rng: np.random.Generator, n: int, image_size: int) -> list[SceneObject] | None:
    triples: list[tuple[str, str, str]] = []
    while len(triples) < n:
        triple = (
            SIZES[rng.integers(len(SIZES))],
            COLORS[rng.integers(len(COLORS))],
            SHAPES[rng.integers(len(SHAPES))],
        )
        if triple not in triples:
            triples.append(triple)
    placed: list[SceneObject] = []
    xs = np.empty(0, dtype=np.int64)
    ys = np.empty(0, dtype=np.int64)
    rs = np.empty(0, dtype=np.int64)
    for size, color, shape in triples:
        r = half_extent(size, image_size)
        coords = _allowed_coordinates(r, image_size)
        cand_x, cand_y = coords[rng.integers(coords.size, size=(2, _PLACEMENT_TRIES))]  # (T,)
        gap = rs[None, :] + r + 2  # (1, P)
        touching = (np.abs(cand_x[:, None] - xs[None, :]) < gap) & (
            np.abs(cand_y[:, None] - ys[None, :]) < gap
        )  # (T, P)
        free = np.flatnonzero(~touching.any(axis=1))
        if free.size == 0:
            return None
        x, y = int(cand_x[free[0]]), int(cand_y[free[0]])
        placed.append(SceneObject(shape, color, size, x, y))
        xs, ys, rs = np.append(xs, x), np.append(ys, y), np.append(rs, r)
    return placed


def shape_mask(obj: SceneObject, image_size: int) -> np.ndarray:
    """Boolean ``(S, S)`` mask of the pixels covered by ``obj``.

    With :math:`d_x = x - x_0`, :math:`d_y = y - y_0` and half-extent :math:`r`:
    circle :math:`d_x^2 + d_y^2 \\le (r + 0.3)^2`; square :math:`\\max(|d_x|, |d_y|) \\le r - 1`;
    triangle (apex up) :math:`2|d_x| \\le d_y + r,\\ d_y \\le r`; cross (a plus sign, arms of
    half-width :math:`t = \\lfloor (r - 1)/3 \\rfloor`, so a small cross at :math:`S = 32` is one
    pixel thin and cannot pass for a small circle)
    :math:`(|d_x| \\le t \\wedge |d_y| \\le r) \\vee (|d_y| \\le t \\wedge |d_x| \\le r)`.
    """
    r = half_extent(obj.size, image_size)
    grid = np.arange(image_size)
    dx = grid[None, :] - obj.x  # (1, S)
    dy = grid[:, None] - obj.y  # (S, 1)
    if obj.shape == "circle":
        return dx * dx + dy * dy <= (r + 0.3) ** 2
    if obj.shape == "square":
        return (np.abs(dx) <= r - 1) & (np.abs(dy) <= r - 1)
    if obj.shape == "triangle":
        return (2 * np.abs(dx) <= dy + r) & (dy <= r)
    if obj.shape == "cross":
        t = (r - 1) // 3
        adx, ady = np.abs(dx), np.abs(dy)
        return ((adx <= t) & (ady <= r)) | ((ady <= t) & (adx <= r))
    raise ValueError(f"obj: unknown shape {obj.shape!r}")


def render(
    scene: Scene, *, image_size: int | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Draw ``scene`` as a ``(3, S, S)`` ``uint8`` image.

    The background is black, plus uniform noise in ``[0, BACKGROUND_NOISE)`` when ``rng`` is
    given; each object is filled with its flat colour ``COLOR_RGB[color]``.

    Parameters
    ----------
    scene : Scene
    image_size : int, optional
        Must equal ``scene.image_size`` when given (scenes are sampled for one size).
    rng : numpy.random.Generator, optional
        Source of the background noise; ``None`` draws a noiseless background.
    """
    size = scene.image_size if image_size is None else image_size
    if size != scene.image_size:
        raise ValueError(f"image_size: the scene was sampled for {scene.image_size}, got {size}")
    if rng is None:
        image = np.zeros((3, size, size), dtype=np.uint8)
    else:
        image = rng.integers(0, BACKGROUND_NOISE, size=(3, size, size), dtype=np.uint8)
    for obj in scene.objects:
        mask = shape_mask(obj, size)  # (S, S)
        image[:, mask] = np.asarray(COLOR_RGB[obj.color], dtype=np.uint8)[:, None]
    return image
