"""Numerical building blocks shared by the ops: the per-call context, norms, co-norms, ratios.

Everything here is private to :mod:`hyperet.ops`. The pieces:

- :class:`Numerics`: the per-call context (policy, compute dtype, curvature, limits) built by
  :func:`setup`; it validates in exact mode and finishes results (cast back, keep inside).
- :func:`conorm_exact`: :math:`w(x) = 1 - c|x|^2` to a few ulp even when ``w`` is tiny, from a
  double-double sum of squares (error-free products and two error-free extractions); a custom
  autograd function gives it the plain gradient :math:`-2cx`.
- :func:`tanh_ratio`, :func:`artanh_ratio`: :math:`\\tanh(t)/t` and
  :math:`\\operatorname{artanh}(z)/z`, equal to 1 at 0, with every branch sanitised first (the
  "double where"), so neither values nor gradients ever see NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from hyperet.ops.policy import (
    PolicyName,
    compute_dtype,
    input_conorm_floor,
    output_ceiling,
    resolve_policy,
)

Curvature = float | Tensor

#: Dekker's splitting constant for float64: ``2**27 + 1``.
_SPLIT = 134217729.0
#: Below this argument the ratios use their Taylor series (exact to < 2**-60 relative).
_SERIES_BELOW = 2.0**-9


# ----------------------------------------------------------------------------- norms


def norm_scaled(v: Tensor) -> Tensor:
    """:math:`|v|` along the last axis (keepdim) without overflow or underflow.

    Computed as :math:`m |v / m|` with :math:`m = \\max_i |v_i|` (detached: the result does not
    depend on it), so tangent vectors of norm ``1e300`` and points of norm ``1e-300`` keep full
    precision. The gradient at ``v = 0`` is 0 (a subgradient), never NaN.
    """
    m = v.detach().abs().amax(dim=-1, keepdim=True)
    m = torch.where(m > 0, m, torch.ones_like(m))
    return torch.linalg.vector_norm(v / m, dim=-1, keepdim=True) * m


def _unit_times(g: Tensor, v: Tensor, n: Tensor) -> Tensor:
    """:math:`g\\,v/|v|` (0 where ``v = 0``) without overflow for tiny or subnormal ``|v|``:
    rows with :math:`|v| < 2^{-60}` are rescaled by :math:`2^{60}` first (``g/|v|`` would
    overflow float32 while ``v/|v|`` is O(1))."""
    tiny = n < 2.0**-60
    scale = torch.where(tiny, torch.full_like(n, 2.0**60), torch.ones_like(n))
    ns = n * scale
    pos = ns > 0
    coef = torch.where(pos, g / torch.where(pos, ns, torch.ones_like(ns)), 0.0)
    return coef * (v * scale)


class _NormFast(torch.autograd.Function):
    """:math:`|v|` (keepdim), optionally accumulated in float64, with a one-pass backward
    :math:`\\partial|v|/\\partial v = v/|v|` (0 at ``v = 0``, the subgradient)."""

    @staticmethod
    def forward(v: Tensor, accumulate_f64: bool, keep_f64: bool = False) -> Tensor:
        if accumulate_f64:
            n = torch.linalg.vector_norm(v, dim=-1, keepdim=True, dtype=torch.float64)
            return n if keep_f64 else n.to(v.dtype)
        return torch.linalg.vector_norm(v, dim=-1, keepdim=True)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, bool, bool], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0], output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        v, n = ctx.saved_tensors
        return _unit_times(grad.to(v.dtype), v, n.to(v.dtype)), None, None


class _NormConormF32(torch.autograd.Function):
    """float32 ``(|x|, 1 - c|x|^2)`` (keepdim) from ONE float64-accumulated reduction, with the
    one-pass backward :math:`(g_n/|x| - 2c\\,g_w)\\,x` and :math:`-|x|^2 g_w` for ``c``."""

    @staticmethod
    def forward(x: Tensor, c: Curvature) -> tuple[Tensor, Tensor]:
        n64 = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float64)
        c64 = c.detach().double() if isinstance(c, Tensor) else c
        return n64.to(x.dtype), (1.0 - c64 * n64 * n64).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Curvature], output: Any) -> None:
        x, c = inputs
        ctx.c_is_tensor = isinstance(c, Tensor)
        ctx.c_float = None if ctx.c_is_tensor else c
        ctx.save_for_backward(x, output[0], *((c,) if ctx.c_is_tensor else ()))

    @staticmethod
    def backward(ctx: Any, grad_n: Tensor, grad_w: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, n, *rest = ctx.saved_tensors
        c = rest[0] if ctx.c_is_tensor else ctx.c_float
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = _unit_times(grad_n, x, n) - (2.0 * c * grad_w) * x
        grad_c = None
        if ctx.c_is_tensor and ctx.needs_input_grad[1]:
            grad_c = -(n * n * grad_w).sum().reshape(rest[0].shape)
        return grad_x, grad_c


def norm_fast(v: Tensor, *, accumulate_f64: bool = False, keep_f64: bool = False) -> Tensor:
    """Train-mode :math:`|v|` (keepdim) with a cheap backward; float32 input may accumulate the
    squares in float64 (no overflow or underflow of the squares, accurate co-norms) and keep the
    float64 norm (``keep_f64``) for per-vector scalars computed in float64."""
    out: Tensor = _NormFast.apply(v, accumulate_f64, keep_f64)
    return out


def _split(a: Tensor) -> tuple[Tensor, Tensor]:
    """Dekker's split: ``a = hi + lo`` exactly, each with at most 26 significant bits."""
    t = a * _SPLIT
    hi = t - (t - a)
    return hi, a - hi


