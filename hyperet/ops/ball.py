"""Poincaré-ball operations on torch tensors (curvature :math:`-c`, ball radius :math:`1/\\sqrt c`).

Same names and signatures as :mod:`hyperet.reference`, plus a keyword-only ``policy``
(``None``: ``"exact"`` for float64, ``"train"`` otherwise; see :mod:`hyperet.ops.policy`).
The vector axis is the last one; leading axes broadcast. ``c`` is a float or a 0-d tensor
(differentiable). Notation: :math:`w(x) = 1 - c|x|^2`, :math:`\\lambda_x = 2/w(x)`,
:math:`z = \\sqrt c |x|`, :math:`T(t) = \\tanh(t)/t`, :math:`R(z) = \\operatorname{artanh}(z)/z`.

Every formula is written so that no branch divides by zero (the ratios :math:`T` and :math:`R`
are 1 at 0) and the co-norm :math:`w` is never recomputed from a rounded point when an exact
identity gives it (:math:`w(x \\oplus y) = w(x) w(y) / D(x, y)`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hyperet.ops import _accurate, _fused, _triton, backend
from hyperet.ops._numerics import (
    Curvature,
    Numerics,
    _two_prod,
    _two_sum,
    artanh_ratio,
    dd_div,
    dd_mul,
    dd_sqrt,
    norm_fast,
    norm_scaled,
    setup,
    sum_sq_dd,
    tanh_ratio,
)
from hyperet.ops._validate import check_args, check_matrix, check_scalar
from hyperet.ops.policy import output_ceiling

# ----------------------------------------------------------------------------- cores
# Cores take tensors already cast to the compute dtype, return the compute dtype, never validate.


def mobius_add_core(
    num: Numerics, x: Tensor, wx: Tensor, y: Tensor, wy: Tensor
) -> tuple[Tensor, Tensor]:
    """:math:`x \\oplus y` and its co-norm, in the cancellation-free form.

    .. math::

        x \\oplus y = \\frac{w(x)\\,(x + y) + c|x + y|^2\\,x}{w(x) w(y) + c|x + y|^2},
        \\qquad w(x \\oplus y) = \\frac{w(x) w(y)}{w(x) w(y) + c|x + y|^2}

    (the usual :math:`D = 1 + 2c\\langle x,y\\rangle + c^2|x|^2|y|^2` equals the denominator, a
    sum of nonnegative terms; the numerator's coefficient of :math:`x`,
    :math:`1 + 2c\\langle x, y\\rangle + c|y|^2`, equals :math:`w(x) + c|x+y|^2`).
    """
    s = x + y
    cs2 = num.c * (s * s).sum(dim=-1, keepdim=True)
    den = wx * wy + cs2
    return (wx * s + cs2 * x) / den, (wx * wy) / den


def matvec_core(
    num: Numerics,
    mx: Tensor,
    z: Tensor,
    w: Tensor,
    scale: Tensor | None = None,
    x: Tensor | None = None,
    mx_dd: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """:math:`M \\otimes x` from :math:`Mx` and the point's ``z``, ``w`` (global norms), finished.

    .. math::

        M \\otimes x = \\frac{1}{\\sqrt c}
            \\tanh\\!\\Big(\\frac{|Mx|}{|x|}\\operatorname{artanh}(z)\\Big) \\frac{Mx}{|Mx|}
            = T(t)\\,R(z)\\,Mx, \\qquad t = \\sqrt c\\,|Mx|\\,R(z),

    which has no division: ``x = 0`` and ``Mx = 0`` need no special case. ``scale`` is the
    train-mode projection factor of ``x`` (:meth:`Numerics.point_factors`), folded into the
    per-vector coefficient since :math:`M(sx) = s\\,Mx`. Exact mode, given the point ``x``,
    takes the value from :func:`_accurate.matvec_dd` (double-double, as the reference; from
    ``mx_dd``, the compensated product, when given) and the gradient from this formula. Train
    mode keeps the result inside the output ceiling by clamping ``t`` at
    :math:`\\operatorname{artanh}(z_{out})` (the result's norm is :math:`\\tanh(t)/\\sqrt c`), so
    no second norm of the result is needed.
    """
    r = artanh_ratio(z, w)
    if scale is not None:
        r = r * scale
    if num.exact:
        t = num.sqrt_c * num.norm(mx) * r
        out = tanh_ratio(t) * r * mx
        if x is not None:
            with torch.no_grad():
                lead = torch.broadcast_shapes(mx.shape[:-1], x.shape[:-1])
                mx_d = mx.detach().expand(*lead, mx.shape[-1])
                x_d = x.detach().expand(*lead, x.shape[-1])
                exact_mx = _accurate.dd_of(mx_d) if mx_dd is None else mx_dd
                value = _accurate.matvec_dd(exact_mx, x_d, num.c)
            out = _accurate.attach_gradient(value, out)
        return num.finish(out)
    # |Mx| in the compute dtype: only relative accuracy is needed here
    t = num.sqrt_c * norm_fast(mx) * r
    t_max = math.atanh(output_ceiling(num.out_dtype))
    t_c = torch.clamp_max(t, t_max)
    coef = tanh_ratio(t_c) * (t_max / torch.clamp_min(t, t_max)) * r  # = tanh(t_c)/t * R
    return (coef * mx).to(num.out_dtype)


def expmap0_core(num: Numerics, u: Tensor) -> tuple[Tensor, Tensor]:
    """:math:`\\exp_0(u) = T(s) u` with :math:`s = \\sqrt c |u|`, and its co-norm
    :math:`\\operatorname{sech}^2 s = 4q/(1+q)^2`, :math:`q = e^{-2s}` (no overflow)."""
    s = num.sqrt_c * num.norm(u)
    q = torch.exp(-2.0 * s)
    return tanh_ratio(s) * u, 4.0 * q / ((1.0 + q) * (1.0 + q))


def _train_in_float64(num: Numerics, *tensors: Tensor) -> tuple[Numerics, list[Tensor]]:
    """Train mode below float64: the context and operands in float64, for the ops whose backward
    divides by :math:`D(x, y) = w(x)w(y) + c|x + y|^2` twice (up to :math:`w^{-4}`, which
    float32 cannot hold at the input co-norm floor :math:`2^{-52}`). Results are rounded once to
    the result dtype by ``finish_vector``. Other contexts come back unchanged."""
    if num.exact or num.dtype == torch.float64:
        return num, list(tensors)
    num64 = num.in_float64()
    return num64, [num64.cast(t) for t in tensors]


def _squeeze(t: Tensor) -> Tensor:
    return t.squeeze(-1)


def triton_curvature(num: Numerics, op: str, *tensors: Tensor) -> float | None:
    """The curvature when ``op`` runs on the Triton kernels for these operands as given (train
    policy, a float curvature, :func:`hyperet.ops.backend.resolve`), else ``None``. The kernels
    read half types as they are and compute in float32, so this is asked before any cast."""
    if num.exact or not isinstance(num.c, float):
        return None
    return num.c if backend.resolve(op, *tensors) == "triton" else None


# ----------------------------------------------------------------------------- public ops


def conformal_factor(x: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Conformal factor :math:`\\lambda_x = 2 / (1 - c|x|^2)`, shape ``x.shape[:-1]``."""
    check_args(c, x=x)
    num = setup(c, policy, x)
    x = num.cast(x)
    num.check_points(x=x)
    x, _, w, _ = num.point(x)
    return num.finish_vector(_squeeze(2.0 / w))


def mobius_add(x: Tensor, y: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Möbius addition :math:`x \\oplus y` (see :func:`mobius_add_core` for the formula).

    Both policies return ``y`` bitwise when ``x = 0`` and ``x`` bitwise when ``y = 0`` (in every
    dtype, whatever the train-mode floor would do to the other operand).
    """
    check_args(c, x=x, y=y)
    num = setup(c, policy, x, y)
    if (c_float := triton_curvature(num, "mobius_add", x, y)) is not None:
        return _triton.row_op("mobius_add", c_float, x, y)
    x, y = num.cast(x), num.cast(y)
    num.check_points(x=x, y=y)
    x_in, y_in = x, y  # the exact limits return an operand as given (before any train floor)
    x, _, wx, _ = num.point(x)
    y, _, wy, _ = num.point(y)
    if num.exact:  # the value in double-double, the gradient of the plain formula
        out, _ = mobius_add_core(num, x, wx, y, wy)
        with torch.no_grad():
            xd, yd = (_accurate.dd_of(t.detach()) for t in torch.broadcast_tensors(x, y))
            wxd, wyd = _accurate.conorm_dd(xd[0], num.c), _accurate.conorm_dd(yd[0], num.c)
            value = _accurate.mobius_add_dd(xd, wxd, yd, wyd, num.c)
        out = _accurate.attach_gradient(value[0] + value[1], out)
        return num.finish(_zero_limits(x_in, y_in, out))
    return _zero_limits(x_in, y_in, _mobius_add_train(num, x, wx, y, wy)).to(num.out_dtype)


def _zero_limits(x: Tensor, y: Tensor, out: Tensor) -> Tensor:
    """``y`` where ``x = 0`` and ``x`` where ``y = 0``, bitwise (signed zeros included), with
    the gradient of the formula ``out`` everywhere: the limit's value is exact, but
    :math:`\\partial (x \\oplus y) / \\partial x = (1 + c|y|^2) I - 2c\\,y y^T` at
    :math:`x = 0`, not 0 (a bias initialised at 0 must still learn)."""
    value = torch.where((y == 0).all(dim=-1, keepdim=True), x, out)
    value = torch.where((x == 0).all(dim=-1, keepdim=True), y, value)
    if not out.requires_grad:
        return value
    selected: Tensor = _ValueWithGradOf.apply(value.detach(), out)
    return selected


class _ValueWithGradOf(torch.autograd.Function):
    """``value`` bitwise (no ``+ 0`` that would turn -0 into +0), gradient to ``shadow``."""

    @staticmethod
    def forward(ctx: object, value: Tensor, shadow: Tensor) -> Tensor:
        return value.clone()

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> tuple[None, Tensor]:
        return None, grad


def _mobius_add_train(num: Numerics, x: Tensor, wx: Tensor, y: Tensor, wy: Tensor) -> Tensor:
    """Train mode :math:`x \\oplus y = a\\,(x + y) + b\\,x` with per-vector coefficients in
    float64 (so the quotients by :math:`D \\ge w(x)w(y)` and their backward, up to
    :math:`w^{-4}`, stay finite at the input co-norm floor) and the output ceiling folded in:
    :math:`c|x \\oplus y|^2 = c|x + y|^2 / D` exactly. Returns the compute dtype."""
    s = x + y
    c64 = num.c.double() if isinstance(num.c, Tensor) else num.c
    n_s = norm_fast(s, accumulate_f64=True, keep_f64=True)  # (..., 1) float64
    wx64, wy64 = wx.double(), wy.double()
    cs2 = c64 * n_s * n_s
    den = wx64 * wy64 + cs2
    z_out = output_ceiling(num.out_dtype)
    # the sqrt only sees values >= z_out^2 (double where)
    shrink = z_out / torch.sqrt(torch.clamp_min(cs2 / den, z_out * z_out))
    a = (wx64 * shrink / den).to(x.dtype)
    b = (cs2 * shrink / den).to(x.dtype)
    return a * s + b * x


def mobius_scalar_mul(
    r: Tensor | float, x: Tensor, *, c: Curvature, policy: str | None = None
) -> Tensor:
    """Möbius scalar multiplication :math:`r \\otimes x`.

    .. math::

        r \\otimes x = \\frac{1}{\\sqrt c}\\tanh(r \\operatorname{artanh} z)\\frac{x}{|x|}
                    = T(|r|\\,a)\\; r\\; R(z)\\, x, \\qquad a = \\operatorname{artanh} z.

    ``r`` is a float or a tensor broadcasting against ``x.shape[:-1]``; ``r = 0, 1, -1`` give
    ``0``, ``x``, ``-x`` bitwise.
    """
    check_args(c, x=x)
    check_scalar("r", r, x)
    num = setup(c, policy, x, *([r] if isinstance(r, Tensor) else []))
    x = num.cast(x)
    r_t = (
        num.cast(r).unsqueeze(-1)
        if isinstance(r, Tensor)
        else torch.tensor(float(r), dtype=num.dtype, device=x.device)
    )
    num.check_points(x=x)
    num.check_finite(r=r_t)
    x, z, w, _ = num.point(x)
    rz = artanh_ratio(z, w)
    out = tanh_ratio(r_t.abs() * z * rz) * r_t * rz * x
    if num.exact:  # the value from r x formed exactly (double-double), the gradient from above
        with torch.no_grad():
            rx = _accurate.two_prod_dd(r_t.detach(), x.detach())
            value = _accurate.matvec_dd(rx, x.detach().expand_as(rx[0]), num.c)
        out = _accurate.attach_gradient(value, out)
    out = torch.where(r_t == 1, x, torch.where(r_t == -1, -x, out))
    return num.finish(out)


def mobius_matvec(m: Tensor, x: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Möbius matrix-vector product :math:`M \\otimes x` for a dense ``m`` of shape ``(..., n, d)``
    (see :func:`matvec_core`); result shape ``(..., n)``."""
    check_args(c, x=x)
    check_matrix("m", m, x)
    num = setup(c, policy, m, x)
    m, x = num.cast(m), num.cast(x)
    num.check_points(x=x)
    num.check_finite(m=m)
    if _fused.applies(num) and m.dim() == 2:
        return _fused.matvec(num, "dense", m, x)
    z, w, _, scale = num.point_factors(x)
    mx = x @ m.mT if m.dim() == 2 else (m @ x.unsqueeze(-1)).squeeze(-1)
    mx_dd = _accurate.matmul_dd(m.detach(), x.detach()) if num.exact else None
    return matvec_core(num, mx, z, w, scale, x, mx_dd)


def expmap0(u: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Exponential map at 0, :math:`\\exp_0(u) = \\tanh(s)\\,u/s = T(s)u`, ``s = sqrt(c)|u|``.

    No clamp: :math:`T(s) \\to 1` as :math:`s \\to 0` (Jacobian I at 0) and :math:`T(s) = 1/s`
    once tanh rounds to 1; a result that rounds onto the boundary is kept inside (policy).
    """
    check_args(c, u=u)
    num = setup(c, policy, u)
    if (c_float := triton_curvature(num, "expmap0", u)) is not None:
        return _triton.row_op("expmap0", c_float, u)
    u = num.cast(u)
    num.check_finite(u=u)
    if not num.exact:
        return _expmap0_train(num, u)
    y, _ = expmap0_core(num, u)
    with torch.no_grad():  # the value in double-double: exp_0(u) = 0 (+) p
        value = _accurate.expmap_dd(torch.zeros_like(u), u.detach(), num.c)
    return num.finish(_accurate.attach_gradient(value, y))


def _expmap0_train(num: Numerics, u: Tensor) -> Tensor:
    """Train mode: :math:`k\\,u` with one float64 per-vector coefficient

    .. math::

        k = T(\\min(s, s_{max}))\\,\\frac{s_{max}}{\\max(s, s_{max})}, \\qquad
        s = \\sqrt c|u|,\\quad s_{max} = \\operatorname{artanh} z_{out},

    so the result's norm is :math:`\\min(\\tanh s, z_{out})/\\sqrt c` without a second pass, and
    a saturated point is stored with relative error at most ``eps`` (the rounding of ``k`` and
    of the product)."""
    n = norm_fast(u, accumulate_f64=True, keep_f64=True)  # (..., 1) float64
    sqrt_c = num.sqrt_c.double() if isinstance(num.sqrt_c, Tensor) else num.sqrt_c
    s = sqrt_c * n
    s_max = math.atanh(output_ceiling(num.out_dtype))
    k = tanh_ratio(torch.clamp_max(s, s_max)) * (s_max / torch.clamp_min(s, s_max))
    return (k.to(u.dtype) * u).to(num.out_dtype)


def logmap0(x: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Logarithmic map at the origin,
    :math:`\\log_0(x) = \\operatorname{artanh}(z)\\,x/(\\sqrt c|x|) = R(z)x`."""
    check_args(c, x=x)
    num = setup(c, policy, x)
    if (c_float := triton_curvature(num, "logmap0", x)) is not None:
        return _triton.row_op("logmap0", c_float, x)
    x = num.cast(x)
    num.check_points(x=x)
    z, w, _, scale = num.point_factors(x)
    r = artanh_ratio(z, w)
    out = (r if scale is None else r * scale) * x
    if num.exact:
        with torch.no_grad():
            value = _accurate.logmap0_dd(x.detach(), num.c)
        out = _accurate.attach_gradient(value, out)
    return num.finish_vector(out)


#: expmap: below this hyperbolic half-length the inner point is formed in floats, above it from
#: the double-double unit direction (where it can cancel against x).
_EXPMAP_SPLIT = 0.5
#: expmap: 1 - tanh(s) < 4e-35 beyond this; the gradient path holds s here (no inf * 0).
_EXPMAP_SATURATED = 40.0


def _value_with_grad_of(value: Tensor, shadow: Tensor) -> Tensor:
    """``value`` (computed more accurately, outside autograd) carrying ``shadow``'s gradient:
    ``value + (shadow - shadow)`` is ``value`` bitwise whenever ``shadow`` is finite."""
    if not shadow.requires_grad:
        return value
    return value.detach() + (shadow - shadow.detach())


def _ldexp(t: Tensor, k: Tensor) -> Tensor:
    """``t * 2**k`` exactly (two steps, so that ``2**k`` itself never overflows)."""
    half = torch.div(k, 2, rounding_mode="floor")
    return torch.ldexp(torch.ldexp(t, half), k - half)


def _unit_point_dd(u: Tensor, s: Tensor, x: Tensor, c: Curvature) -> tuple[Tensor, Tensor]:
    """``(x + p, w(p))`` for :math:`p = \\tanh(s)\\,u / (\\sqrt c |u|)` (float64, no autograd).

    ``p`` is formed in double-double - ``u/|u|`` from the compensated sum of squares of ``u``
    scaled by a power of 2, :math:`\\tanh s = 1 - m` with :math:`m = 2q/(1+q)`,
    :math:`q = e^{-2s}` (``s`` may be inf) - and added to ``x`` exactly before the one rounding,
    so ``x + p`` keeps its relative accuracy when ``p`` points back at ``x`` from the boundary.
    The co-norm is :math:`1 - \\tanh^2 s = m (2 - m)`. Rows with ``u = 0`` are not meaningful.
    """
    _, e = torch.frexp(u.abs().amax(dim=-1, keepdim=True))
    v = _ldexp(u, -e)  # (..., d), exact, |v_i| < 1
    hi, lo = sum_sq_dd(v)
    hi = torch.where(hi > 0, hi, torch.ones_like(hi))  # zero rows: masked by the caller
    q = torch.exp(-2.0 * s)
    m = 2.0 * q / (1.0 + q)
    one = torch.ones_like(m)
    c_t = c.detach() if isinstance(c, Tensor) else torch.tensor(c, dtype=u.dtype, device=u.device)
    sqrt_c = dd_sqrt((c_t.expand_as(m), torch.zeros_like(m)))
    f = dd_div(_two_sum(one, -m), dd_mul(sqrt_c, dd_sqrt((hi, lo))))  # tanh(s) / (sqrt(c)|v|)
    p_hi, p_err = _two_prod(f[0], v)
    p_lo = p_err + f[1] * v
    a, b = _two_sum(x, p_hi)  # x + p_hi = a + b exactly
    return a + (b + p_lo), m * (2.0 - m)


def expmap_core(num: Numerics, x: Tensor, wx: Tensor, u: Tensor) -> Tensor:
    """:math:`x \\oplus \\exp_0(u / w(x))` in float64 (``x``, ``wx``, ``u`` float64), unfinished.

    With :math:`s = \\sqrt c |u| / w(x)` and :math:`p = \\exp_0(u / w(x))`
    (co-norm :math:`w(p) = \\operatorname{sech}^2 s`), the cancellation-free addition

    .. math::

        x \\oplus p = \\frac{w(x)\\,(x + p) + c|x + p|^2\\,x}{w(x)\\,w(p) + c|x + p|^2}

    needs only ``x + p`` to full relative accuracy. For :math:`s < 1/2`,
    :math:`p = T(s)\\,u / w(x)` in floats (``|p|`` is small). Beyond, ``p`` lies near the
    boundary and may cancel against ``x`` (a tangent pointing back at the origin from near the
    boundary), so ``x + p`` is formed from a double-double ``p`` (:func:`_unit_point_dd`);
    ``u / w(x)`` is never formed, so ``|u| = 1e300`` at ``w(x) = 1e-16`` is fine. The gradient
    is the one of the plain float formula, with ``s`` held at :data:`_EXPMAP_SATURATED` where
    ``tanh`` is 1 to 4e-35.
    """
    sqrt_c = num.sqrt_c
    n_u = norm_scaled(u)  # (..., 1)
    with torch.no_grad():
        s_val = sqrt_c * n_u.detach() / wx.detach()  # may overflow to inf
        big = s_val >= _EXPMAP_SPLIT
        sat = s_val > _EXPMAP_SATURATED
        sum_big, w_p_big = _unit_point_dd(torch.where(big, u, 1.0), s_val, x.detach(), num.c)
    # floats: small rows (and the gradient of every row), each branch fed only its own range
    n_small = torch.where(big, 0.0, n_u)
    s_small = sqrt_c * n_small / wx
    p_small = tanh_ratio(s_small) * torch.where(big, 0.0, u) / wx
    s_big = torch.where(sat, _EXPMAP_SATURATED, sqrt_c * torch.where(sat, 0.0, n_u) / wx)
    p_big = torch.tanh(s_big) / sqrt_c * (u / torch.where(big, n_u, 1.0))
    s_any = torch.where(big, s_big, s_small)
    q = torch.exp(-2.0 * s_any)
    w_p_shadow = 4.0 * q / ((1.0 + q) * (1.0 + q))
    sum_shadow = x + torch.where(big, p_big, p_small)
    with torch.no_grad():
        sum_val = torch.where(big, sum_big, sum_shadow)
        w_p_val = torch.where(big, w_p_big, w_p_shadow)
    xp = _value_with_grad_of(sum_val, sum_shadow)  # x + p
    w_p = _value_with_grad_of(w_p_val, w_p_shadow)
    cs2 = num.c * (xp * xp).sum(dim=-1, keepdim=True)
    return (wx * xp + cs2 * x) / (wx * w_p + cs2)


def expmap(x: Tensor, u: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Exponential map :math:`\\exp_x(u) = x \\oplus \\exp_0(\\lambda_x u / 2)`, with
    :math:`\\lambda_x u/2 = u / w(x)` (see :func:`expmap_core`).

    Computed in float64 in both modes (train mode too: ``x + p`` cancels for a tangent pointing
    back at the origin, which float32 cannot resolve); train mode then rounds the result once to
    the input's dtype within the output ceiling.
    """
    check_args(c, x=x, u=u)
    num = setup(c, policy, x, u)
    x, u = num.cast(x), num.cast(u)
    num.check_points(x=x)
    num.check_finite(u=u)
    x, _, wx, _ = num.point(x)
    num64 = num.in_float64()
    out = expmap_core(num64, num64.cast(x), num64.cast(wx), num64.cast(u))
    if num.exact:  # the value in double-double, the gradient of expmap_core
        with torch.no_grad():
            xb, ub = torch.broadcast_tensors(x.detach(), u.detach())
            value = _accurate.expmap_dd(xb, ub, num.c)
        out = _accurate.attach_gradient(value, out)
    return num.finish(out)


def logmap(x: Tensor, y: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Logarithmic map :math:`\\log_x(y) = w(x)\\, R(z_v)\\, v` with :math:`v = (-x) \\oplus y`.

    :math:`v` comes from the cancellation-free addition (so :math:`y - x` is formed exactly for
    nearby points) and its co-norm from the identity :math:`w(v) = w(x) w(y) / D`.
    """
    check_args(c, x=x, y=y)
    num = setup(c, policy, x, y)
    x, y = num.cast(x), num.cast(y)
    num.check_points(x=x, y=y)
    num, (x, y) = _train_in_float64(num, x, y)
    x, _, wx, _ = num.point(x)
    y, _, wy, _ = num.point(y)
    v, wv = mobius_add_core(num, -x, wx, y, wy)
    zv = num.sqrt_c * num.norm(v)
    out = wx * artanh_ratio(zv, wv) * v
    if num.exact:  # the value in double-double, the gradient of the formula above
        with torch.no_grad():
            xb, yb = torch.broadcast_tensors(x.detach(), y.detach())
            value = _accurate.logmap_dd(xb, yb, num.c)
        out = _accurate.attach_gradient(value, out)
    return num.finish_vector(out)


def dist_core(num: Numerics, diff_norm: Tensor, wx: Tensor, wy: Tensor) -> Tensor:
    """:math:`d = \\frac{1}{\\sqrt c}\\operatorname{arcosh}(1 + q^2)
    = \\frac{1}{\\sqrt c}\\operatorname{log1p}\\big(q^2 + q\\sqrt{q^2 + 2}\\big)`,
    :math:`q = \\sqrt c\\,|x - y|\\sqrt{2 / (w(x) w(y))}` (no cancellation, no underflow of
    :math:`|x-y|^2` for tiny differences, gradient 0 rather than NaN at ``x = y``). Train mode
    takes :math:`\\sqrt{2/w(x)}` and :math:`1/\\sqrt{w(y)}` separately: the backward of
    ``2 / (w(x) w(y))`` would form :math:`w^{-4}`, which overflows float32 at the input co-norm
    floor."""
    if num.exact:
        q = num.sqrt_c * diff_norm * torch.sqrt(2.0 / (wx * wy))
    else:
        q = num.sqrt_c * diff_norm * torch.sqrt(2.0 / wx) * torch.rsqrt(wy)
    return torch.log1p(q * q + q * torch.sqrt(q * q + 2.0)) / num.sqrt_c


def dist(x: Tensor, y: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Geodesic distance, shape of the broadcast leading axes (see :func:`dist_core`).

    .. math::

        d(x, y) = \\frac{1}{\\sqrt c}
            \\operatorname{arcosh}\\Big(1 + \\frac{2c|x - y|^2}{w(x) w(y)}\\Big)
    """
    check_args(c, x=x, y=y)
    num = setup(c, policy, x, y)
    if (c_float := triton_curvature(num, "dist", x, y)) is not None:
        return _triton.row_op("dist", c_float, x, y)
    x, y = num.cast(x), num.cast(y)
    num.check_points(x=x, y=y)
    x, _, wx, _ = num.point(x)
    y, _, wy, _ = num.point(y)
    out = _squeeze(dist_core(num, num.norm(x - y), wx, wy))
    if num.exact:
        with torch.no_grad():
            xb, yb = torch.broadcast_tensors(x.detach(), y.detach())
            value = _accurate.dist_dd(xb, yb, num.c)
        out = _accurate.attach_gradient(value, out)
    return num.finish_vector(out)


def dist0(x: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Distance to the origin (the hyperbolic radius)
    :math:`\\mathrm{Rad}(x) = \\frac{2}{\\sqrt c}\\operatorname{artanh}(\\sqrt c|x|) = 2|x|R(z)`."""
    check_args(c, x=x)
    num = setup(c, policy, x)
    x = num.cast(x)
    num.check_points(x=x)
    x, z, w, n = num.point(x)
    out = _squeeze(2.0 * n * artanh_ratio(z, w))
    if num.exact:
        with torch.no_grad():
            value = _accurate.dist0_dd(x.detach(), num.c)
        out = _accurate.attach_gradient(value, out)
    return num.finish_vector(out)


def gyration_core(num: Numerics, a: Tensor, wa: Tensor, b: Tensor, wb: Tensor, z: Tensor) -> Tensor:
    """:math:`\\operatorname{gyr}[a, b]z = z + 2(\\alpha a + \\beta b)/D(a, b)` with

    .. math::

        \\alpha = -c^2\\langle a,z\\rangle|b|^2 + c\\langle b,z\\rangle
                  + 2c^2\\langle a,b\\rangle\\langle b,z\\rangle,\\qquad
        \\beta = -c^2\\langle b,z\\rangle|a|^2 - c\\langle a,z\\rangle,

    and :math:`D(a, b) = w(a)w(b) + c|a + b|^2` (cancellation-free).
    """
    c = num.c
    aa = (a * a).sum(dim=-1, keepdim=True)
    bb = (b * b).sum(dim=-1, keepdim=True)
    ab = (a * b).sum(dim=-1, keepdim=True)
    az = (a * z).sum(dim=-1, keepdim=True)
    bz = (b * z).sum(dim=-1, keepdim=True)
    s = a + b
    den = wa * wb + c * (s * s).sum(dim=-1, keepdim=True)
    alpha = c * bz + c * c * (2.0 * ab * bz - az * bb)
    beta = -c * az - c * c * bz * aa
    return z + 2.0 * (alpha * a + beta * b) / den


def gyration(a: Tensor, b: Tensor, z: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Gyration
    :math:`\\operatorname{gyr}[a, b]z = -(a \\oplus b) \\oplus (a \\oplus (b \\oplus z))`,
    a linear isometry applied to the vector ``z`` (see :func:`gyration_core`)."""
    check_args(c, a=a, b=b, z=z)
    num = setup(c, policy, a, b, z)
    a, b, z = num.cast(a), num.cast(b), num.cast(z)
    num.check_points(a=a, b=b)
    num.check_finite(z=z)
    num, (a, b, z) = _train_in_float64(num, a, b, z)
    a, _, wa, _ = num.point(a)
    b, _, wb, _ = num.point(b)
    out = gyration_core(num, a, wa, b, wb, z)
    if num.exact:
        out = _accurate.attach_gradient(_gyration_value(num, a, b, z), out)
    return num.finish_vector(out)


def _gyration_value(
    num: Numerics, a: Tensor, b: Tensor, z: Tensor, *, times_conorm_ratio: bool = False
) -> Tensor:
    """Exact mode: :math:`\\operatorname{gyr}[a, b]z` in double-double
    (:func:`_accurate.gyration_dd`), times :math:`w(a)/w(b)` for transport, rounded once.
    ``z`` is scaled by a power of two when its size is extreme (as in the reference)."""
    with torch.no_grad():
        a, b, z = (t.detach() for t in torch.broadcast_tensors(a, b, z))
        _, k = torch.frexp(z.abs().amax(dim=-1, keepdim=True))
        k = torch.where(k.abs() > 500, k, 0)
        wa, wb = _accurate.conorm_dd(a, num.c), _accurate.conorm_dd(b, num.c)
        g = _accurate.gyration_dd(a, b, wa, wb, _ldexp(z, -k), num.c)
        if times_conorm_ratio:
            g = dd_mul(g, _accurate.dd_col(dd_div(wa, wb)))
        return _ldexp(g[0] + g[1], k)


def transport(
    x: Tensor, y: Tensor, v: Tensor, *, c: Curvature, policy: str | None = None
) -> Tensor:
    """Parallel transport of ``v`` from :math:`T_x` to :math:`T_y`:
    :math:`P_{x \\to y}(v) = \\operatorname{gyr}[y, -x]\\,v\\;\\lambda_x/\\lambda_y`,
    with :math:`\\lambda_x/\\lambda_y = w(y)/w(x)`."""
    check_args(c, x=x, y=y, v=v)
    num = setup(c, policy, x, y, v)
    x, y, v = num.cast(x), num.cast(y), num.cast(v)
    num.check_points(x=x, y=y)
    num.check_finite(v=v)
    num, (x, y, v) = _train_in_float64(num, x, y, v)
    x, _, wx, _ = num.point(x)
    y, _, wy, _ = num.point(y)
    out = gyration_core(num, y, wy, -x, wx, v) * (wy / wx)
    if num.exact:
        value = _gyration_value(num, y, -x, v, times_conorm_ratio=True)
        out = _accurate.attach_gradient(value, out)
    return num.finish_vector(out)


def project(x: Tensor, *, c: Curvature, eps: float, policy: str | None = None) -> Tensor:
    """Radial projection into the closed ball of radius :math:`(1 - \\epsilon)/\\sqrt c`:
    ``x`` itself when :math:`\\sqrt c|x| \\le 1 - \\epsilon`, else
    :math:`x (1 - \\epsilon)/(\\sqrt c|x|)`; ``0 <= eps < 1``. The explicit clamp of both
    policies; like every returned point, the result is strictly inside the ball (``eps = 0``
    maps points on or outside it to the nearest interior point in their direction)."""
    if not 0 <= eps < 1:
        raise ValueError(f"eps: must satisfy 0 <= eps < 1, got {eps}")
    check_args(c, x=x)
    num = setup(c, policy, x)
    x = num.cast(x)
    num.check_finite(x=x)
    z = num.sqrt_c * num.norm(x)
    limit = 1.0 - eps
    out = x * (limit / torch.clamp_min(z, limit))  # no division by zero (double where)
    return num.finish(torch.where(z > limit, out, x))
