"""Float64 reference operations on the Poincaré ball of curvature ``-c``.

Every function is pure numpy, keyword-only in ``c`` (a float ``> 0``), works on the last axis
and broadcasts the leading axes.  Each returns the exact value at its float64 inputs to within a
few ulp (the contract and the measured errors are in docs/accuracy.md; the derivations in
docs/math.md).  The ingredients:

- the co-norm :math:`w(x) = 1 - c|x|^2` in double-double (``_careful.conorm``); a point's
  distance to the boundary is never recomputed from a rounded point;
- Möbius addition from sums of nonnegative terms only:

  .. math::
      x \\oplus y = \\frac{w(x)\\,(x + y) + q\\,x}{w(x) w(y) + q},
      \\qquad q = c|x + y|^2,

  because :math:`1 + 2c\\langle x,y\\rangle + c|y|^2 = w(x) + q` and
  :math:`1 + 2c\\langle x,y\\rangle + c^2|x|^2|y|^2 = w(x) w(y) + q`;
- every artanh through
  :math:`\\operatorname{artanh}(\\rho) = \\operatorname{asinh}(\\rho/\\sqrt{w})`, with
  :math:`\\rho/\\sqrt w` formed from ``c|x|^2`` and ``w`` (no cancellation near 1);
- norms scaled by exact powers of two (no overflow at 1e300, no underflow at 5e-324);
- the ratios :math:`\\tanh(s)/s` and :math:`\\operatorname{asinh}(a)/a` by their series below
  ``2**-26``, so every ``c -> 0`` limit is continuous (switches depend on ``c|x|^2``-type
  quantities, never on ``c`` alone).

Invalid input raises :class:`ValueError` naming the argument (see ``_validate``).  Results whose
exact value is inside the ball but rounds onto its boundary are returned as the nearest
interior point and counted by :func:`track_saturation`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from . import _validate as check
from ._careful import (
    DD,
    ScaledVector,
    asinh_over,
    c_times_sumsq,
    dd,
    dd_add,
    dd_div,
    dd_ldexp,
    dd_mul,
    dd_mul_f,
    dd_neg,
    dd_sqrt,
    dot_dd,
    dot_dd_dd,
    scale_exponent,
    scaled,
    scaled_dd,
    sech2_dd,
    sqrt_c,
    tanh_dd,
    tanh_over,
    two_prod,
)
from ._saturation import nudge_inside

Array = NDArray[np.float64]

__all__ = [
    "conformal_factor",
    "dist",
    "dist0",
    "expmap",
    "expmap0",
    "gyration",
    "logmap",
    "logmap0",
    "mobius_add",
    "mobius_matvec",
    "mobius_scalar_mul",
    "project",
    "transport",
]

_SERIES = 2.0**-26
_TANH_SPLIT = 0.55  # tanh_dd switches to the 1 - tau form here


# --------------------------------------------------------------------------- internal records


class _Point(NamedTuple):
    """A validated point: the float64 array, its scaled form and its co-norm."""

    x: Array  # (..., d)
    sv: ScaledVector
    w: DD  # (...)


def _point(value: Any, name: str, c: float) -> _Point:
    x, sv, w = check.points(value, name, c)
    return _Point(x, sv, w)


def _bcast(p: _Point, shape: tuple[int, ...]) -> _Point:
    """Broadcast a point record to the leading ``shape``."""
    d = p.x.shape[-1]
    q1, q2, q3 = p.sv.sumsq3
    return _Point(
        np.broadcast_to(p.x, (*shape, d)),
        ScaledVector(
            np.broadcast_to(p.sv.k, shape),
            np.broadcast_to(p.sv.s, (*shape, d)),
            tuple(np.broadcast_to(t, shape) for t in (q1, q2, q3)),  # type: ignore[arg-type]
        ),
        DD(np.broadcast_to(p.w.hi, shape), np.broadcast_to(p.w.lo, shape)),
    )


def _col(a: DD) -> DD:
    """Add a trailing axis so a per-point double-double scales a vector."""
    return DD(a.hi[..., None], a.lo[..., None])


def _as_dd(x: Array) -> DD:
    return DD(x, np.zeros_like(x))


def _asinh_arg(z2: DD, w: DD) -> DD:
    """:math:`a = \\rho / \\sqrt{w}` with :math:`\\rho^2 = c|x|^2`, so that
    :math:`\\operatorname{artanh}(\\rho) = \\operatorname{asinh}(a)`."""
    return dd_sqrt(dd_div(z2, w))


def _artanh_over_rho(z2: DD, w: DD) -> DD:
    """:math:`h = \\operatorname{artanh}(\\rho)/\\rho` in double-double storage (accurate to
    the transcendental's ulp), with the series value ``1/sqrt(w)`` for tiny ``rho``."""
    a = _asinh_arg(z2, w)
    small = a.hi < _SERIES
    rho = dd_sqrt(DD(np.where(small, 1.0, z2.hi), np.where(small, 0.0, z2.lo)))
    big = dd_div(dd(np.arcsinh(np.where(small, 0.0, a.hi))), rho)
    tiny = dd_div(dd(asinh_over(np.where(small, a.hi, 0.0))), dd_sqrt(w))
    return DD(np.where(small, tiny.hi, big.hi), np.where(small, tiny.lo, big.lo))


def _artanh(z2: DD, w: DD) -> Array:
    """:math:`\\operatorname{artanh}(\\rho)` as float64 (``asinh(a)`` plus ``a``'s low part)."""
    a = _asinh_arg(z2, w)
    return np.arcsinh(a.hi) + a.lo / np.sqrt(1.0 + a.hi * a.hi)


# --------------------------------------------------------------------------- core kernels


def _tanh_point(
    direction: Array, k: NDArray[np.int64], s: Array, small_factor: DD, c: float
) -> tuple[DD, DD]:
    """The point :math:`\\tanh(s)/\\sqrt c \\cdot v/|v|` for ``v = 2**k * direction`` (a scaled
    double-double vector) and hyperbolic half-length ``s = sqrt(c)|v| * (...)`` (float, may be
    inf), together with its co-norm :math:`1 - \\tanh^2 s`.

    For ``s < 0.55`` the point is computed as ``v * G(s) * small_factor`` with
    :math:`G(s) = \\tanh(s)/s` and ``small_factor = s / (sqrt(c)|v|)`` supplied by the caller
    (so tiny and subnormal inputs keep their digits); otherwise from the unit direction.
    """
    big = s >= _TANH_SPLIT
    t = tanh_dd(np.where(big, s, 0.0))
    t_small = tanh_dd(np.where(big, 0.0, s))
    w_big = sech2_dd(np.where(big, s, 0.0), t)
    w_small = sech2_dd(np.where(big, 0.0, s), t_small)
    w = DD(np.where(big, w_big.hi, w_small.hi), np.where(big, w_big.lo, w_small.lo))

    sv = scaled(direction)
    unit_factor = dd_div(t, dd_mul(sqrt_c(c), DD(*_nz(sv))))  # t / (sqrt(c) |direction|)
    p_big = dd_mul_f(_col(unit_factor), sv.s)
    # small branch: v * G(s) * small_factor, with v = 2**(k + sv.k) * sv.s
    g = dd_mul_f(small_factor, tanh_over(np.where(big, 0.0, s)))
    with np.errstate(over="ignore"):
        p_small = dd_ldexp(dd_mul_f(_col(g), sv.s), (k + sv.k)[..., None])
    zero = (sv.sumsq.hi == 0.0)[..., None]
    hi = np.where(big[..., None], p_big.hi, p_small.hi)
    lo = np.where(big[..., None], p_big.lo, p_small.lo)
    return DD(np.where(zero, 0.0, hi), np.where(zero, 0.0, lo)), w


def _nz(sv: ScaledVector) -> tuple[Array, Array]:
    """``|s|`` as double-double, with 1 substituted for zero vectors (masked by callers)."""
    n = sv.norm_scaled
    zero = n.hi == 0.0
    return np.where(zero, 1.0, n.hi), np.where(zero, 0.0, n.lo)


def _add_dd(x: DD, wx: DD, y: DD, wy: DD, c: float) -> tuple[DD, DD, DD, DD]:
    """Möbius addition on double-double points with known co-norms.

    Returns ``(x (+) y, w(x (+) y), q, D)`` with ``q = c|x + y|^2``, ``D = w(x) w(y) + q``
    and the exact identity :math:`w(x \\oplus y) = w(x) w(y) / D`.
    """
    v = dd_add(x, y)  # (..., d)
    q = c_times_sumsq(scaled_dd(v), c)  # (...)
    wxwy = dd_mul(wx, wy)
    den = dd_add(wxwy, q)
    num = dd_add(dd_mul(_col(wx), v), dd_mul(_col(q), x))
    z = dd_div(num, _col(den))
    wz = dd_div(wxwy, den)
    # exact limits: 0 (+) y = y and x (+) 0 = x, bitwise
    x_zero = np.all((x.hi == 0.0) & (x.lo == 0.0), axis=-1)[..., None]
    y_zero = np.all((y.hi == 0.0) & (y.lo == 0.0), axis=-1)[..., None]
    z = DD(
        np.where(x_zero, y.hi, np.where(y_zero, x.hi, z.hi)),
        np.where(x_zero, y.lo, np.where(y_zero, x.lo, z.lo)),
    )
    return z, wz, q, den


def _gyration_dd(a: Array, b: Array, wa: DD, wb: DD, zs: Array, c: float) -> DD:
    """:math:`\\mathrm{gyr}[a, b] z_s` in double-double, as a rotation of the plane of a, b.

    With :math:`b_\\perp = b - (\\langle a,b\\rangle/|a|^2)\\,a`,
    :math:`P = 1 + c\\langle a,b\\rangle = (w(a) + w(b) + c|a+b|^2)/2` and
    :math:`D = P^2 + c^2|a|^2|b_\\perp|^2 = w(a)w(b) + c|a+b|^2`,

    .. math::
        \\mathrm{gyr}[a,b]z = z + \\frac{2}{D}\\Big(
            cP\\,(\\langle z,b_\\perp\\rangle a - \\langle z,a\\rangle b_\\perp)
            - c^2|b_\\perp|^2\\langle z,a\\rangle a
            - c^2|a|^2\\langle z,b_\\perp\\rangle b_\\perp\\Big),

    which equals Ungar's closed form but has no cancellation: for ``b = -a`` it is exactly the
    identity, where the polynomial form divides a cancelled numerator by ``D ~ w^2``.
    """
    ad, bd = _as_dd(a), _as_dd(b)
    a2 = dot_dd(a, a)
    has_a = a2.hi > 0.0
    t = dd_div(dot_dd(a, b), DD(np.where(has_a, a2.hi, 1.0), np.where(has_a, a2.lo, 0.0)))
    t = DD(np.where(has_a, t.hi, 0.0), np.where(has_a, t.lo, 0.0))
    bp = dd_add(bd, dd_neg(dd_mul(_col(t), ad)))  # b_perp, (..., d)
    bp2 = dot_dd_dd(bp, bp)
    q = c_times_sumsq(scaled_dd(dd_add(ad, bd)), c)
    two_p = dd_add(dd_add(wa, wb), q)  # 2P
    den = dd_add(dd_mul(wa, wb), q)  # D
    za = dot_dd(zs, a)
    zb = dot_dd_dd(_as_dd(zs), bp)
    cc = dd(np.float64(c))
    c2 = DD(*two_prod(np.float64(c), np.float64(c)))
    cp = dd_mul_f(dd_mul(cc, two_p), 0.5)  # c P
    coef_a = dd_add(dd_neg(dd_mul(c2, dd_mul(bp2, za))), dd_mul(cp, zb))
    coef_b = dd_neg(dd_add(dd_mul(c2, dd_mul(a2, zb)), dd_mul(cp, za)))
    shift = dd_add(dd_mul(_col(coef_a), ad), dd_mul(_col(coef_b), bp))
    shift = dd_div(dd_mul_f(shift, 2.0), _col(den))
    return dd_add(_as_dd(zs), shift)


def _matvec_finish(mx: DD, km: NDArray[np.int64], p: _Point, c: float, op: str) -> Array:
    """:math:`M \\otimes x` from ``M x = 2**(km + kx) * mx`` (``mx`` in double-double, computed
    from the scaled operands) and the point record of ``x``.

    .. math::
        M \\otimes x = \\frac{1}{\\sqrt c}
            \\tanh\\!\\Big(\\frac{|Mx|}{|x|}\\operatorname{artanh}(\\sqrt c|x|)\\Big)
            \\frac{Mx}{|Mx|}
    """
    z2 = c_times_sumsq(p.sv, c)
    h = _artanh_over_rho(z2, p.w)  # artanh(rho) / rho
    msv = scaled_dd(mx)
    mnorm = DD(*_nz(msv))  # |mx| / 2**msv.k
    xnorm = DD(*_nz(p.sv))
    # ratio |Mx| / |x| = 2**(km + msv.k) |mx_s| / |x_s|;   s = ratio * artanh(rho)
    ratio = dd_div(mnorm, xnorm)
    artanh_rho = _artanh(z2, p.w)
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.ldexp(ratio.hi * artanh_rho, km + msv.k)
        s = np.where(np.isnan(s), np.inf, s)
    # small branch: Mx * G(s) * h(rho); _tanh_point multiplies the direction by 2**(k + msv.k)
    point, _ = _tanh_point(mx.hi + mx.lo, km + p.sv.k, s, h, c)
    zero = (msv.sumsq.hi == 0.0) | (p.sv.sumsq.hi == 0.0)
    out = np.where(zero[..., None], 0.0, point.hi + point.lo)
    return nudge_inside(out, c, op)


# --------------------------------------------------------------------------- public operations


def conformal_factor(x: Any, *, c: float) -> Array:
    """Conformal factor :math:`\\lambda_x = 2 / (1 - c|x|^2)`.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Points strictly inside the ball.
    c : float
        Curvature magnitude (curvature is ``-c``), finite and ``> 0``.

    Returns
    -------
    ndarray, shape (...)
    """
    c = check.curvature(c)
    p = _point(x, "x", c)
    lam = dd_div(dd(np.full_like(p.w.hi, 2.0)), p.w)
    return lam.hi + lam.lo


def mobius_add(x: Any, y: Any, *, c: float) -> Array:
    """Möbius addition

    .. math::
        x \\oplus y = \\frac{(1 + 2c\\langle x,y\\rangle + c|y|^2)\\,x + (1 - c|x|^2)\\,y}
                          {1 + 2c\\langle x,y\\rangle + c^2|x|^2|y|^2}.

    Parameters
    ----------
    x, y : array_like, shape (..., d)
        Points strictly inside the ball; leading axes broadcast.
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., d)
        ``0 (+) y`` is ``y`` and ``x (+) 0`` is ``x``, bitwise.
    """
    c = check.curvature(c)
    px, py = _point(x, "x", c), _point(y, "y", c)
    check.same_dim({"x": px.x, "y": py.x})
    shape = check.batch_shape({"x": px.x.shape[:-1], "y": py.x.shape[:-1]})
    px, py = _bcast(px, shape), _bcast(py, shape)
    z, _, _, _ = _add_dd(_as_dd(px.x), px.w, _as_dd(py.x), py.w, c)
    return nudge_inside(z.hi + z.lo, c, "mobius_add")


def mobius_scalar_mul(r: Any, x: Any, *, c: float) -> Array:
    """Möbius scalar multiplication

    .. math::
        r \\otimes x = \\frac{1}{\\sqrt c}\\tanh\\!\\big(r\\operatorname{artanh}(\\sqrt c|x|)\\big)
                       \\frac{x}{|x|}, \\qquad r \\otimes 0 = 0.

    Parameters
    ----------
    r : float or array_like, shape broadcastable to x.shape[:-1]
        One real scalar per point (a Python int is accepted when exact in float64).
    x : array_like, shape (..., d)
        Points strictly inside the ball.
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., d)
        ``1 (x) x`` is ``x`` and ``(-1) (x) x`` is ``-x``, bitwise; ``0 (x) x`` is ``+0``.
    """
    c = check.curvature(c)
    r_arr = check.scalars(r, "r")
    p = _point(x, "x", c)
    shape = check.batch_shape({"r": r_arr.shape, "x": p.x.shape[:-1]})
    p = _bcast(p, shape)
    r_arr = np.broadcast_to(r_arr, shape)
    kr = scale_exponent(r_arr[..., None])
    rs = np.ldexp(r_arr, -kr)
    mx = DD(*two_prod(rs[..., None], p.sv.s))
    out = _matvec_finish(mx, kr, p, c, "mobius_scalar_mul")
    rr = r_arr[..., None]
    return np.where(rr == 1.0, p.x, np.where(rr == -1.0, -p.x, np.where(rr == 0.0, 0.0, out)))


def mobius_matvec(m: Any, x: Any, *, c: float) -> Array:
    """Möbius matrix-vector product

    .. math::
        M \\otimes x = \\frac{1}{\\sqrt c}
            \\tanh\\!\\Big(\\frac{|Mx|}{|x|}\\operatorname{artanh}(\\sqrt c|x|)\\Big)
            \\frac{Mx}{|Mx|}, \\qquad M \\otimes x = 0 \\text{ if } Mx = 0.

    ``Mx`` is formed with compensated (double-double) dot products from power-of-two scaled
    operands, so it neither overflows nor loses the kernel of ``M``.

    Parameters
    ----------
    m : array_like, shape (..., n, d)
        Dense matrices (any finite entries; ``n`` may differ from ``d``).
    x : array_like, shape (..., d)
        Points strictly inside the ball.
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., n)
    """
    c = check.curvature(c)
    m_arr = check.as_float64(m, "m")
    if m_arr.ndim < 2:
        raise ValueError(f"m: expected matrices of shape (..., n, d), got shape {m_arr.shape}")
    p = _point(x, "x", c)
    if m_arr.shape[-1] != p.x.shape[-1]:
        raise ValueError(
            f"m: has {m_arr.shape[-1]} columns but x has vector length {p.x.shape[-1]}"
        )
    if m_arr.shape[-2] < 1:
        raise ValueError("m: must have at least one row")
    shape = check.batch_shape({"m": m_arr.shape[:-2], "x": p.x.shape[:-1]})
    p = _bcast(p, shape)
    # scale each matrix once (before broadcasting, which would copy it per point)
    km_own = scale_exponent(m_arr.reshape(*m_arr.shape[:-2], m_arr.shape[-2] * m_arr.shape[-1]))
    ms = np.ldexp(m_arr, -km_own[..., None, None])
    mx = _batched_dot(np.broadcast_to(ms, (*shape, *ms.shape[-2:])), p.sv.s)  # (..., n)
    return _matvec_finish(mx, np.broadcast_to(km_own, shape), p, c, "mobius_matvec")


_CHUNK_TERMS = 2**18  # products per chunk: bounds the double-double temporaries (~50 MB)


def _batched_dot(m: Array, x: Array) -> DD:
    """Compensated ``m @ x`` for ``m`` of shape (..., n, d) and ``x`` of shape (..., d) with
    equal leading shapes, in chunks of the batch so temporaries stay small."""
    *lead, n, d = m.shape
    if not lead:
        return dot_dd(m, x[None, :])
    size = int(np.prod(lead, dtype=np.int64))
    step = max(1, _CHUNK_TERMS // (n * d))
    parts = []
    for start in range(0, size, step):
        idx = np.unravel_index(np.arange(start, min(start + step, size)), tuple(lead))
        parts.append(dot_dd(m[idx], x[idx][:, None, :]))  # gathers only this chunk
    hi = np.concatenate([p.hi for p in parts]) if parts else np.zeros((0, n))
    lo = np.concatenate([p.lo for p in parts]) if parts else np.zeros((0, n))
    return DD(hi.reshape(*lead, n), lo.reshape(*lead, n))


def expmap0(u: Any, *, c: float) -> Array:
    """Exponential map at the origin

    .. math::
        \\exp_0(u) = \\frac{\\tanh(\\sqrt c|u|)}{\\sqrt c|u|}\\,u, \\qquad \\exp_0(0) = 0.

    Parameters
    ----------
    u : array_like, shape (..., d)
        Tangent vectors (any finite size; up to the float64 maximum without overflow).
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., d)
        Points strictly inside the ball (saturated ones, ``sqrt(c)|u| > 19.06``, are the
        nearest interior point in the direction of ``u``).
    """
    c = check.curvature(c)
    u_arr = check.vectors(u, "u")
    y, _ = _expmap0_dd(u_arr, dd(np.ones(u_arr.shape[:-1])), c)
    return nudge_inside(y.hi + y.lo, c, "expmap0")


def _expmap0_dd(u: Array, gain: DD, c: float) -> tuple[DD, DD]:
    """``expmap0(gain * u)`` in double-double with its co-norm (``gain > 0`` per point)."""
    sv = scaled(u)
    with np.errstate(over="ignore"):
        s_dd = dd_mul(dd_mul(sqrt_c(c), sv.norm_scaled), gain)
        s = np.ldexp(s_dd.hi, sv.k)
    # v = gain * u; pass the scaled direction with the gain folded into the small factor
    return _tanh_point(u, np.zeros_like(sv.k), s, gain, c)


def logmap0(x: Any, *, c: float) -> Array:
    """Logarithmic map at the origin

    .. math::
        \\log_0(x) = \\frac{\\operatorname{artanh}(\\sqrt c|x|)}{\\sqrt c|x|}\\,x,
        \\qquad \\log_0(0) = 0.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Points strictly inside the ball.
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., d)
    """
    c = check.curvature(c)
    p = _point(x, "x", c)
    h = _artanh_over_rho(c_times_sumsq(p.sv, c), p.w)
    out = dd_mul_f(_col(h), p.x)
    return out.hi + out.lo


def expmap(x: Any, u: Any, *, c: float) -> Array:
    """Exponential map at ``x``

    .. math::
        \\exp_x(u) = x \\oplus \\Big(\\tanh\\!\\big(\\tfrac{\\sqrt c\\,\\lambda_x|u|}{2}\\big)
                     \\frac{u}{\\sqrt c|u|}\\Big) = x \\oplus \\exp_0(\\lambda_x u / 2).

    The inner point and its co-norm are carried in double-double into the addition.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Base points strictly inside the ball.
    u : array_like, shape (..., d)
        Tangent vectors at ``x`` (any finite size).
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., d)
    """
    c = check.curvature(c)
    p = _point(x, "x", c)
    u_arr = check.vectors(u, "u")
    check.same_dim({"x": p.x, "u": u_arr})
    shape = check.batch_shape({"x": p.x.shape[:-1], "u": u_arr.shape[:-1]})
    p = _bcast(p, shape)
    u_arr = np.broadcast_to(u_arr, (*shape, u_arr.shape[-1]))
    gain = dd_div(dd(np.ones(shape)), p.w)  # lambda_x / 2 = 1 / w(x)
    y, wy = _expmap0_dd(u_arr, gain, c)
    z, _, _, _ = _add_dd(_as_dd(p.x), p.w, y, wy, c)
    return nudge_inside(z.hi + z.lo, c, "expmap")


def logmap(x: Any, y: Any, *, c: float) -> Array:
    """Logarithmic map at ``x``

    .. math::
        \\log_x(y) = \\frac{2}{\\sqrt c\\,\\lambda_x}\\operatorname{artanh}(\\sqrt c|z|)
                     \\frac{z}{|z|}, \\qquad z = (-x) \\oplus y,

    evaluated as :math:`w(x)\\,h\\,z` with :math:`h = \\operatorname{artanh}(\\rho)/\\rho`,
    :math:`\\rho^2 = q / D` and :math:`w(z) = w(x)w(y)/D` from the addition (never from the
    rounded ``z``).

    Parameters
    ----------
    x, y : array_like, shape (..., d)
        Points strictly inside the ball.
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., d)
        ``logmap(x, x)`` is exactly zero.
    """
    c = check.curvature(c)
    px, py = _point(x, "x", c), _point(y, "y", c)
    check.same_dim({"x": px.x, "y": py.x})
    shape = check.batch_shape({"x": px.x.shape[:-1], "y": py.x.shape[:-1]})
    px, py = _bcast(px, shape), _bcast(py, shape)
    z, wz, q, den = _add_dd(_as_dd(-px.x), px.w, _as_dd(py.x), py.w, c)
    h = _artanh_over_rho(dd_div(q, den), wz)
    out = dd_mul(_col(dd_mul(px.w, h)), z)
    return out.hi + out.lo


def dist(x: Any, y: Any, *, c: float) -> Array:
    """Geodesic distance

    .. math::
        d(x, y) = \\frac{2}{\\sqrt c}\\operatorname{artanh}(\\sqrt c|(-x)\\oplus y|)
                = \\frac{2}{\\sqrt c}\\operatorname{asinh}\\!\\Big(
                  \\frac{\\sqrt c\\,|x - y|}{\\sqrt{w(x) w(y)}}\\Big),

    the second form being the one evaluated (``x - y`` is exact for nearby points).

    Parameters
    ----------
    x, y : array_like, shape (..., d)
        Points strictly inside the ball.
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (...)
        ``dist(x, x)`` is exactly 0.
    """
    c = check.curvature(c)
    px, py = _point(x, "x", c), _point(y, "y", c)
    check.same_dim({"x": px.x, "y": py.x})
    shape = check.batch_shape({"x": px.x.shape[:-1], "y": py.x.shape[:-1]})
    px, py = _bcast(px, shape), _bcast(py, shape)
    v = dd_add(_as_dd(px.x), _as_dd(-py.x))
    return _radius(scaled_dd(v), dd_mul(px.w, py.w), c)


def _radius(sv: ScaledVector, wxwy: DD, c: float) -> Array:
    """:math:`(2/\\sqrt c)\\operatorname{asinh}(\\sqrt c|v| / \\sqrt{w_x w_y})` for a scaled
    vector ``v`` (series form ``2|v|/sqrt(w_x w_y) * asinh(a)/a`` for tiny ``a``)."""
    a = dd_sqrt(dd_div(c_times_sumsq(sv, c), wxwy))
    small = a.hi < _SERIES
    big = dd_div(dd(2.0 * np.arcsinh(a.hi) + 2.0 * a.lo / np.sqrt(1.0 + a.hi * a.hi)), sqrt_c(c))
    b = dd_div(sv.norm_scaled, dd_sqrt(wxwy))
    with np.errstate(over="ignore"):
        tiny = dd_ldexp(dd_mul_f(b, 2.0 * asinh_over(np.where(small, a.hi, 0.0))), sv.k)
    return np.where(small, tiny.hi + tiny.lo, big.hi + big.lo)


def dist0(x: Any, *, c: float) -> Array:
    """Distance to the origin, the hyperbolic radius

    .. math::
        \\mathrm{Rad}(x) = d(0, x) = \\frac{2}{\\sqrt c}\\operatorname{artanh}(\\sqrt c|x|).

    Parameters
    ----------
    x : array_like, shape (..., d)
        Points strictly inside the ball.
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (...)
        Up to ``37.43 / sqrt(c)`` for the points closest to the boundary.
    """
    c = check.curvature(c)
    p = _point(x, "x", c)
    return _radius(p.sv, p.w, c)


def gyration(a: Any, b: Any, z: Any, *, c: float) -> Array:
    """Gyration
    :math:`\\mathrm{gyr}[a, b]z = \\ominus(a \\oplus b) \\oplus (a \\oplus (b \\oplus z))`,
    a linear isometry in ``z`` equal to Ungar's closed form

    .. math::
        \\mathrm{gyr}[a,b]z = z + \\frac{2(A a + B b)}{D},\\quad
        A = -c^2\\langle a,z\\rangle|b|^2 + c\\langle b,z\\rangle
            + 2c^2\\langle a,b\\rangle\\langle b,z\\rangle,\\quad
        B = -c^2\\langle b,z\\rangle|a|^2 - c\\langle a,z\\rangle,

    with :math:`D = 1 + 2c\\langle a,b\\rangle + c^2|a|^2|b|^2 = w(a)w(b) + c|a+b|^2`.  It is
    evaluated as the rotation of the plane of ``a`` and ``b`` that it is (see ``_gyration_dd``),
    which has no cancellation: ``gyr[a, -a]`` is exactly the identity.

    Parameters
    ----------
    a, b : array_like, shape (..., d)
        Points strictly inside the ball.
    z : array_like, shape (..., d)
        Any finite vectors (the formula is linear in ``z``; it need not lie in the ball).
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., d)
    """
    c = check.curvature(c)
    pa, pb = _point(a, "a", c), _point(b, "b", c)
    z_arr = check.vectors(z, "z")
    check.same_dim({"a": pa.x, "b": pb.x, "z": z_arr})
    shape = check.batch_shape({"a": pa.x.shape[:-1], "b": pb.x.shape[:-1], "z": z_arr.shape[:-1]})
    pa, pb = _bcast(pa, shape), _bcast(pb, shape)
    z_arr = np.broadcast_to(z_arr, (*shape, z_arr.shape[-1]))
    kz = _vector_exponent(z_arr)
    out = _gyration_dd(pa.x, pb.x, pa.w, pb.w, np.ldexp(z_arr, -kz[..., None]), c)
    with np.errstate(over="ignore"):
        return _finite(np.ldexp(out.hi + out.lo, kz[..., None]), "gyration")


def _vector_exponent(v: Array) -> NDArray[np.int64]:
    """Power-of-two scale for a free vector (gyration's ``z``, transport's ``v``): only when
    its size is extreme, since scaling down would round its subnormal components."""
    k = scale_exponent(v)
    return np.where(np.abs(k) > 500, k, 0)


def _finite(out: Array, op: str) -> Array:
    """Refuse (rather than return) a result whose exact value overflows float64."""
    if not np.all(np.isfinite(out)):
        raise OverflowError(f"{op}: the exact result overflows float64 (a component > 1.8e308)")
    return out


def transport(x: Any, y: Any, v: Any, *, c: float) -> Array:
    """Parallel transport of ``v`` from ``T_x`` to ``T_y`` along the geodesic

    .. math::
        P_{x\\to y}(v) = \\frac{\\lambda_x}{\\lambda_y}\\,\\mathrm{gyr}[y, -x]\\,v
                      = \\frac{w(y)}{w(x)}\\,\\mathrm{gyr}[y, -x]\\,v.

    Parameters
    ----------
    x, y : array_like, shape (..., d)
        Points strictly inside the ball.
    v : array_like, shape (..., d)
        Tangent vectors at ``x`` (any finite size).
    c : float
        Curvature magnitude.

    Returns
    -------
    ndarray, shape (..., d)
    """
    c = check.curvature(c)
    px, py = _point(x, "x", c), _point(y, "y", c)
    v_arr = check.vectors(v, "v")
    check.same_dim({"x": px.x, "y": py.x, "v": v_arr})
    shape = check.batch_shape({"x": px.x.shape[:-1], "y": py.x.shape[:-1], "v": v_arr.shape[:-1]})
    px, py = _bcast(px, shape), _bcast(py, shape)
    v_arr = np.broadcast_to(v_arr, (*shape, v_arr.shape[-1]))
    kv = _vector_exponent(v_arr)
    g = _gyration_dd(py.x, -px.x, py.w, px.w, np.ldexp(v_arr, -kv[..., None]), c)
    out = dd_mul(g, _col(dd_div(py.w, px.w)))
    with np.errstate(over="ignore"):
        return _finite(np.ldexp(out.hi + out.lo, kv[..., None]), "transport")


def project(x: Any, *, c: float, eps: float) -> Array:
    """Explicit projection onto the ball of radius :math:`(1 - \\varepsilon)/\\sqrt c`.

    .. math::
        \\mathrm{proj}(x) = \\begin{cases} x & \\sqrt c|x| \\le 1 - \\varepsilon \\\\
            \\dfrac{1 - \\varepsilon}{\\sqrt c|x|}\\,x & \\text{otherwise.} \\end{cases}

    Never called implicitly by any other operation.  The result is always strictly inside the
    ball: with ``eps = 0`` (or an ``eps`` below the float64 resolution) points on or outside
    the ball come back as the nearest interior point in their direction.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Any finite vectors.
    c : float
        Curvature magnitude.
    eps : float
        Relative margin, ``0 <= eps < 1``.

    Returns
    -------
    ndarray, shape (..., d)
        Points already within the radius are returned bitwise.
    """
    c = check.curvature(c)
    eps = check.real_scalar(eps, "eps")
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps: must satisfy 0 <= eps < 1, got {eps}")
    x_arr = check.vectors(x, "x")
    with np.errstate(over="ignore", invalid="ignore"):
        return _project(x_arr, c, eps)


def _project(x_arr: Array, c: float, eps: float) -> Array:
    sv = scaled(x_arr)
    # inside iff c|x|^2 <= (1 - eps)^2, compared in double-double
    limit = DD(*two_prod(np.float64(1.0 - eps), np.float64(1.0 - eps)))
    excess = dd_add(c_times_sumsq(sv, c), dd_neg(limit))
    outside = ~(excess.hi <= 0.0)  # nan (|x| overflowing in the test) counts as outside
    factor = dd_div(dd(np.full(sv.k.shape, 1.0 - eps)), dd_mul(sqrt_c(c), DD(*_nz(sv))))
    radial = dd_mul_f(_col(factor), sv.s)
    out = np.where(outside[..., None], radial.hi + radial.lo, x_arr)
    return nudge_inside(out, c, "project")