def _two_prod(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``a * b = p + e`` exactly (Dekker/Veltkamp, no FMA needed)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _two_sum(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``a + b = s + e`` exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


# A double-double number is an unevaluated sum ``hi + lo`` with ``|lo| <= ulp(hi) / 2``; the
# helpers below keep about 2**-104 relative accuracy (Dekker 1971). They take and return tuples.
DD = tuple[Tensor, Tensor]


def dd_mul(a: DD, b: DD) -> DD:
    """``a * b`` in double-double."""
    p, e = _two_prod(a[0], b[0])
    e = e + (a[0] * b[1] + a[1] * b[0])
    return _fast_two_sum(p, e)


def dd_div(a: DD, b: DD) -> DD:
    """``a / b`` in double-double (one Newton correction of the float quotient)."""
    q1 = a[0] / b[0]
    p, e = _two_prod(q1, b[0])
    r = ((a[0] - p) - e + a[1] - q1 * b[1]) / b[0]
    return _fast_two_sum(q1, r)


def dd_sqrt(a: DD) -> DD:
    """:math:`\\sqrt{a}` in double-double for ``a > 0`` (one Newton correction)."""
    r = torch.sqrt(a[0])
    p, e = _two_prod(r, r)
    return _fast_two_sum(r, ((a[0] - p) - e + a[1]) / (2.0 * r))


def _fast_two_sum(a: Tensor, b: Tensor) -> DD:
    """``a + b = s + e`` exactly when ``|a| >= |b|`` (or ``a = 0``)."""
    s = a + b
    return s, b - (s - a)


def _extract(p: Tensor) -> tuple[Tensor, Tensor]:
    """Split nonnegative ``p`` (last axis) into an exactly summable part and a remainder.

    With :math:`\\sigma = 2^{\\lceil \\log_2 \\max p \\rceil + \\lceil \\log_2 d \\rceil}`,
    :math:`q_i = (\\sigma + p_i) - \\sigma` is a multiple of :math:`\\mathrm{ulp}(\\sigma)` and
    :math:`\\sum q_i \\le \\sigma`, so every partial sum of the ``q_i`` is exact in any order;
    :math:`r_i = p_i - q_i` is exact too (Rump, Ogita, Oishi: ExtractScalar).
    Returns (exact sum of q, remainders r).
    """
    d = p.shape[-1]
    _, exponent = torch.frexp(p.amax(dim=-1, keepdim=True))
    sigma = torch.ldexp(torch.ones_like(p[..., :1]), exponent + max(1, math.ceil(math.log2(d))))
    q = (sigma + p) - sigma
    return q.sum(dim=-1, keepdim=True), p - q


def sum_sq_dd(x: Tensor) -> tuple[Tensor, Tensor]:
    """Double-double :math:`\\sum_i x_i^2` along the last axis (float64, keepdim): ``hi + lo``.

    The relative error is about ``eps**2`` (plus ``d**3 eps**3`` from the last remainder),
    far below what :math:`1 - c|x|^2` needs at the last float below the boundary.
    """
    p, e = _two_prod(x, x)  # x_i^2 = p_i + e_i exactly
    s1, r1 = _extract(p)
    s2, r2 = _extract(r1)
    hi, lo = _two_sum(s1, s2)
    return hi, lo + (r2.sum(dim=-1, keepdim=True) + e.sum(dim=-1, keepdim=True))


class _ConormExact(torch.autograd.Function):
    """:math:`w = 1 - c|x|^2` to a few ulp; gradient :math:`(-2c x, -|x|^2)`."""

    @staticmethod
    def forward(x: Tensor, c: Tensor) -> Tensor:
        hi, lo = sum_sq_dd(x)
        ch, ce = _two_prod(c.expand_as(hi), hi)  # c * hi = ch + ce exactly
        # 1 - ch is exact whenever c|x|^2 is in [1/2, 2] (Sterbenz), i.e. whenever w is small.
        return (1.0 - ch) - (ce + c * lo)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        x, c = inputs
        ctx.save_for_backward(x, c)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, c = ctx.saved_tensors
        grad_x = -2.0 * c * x * grad if ctx.needs_input_grad[0] else None
        grad_c = None
        if ctx.needs_input_grad[1]:
            grad_c = -(x * x).sum(dim=-1, keepdim=True).mul(grad).sum().reshape(c.shape)
        return grad_x, grad_c


def conorm_exact(x: Tensor, c: Curvature) -> Tensor:
    """:math:`w(x) = 1 - c|x|^2` (float64, keepdim) to a few ulp, differentiable in x and c."""
    c_t = c if isinstance(c, Tensor) else torch.tensor(c, dtype=x.dtype, device=x.device)
    out: Tensor = _ConormExact.apply(x, c_t)
    return out


# ----------------------------------------------------------------------------- ratios


def tanh_ratio(t: Tensor) -> Tensor:
    """:math:`\\tanh(t)/t` for :math:`t \\ge 0` (1 at 0; ``1/t`` once tanh saturates).

    Series :math:`1 - t^2/3 + 2t^4/15` below ``2**-9``; both branches see sanitised input.
    """
    small = t < _SERIES_BELOW
    ts = torch.where(small, t, torch.zeros_like(t))
    tl = torch.where(small, torch.ones_like(t), t)
    t2 = ts * ts
    series = 1.0 - t2 / 3.0 + t2 * t2 * (2.0 / 15.0)
    return torch.where(small, series, torch.tanh(tl) / tl)


def artanh_ratio(z: Tensor, w: Tensor) -> Tensor:
    """:math:`\\operatorname{artanh}(z)/z` for :math:`0 \\le z < 1`, given :math:`w = 1 - z^2`.

    Series :math:`1 + z^2/3 + z^4/5` below ``2**-9``, ``atanh(z)/z`` below 1/2, and
    :math:`(\\operatorname{log1p}(z) - \\tfrac12 \\log w)/z` above, where the accurate ``w``
    carries the precision that ``1 - z`` has lost near the boundary.
    """
    small = z < _SERIES_BELOW
    large = z >= 0.5
    mid = ~(small | large)
    zs = torch.where(small, z, torch.zeros_like(z))
    zm = torch.where(mid, z, torch.full_like(z, 0.25))
    zl = torch.where(large, z, torch.ones_like(z))
    wl = torch.where(large, w, torch.ones_like(w))
    z2 = zs * zs
    series = 1.0 + z2 / 3.0 + z2 * z2 / 5.0
    return torch.where(
        small,
        series,
        torch.where(mid, torch.atanh(zm) / zm, (torch.log1p(zl) - 0.5 * torch.log(wl)) / zl),
    )


# ----------------------------------------------------------------------------- context


@dataclass(frozen=True)
class Numerics:
    """Per-call context: policy, dtypes, curvature and its square root, train-mode limits."""

    policy: PolicyName
    dtype: torch.dtype  # the arithmetic's dtype
    out_dtype: torch.dtype  # the result's dtype
    c: Curvature
    sqrt_c: Curvature

    @property
    def exact(self) -> bool:
        return self.policy == "exact"

    def cast(self, t: Tensor) -> Tensor:
        return t if t.dtype == self.dtype else t.to(self.dtype)  # .to would return t too

    def in_float64(self) -> Numerics:
        """The same context computing in float64 (for ops that need it in train mode too)."""
        if self.dtype == torch.float64:
            return self
        c, sqrt_c = self.c, self.sqrt_c
        if isinstance(c, Tensor) and isinstance(sqrt_c, Tensor):
            c, sqrt_c = c.to(torch.float64), sqrt_c.to(torch.float64)
        return replace(self, dtype=torch.float64, c=c, sqrt_c=sqrt_c)

    def norm(self, v: Tensor) -> Tensor:
        """:math:`|v|` (keepdim) in the compute dtype: overflow-free in exact mode; float64
        accumulation for float32 in train mode."""
        if self.exact:
            return norm_scaled(v)
        return norm_fast(v, accumulate_f64=v.dtype == torch.float32)

    def point(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(x, z, w, n)``: :math:`z = \\sqrt c|x|`, :math:`w = 1 - c|x|^2`, ``n = |x|``.

        Train mode treats a point whose co-norm is below
        :func:`~hyperet.ops.policy.input_conorm_floor` (only points on or outside the boundary,
        up to the float64 rounding of ``w``) as its radial projection onto that floor: ``x`` is
        rescaled, ``z`` and ``n`` with it, ``w`` floored. Valid points come back unchanged.
        """
        z, w, n, scale = self.point_factors(x)
        return (x if scale is None else x * scale), z, w, n

    def point_factors(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Like :meth:`point` but leaves ``x`` alone and returns the train-mode projection factor
        (``None`` in exact mode), for callers that can fold it into a per-vector coefficient."""
        if self.exact:
            n = norm_scaled(x)
            return self.sqrt_c * n, conorm_exact(x, self.c), n, None
        if x.dtype == torch.float32:
            # squares accumulated in float64, w formed in float64: accurate to the last float
            n, w = _NormConormF32.apply(x, self.c)
        else:
            n = norm_fast(x)
            w = 1.0 - self.c * n * n
        w_min = input_conorm_floor(self.out_dtype)
        below = w < w_min
        # radial projection onto c|x|^2 = 1 - w_min where w < w_min, exactly 1 elsewhere; the
        # ratio only sees c|x|^2 = 1 - w >= 1 - w_min > 0 (double where)
        ratio = (1.0 - w_min) / torch.where(below, 1.0 - w, torch.ones_like(w))
        scale = torch.where(below, torch.sqrt(ratio), torch.ones_like(w))
        return self.sqrt_c * n * scale, w.clamp_min(w_min), n * scale, scale

    def finish(self, y: Tensor) -> Tensor:
        """Cast a returned point back to the result dtype, keeping it strictly inside the ball.

        Exact mode: a point that rounds onto or outside the boundary moves to the nearest interior
        float in the same direction. Train mode: rescaled to
        :func:`~hyperet.ops.policy.output_ceiling` when beyond it (no synchronisation).
        """
        if self.exact:
            return keep_inside_exact(y.to(self.out_dtype), self.c)
        z_out = output_ceiling(self.out_dtype)
        n = self.norm(y)
        # rescale = z_out / max(z, z_out): 1 inside the ceiling, no division by zero (double where)
        scale = z_out / torch.clamp_min(self.sqrt_c * n, z_out)
        return (y * scale).to(self.out_dtype)

    def finish_vector(self, v: Tensor) -> Tensor:
        """Cast a returned tangent vector or scalar back to the result dtype."""
        return v.to(self.out_dtype)

    # ------------------------------------------------------------------ validation (exact)

    def check_points(self, **points: Tensor) -> None:
        """Exact mode: refuse non-finite points or points on/outside the ball (one host sync)."""
        self._check(points, inside=True)

    def check_finite(self, **tensors: Tensor) -> None:
        """Exact mode: refuse non-finite tensors (one host sync)."""
        self._check(tensors, inside=False)

    def _check(self, tensors: dict[str, Tensor], *, inside: bool) -> None:
        if not self.exact or not tensors:
            return
        c64 = self.c.detach().double() if isinstance(self.c, Tensor) else self.c
        with torch.no_grad():
            # cheap screen (one host sync): non-finite entries, or points near the boundary
            screens = []
            for t in tensors.values():
                flag = ~torch.isfinite(t).all(dim=-1, keepdim=True)
                if inside:
                    flag = flag | _near_boundary(t.detach().to(torch.float64), c64)
                screens.append(flag.any())
            if not bool(torch.stack(screens).any()):
                return
            for name, t in tensors.items():
                if not bool(torch.isfinite(t).all()):
                    raise ValueError(f"{name}: contains NaN or inf")
                if inside and bool(_outside(t.detach().to(torch.float64), c64).any()):
                    raise ValueError(
                        f"{name}: point lies on or outside the ball (sqrt(c)|{name}| >= 1)"
                    )


def _near_boundary(y64: Tensor, c64: Curvature) -> Tensor:
    """Rows with :math:`c|y|^2 > 1 - 2^{-20}` by a plain float64 sum (error ~ d eps, far below
    the margin): the only rows whose position relative to the boundary needs the compensated
    co-norm."""
    return (c64 * (y64 * y64).sum(dim=-1, keepdim=True)) > 1.0 - 2.0**-20


def _outside(y64: Tensor, c64: Curvature) -> Tensor:
    """Rows on or outside the ball, decided by the compensated co-norm."""
    return ~(conorm_exact(y64, c64) > 0)


def keep_inside_exact(y: Tensor, c: Curvature) -> Tensor:
    """Move points of ``y`` (any float dtype) that are not strictly inside the ball inward.

    A point with :math:`1 - c|y|^2 \\le 0` (checked to a few ulp in float64) becomes
    ``fl(f y)`` for the largest ``f`` of the form ``1 - j ulp(1)/2`` (``j = 1, 2, ...``) that is
    strictly inside: the nearest interior float in the same direction, as in the reference.
    (Points farther out than ``2**-46`` relative are first scaled by :math:`1/(\\sqrt c|y|)`.)
    Valid points come back bitwise unchanged.
    """
    c64 = c.detach() if isinstance(c, Tensor) else c
    with torch.no_grad():
        y64 = y.detach().to(torch.float64)
        if not bool(_near_boundary(y64, c64).any()):
            return y  # the common case: one cheap pass and one host sync
        outside = _outside(y64, c64)
        if not bool(outside.any()):
            return y
        z = c64**0.5 * norm_scaled(y64)
        # far outside (project with eps = 0): onto the boundary first; else ulp by ulp
        factor = torch.where(outside & (z > 1 + 2.0**-46), 1 / z, torch.ones_like(z)).to(y.dtype)
        zero = torch.zeros_like(factor)
        for _ in range(_NUDGE_STEPS):
            factor = torch.where(outside, torch.nextafter(factor, zero), factor)
            outside = outside & _outside((y.detach() * factor).to(torch.float64), c64)
            if not bool(outside.any()):
                break
        else:  # pragma: no cover - results are at most a few ulp outside
            raise RuntimeError("keep_inside_exact: could not move a point inside the ball")
    return y * factor


#: keep_inside_exact: most steps of one ulp (results are at most a few ulp outside).
_NUDGE_STEPS = 1024


def _as_tensors(tensors: Sequence[Tensor | float]) -> list[Tensor]:
    return [t for t in tensors if isinstance(t, Tensor)]


def setup(c: Curvature, policy: str | None, *tensors: Tensor | float) -> Numerics:
    """Build the call's :class:`Numerics` from the curvature, the policy and the operands.

    The result dtype is the promotion of the floating operands (at least float32); ``c`` must be
    a Python number or a 0-d tensor. Exact mode refuses ``c <= 0`` or non-finite ``c`` (a host
    sync when ``c`` is a tensor).
    """
    ts = _as_tensors(tensors)
    out_dtype = ts[0].dtype
    for t in ts[1:]:
        out_dtype = torch.promote_types(out_dtype, t.dtype)
    if not out_dtype.is_floating_point:
        out_dtype = torch.get_default_dtype()
    mode = resolve_policy(policy, out_dtype)
    dtype = compute_dtype(mode, out_dtype)
    if isinstance(c, Tensor):
        if c.dim() != 0:
            raise ValueError(f"c: expected a float or a 0-d tensor, got shape {tuple(c.shape)}")
        c_val: Curvature = c.to(dtype=dtype, device=ts[0].device)
        if mode == "exact":
            c_host = float(c.detach())
            if not (math.isfinite(c_host) and c_host > 0):
                raise ValueError(f"c: curvature must be positive and finite, got {c_host}")
        sqrt_c: Curvature = torch.sqrt(c_val)  # type: ignore[arg-type]
    else:
        c_val = float(c)
        if not (math.isfinite(c_val) and c_val > 0):
            raise ValueError(f"c: curvature must be positive and finite, got {c_val}")
        sqrt_c = math.sqrt(c_val)
    return Numerics(mode, dtype, out_dtype, c_val, sqrt_c)
