"""Careful float64 arithmetic: error-free transformations and double-double ("dd") helpers.

Everything here is elementwise numpy on float64 arrays (no fused multiply-add is assumed:
numpy never contracts ``a * b + c``).  A double-double value is a pair ``(hi, lo)`` of float64
arrays with ``hi = fl(hi + lo)``; it carries about 106 bits.  The ball operations use it for
the few quantities whose cancellation would otherwise cost digits: the co-norm
:math:`w(x) = 1 - c|x|^2`, sums of squares, inner products and the Möbius-addition numerator.

References: Dekker (1971), Knuth TAOCP vol. 2 (TwoSum), Ogita, Rump and Oishi, "Accurate sum and
dot product", SIAM J. Sci. Comput. 26 (2005) (cascaded summation, ``SumK``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
Real = Array | np.float64 | float  # elementwise helpers also take scalars

_SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp's splitting constant for float64


class DD(NamedTuple):
    """A double-double number (or array): the unevaluated sum ``hi + lo``."""

    hi: Array
    lo: Array


# --------------------------------------------------------------------------- error-free steps


def two_sum(a: Real, b: Real) -> DD:
    """Knuth's TwoSum: ``s = fl(a + b)`` and the exact error ``e`` with ``a + b = s + e``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return DD(s, e)


def fast_two_sum(a: Real, b: Real) -> DD:
    """Dekker's FastTwoSum (exact when ``|a| >= |b|`` or ``a == 0``): renormalises a pair."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    s = a + b
    e = b - (s - a)
    return DD(s, e)


def _split(a: Array) -> tuple[Array, Array]:
    t = _SPLITTER * a
    hi = t - (t - a)
    return hi, a - hi


def two_prod(a: Real, b: Real) -> DD:
    """Dekker's TwoProduct: ``p = fl(a * b)`` and the exact error (absent over/underflow).

    Exact while ``|a|, |b| < 2**996`` and the error term does not underflow; callers scale
    their operands by powers of two to stay in that range.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return DD(p, e)


# --------------------------------------------------------------------------- double-double


def dd(hi: Array | float, lo: Array | float = 0.0) -> DD:
    """Wrap float64 values as a double-double (``lo`` defaults to zero)."""
    return DD(np.asarray(hi, dtype=np.float64), np.asarray(lo, dtype=np.float64))


def dd_add(a: DD, b: DD) -> DD:
    s, e = two_sum(a.hi, b.hi)
    return fast_two_sum(s, e + (a.lo + b.lo))


def dd_neg(a: DD) -> DD:
    return DD(-a.hi, -a.lo)


def dd_sub(a: DD, b: DD) -> DD:
    return dd_add(a, dd_neg(b))


def dd_mul(a: DD, b: DD) -> DD:
    p, e = two_prod(a.hi, b.hi)
    return fast_two_sum(p, e + (a.hi * b.lo + a.lo * b.hi))


def dd_mul_f(a: DD, b: Array | float) -> DD:
    """Double-double times float64."""
    p, e = two_prod(a.hi, np.asarray(b, dtype=np.float64))
    return fast_two_sum(p, e + a.lo * b)


def dd_div(a: DD, b: DD) -> DD:
    """``a / b`` to about 2**-104 relative (b must be nonzero)."""
    q1 = a.hi / b.hi
    r = dd_sub(a, dd_mul_f(b, q1))
    q2 = r.hi / b.hi
    return fast_two_sum(q1, q2)


def dd_sqrt(a: DD) -> DD:
    """Square root of a nonnegative double-double (one Newton correction)."""
    s = np.sqrt(a.hi)
    safe = np.where(s > 0, s, 1.0)
    p, e = two_prod(s, s)
    corr = np.where(s > 0, ((a.hi - p) - e + a.lo) / (2.0 * safe), 0.0)
    return fast_two_sum(s, corr)


def dd_ldexp(a: DD, k: NDArray[np.int64] | int) -> DD:
    """Multiply by ``2**k`` (exact unless the result leaves the normal range)."""
    return DD(np.ldexp(a.hi, k), np.ldexp(a.lo, k))


# --------------------------------------------------------------------------- sums and norms


