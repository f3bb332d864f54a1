"""Float64 reference conversions between the Poincaré ball and the Lorentz (hyperboloid) model.

The hyperboloid of curvature ``-c`` is
:math:`\\{v = (v_0, v_s) : -v_0^2 + |v_s|^2 = -1/c,\\ v_0 > 0\\}` (time component first, as in
geoopt; MERU stores only :math:`v_s`).  The isometry with the ball and its inverse are

.. math::

    \\text{to\\_lorentz}(x) = \\Big(\\frac{1}{\\sqrt c}\\,\\frac{1 + c|x|^2}{1 - c|x|^2},\\;
        \\frac{2x}{1 - c|x|^2}\\Big), \\qquad
    \\text{from\\_lorentz}(v) = \\frac{v_s}{1 + \\sqrt c\\,v_0},

and the distance is :math:`d(u, v) = \\frac{1}{\\sqrt c}\\operatorname{arcosh}(-c\\langle u, v
\\rangle_L)` with :math:`\\langle u,v\\rangle_L = -u_0 v_0 + \\langle u_s, v_s\\rangle`.

A float64 vector is almost never exactly on the hyperboloid, so a Lorentz point is *defined by
its space part*: the time component is :math:`v_0 = \\sqrt{1/c + |v_s|^2}`, recomputed; the given
``v_0`` is only checked (positive, and within a relative :data:`TIME_RTOL` of that value, which
catches a missing time coordinate or a point of another curvature, never rounding).  The
distance is evaluated without cancellation (docs/math.md, "Lorentz model"):

.. math::

    -c\\langle u,v\\rangle_L - 1 = t =
    \\frac{c|\\delta|^2 + c^2|u_s \\wedge v_s|^2}{1 + c\\,(u_0 v_0 + \\langle u_s, v_s\\rangle)},
    \\qquad d = \\frac{1}{\\sqrt c}\\operatorname{log1p}\\big(t + \\sqrt{t(t + 2)}\\big),

with :math:`\\delta = u_s - v_s` (exact), the wedge norm by Lagrange's identity from exact
products, and :math:`u_0 v_0 + \\langle u_s, v_s\\rangle` as
:math:`(u_0 v_0 - |u_s||v_s|) + (|u_s||v_s| + \\langle u_s, v_s\\rangle)`, the first by
:math:`(1/c^2 + (|u_s|^2 + |v_s|^2)/c) / (u_0 v_0 + |u_s||v_s|)`, the second, when the angle is
obtuse, by :math:`|u_s\\wedge v_s|^2 / (|u_s||v_s| - \\langle u_s, v_s\\rangle)`: no term cancels,
even for antipodal points far out.  Valid for :math:`\\sqrt c|v_s| \\le 10^{150}` (larger space
parts raise ``ValueError``).

>>> import numpy as np
>>> v = to_lorentz(np.array([0.6, 0.0]), c=1.0)
>>> [round(float(t), 12) for t in v]  # (1 + 0.36)/(1 - 0.36), 1.2/0.64
[2.125, 1.875, 0.0]
>>> float(from_lorentz(v, c=1.0)[0])
0.6
"""

from __future__ import annotations

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
    dd_sqrt,
    dd_sub,
    dot_dd,
    dot_dd_dd,
    scale_exponent,
    scaled,
    sqrt_c,
    two_sum,
)
from ._saturation import nudge_inside
from .cones import _wedge_norm

Array = NDArray[np.float64]

__all__ = ["TIME_RTOL", "from_lorentz", "lorentz_dist", "to_lorentz"]

#: Relative tolerance of the check of a given time component against :math:`\sqrt{1/c+|v_s|^2}`.
TIME_RTOL = 1e-4
#: Largest accepted :math:`\sqrt c |v_s|` (squares stay far from overflow).
MAX_SPACE = 1e150


def to_lorentz(x: Any, *, c: float) -> Array:
    """Map ball points to the hyperboloid (time component first)

    .. math::
        x \\mapsto \\Big(\\frac{1}{\\sqrt c}\\,\\frac{2 - w}{w},\\; \\frac{2x}{w}\\Big),
        \\qquad w = 1 - c|x|^2 \\text{ (compensated)}.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Points strictly inside the ball.
    c : float
        Curvature magnitude, finite and ``> 0``.

    Returns
    -------
    ndarray, shape (..., d + 1)
    """
    c = check.curvature(c)
    x_arr, _, w = check.points(x, "x", c)
    time = dd_div(dd_sub(dd(np.full_like(w.hi, 2.0)), w), dd_mul(w, sqrt_c(c)))
    space = dd_div(dd(2.0 * x_arr), DD(w.hi[..., None], w.lo[..., None]))
    return np.concatenate([(time.hi + time.lo)[..., None], space.hi + space.lo], axis=-1)


def _space(v: Any, name: str, c: float) -> Array:
    """Validate a Lorentz point (time first) and return its space part."""
    arr = check.vectors(v, name)
    if arr.shape[-1] < 2:
        raise ValueError(f"{name}: a Lorentz point needs a time and >= 1 space component")
    t, s = arr[..., 0], arr[..., 1:]
    sv = scaled(s)
    with np.errstate(over="ignore"):
        size = np.sqrt(c) * sv.norm
    if np.any(size > MAX_SPACE):
        raise ValueError(f"{name}: space part too large (sqrt(c)|v_s| > {MAX_SPACE:g})")
    if np.any(t <= 0.0):
        raise ValueError(f"{name}: time component must be > 0 (the upper sheet)")
    exact_t = np.sqrt(1.0 / c + sv.norm**2)
    if np.any(np.abs(t - exact_t) > TIME_RTOL * exact_t):
        raise ValueError(
            f"{name}: not on the hyperboloid of curvature -{c}: the time component differs from "
            f"sqrt(1/c + |v_s|^2) by more than {TIME_RTOL:g} relative"
        )
    return s


