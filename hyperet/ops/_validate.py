"""Argument checks of every :mod:`hyperet.ops` function, in every policy.

Cheap (attribute reads, no arithmetic on the data) and without host synchronisation: a curvature
given as a CUDA tensor is checked by an asynchronous device assert (the error then surfaces at a
later synchronisation point, as a ``RuntimeError`` whose message starts with ``c:``); a CPU
tensor is read directly. The data's values (NaN, points outside the ball) are checked only by
the exact policy (:meth:`hyperet.ops._numerics.Numerics.check_points`).

Refused, with a message that starts with the argument's name:

- ``TypeError``: a curvature that is a ``bool``, a string or anything but a real number or a
  floating-point tensor; an operand that is not a tensor, a complex or an integer/bool tensor.
- ``ValueError``: a curvature that is not positive and finite, or a tensor curvature that is not
  0-d; an operand without a vector axis (0-d) or with an empty one; operands whose vector axes
  differ or whose leading axes do not broadcast.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

_CURVATURE_MESSAGE = "c: curvature must be positive and finite"


def check_curvature(c: object) -> None:
    """Refuse a curvature that is not a positive finite real number or 0-d float tensor."""
    if type(c) is float:  # the common case first: no ABC check
        if not (math.isfinite(c) and c > 0):
            raise ValueError(f"{_CURVATURE_MESSAGE}, got {c}")
        return
    if isinstance(c, Tensor):
        if not c.dtype.is_floating_point:
            raise TypeError(f"c: expected a floating-point tensor, got {c.dtype}")
        if c.dim() != 0:
            raise ValueError(f"c: expected a float or a 0-d tensor, got shape {tuple(c.shape)}")
        if c.device.type == "cpu":
            value = float(c.detach())
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{_CURVATURE_MESSAGE}, got {value}")
        else:  # no host sync: the device raises at the next synchronisation
            detached = c.detach()
            torch._assert_async(torch.isfinite(detached) & (detached > 0), _CURVATURE_MESSAGE)
        return
    if isinstance(c, bool) or not isinstance(c, numbers.Real):
        raise TypeError(f"c: expected a float or a 0-d tensor, got {type(c).__name__} {c!r}")
    value = float(c)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{_CURVATURE_MESSAGE}, got {c}")


def check_tensors(**tensors: object) -> None:
    """Each operand must be a real floating-point tensor with a non-empty vector (last) axis."""
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a torch tensor, got {type(t).__name__}")
        if not t.dtype.is_floating_point:
            kind = "complex" if t.dtype.is_complex else "integer or bool"
            raise TypeError(f"{name}: expected a real floating-point tensor, got {kind} {t.dtype}")
        if t.dim() == 0:
            raise ValueError(f"{name}: expected a vector axis (shape (..., d)), got a 0-d tensor")
        if t.shape[-1] == 0:
            raise ValueError(f"{name}: the vector axis is empty (shape {tuple(t.shape)})")


def check_args(c: object, **vectors: Tensor) -> None:
    """:func:`check_curvature` and :func:`check_tensors`, then: every operand has the same
    vector axis and their leading axes broadcast."""
    check_curvature(c)
    check_tensors(**vectors)
    check_same_space(**vectors)


def check_same_space(**vectors: Tensor) -> None:
    """The operands' vector axes agree and their leading axes broadcast."""
    if len(vectors) < 2:
        return
    names = list(vectors)
    first = vectors[names[0]]
    for name in names[1:]:
        if vectors[name].shape[-1] != first.shape[-1]:
            raise ValueError(
                f"{name}: vector axis of length {vectors[name].shape[-1]}, but {names[0]} has "
                f"{first.shape[-1]} (shapes {tuple(vectors[name].shape)} and {tuple(first.shape)})"
            )
    leading = [v.shape[:-1] for v in vectors.values()]
    if all(shape == leading[0] for shape in leading):
        return
    try:
        torch.broadcast_shapes(*leading)
    except RuntimeError:
        shapes = ", ".join(f"{n} {tuple(v.shape)}" for n, v in vectors.items())
        raise ValueError(f"{names[1]}: leading axes do not broadcast ({shapes})") from None


def check_matrix(name: str, m: object, x: Tensor) -> None:
    """A dense matrix argument ``(..., n, d)`` acting on vectors ``x`` ``(..., d)``."""
    check_tensors(**{name: m})
    assert isinstance(m, Tensor)  # for the type checker; check_tensors refused anything else
    if m.dim() < 2:
        raise ValueError(f"{name}: expected a matrix of shape (..., n, d), got {tuple(m.shape)}")
    if m.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"{name}: has {m.shape[-1]} columns, x has vectors of length {x.shape[-1]}"
        )
    try:
        if m.dim() > 2:
            torch.broadcast_shapes(m.shape[:-2], x.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"{name}: leading axes {tuple(m.shape[:-2])} do not broadcast with x's "
            f"{tuple(x.shape[:-1])}"
        ) from None


def check_scalar(name: str, r: object, x: Tensor) -> None:
    """A scalar argument: a real number or a float tensor broadcasting with ``x.shape[:-1]``."""
    if isinstance(r, Tensor):
        if not r.dtype.is_floating_point:
            raise TypeError(f"{name}: expected a real floating-point tensor, got {r.dtype}")
        try:
            torch.broadcast_shapes(r.shape, x.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"{name}: shape {tuple(r.shape)} does not broadcast with x's leading axes "
                f"{tuple(x.shape[:-1])}"
            ) from None
    elif isinstance(r, bool) or not isinstance(r, numbers.Real):
        raise TypeError(f"{name}: expected a float or a tensor, got {type(r).__name__} {r!r}")
