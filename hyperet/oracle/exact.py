"""Ground truth for every :mod:`hyperet.reference` operation, in mpmath.

Each function has the reference's name and signature plus ``dps`` (decimal digits of the
returned values).  Inputs are float64 arrays (or anything numpy turns into one); every float,
``c`` included, is converted *exactly* with ``mpmath.mpf(float(v))`` - never through a decimal
string (``c = 0.1`` is really 0.1000000000000000055...).  Results are numpy object arrays of
``mpf`` with the reference's output shape (a 0-d array for a single scalar).

Formulas are the textbook definitions (Ungar's gyrovector formulas), not the reference's
rearrangements; the one exception is the gyration, evaluated by its closed form (a test checks
it against the definition :math:`\\ominus(a\\oplus b)\\oplus(a\\oplus(b\\oplus z))` at high
precision).  Cancellation inside the definitions costs digits even in mpmath (up to about 35
near the boundary), so every evaluation runs with :data:`GUARD_DIGITS` extra digits and the
result is rounded to ``dps``; agreement of two precisions (50 and 80 in the tests) confirms it.

Points are not validated beyond being finite and inside the ball in exact arithmetic
(``ValueError`` otherwise).  Pure Python: about a millisecond per 64-dimensional operation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import mpmath
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_DPS",
    "GUARD_DIGITS",
    "banded_matvec",
    "banded_to_dense",
    "block_diagonal_matvec",
    "block_diagonal_to_dense",
    "conformal_factor",
    "diagonal_matvec",
    "diagonal_to_dense",
    "dist",
    "dist0",
    "entailment_angle",
    "entailment_angle_by_arccos",
    "entailment_aperture",
    "entailment_energy",
    "expmap",
    "expmap0",
    "from_lorentz",
    "gyration",
    "logmap",
    "logmap0",
    "lorentz_dist",
    "mobius_add",
    "mobius_matvec",
    "mobius_scalar_mul",
    "project",
    "to_lorentz",
    "transport",
]

DEFAULT_DPS = 50
GUARD_DIGITS = 40

Vec = list[mpmath.mpf]
ObjArray = NDArray[np.object_]


# --------------------------------------------------------------------------- conversions


def _f64(value: Any, name: str) -> NDArray[np.float64]:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def _mp(v: Any) -> mpmath.mpf:
    return mpmath.mpf(float(v))


def _vec(arr: NDArray[np.float64]) -> Vec:
    return [_mp(v) for v in arr]


def _c(c: Any) -> mpmath.mpf:
    value = float(c)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"c: must be finite and > 0, got {value}")
    return _mp(value)


def _pointwise(
    kernel: Callable[..., Any],
    vector_args: Sequence[tuple[str, Any]],
    dps: int,
    *,
    vector_out: bool,
    extra: Callable[[tuple[int, ...]], tuple[Any, ...]] | None = None,
    lead_shape: tuple[int, ...] | None = None,
) -> ObjArray:
    """Evaluate ``kernel(*vectors, *extra(idx))`` for every broadcast leading index."""
    arrays = [_f64(v, name) for name, v in vector_args]
    shape = np.broadcast_shapes(
        *(a.shape[:-1] for a in arrays), *(() if lead_shape is None else (lead_shape,))
    )
    arrays = [np.broadcast_to(a, (*shape, a.shape[-1])) for a in arrays]
    out: list[Any] = []
    with mpmath.workdps(dps + GUARD_DIGITS):
        for idx in np.ndindex(*shape):
            args = [_vec(a[idx]) for a in arrays]
            more = extra(idx) if extra is not None else ()
            out.append(kernel(*args, *more))
    with mpmath.workdps(dps):
        if vector_out:
            n = len(out[0]) if out else 0
            result = np.empty((*shape, n), dtype=object)
            for flat, idx in enumerate(np.ndindex(*shape)):
                for i, v in enumerate(out[flat]):
                    result[(*idx, i)] = +v
        else:
            result = np.empty(shape, dtype=object)
            for flat, idx in enumerate(np.ndindex(*shape)):
                result[idx] = +out[flat]
    return result


# --------------------------------------------------------------------------- mp kernels


def _dot(a: Vec, b: Vec) -> mpmath.mpf:
    return mpmath.fsum(x * y for x, y in zip(a, b, strict=True))


def _norm(a: Vec) -> mpmath.mpf:
    return mpmath.sqrt(_dot(a, a))


def _scale(r: mpmath.mpf, a: Vec) -> Vec:
    return [r * v for v in a]


def _w(x: Vec, c: mpmath.mpf) -> mpmath.mpf:
    w = 1 - c * _dot(x, x)
    if w <= 0:
        raise ValueError("x: point lies on or outside the ball (sqrt(c)|x| >= 1)")
    return w


def _add(x: Vec, y: Vec, c: mpmath.mpf) -> Vec:
    """Möbius addition, textbook form."""
    xy, x2, y2 = _dot(x, y), _dot(x, x), _dot(y, y)
    a = 1 + 2 * c * xy + c * y2
    b = 1 - c * x2
    den = 1 + 2 * c * xy + c * c * x2 * y2
    return [(a * u + b * v) / den for u, v in zip(x, y, strict=True)]


def _neg(x: Vec) -> Vec:
    return [-v for v in x]


def _expmap0(u: Vec, c: mpmath.mpf) -> Vec:
    n = _norm(u)
    if n == 0:
        return [mpmath.mpf(0)] * len(u)
    sc = mpmath.sqrt(c)
    return _scale(mpmath.tanh(sc * n) / (sc * n), u)


def _logmap0(x: Vec, c: mpmath.mpf) -> Vec:
    _w(x, c)
    n = _norm(x)
    if n == 0:
        return [mpmath.mpf(0)] * len(x)
    sc = mpmath.sqrt(c)
    return _scale(mpmath.atanh(sc * n) / (sc * n), x)


def _matvec(m: list[Vec], x: Vec, c: mpmath.mpf) -> Vec:
    _w(x, c)
    mx = [_dot(row, x) for row in m]
    nx, nmx = _norm(x), _norm(mx)
    if nx == 0 or nmx == 0:
        return [mpmath.mpf(0)] * len(m)
    sc = mpmath.sqrt(c)
    return _scale(mpmath.tanh(nmx / nx * mpmath.atanh(sc * nx)) / (sc * nmx), mx)


def _gyr(a: Vec, b: Vec, z: Vec, c: mpmath.mpf) -> Vec:
    """Closed form of gyr[a, b] z (Ungar); linear in z."""
    ab, az, bz, a2, b2 = _dot(a, b), _dot(a, z), _dot(b, z), _dot(a, a), _dot(b, b)
    coef_a = -c * c * az * b2 + c * bz + 2 * c * c * ab * bz
    coef_b = -c * c * bz * a2 - c * az
    den = 1 + 2 * c * ab + c * c * a2 * b2
    return [zi + 2 * (coef_a * ai + coef_b * bi) / den for zi, ai, bi in zip(z, a, b, strict=True)]


def gyration_by_definition(a: Vec, b: Vec, z: Vec, c: mpmath.mpf) -> Vec:
    """:math:`\\ominus(a\\oplus b)\\oplus(a\\oplus(b\\oplus z))` for mpf vectors (z in the ball).

    Used by the tests to check the closed form; loses many digits near the boundary, so call
    it at high precision.
    """
    return _add(_neg(_add(a, b, c)), _add(a, _add(b, z, c), c), c)


# --------------------------------------------------------------------------- public operations


def conformal_factor(x: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`\\lambda_x = 2/(1 - c|x|^2)`, shape ``(...)``."""
    cm = _c(c)
    return _pointwise(lambda v: 2 / _w(v, cm), [("x", x)], dps, vector_out=False)