def from_lorentz(v: Any, *, c: float) -> Array:
    """Map hyperboloid points (time first) to the ball

    .. math::
        v \\mapsto \\frac{v_s}{1 + \\sqrt{1 + c|v_s|^2}} = \\frac{v_s}{1 + \\sqrt c\\,v_0}.

    Parameters
    ----------
    v : array_like, shape (..., d + 1)
        Lorentz points; the result depends on the space part only (module docstring).
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., d)
        Strictly inside the ball (a result that rounds onto the boundary is the nearest
        interior point, counted by ``track_saturation``).
    """
    c = check.curvature(c)
    s = _space(v, "v", c)
    sv = scaled(s)
    # with v_s = 2**k s':  1 + sqrt(1 + c|v_s|^2) = 2**k (2**-k + sqrt(4**-k + c|s'|^2))
    k = sv.k
    with np.errstate(under="ignore"):
        inv = np.ldexp(1.0, -k)
        inv2 = np.ldexp(1.0, -2 * k)
    den = dd_add(dd(inv), dd_sqrt(dd_add(dd(inv2), dd_mul_f(sv.sumsq, c))))
    p = dd_div(DD(sv.s, np.zeros_like(sv.s)), DD(den.hi[..., None], den.lo[..., None]))
    return nudge_inside(p.hi + p.lo, c, "from_lorentz")


def _sumsq_dd(v: DD) -> DD:
    """:math:`|v|^2` of a double-double vector."""
    return dot_dd_dd(v, v)


def lorentz_dist(u: Any, v: Any, *, c: float) -> Array:
    """Geodesic distance of two hyperboloid points (time first)

    .. math::
        d(u, v) = \\frac{1}{\\sqrt c}\\operatorname{arcosh}\\big(c\\,(u_0 v_0
            - \\langle u_s, v_s\\rangle)\\big),

    evaluated in the cancellation-free form of the module docstring.  Equal to the Poincaré
    distance of ``from_lorentz(u)`` and ``from_lorentz(v)``.

    Parameters
    ----------
    u, v : array_like, shape (..., d + 1)
        Lorentz points; leading axes broadcast.
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (...)
        ``lorentz_dist(u, u)`` is exactly 0.
    """
    c = check.curvature(c)
    us, vs = _space(u, "u", c), _space(v, "v", c)
    check.same_dim({"u": us, "v": vs})
    shape = check.batch_shape({"u": us.shape[:-1], "v": vs.shape[:-1]})
    us = np.broadcast_to(us, (*shape, us.shape[-1]))
    vs = np.broadcast_to(vs, (*shape, vs.shape[-1]))
    d2 = _sumsq_dd(two_sum(us, -vs))  # |u_s - v_s|^2 from the exact difference
    ku, kv = scale_exponent(us), scale_exponent(vs)
    uu, vv = np.ldexp(us, -ku[..., None]), np.ldexp(vs, -kv[..., None])
    with np.errstate(over="ignore", under="ignore"):
        wedge = dd_ldexp(_wedge_norm(uu, vv), ku + kv)  # |u_s ^ v_s|, relatively accurate
    nu = dd_ldexp(dd_sqrt(dot_dd(uu, uu)), ku)  # |u_s|
    nv = dd_ldexp(dd_sqrt(dot_dd(vv, vv)), kv)
    dot = dd_ldexp(dot_dd(uu, vv), ku + kv)  # <u_s, v_s>
    inv_c = dd_div(dd(np.ones(shape)), dd(np.full(shape, c)))
    # u0 v0 - |u_s||v_s| = (1/c^2 + (|u_s|^2 + |v_s|^2)/c) / (u0 v0 + |u_s||v_s|)
    u0v0 = dd_sqrt(dd_mul(dd_add(inv_c, dd_mul(nu, nu)), dd_add(inv_c, dd_mul(nv, nv))))
    nunv = dd_mul(nu, nv)
    gap = dd_div(
        dd_add(dd_mul(inv_c, inv_c), dd_mul(inv_c, dd_add(dd_mul(nu, nu), dd_mul(nv, nv)))),
        dd_add(u0v0, nunv),
    )
    # |u_s||v_s| + <u_s, v_s>: a sum where <u_s, v_s> >= 0, else |u_s ^ v_s|^2 / (|u_s||v_s| - <.>)
    acute = dot.hi >= 0.0
    direct = dd_add(nunv, dot)
    den_obtuse = dd_sub(nunv, dot)
    safe = DD(np.where(acute, 1.0, den_obtuse.hi), np.where(acute, 0.0, den_obtuse.lo))
    obtuse = dd_div(dd_mul(wedge, wedge), safe)
    align = DD(np.where(acute, direct.hi, obtuse.hi), np.where(acute, direct.lo, obtuse.lo))
    cross = dd_add(gap, align)  # u0 v0 + <u_s, v_s> >= 1/c, no cancellation
    one = dd(np.ones(shape))
    den = dd_add(one, dd_mul_f(cross, c))
    # t = c|delta|^2 (1 + c|u_perp|^2) / den, and |delta| |u_perp| = |delta ^ u_s| = |u_s ^ v_s|
    num = dd_mul_f(dd_add(d2, dd_mul_f(dd_mul(wedge, wedge), c)), c)
    t = dd_div(num, den)
    arg = dd_add(t, dd_sqrt(dd_mul(t, dd_add(t, dd(np.full(shape, 2.0))))))
    ln = dd(np.log1p(arg.hi) + arg.lo / (1.0 + arg.hi))
    out = dd_div(ln, sqrt_c(c))
    return np.where(d2.hi > 0.0, out.hi + out.lo, 0.0)
