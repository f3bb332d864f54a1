"""Float64 reference entailment cones on the Poincaré ball (Ganea, Bécigneul, Hofmann 2018).

The cone at a point ``x`` (its apex) contains the points ``y`` whose geodesic from ``x`` leaves
within the half-aperture :math:`\\psi(x)` of the radial direction continued beyond ``x``.  The
unit-ball formulas carry over to curvature ``-c`` through the conformal isometry
:math:`x \\mapsto \\sqrt c\\,x`:

.. math::

    \\psi_c(x) = \\arcsin\\Big(\\frac{K\\,(1 - c|x|^2)}{\\sqrt c\\,|x|}\\Big),
    \\qquad \\sqrt c|x| \\ge r_{in} = \\frac{2K}{1 + \\sqrt{1 + 4K^2}},

    \\Xi_c(x, y) = \\arccos\\frac{\\langle x,y\\rangle(1 + c|x|^2) - |x|^2(1 + c|y|^2)}
        {|x|\\,|x - y|\\,\\sqrt{1 + c^2|x|^2|y|^2 - 2c\\langle x,y\\rangle}},
    \\qquad E_c(x, y) = \\max(0, \\Xi_c(x, y) - \\psi_c(x)).

Neither is evaluated as written (docs/math.md, "Entailment cones", has the derivation).  With
``d = y - x`` formed exactly, ``w = 1 - c|x|^2`` the compensated co-norm and
:math:`d_\\perp = d - (\\langle d,x\\rangle/|x|^2)\\,x`,

.. math::

    \\Xi_c(x, y) = \\operatorname{atan2}\\big(w\\,|x|\\,|d_\\perp|,\\;
        w\\langle x, d\\rangle - c|x|^2|d|^2\\big),
    \\qquad
    \\psi_c(x) = \\operatorname{atan2}\\big(a, \\sqrt{(1 - a)(1 + a)}\\big),\\;
    a = \\frac{K w}{\\sqrt c |x|},

in double-double: the arccos of a cosine near 1 (``y`` near the axis through ``x``) and the
arcsin of an argument near 1 (``x`` near :math:`r_{in}`) both lose half the digits, the atan2
forms none.  Outside the domain - the apex ``x = 0``, ``y = x``, or (aperture and energy)
:math:`\\sqrt c|x| < r_{in}` - a ``ValueError`` names the argument.

>>> import numpy as np
>>> x, y = np.array([0.5, 0.0]), np.array([0.8, 0.0])
>>> float(entailment_angle(x, y, c=1.0))  # y on the axis beyond x: inside every cone
0.0
>>> round(float(entailment_aperture(x, c=1.0, K=0.1)), 12) == round(np.arcsin(0.1 * 0.75 / 0.5), 12)
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _validate as check
from ._careful import (
    DD,
    dd,
    dd_add,
    dd_div,
    dd_ldexp,
    dd_mul,
    dd_mul_f,
    dd_neg,
    dd_sqrt,
    dd_sub,
    dot_dd,
    dot_dd_dd,
    scale_exponent,
    scaled_dd,
    sqrt_c,
    sum_dd,
    two_prod,
    two_sum,
)

Array = NDArray[np.float64]

__all__ = ["entailment_angle", "entailment_aperture", "entailment_energy", "inner_radius"]


def inner_radius(K: float) -> float:
    """:math:`r_{in} = 2K / (1 + \\sqrt{1 + 4K^2})`, the root of :math:`K(1 - r^2)/r = 1`:
    the smallest :math:`\\sqrt c|x|` whose cone is defined (the aperture is :math:`\\pi/2` there).

    >>> round(inner_radius(0.1), 12)
    0.099009805864
    """
    K = _aperture_scale(K)
    return 2.0 * K / (1.0 + math.sqrt(1.0 + 4.0 * K * K))


def _aperture_scale(K: Any) -> float:
    value = check.real_scalar(K, "K")
    if not value > 0.0:
        raise ValueError(f"K: the aperture scale must be > 0, got {value}")
    return value


def _atan2_dd(b: DD, a: DD) -> Array:
    """``atan2(b, a)`` of double-double arguments: the float64 atan2 of the high parts plus the
    first-order correction of the low parts (their relative size is about 2**-53)."""
    r2 = a.hi * a.hi + b.hi * b.hi
    safe = np.where(r2 > 0.0, r2, 1.0)
    corr = np.where(r2 > 0.0, (a.hi * b.lo - b.hi * a.lo) / safe, 0.0)
    return np.arctan2(b.hi, a.hi) + corr


def _nonzero(x: Array, name: str, why: str) -> None:
    if np.any(np.all(x == 0.0, axis=-1)):
        raise ValueError(f"{name}: {why}")


def _aperture_ratio(x: Array, w: DD, c: float, K: float) -> DD:
    """:math:`a = K w / (\\sqrt c |x|)` in double-double, for ``x != 0``."""
    kx = scale_exponent(x)
    xs = np.ldexp(x, -kx[..., None])  # exact: a power-of-two scaling of the vector
    nx = dd_sqrt(dot_dd(xs, xs))  # |x| / 2**kx
    a = dd_div(dd_mul_f(w, K), dd_mul(sqrt_c(c), nx))
    with np.errstate(over="ignore"):
        return dd_ldexp(a, -kx)


def entailment_aperture(x: Any, *, c: float, K: float) -> Array:
    """Half-aperture of the entailment cone at ``x``

    .. math::
        \\psi_c(x) = \\arcsin\\Big(\\frac{K\\,(1 - c|x|^2)}{\\sqrt c\\,|x|}\\Big)
                   = \\operatorname{atan2}\\big(a, \\sqrt{(1 - a)(1 + a)}\\big),
        \\quad a = \\frac{K w(x)}{\\sqrt c\\,|x|}.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Apexes strictly inside the ball with :math:`\\sqrt c|x| \\ge r_{in}`
        (:func:`inner_radius`); smaller points raise ``ValueError``.
    c : float
        Curvature magnitude (curvature is ``-c``), finite and ``> 0``.
    K : float
        Aperture scale, ``> 0`` (Ganea et al. use 0.1).

    Returns
    -------
    ndarray, shape (...)
        In ``(0, pi/2]``; ``pi/2`` exactly at :math:`\\sqrt c|x| = r_{in}`.
    """
    c = check.curvature(c)
    K = _aperture_scale(K)
    x_arr, _, w = check.points(x, "x", c)
    _nonzero(x_arr, "x", "the apex x = 0 has no cone (sqrt(c)|x| must be >= r_in)")
    return _aperture(x_arr, w, c, K)


def _aperture(x: Array, w: DD, c: float, K: float) -> Array:
    a = _aperture_ratio(x, w, c, K)
    one = dd(np.ones_like(a.hi))
    rest = dd_sub(one, a)  # 1 - a, exact where it cancels (Sterbenz on the high parts)
    if np.any((rest.hi < 0.0) | ((rest.hi == 0.0) & (rest.lo < 0.0))):
        raise ValueError(
            f"x: lies inside the cone-free core, sqrt(c)|x| < r_in = {inner_radius(K):.17g} "
            f"(K = {K}): the aperture arcsin(K(1 - c|x|^2)/(sqrt(c)|x|)) is undefined"
        )
    cos_psi = dd_sqrt(dd_mul(rest, dd_add(one, a)))
    return _atan2_dd(a, cos_psi)


def entailment_angle(x: Any, y: Any, *, c: float) -> Array:
    """Exterior angle at ``x`` between the axis ``0 -> x`` (continued) and the geodesic ``x -> y``

    .. math::
        \\Xi_c(x, y) = \\arccos\\frac{\\langle x,y\\rangle(1 + c|x|^2) - |x|^2(1 + c|y|^2)}
            {|x|\\,|x - y|\\,\\sqrt{1 + c^2|x|^2|y|^2 - 2c\\langle x,y\\rangle}}
        = \\operatorname{atan2}\\big(w|x||d_\\perp|,\\; w\\langle x,d\\rangle - c|x|^2|d|^2\\big)

    with ``d = y - x`` and :math:`d_\\perp` its component orthogonal to ``x`` (module docstring;
    docs/math.md derives it from :math:`\\log_x y \\propto (-x) \\oplus y`).

    Parameters
    ----------
    x, y : array_like, shape (..., d)
        Points strictly inside the ball, ``x != 0`` and ``y != x``; leading axes broadcast.
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (...)
        In ``[0, pi]``: 0 for ``y`` on the axis beyond ``x``, ``pi`` for ``y`` between ``x``
        and the origin.
    """
    c = check.curvature(c)
    x_arr, _, wx = check.points(x, "x", c)
    y_arr, _, _ = check.points(y, "y", c)
    check.same_dim({"x": x_arr, "y": y_arr})
    shape = check.batch_shape({"x": x_arr.shape[:-1], "y": y_arr.shape[:-1]})
    x_arr = np.broadcast_to(x_arr, (*shape, x_arr.shape[-1]))
    y_arr = np.broadcast_to(y_arr, (*shape, y_arr.shape[-1]))
    wx = DD(np.broadcast_to(wx.hi, shape), np.broadcast_to(wx.lo, shape))
    _nonzero(x_arr, "x", "the apex x = 0 has no cone (the exterior angle is undefined)")
    if np.any(np.all(x_arr == y_arr, axis=-1)):
        raise ValueError("y: equals x (the exterior angle at the apex itself is undefined)")
    return _angle(x_arr, y_arr, wx, c)


def _wedge_norm(xs: Array, ys: Array) -> DD:
    """:math:`|x \\wedge y| = \\sqrt{|x|^2|y|^2 - \\langle x,y\\rangle^2}` in double-double,
    relatively accurate even when it is tiny (``y`` near the axis through ``x``): by Lagrange's
    identity it is the norm of the 2x2 determinants :math:`x_i y_j - x_j y_i`, each formed from
    exact products (TwoProduct), so an exactly collinear pair gives exactly 0."""
    i, j = np.triu_indices(xs.shape[-1], 1)
    p1 = two_prod(xs[..., i], ys[..., j])
    p2 = two_prod(xs[..., j], ys[..., i])
    det = sum_dd(np.stack([p1.hi, p1.lo, -p2.hi, -p2.lo], axis=-1))  # (..., pairs)
    sv = scaled_dd(det)
    with np.errstate(under="ignore"):
        return dd_ldexp(sv.norm_scaled, sv.k)


def _angle(x: Array, y: Array, w: DD, c: float) -> Array:
    # scale x, y and d = y - x by powers of two so every product stays in range; atan2 is
    # invariant under the common positive factor 2**(kx + kd) dropped from both arguments
    kx, ky = scale_exponent(x), scale_exponent(y)
    xs, ys = np.ldexp(x, -kx[..., None]), np.ldexp(y, -ky[..., None])
    d = two_sum(y, -x)  # exact: y - x = d.hi + d.lo
    kd = scale_exponent(d.hi)
    ds = DD(np.ldexp(d.hi, -kd[..., None]), np.ldexp(d.lo, -kd[..., None]))
    x2 = dot_dd(xs, xs)  # |xs|^2
    x_dot_d = dot_dd_dd(DD(xs, np.zeros_like(xs)), ds)  # <xs, ds>
    d2 = dot_dd_dd(ds, ds)  # |ds|^2
    with np.errstate(under="ignore", over="ignore"):
        c_scaled = np.ldexp(np.float64(c), kx + kd)  # c * 2**(kx + kd), exact unless tiny
        # |x| |d_perp| = |x ^ d| = |x ^ y| = 2**(kx + ky) |xs ^ ys|
        wedge = dd_ldexp(_wedge_norm(xs, ys), ky - kd)
    cos_part = dd_add(dd_mul(w, x_dot_d), dd_neg(dd_mul_f(dd_mul(x2, d2), c_scaled)))
    sin_part = dd_mul(w, wedge)
    return _atan2_dd(sin_part, cos_part)


def entailment_energy(x: Any, y: Any, *, c: float, K: float) -> Array:
    """Cone violation energy :math:`E_c(x, y) = \\max(0, \\Xi_c(x, y) - \\psi_c(x))`: zero when
    ``y`` lies in the cone at ``x`` (``x`` entails ``y``), else the angle by which it misses.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Apexes, :math:`\\sqrt c|x| \\ge r_{in}` (see :func:`entailment_aperture`).
    y : array_like, shape (..., d)
        Points strictly inside the ball, ``y != x``; leading axes broadcast.
    c : float
        Curvature magnitude.
    K : float
        Aperture scale, ``> 0``.

    Returns
    -------
    ndarray, shape (...)
        In ``[0, pi)``.  Each of the two angles is accurate to an ulp or two, so the energy is
        accurate to a few ulp *of the larger angle* (absolute); where the two nearly cancel the
        relative error of the difference is unbounded, as for any difference.
    """
    c = check.curvature(c)
    K = _aperture_scale(K)
    xi = entailment_angle(x, y, c=c)
    x_arr, _, w = check.points(x, "x", c)
    psi = _aperture(x_arr, w, c, K)
    return np.maximum(0.0, xi - psi)
