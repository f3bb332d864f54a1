"""Train-mode Möbius matrix-vector product with an analytic backward (dense or structured).

:math:`M \\otimes x = k\\,Mx` with one per-vector coefficient :math:`k(|x|, |Mx|)`, so the
forward needs the product, two norms and one scaling pass, and the backward needs one dot
product :math:`a = \\langle g, Mx\\rangle`, the transposed product and two fused
multiply-adds - instead of autograd's dozen elementwise passes over the activations. The
per-vector scalars (``(N, 1)``) are computed in float64, so the only roundings of the result
are those of ``k`` and of the final product: a saturated point has
:math:`\\sqrt c|y| = z_{out}(1 + \\rho)` with :math:`|\\rho| \\le \\epsilon` of the result dtype.

With :math:`z = \\sqrt c|x|`, :math:`w = 1 - z^2`, :math:`R = \\operatorname{artanh}(z)/z`,
:math:`m = |Mx|` and :math:`t = \\sqrt c\\,m\\,R`:

.. math::

    k = \\frac{\\tanh t}{\\sqrt c\\,m} = T(t)\\,R \\quad (t < t_{max}), \\qquad
    k = \\frac{\\tanh t_{max}}{\\sqrt c\\,m} \\quad (t \\ge t_{max}),

    \\frac{\\partial \\ln k}{\\partial m} = \\frac{\\varrho - 1}{m}, \\qquad
    \\frac{\\partial \\ln k}{\\partial |x|} = \\varrho\\,c\\,|x|\\,\\psi(z), \\qquad
    \\varrho = \\frac{2t}{\\sinh 2t}\\ (0 \\text{ when saturated}), \\quad
    \\psi(z) = \\frac{z / (w \\operatorname{artanh} z) - 1}{z^2},

hence, with :math:`a = \\langle g, Mx\\rangle`,

.. math::

    \\bar{Mx} = k\\,g + k\\,a\\,\\frac{\\varrho - 1}{m^2}\\,Mx, \\qquad
    \\bar x = M^T \\bar{Mx} + k\\,a\\,\\varrho\\,c\\,\\psi(z)\\,x .

A point projected onto the input co-norm floor (train policy) has :math:`k \\propto 1/|x|` at
fixed :math:`|x|_{eff}`: its :math:`\\partial \\ln k / \\partial |x|` is :math:`-\\varrho/|x|`.
Tested against autograd through the plain formula and gradcheck in float64
(``tests/ops/test_ops_fused.py``).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperet.ops import _native, _triton, backend
from hyperet.ops._numerics import Numerics, artanh_ratio, tanh_ratio
from hyperet.ops.policy import input_conorm_floor, output_ceiling

KINDS: tuple[str, ...] = ("dense", "diagonal", "block", "banded")

#: Below this argument the ratios chi and psi use their Taylor series.
_SERIES_BELOW = 2.0**-9


# ----------------------------------------------------------------------------- products


def apply(kind: str, param: Tensor, x: Tensor) -> Tensor:
    """:math:`Mx` for ``x`` of shape ``(N, d)``."""
    if kind == "dense":
        return x @ param.mT
    if kind == "diagonal":
        return x * param
    if kind == "block":
        nb, b, _ = param.shape
        xb = x.reshape(-1, nb, b).permute(1, 2, 0)  # (nb, b, N)
        return torch.bmm(param, xb).permute(2, 0, 1).reshape(x.shape).contiguous()
    width, d = param.shape
    k = (width - 1) // 2
    xp = F.pad(x, (k, k))  # (N, d + 2k)
    out = param[0] * xp[:, 0:d]
    for j in range(1, width):
        out = torch.addcmul(out, param[j], xp[:, j : j + d])
    return out


def apply_transposed(kind: str, param: Tensor, g: Tensor) -> Tensor:
    """:math:`M^T g` for ``g`` of shape ``(N, d)``; may overwrite ``g`` (the diagonal does)."""
    if kind == "dense":
        return g @ param
    if kind == "diagonal":
        return g.mul_(param)
    if kind == "block":
        nb, b, _ = param.shape
        gb = g.reshape(-1, nb, b).permute(1, 2, 0)  # (nb, b, N)
        return torch.bmm(param.mT, gb).permute(2, 0, 1).reshape(g.shape).contiguous()
    # (M^T g)_l = sum_j bands[j, l - j + k] g_{l - j + k}: shifted slices of bands[j] * g
    width, d = param.shape
    k = (width - 1) // 2
    gp = F.pad(g, (k, k))  # (N, d + 2k): gp[i + k] = g_i
    bp = F.pad(param, (k, k))  # (width, d + 2k)
    out = bp[0, 2 * k : 2 * k + d] * gp[:, 2 * k : 2 * k + d]
    for j in range(1, width):
        lo = 2 * k - j
        out.addcmul_(bp[j, lo : lo + d], gp[:, lo : lo + d])
    return out


def param_grad(kind: str, param: Tensor, gmx: Tensor, x: Tensor) -> Tensor:
    """Gradient of :math:`\\sum \\langle gmx, Mx\\rangle` with respect to the parameters."""
    if kind == "dense":
        return gmx.mT @ x
    if kind == "diagonal":
        return torch.linalg.vecdot(gmx, x, dim=0)
    if kind == "block":
        nb, b, _ = param.shape
        gb = gmx.reshape(-1, nb, b).permute(1, 2, 0)  # (nb, b, N)
        xb = x.reshape(-1, nb, b).permute(1, 0, 2)  # (nb, N, b)
        return torch.bmm(gb, xb)  # (nb, b, b)
    width, d = param.shape
    k = (width - 1) // 2
    xp = F.pad(x, (k, k))
    rows = [torch.linalg.vecdot(gmx, xp[:, j : j + d], dim=0) for j in range(width)]
    return torch.stack(rows)  # entries outside the matrix see the zero padding: gradient 0


# ----------------------------------------------------------------------------- ratios


def _chi(t: Tensor) -> Tensor:
    """:math:`(2t/\\sinh 2t - 1)/t^2` (series :math:`-2/3 + 14t^2/45` below ``2**-9``)."""
    small = t < _SERIES_BELOW
    ts = torch.where(small, torch.ones_like(t), t)
    direct = (2.0 * ts / torch.sinh(2.0 * ts) - 1.0) / (ts * ts)
    return torch.where(small, -2.0 / 3.0 + 14.0 / 45.0 * t * t, direct)


def _psi(z: Tensor, w: Tensor, r: Tensor) -> Tensor:
    """:math:`(z/(w\\operatorname{artanh} z) - 1)/z^2 = (1/(wR) - 1)/z^2` (series
    :math:`2/3 + 26z^2/45` below ``2**-9``)."""
    small = z < _SERIES_BELOW
    zs = torch.where(small, torch.ones_like(z), z)
    direct = (1.0 / (w * r) - 1.0) / (zs * zs)
    return torch.where(small, 2.0 / 3.0 + 26.0 / 45.0 * z * z, direct)


# ----------------------------------------------------------------------------- the function


class _MatvecTrain(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        kind: str,
        param: Tensor,
        x: Tensor,
        c: float,
        w_min: float,
        t_max: float,
    ) -> Tensor:
        sqrt_c = math.sqrt(c)
        n = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float64)  # (N, 1)
        w = 1.0 - c * n * n
        below = w < w_min  # on or beyond the boundary: projected radially onto w = w_min
        n_below = torch.where(below, n, 1.0)  # > 0 where used
        scale = torch.where(below, math.sqrt(1.0 - w_min) / (sqrt_c * n_below), 1.0)
        w = w.clamp_min(w_min)
        z = sqrt_c * n * scale
        r = artanh_ratio(z, w) * scale  # R(z_eff) times the projection factor
        mx = apply(kind, param, x)  # (N, d), a new tensor
        m = torch.linalg.vector_norm(mx, dim=-1, keepdim=True, dtype=torch.float64)
        t = sqrt_c * m * r
        sat = t >= t_max
        m_safe = torch.where(sat, m, 1.0)
        k = torch.where(sat, math.tanh(t_max) / (sqrt_c * m_safe), tanh_ratio(t) * r)  # > 0
        y = mx.mul_(k.to(x.dtype))  # in place: the backward recovers Mx = y / k
        ctx.kind, ctx.c = kind, c
        ctx.save_for_backward(param, x, y, k, t, sat, below, n, z, w, r, m_safe)
        return y

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        param, x, y, k, t, sat, below, n, z, w, r, m_safe = ctx.saved_tensors
        kind, c = ctx.kind, ctx.c
        dt = x.dtype
        a = torch.linalg.vecdot(g, y).unsqueeze(-1).to(torch.float64) / k  # <g, Mx>, (N, 1)
        ka = k * a
        chi = _chi(t)
        rho = torch.where(sat, 0.0, 1.0 + chi * t * t)
        alpha = a * torch.where(sat, -1.0 / (m_safe * m_safe), chi * c * r * r)  # on y = k Mx
        n_below = torch.where(below, n, 1.0)
        # valid rows: r = R(z); projected rows: d ln k / d|x| = -rho / |x|
        beta = ka * torch.where(below, -rho / (n_below * n_below), rho * c * _psi(z, w, r))
        gmx = (g * k.to(dt)).addcmul_(y, alpha.to(dt))  # gradient of Mx, (N, d)
        grad_x = grad_p = None
        if ctx.needs_input_grad[1]:
            grad_p = param_grad(kind, param, gmx, x)
        if ctx.needs_input_grad[2]:
            grad_x = apply_transposed(kind, param, gmx).addcmul_(x, beta.to(dt))
        return None, grad_p, grad_x, None, None, None


@functools.cache
def train_limits(dtype: torch.dtype) -> tuple[float, float]:
    """The train policy's input co-norm floor and output saturation point of ``dtype``:
    ``(input_conorm_floor(dtype), artanh(output_ceiling(dtype)))`` (computed once per dtype)."""
    return input_conorm_floor(dtype), math.atanh(output_ceiling(dtype))


def applies(num: Numerics) -> bool:
    """Whether :func:`matvec` serves this call: train mode with a fixed (float) curvature
    (callers also require unbatched parameters)."""
    return not num.exact and isinstance(num.c, float)


def matvec(num: Numerics, kind: str, param: Tensor, x: Tensor) -> Tensor:
    """Train-mode :math:`M \\otimes x` for ``x`` ``(..., d)`` (in the compute dtype, or a half
    type that Triton reads as it is; others are cast here) and an unbatched ``param``, returned
    in the result dtype (module docstring). Same values as
    :func:`hyperet.ops.ball.matvec_core` up to rounding. Runs on the backend
    :func:`hyperet.ops.backend.resolve` picks (eager: :class:`_MatvecTrain`; native C or
    Triton kernels with the same formulas)."""
    assert isinstance(num.c, float)
    w_min, t_max = train_limits(num.out_dtype)
    flat = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])  # (N, d); no view node for 2-D x
    if x.dtype != num.dtype or param.dtype != num.dtype:  # half types, not yet cast
        if backend.resolve(f"matvec:{kind}", flat, param) == "triton":  # read as they are
            half: Tensor = _triton.TritonMatvec.apply(kind, param, flat, num.c, w_min, t_max)
            return half.reshape(*x.shape[:-1], half.shape[-1])
        param, x = num.cast(param), num.cast(x)
        flat = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
    chosen = backend.resolve(f"matvec:{kind}", flat, param)
    if chosen == "native":  # any leading shape: no view nodes around the one C call
        native: Tensor = _native.NativeMatvec.apply(kind, param, x, num.c, w_min, t_max)
        return native
    if chosen == "triton":
        fn: Any = _triton.TritonMatvec
    else:
        fn = _MatvecTrain
    out: Tensor = fn.apply(kind, param, flat, num.c, w_min, t_max)
    return out.reshape(*x.shape[:-1], out.shape[-1]).to(num.out_dtype)
