"""Structured Möbius matrix-vector products, computed from their parameters.

Each product equals :func:`~hyperet.reference.mobius_matvec` with the dense matrix returned by
the matching ``*_to_dense`` function, but forms ``Mx`` with O(d), O(d b) and O(d k) work and
never builds ``M``.  Parameter layouts (docs/architecture.md):

- diagonal: ``w`` of shape ``(..., d)``, :math:`M = \\operatorname{diag}(w)`;
- block-diagonal: ``blocks`` of shape ``(d // b, b, b)``; block ``i`` acts on
  ``x[..., i*b:(i+1)*b]``, i.e. :math:`(Mx)_{ib+r} = \\sum_s B_{i,r,s} x_{ib+s}`;
- banded with half-bandwidth ``k``: ``bands`` of shape ``(2k+1, d)`` with
  :math:`M_{i,\\,i+j-k} = \\mathrm{bands}_{j,i}`; entries whose column falls outside
  ``[0, d)`` are ignored.

The Möbius product is not blockwise: :math:`\\operatorname{blockdiag}(M_1, M_2)\\otimes(x_1, x_2)`
is *not* :math:`(M_1\\otimes x_1, M_2\\otimes x_2)`, because the norms in the formula are global.
Here only ``Mx`` is structured; the tail is shared with the dense product, so the two agree
to the last bit whenever both compensated products round ``Mx`` the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _validate as check
from ._careful import DD, dot_dd, scale_exponent, two_prod
from .ball import _bcast, _matvec_finish, _point

Array = NDArray[np.float64]

__all__ = [
    "banded_matvec",
    "banded_to_dense",
    "block_diagonal_matvec",
    "block_diagonal_to_dense",
    "diagonal_matvec",
    "diagonal_to_dense",
]


# --------------------------------------------------------------------------- parameter checks


def _diagonal(w: Any) -> Array:
    return check.vectors(w, "w")


def _blocks(blocks: Any) -> Array:
    arr = check.as_float64(blocks, "blocks")
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.shape[1] < 1 or arr.shape[0] < 1:
        raise ValueError(
            f"blocks: expected shape (d // b, b, b) with square blocks, got {arr.shape}"
        )
    return arr


def _bands(bands: Any) -> Array:
    arr = check.as_float64(bands, "bands")
    if arr.ndim != 2 or arr.shape[0] % 2 != 1 or arr.shape[1] < 1:
        raise ValueError(
            f"bands: expected shape (2k + 1, d) with an odd first axis, got {arr.shape}"
        )
    return arr


def _band_mask(n_bands: int, d: int) -> NDArray[np.bool_]:
    """``mask[j, i]`` is true when column ``i + j - k`` lies inside ``[0, d)``."""
    k = n_bands // 2
    col = np.arange(d)[None, :] + np.arange(n_bands)[:, None] - k
    return (col >= 0) & (col < d)


# --------------------------------------------------------------------------- to dense


def diagonal_to_dense(w: Any) -> Array:
    """The dense matrix :math:`\\operatorname{diag}(w)`, shape ``(..., d, d)``."""
    arr = _diagonal(w)
    d = arr.shape[-1]
    out = np.zeros((*arr.shape, d))
    idx = np.arange(d)
    out[..., idx, idx] = arr
    return out


def block_diagonal_to_dense(blocks: Any) -> Array:
    """The dense block-diagonal matrix of shape ``(d, d)`` with ``d = nb * b``."""
    arr = _blocks(blocks)
    nb, b, _ = arr.shape
    out = np.zeros((nb * b, nb * b))
    for i in range(nb):
        out[i * b : (i + 1) * b, i * b : (i + 1) * b] = arr[i]
    return out


def banded_to_dense(bands: Any) -> Array:
    """The dense banded matrix of shape ``(d, d)`` with ``M[i, i + j - k] = bands[j, i]``."""
    arr = _bands(bands)
    n_bands, d = arr.shape
    k = n_bands // 2
    out = np.zeros((d, d))
    mask = _band_mask(n_bands, d)
    for j in range(n_bands):
        rows = np.flatnonzero(mask[j])
        out[rows, rows + j - k] = arr[j, rows]
    return out


# --------------------------------------------------------------------------- products


def diagonal_matvec(w: Any, x: Any, *, c: float) -> Array:
    """:math:`\\operatorname{diag}(w) \\otimes x` in O(d).

    Parameters
    ----------
    w : array_like, shape (..., d)
        Diagonals (any finite values); leading axes broadcast with ``x``.
    x : array_like, shape (..., d)
        Points strictly inside the ball.
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., d)
    """
    c = check.curvature(c)
    w_arr = _diagonal(w)
    p = _point(x, "x", c)
    check.same_dim({"x": p.x, "w": w_arr})
    shape = check.batch_shape({"w": w_arr.shape[:-1], "x": p.x.shape[:-1]})
    p = _bcast(p, shape)
    w_arr = np.broadcast_to(w_arr, (*shape, w_arr.shape[-1]))
    km = scale_exponent(w_arr)
    mx = DD(*two_prod(np.ldexp(w_arr, -km[..., None]), p.sv.s))  # (..., d), exact
    return _matvec_finish(mx, km, p, c, "diagonal_matvec")


def block_diagonal_matvec(blocks: Any, x: Any, *, c: float) -> Array:
    """:math:`\\operatorname{blockdiag}(B_0, \\dots) \\otimes x` in O(d b).

    Parameters
    ----------
    blocks : array_like, shape (d // b, b, b)
        Block ``i`` acts on ``x[..., i*b:(i+1)*b]``.
    x : array_like, shape (..., d)
        Points strictly inside the ball; ``d`` must equal ``(d // b) * b``.
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., d)
    """
    c = check.curvature(c)
    arr = _blocks(blocks)
    p = _point(x, "x", c)
    nb, b, _ = arr.shape
    d = p.x.shape[-1]
    if nb * b != d:
        raise ValueError(
            f"blocks: {nb} blocks of size {b} cover {nb * b} coordinates, but x has d = {d}"
            + ("" if d % b == 0 else f" (d is not divisible by b = {b})")
        )
    km = scale_exponent(arr.reshape(1, -1))[0]
    bs = np.ldexp(arr, -km)
    xs = p.sv.s.reshape(*p.sv.s.shape[:-1], nb, 1, b)  # (..., nb, 1, b)
    mx = dot_dd(bs, xs)  # (..., nb, b)
    mx = DD(mx.hi.reshape(p.x.shape), mx.lo.reshape(p.x.shape))
    return _matvec_finish(mx, np.full(p.x.shape[:-1], km), p, c, "block_diagonal_matvec")


def banded_matvec(bands: Any, x: Any, *, c: float) -> Array:
    """Banded :math:`M \\otimes x` in O(d k), with ``M[i, i + j - k] = bands[j, i]``.

    Parameters
    ----------
    bands : array_like, shape (2k + 1, d)
        The diagonals; entries whose column ``i + j - k`` falls outside ``[0, d)`` are ignored.
    x : array_like, shape (..., d)
        Points strictly inside the ball.
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., d)
    """
    c = check.curvature(c)
    arr = _bands(bands)
    p = _point(x, "x", c)
    n_bands, d = arr.shape
    if d != p.x.shape[-1]:
        raise ValueError(f"bands: has d = {d} columns but x has vector length {p.x.shape[-1]}")
    k = n_bands // 2
    mask = _band_mask(n_bands, d)
    used = np.where(mask, arr, 0.0)  # (2k+1, d)
    km = scale_exponent(used.reshape(1, -1))[0]
    bs = np.ldexp(used, -km)
    # shifted[..., i, j] = x_s[..., i + j - k] (0 outside)
    padded = np.concatenate(
        [np.zeros((*p.x.shape[:-1], k)), p.sv.s, np.zeros((*p.x.shape[:-1], k))], axis=-1
    )
    idx = np.arange(d)[:, None] + np.arange(n_bands)[None, :]  # (d, 2k+1) into padded
    shifted = padded[..., idx]  # (..., d, 2k+1)
    mx = dot_dd(bs.T, shifted)  # (..., d)
    return _matvec_finish(mx, np.full(p.x.shape[:-1], km), p, c, "banded_matvec")