def _tree_sum(a: Array) -> tuple[Array, Array]:
    """Pairwise TwoSum reduction over the last axis: ``(sum, errors)`` with
    ``sum(a) == sum + sum(errors)`` exactly (absent overflow)."""
    errors = []
    while a.shape[-1] > 1:
        if a.shape[-1] % 2:
            a = np.concatenate([a, np.zeros((*a.shape[:-1], 1))], axis=-1)
        s, e = two_sum(a[..., 0::2], a[..., 1::2])
        errors.append(e)
        a = s
    total = a[..., 0] if a.shape[-1] == 1 else np.zeros(a.shape[:-1])
    err = np.concatenate(errors, axis=-1) if errors else np.zeros((*a.shape[:-1], 0))
    return total, err


def sum3(terms: Array) -> tuple[Array, Array, Array]:
    """Sum over the last axis as three unnormalised float64 parts ``s1 + s2 + s3``.

    Cascaded summation with K = 3: two error-free pairwise TwoSum trees, then a plain sum of
    the second-level errors (each about eps**2 times the inputs).  The error is about
    ``n * eps**3 * sum(|terms|)``.
    """
    s1, e1 = _tree_sum(terms)
    s2, e2 = _tree_sum(e1)
    return s1, s2, np.sum(e2, axis=-1)


def sum_dd(terms: Array) -> DD:
    """Sum over the last axis as a double-double, accurate to about 2**-105 relative to
    ``sum(|terms|)`` (see :func:`sum3`)."""
    s1, s2, s3 = sum3(terms)
    return two_sum(s1, s2 + s3)


def dot_dd(a: Array, b: Array) -> DD:
    """Inner product over the last axis in double-double (Dot2/Dot3 style; operands broadcast)."""
    a, b = np.broadcast_arrays(a, b)
    p, e = two_prod(a, b)
    return sum_dd(np.concatenate([p, e], axis=-1))


def dot_dd_dd(a: DD, b: DD) -> DD:
    """Inner product over the last axis of two double-double vectors (``lo * lo`` dropped)."""
    hi_a, hi_b = np.broadcast_arrays(a.hi, b.hi)
    p, e = two_prod(hi_a, hi_b)
    cross = a.hi * b.lo + a.lo * b.hi
    cross = np.broadcast_to(cross, p.shape)
    return sum_dd(np.concatenate([p, e, cross], axis=-1))


def scale_exponent(v: Array) -> NDArray[np.int64]:
    """Per vector (last axis), the ``k`` with ``max|v * 2**-k|`` in ``[0.5, 1)`` (0 for zero)."""
    m = np.max(np.abs(v), axis=-1) if v.shape[-1] else np.zeros(v.shape[:-1])
    _, k = np.frexp(m)
    return k.astype(np.int64)


class ScaledVector(NamedTuple):
    """``v = 2**k * s`` with ``max|s|`` in ``[0.5, 1)`` and ``sum(s**2) = q1 + q2 + q3``.

    Scaling by an exact power of two keeps both huge (1e300) and subnormal vectors in a range
    where squares neither overflow nor underflow (the hypot idea, without its divisions).
    """

    k: NDArray[np.int64]  # (...)
    s: Array  # (..., d)
    sumsq3: tuple[Array, Array, Array]  # (...) each

    @property
    def sumsq(self) -> DD:
        """``sum(s**2)`` in double-double."""
        q1, q2, q3 = self.sumsq3
        return two_sum(q1, q2 + q3)

    @property
    def norm_scaled(self) -> DD:
        """``|s|`` in double-double."""
        return dd_sqrt(self.sumsq)

    @property
    def norm(self) -> Array:
        """``|v|`` rounded to float64 (about half an ulp; inf only if |v| overflows)."""
        with np.errstate(over="ignore"):
            return np.ldexp(self.norm_scaled.hi, self.k)


def scaled(v: Array) -> ScaledVector:
    """Split each vector of ``v`` (last axis) into an exact power of two and a scaled part."""
    k = scale_exponent(v)
    s = np.ldexp(v, -k[..., None])
    p, e = two_prod(s, s)
    return ScaledVector(k, s, sum3(np.concatenate([p, e], axis=-1)))


def scaled_dd(v: DD) -> ScaledVector:
    """Like :func:`scaled` for a double-double vector; ``s`` holds the scaled ``hi`` part and
    the sum of squares includes the ``2 hi lo`` cross terms."""
    k = scale_exponent(v.hi)
    s = np.ldexp(v.hi, -k[..., None])
    s_lo = np.ldexp(v.lo, -k[..., None])
    p, e = two_prod(s, s)
    return ScaledVector(k, s, sum3(np.concatenate([p, e, 2.0 * s * s_lo], axis=-1)))


