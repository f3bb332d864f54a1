"""Input checking shared by every reference operation.

Dtype rule (documented in docs/accuracy.md): float64 arrays are used as they are; float16 and
float32 arrays, Python floats and nested lists of floats are widened to float64, which is
exact.  Integer, boolean, complex, object and extended-precision (longdouble) arrays are
refused: the first three are almost always a mistake, the last would be rounded silently.
A Python ``int`` is accepted only for the scalar ``r`` of ``mobius_scalar_mul`` and for ``c``,
when it converts to float64 exactly.

Every failure raises :class:`ValueError` whose message starts with the argument's name.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._careful import DD, ScaledVector, conorm, scaled

Array = NDArray[np.float64]

_WIDENED = (np.float16, np.float32, np.float64)


def as_float64(value: Any, name: str) -> Array:
    """Convert ``value`` to a float64 array under the dtype rule, refusing NaN and inf."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: booleans are not accepted (expected float64)")
    arr = np.asarray(value)
    if arr.dtype.type not in _WIDENED:
        raise ValueError(
            f"{name}: dtype {arr.dtype} is not accepted; pass float64 (float16/float32 are "
            "widened exactly; integer, bool, complex, object and longdouble are refused)"
        )
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def curvature(c: Any) -> float:
    """Check the curvature magnitude ``c`` (a real number, finite and > 0)."""
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, (numbers.Real, np.floating)):
        raise ValueError(f"c: must be a real number (float), got {type(c).__name__}")
    value = float(c)
    if isinstance(c, numbers.Integral) and value != c:
        raise ValueError(f"c: integer {c} is not exactly representable as float64")
    if not math.isfinite(value):
        raise ValueError(f"c: must be finite, got {value}")
    if value <= 0.0:
        raise ValueError(f"c: must be > 0 (the curvature is -c), got {value}")
    return value


def real_scalar(value: Any, name: str) -> float:
    """A finite real scalar option such as ``eps``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating)):
        raise ValueError(f"{name}: must be a real number, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name}: must be finite, got {out}")
    return out


def scalars(value: Any, name: str) -> Array:
    """Per-point scalars (``r``): a Python int/float or a float array of leading shape."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        if float(value) != value:
            raise ValueError(f"{name}: integer {value} is not exactly representable as float64")
        value = float(value)
    return as_float64(value, name)


def vectors(value: Any, name: str) -> Array:
    """A float64 array with a vector axis (last axis, length >= 1)."""
    arr = as_float64(value, name)
    if arr.ndim < 1:
        raise ValueError(f"{name}: expected an array of vectors (shape (..., d)), got a scalar")
    if arr.shape[-1] < 1:
        raise ValueError(f"{name}: the vector axis (last) must have length >= 1")
    return arr


def same_dim(arrays: dict[str, Array]) -> int:
    """All vector arguments share the last-axis length; returns it."""
    names = list(arrays)
    d = arrays[names[0]].shape[-1]
    for other in names[1:]:
        if arrays[other].shape[-1] != d:
            raise ValueError(
                f"{other}: vector axis has length {arrays[other].shape[-1]}, but {names[0]} has {d}"
            )
    return int(d)


def batch_shape(shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """Broadcast the leading (batch) shapes, naming the argument that does not fit."""
    result: tuple[int, ...] = ()
    seen: list[str] = []
    for name, shape in shapes.items():
        try:
            result = np.broadcast_shapes(result, shape)
        except ValueError:
            raise ValueError(
                f"{name}: leading shape {shape} does not broadcast with "
                f"{', '.join(seen)} (broadcast shape so far {result})"
            ) from None
        seen.append(name)
    return result


def points(value: Any, name: str, c: float) -> tuple[Array, ScaledVector, DD]:
    """A float64 array of points strictly inside the ball ``c|x|^2 < 1``.

    The test uses the compensated co-norm, so it is exact for every float input: a point
    that rounds onto the boundary is rejected, never clamped.
    """
    x = vectors(value, name)
    sv = scaled(x)
    w = conorm(sv, c)
    if not np.all(w.hi > 0.0):
        raise ValueError(f"{name}: point lies on or outside the ball (sqrt(c)|x| >= 1)")
    return x, sv, w