def mobius_add(x: Any, y: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`x \\oplus y` (textbook formula), shape ``(..., d)``."""
    cm = _c(c)

    def kernel(a: Vec, b: Vec) -> Vec:
        _w(a, cm), _w(b, cm)
        return _add(a, b, cm)

    return _pointwise(kernel, [("x", x), ("y", y)], dps, vector_out=True)


def mobius_scalar_mul(r: Any, x: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`r \\otimes x = \\tanh(r\\,\\operatorname{artanh}(\\sqrt c|x|))\\,x/(\\sqrt c|x|)`."""
    cm = _c(c)
    r_arr = _f64(r, "r")
    x_arr = _f64(x, "x")
    shape = np.broadcast_shapes(r_arr.shape, x_arr.shape[:-1])
    r_b = np.broadcast_to(r_arr, shape)

    def kernel(v: Vec, rr: mpmath.mpf) -> Vec:
        _w(v, cm)
        n = _norm(v)
        if n == 0:
            return [mpmath.mpf(0)] * len(v)
        sc = mpmath.sqrt(cm)
        return _scale(mpmath.tanh(rr * mpmath.atanh(sc * n)) / (sc * n), v)

    return _pointwise(
        kernel,
        [("x", x_arr)],
        dps,
        vector_out=True,
        extra=lambda idx: (_mp(r_b[idx]),),
        lead_shape=shape,
    )


def mobius_matvec(m: Any, x: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`M \\otimes x` for dense ``m`` of shape ``(..., n, d)``; shape ``(..., n)``."""
    cm = _c(c)
    m_arr = _f64(m, "m")
    x_arr = _f64(x, "x")
    shape = np.broadcast_shapes(m_arr.shape[:-2], x_arr.shape[:-1])
    m_b = np.broadcast_to(m_arr, (*shape, *m_arr.shape[-2:]))
    return _pointwise(
        lambda v, rows: _matvec(rows, v, cm),
        [("x", x_arr)],
        dps,
        vector_out=True,
        extra=lambda idx: ([_vec(row) for row in m_b[idx]],),
        lead_shape=shape,
    )


def expmap0(u: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`\\exp_0(u) = \\tanh(\\sqrt c|u|)\\,u/(\\sqrt c|u|)`."""
    cm = _c(c)
    return _pointwise(lambda v: _expmap0(v, cm), [("u", u)], dps, vector_out=True)


def logmap0(x: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`\\log_0(x) = \\operatorname{artanh}(\\sqrt c|x|)\\,x/(\\sqrt c|x|)`."""
    cm = _c(c)
    return _pointwise(lambda v: _logmap0(v, cm), [("x", x)], dps, vector_out=True)


def expmap(x: Any, u: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`\\exp_x(u) = x \\oplus \\exp_0(\\lambda_x u / 2)`."""
    cm = _c(c)

    def kernel(p: Vec, v: Vec) -> Vec:
        lam = 2 / _w(p, cm)
        return _add(p, _expmap0(_scale(lam / 2, v), cm), cm)

    return _pointwise(kernel, [("x", x), ("u", u)], dps, vector_out=True)


def logmap(x: Any, y: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`\\log_x(y) = \\frac{2}{\\sqrt c\\lambda_x}\\operatorname{artanh}(\\sqrt c|z|)
    \\frac{z}{|z|}` with :math:`z = (-x)\\oplus y`."""
    cm = _c(c)

    def kernel(p: Vec, q: Vec) -> Vec:
        wp = _w(p, cm)
        _w(q, cm)
        z = _add(_neg(p), q, cm)
        n = _norm(z)
        if n == 0:
            return [mpmath.mpf(0)] * len(p)
        sc = mpmath.sqrt(cm)
        return _scale(wp * mpmath.atanh(sc * n) / (sc * n), z)

    return _pointwise(kernel, [("x", x), ("y", y)], dps, vector_out=True)


def dist(x: Any, y: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`d(x, y) = (2/\\sqrt c)\\operatorname{artanh}(\\sqrt c|(-x)\\oplus y|)`."""
    cm = _c(c)

    def kernel(p: Vec, q: Vec) -> mpmath.mpf:
        _w(p, cm), _w(q, cm)
        sc = mpmath.sqrt(cm)
        return 2 / sc * mpmath.atanh(sc * _norm(_add(_neg(p), q, cm)))

    return _pointwise(kernel, [("x", x), ("y", y)], dps, vector_out=False)


def dist0(x: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`\\mathrm{Rad}(x) = (2/\\sqrt c)\\operatorname{artanh}(\\sqrt c|x|)`."""
    cm = _c(c)

    def kernel(p: Vec) -> mpmath.mpf:
        _w(p, cm)
        sc = mpmath.sqrt(cm)
        return 2 / sc * mpmath.atanh(sc * _norm(p))

    return _pointwise(kernel, [("x", x)], dps, vector_out=False)


def gyration(a: Any, b: Any, z: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`\\mathrm{gyr}[a,b]z` (closed form; z any vector)."""
    cm = _c(c)

    def kernel(p: Vec, q: Vec, v: Vec) -> Vec:
        _w(p, cm), _w(q, cm)
        return _gyr(p, q, v, cm)

    return _pointwise(kernel, [("a", a), ("b", b), ("z", z)], dps, vector_out=True)


def transport(x: Any, y: Any, v: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`P_{x\\to y}(v) = (\\lambda_x/\\lambda_y)\\,\\mathrm{gyr}[y,-x]v`."""
    cm = _c(c)

    def kernel(p: Vec, q: Vec, t: Vec) -> Vec:
        wp, wq = _w(p, cm), _w(q, cm)
        return _scale(wq / wp, _gyr(q, _neg(p), t, cm))

    return _pointwise(kernel, [("x", x), ("y", y), ("v", v)], dps, vector_out=True)


def project(x: Any, *, c: float, eps: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """``x`` if :math:`\\sqrt c|x| \\le 1-\\varepsilon`, else ``x (1-eps)/(sqrt(c)|x|)``.

    With ``eps = 0`` the exact projection of an outside point lies *on* the boundary; the
    reference returns the nearest interior point instead (about 1 ulp away).
    """
    cm = _c(c)
    em = _mp(eps)

    def kernel(p: Vec) -> Vec:
        sc = mpmath.sqrt(cm)
        n = _norm(p)
        if sc * n <= 1 - em:
            return p
        return _scale((1 - em) / (sc * n), p)

    return _pointwise(kernel, [("x", x)], dps, vector_out=True)


def diagonal_to_dense(w: Any) -> ObjArray:
    """Dense ``diag(w)`` as mpf (exact), shape ``(..., d, d)``."""
    arr = _f64(w, "w")
    d = arr.shape[-1]
    out = np.full((*arr.shape, d), mpmath.mpf(0), dtype=object)
    for idx in np.ndindex(*arr.shape):
        out[(*idx, idx[-1])] = _mp(arr[idx])
    return out


def block_diagonal_to_dense(blocks: Any) -> ObjArray:
    """Dense block-diagonal matrix as mpf (exact), shape ``(d, d)``."""
    arr = _f64(blocks, "blocks")
    nb, b, _ = arr.shape
    out = np.full((nb * b, nb * b), mpmath.mpf(0), dtype=object)
    for i, r, s in np.ndindex(nb, b, b):
        out[i * b + r, i * b + s] = _mp(arr[i, r, s])
    return out


def banded_to_dense(bands: Any) -> ObjArray:
    """Dense banded matrix ``M[i, i + j - k] = bands[j, i]`` as mpf (exact)."""
    arr = _f64(bands, "bands")
    n_bands, d = arr.shape
    k = n_bands // 2
    out = np.full((d, d), mpmath.mpf(0), dtype=object)
    for j, i in np.ndindex(n_bands, d):
        col = i + j - k
        if 0 <= col < d:
            out[i, col] = _mp(arr[j, i])
    return out


def _dense_float(dense: ObjArray) -> NDArray[np.float64]:
    """The mpf matrices built above hold float64 values exactly."""
    return np.vectorize(float, otypes=[np.float64])(dense)


def diagonal_matvec(w: Any, x: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`\\operatorname{diag}(w)\\otimes x` via the dense matrix."""
    return mobius_matvec(_dense_float(diagonal_to_dense(w)), x, c=c, dps=dps)


def block_diagonal_matvec(blocks: Any, x: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """Block-diagonal :math:`M\\otimes x` via the dense matrix."""
    return mobius_matvec(_dense_float(block_diagonal_to_dense(blocks)), x, c=c, dps=dps)


def banded_matvec(bands: Any, x: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """Banded :math:`M\\otimes x` via the dense matrix."""
    return mobius_matvec(_dense_float(banded_to_dense(bands)), x, c=c, dps=dps)


# --------------------------------------------------------------------------- cones and Lorentz


def _aperture_mp(x: Vec, c: mpmath.mpf, K: mpmath.mpf) -> mpmath.mpf:
    w = _w(x, c)
    n = _norm(x)
    arg = K * w / (mpmath.sqrt(c) * n) if n != 0 else mpmath.inf
    if arg > 1:
        raise ValueError("x: lies inside the cone-free core (sqrt(c)|x| < r_in)")
    return mpmath.asin(arg)


def _angle_mp(x: Vec, y: Vec, c: mpmath.mpf) -> mpmath.mpf:
    """Ganea et al.'s exterior angle at ``sqrt(c) x``, as the atan2 of the textbook numerator
    and :math:`w|x \\wedge y|` (the textbook denominator is :math:`\\sqrt{num^2 + (w|x\\wedge
    y|)^2}`; a test checks the arccos form against this one)."""
    _w(y, c)
    w = _w(x, c)
    xy, x2, y2 = _dot(x, y), _dot(x, x), _dot(y, y)
    if x2 == 0:
        raise ValueError("x: the apex x = 0 has no cone")
    if all(a == b for a, b in zip(x, y, strict=True)):
        raise ValueError("y: equals x")
    num = xy * (1 + c * x2) - x2 * (1 + c * y2)
    pairs = range(len(x))
    wedge2 = mpmath.fsum((x[i] * y[j] - x[j] * y[i]) ** 2 for i in pairs for j in pairs if i < j)
    return mpmath.atan2(w * mpmath.sqrt(wedge2), num)


def entailment_angle_by_arccos(x: Vec, y: Vec, c: mpmath.mpf) -> mpmath.mpf:
    """The textbook arccos form of the exterior angle for mpf vectors (loses about half the
    working digits near the axis; the tests compare it with :func:`entailment_angle`)."""
    s = mpmath.sqrt(c)
    xs, ys = _scale(s, x), _scale(s, y)
    xy, x2, y2 = _dot(xs, ys), _dot(xs, xs), _dot(ys, ys)
    num = xy * (1 + x2) - x2 * (1 + y2)
    diff = _norm([a - b for a, b in zip(xs, ys, strict=True)])
    den = mpmath.sqrt(x2) * diff * mpmath.sqrt(1 + x2 * y2 - 2 * xy)
    return mpmath.acos(num / den)


def entailment_aperture(x: Any, *, c: float, K: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`\\psi_c(x) = \\arcsin(K(1 - c|x|^2)/(\\sqrt c|x|))`, shape ``(...)``."""
    cm, km = _c(c), _mp(K)
    return _pointwise(lambda v: _aperture_mp(v, cm, km), [("x", x)], dps, vector_out=False)


def entailment_angle(x: Any, y: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """Exterior angle :math:`\\Xi_c(x, y)` (see :func:`_angle_mp`), shape ``(...)``."""
    cm = _c(c)
    return _pointwise(lambda a, b: _angle_mp(a, b, cm), [("x", x), ("y", y)], dps, vector_out=False)


def entailment_energy(x: Any, y: Any, *, c: float, K: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`\\max(0, \\Xi_c(x, y) - \\psi_c(x))`, shape ``(...)``."""
    cm, km = _c(c), _mp(K)

    def kernel(a: Vec, b: Vec) -> mpmath.mpf:
        return mpmath.mpf(max(0, _angle_mp(a, b, cm) - _aperture_mp(a, cm, km)))

    return _pointwise(kernel, [("x", x), ("y", y)], dps, vector_out=False)


def to_lorentz(x: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`((1 + c|x|^2)/(\\sqrt c\\,w),\\; 2x/w)`, time first; shape ``(..., d + 1)``."""
    cm = _c(c)

    def kernel(v: Vec) -> Vec:
        w = _w(v, cm)
        return [(1 + cm * _dot(v, v)) / (mpmath.sqrt(cm) * w), *_scale(2 / w, v)]

    return _pointwise(kernel, [("x", x)], dps, vector_out=True)


def _lorentz_space(v: Vec) -> Vec:
    if len(v) < 2 or v[0] <= 0:
        raise ValueError("v: a Lorentz point needs a positive time and >= 1 space component")
    return v[1:]


def from_lorentz(v: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`v_s / (1 + \\sqrt{1 + c|v_s|^2})` (the point is its space part); ``(..., d)``."""
    cm = _c(c)

    def kernel(p: Vec) -> Vec:
        s = _lorentz_space(p)
        return _scale(1 / (1 + mpmath.sqrt(1 + cm * _dot(s, s))), s)

    return _pointwise(kernel, [("v", v)], dps, vector_out=True)


def lorentz_dist(u: Any, v: Any, *, c: float, dps: int = DEFAULT_DPS) -> ObjArray:
    """:math:`\\operatorname{arcosh}(c(u_0 v_0 - \\langle u_s, v_s\\rangle))/\\sqrt c` with
    :math:`u_0 = \\sqrt{1/c + |u_s|^2}` (textbook form); shape ``(...)``."""
    cm = _c(c)

    def kernel(a: Vec, b: Vec) -> mpmath.mpf:
        us, vs = _lorentz_space(a), _lorentz_space(b)
        u0 = mpmath.sqrt(1 / cm + _dot(us, us))
        v0 = mpmath.sqrt(1 / cm + _dot(vs, vs))
        arg = cm * (u0 * v0 - _dot(us, vs))
        return mpmath.acosh(max(arg, mpmath.mpf(1))) / mpmath.sqrt(cm)

    return _pointwise(kernel, [("u", u), ("v", v)], dps, vector_out=False)