def c_times_sumsq(sv: ScaledVector, c: float) -> DD:
    """``c |v|^2`` in double-double (underflows gracefully to 0 for tiny ``c |v|^2``)."""
    prod = dd_mul_f(sv.sumsq, c)
    with np.errstate(over="ignore"):
        return dd_ldexp(prod, 2 * sv.k)


def conorm(sv: ScaledVector, c: float) -> DD:
    """The co-norm :math:`w(x) = 1 - c|x|^2` in double-double.

    ``c * q1`` and ``c * q2`` are formed exactly (TwoProduct) and ``1 - fl(c q1)`` is exact
    whenever ``c q1`` lies in ``[1/2, 2]`` (Sterbenz), which is exactly where cancellation
    happens; so ``w`` keeps full relative accuracy up to the boundary (absolute error about
    ``2**-150``).
    """
    q1, q2, q3 = sv.sumsq3
    k2 = 2 * sv.k
    with np.errstate(over="ignore", invalid="ignore"):  # far outside the ball: w = -inf or nan
        p1, e1 = (np.ldexp(t, k2) for t in two_prod(np.full_like(q1, c), q1))
        p2, e2 = (np.ldexp(t, k2) for t in two_prod(np.full_like(q2, c), q2))
        p3 = np.ldexp(c * q3, k2)
        a, ea = two_sum(np.ones_like(p1), -p1)
        return sum_dd(np.stack([a, ea, -e1, -p2, -e2, -p3], axis=-1))


def sqrt_c(c: float) -> DD:
    """``sqrt(c)`` as a double-double scalar."""
    s = math.sqrt(c)
    p, e = two_prod(np.float64(s), np.float64(s))
    return dd(s, ((c - float(p)) - float(e)) / (2.0 * s))


# --------------------------------------------------------------------------- elementary functions


_SERIES = 2.0**-26  # below this, the first series term is exact to float64 rounding


def tanh_over(s: Array) -> Array:
    """:math:`G(s) = \\tanh(s)/s` (even, ``G(0) = 1``), for finite ``s >= 0``."""
    small = s < _SERIES
    safe = np.where(small, 1.0, s)
    return np.where(small, 1.0 - s * s / 3.0, np.tanh(safe) / safe)


def asinh_over(a: Array) -> Array:
    """:math:`\\psi(a) = \\operatorname{asinh}(a)/a` (``psi(0) = 1``), for finite ``a >= 0``."""
    small = a < _SERIES
    safe = np.where(small, 1.0, a)
    return np.where(small, 1.0 - a * a / 6.0, np.arcsinh(safe) / safe)


def one_minus_tanh(s: Array) -> Array:
    """:math:`1 - \\tanh(s) = 2 / (e^{2s} + 1)`, relatively accurate (0 once it underflows)."""
    with np.errstate(over="ignore"):
        return 2.0 / (np.expm1(2.0 * s) + 2.0)


def tanh_dd(s: Array) -> DD:
    """``tanh(s)`` for ``s >= 0`` as a double-double whose ``1 - tanh`` is relatively accurate.

    For ``s >= 0.55`` the value is carried as ``1 - tau`` with ``tau = 1 - tanh(s)`` computed
    directly, so points produced from it keep an accurate distance to the boundary.
    """
    big = s >= 0.55
    tau = one_minus_tanh(np.where(big, s, 1.0))
    near_one = two_sum(np.ones_like(tau), -tau)
    t = np.tanh(np.where(big, 0.0, s))
    return DD(np.where(big, near_one.hi, t), np.where(big, near_one.lo, 0.0))


def sech2_dd(s: Array, t: DD) -> DD:
    """:math:`1 - \\tanh^2(s)` in double-double, consistent with ``t = tanh_dd(s)``."""
    big = s >= 0.55
    tau = one_minus_tanh(np.where(big, s, 1.0))
    # 1 - t^2 = tau (2 - tau) for t = 1 - tau
    via_tau = dd_mul_f(two_sum(np.full_like(tau, 2.0), -tau), tau)
    via_t = dd_sub(dd(np.ones_like(t.hi)), dd_mul(t, t))
    return DD(np.where(big, via_tau.hi, via_t.hi), np.where(big, via_tau.lo, via_t.lo))
