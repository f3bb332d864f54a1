"""Exact-mode kernels in double-double: values as accurate as :mod:`hyperet.reference`.

Private to :mod:`hyperet.ops`. Each kernel computes a VALUE (float64 tensors, no autograd);
the public op attaches the gradient of its plain float formula with
:func:`attach_gradient`, so exact mode stays differentiable with the same backward as before
while its forward error against the exact value drops below the 4-ulp contract without the
conditioning allowance (``tests/ops/test_ops_exact_accuracy.py``). Train mode never uses them.

Pieces (the reference's algorithms, written for torch):

- :func:`sum_dd`, :func:`dot_dd`: sums and inner products along the last axis to about
  ``2**-104`` of the sum of absolute terms (two error-free extractions, Rump-Ogita-Oishi);
- :func:`conorm_dd`: :math:`w(x) = 1 - c|x|^2` as a double-double;
- :func:`gyration_dd`: :math:`\\operatorname{gyr}[a, b]z` as the rotation of the plane of
  ``a``, ``b`` (no cancellation: ``gyr[a, -a]`` is exactly the identity);
- :func:`tanh_dd`: :math:`\\tanh s` to about ``2**-100`` relative for :math:`0 \\le s < 1`
  (Taylor series after halving, then doubling in double-double).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hyperet.ops._numerics import (
    DD,
    _fast_two_sum,
    _two_prod,
    _two_sum,
    dd_div,
    dd_mul,
    dd_sqrt,
    sum_sq_dd,
)


def attach_gradient(value: Tensor, shadow: Tensor) -> Tensor:
    """``value`` (computed more accurately, outside autograd) carrying ``shadow``'s gradient:
    ``value + (shadow - shadow)`` is ``value`` bitwise whenever ``shadow`` is finite."""
    if not shadow.requires_grad:
        return value.detach()
    return value.detach() + (shadow - shadow.detach())


# ----------------------------------------------------------------------------- arithmetic


def dd_add(a: DD, b: DD) -> DD:
    """``a + b`` in double-double."""
    s, e = _two_sum(a[0], b[0])
    return _fast_two_sum(s, e + (a[1] + b[1]))


def dd_neg(a: DD) -> DD:
    return -a[0], -a[1]


def dd_of(t: Tensor) -> DD:
    """A float tensor as a double-double."""
    return t, torch.zeros_like(t)


def two_prod_dd(a: Tensor, b: Tensor) -> DD:
    """``a * b`` exactly, as a double-double (operands broadcast)."""
    return _two_prod(*torch.broadcast_tensors(a, b))


def dd_col(a: DD) -> DD:
    """Add a trailing axis (a per-vector double-double scales a vector)."""
    return a[0].unsqueeze(-1), a[1].unsqueeze(-1)


def _extract(t: Tensor) -> tuple[Tensor, Tensor]:
    """Exact sum of the high parts of ``t`` (last axis) and the remainders (signed terms)."""
    d = t.shape[-1]
    _, exponent = torch.frexp(t.abs().amax(dim=-1, keepdim=True))
    sigma = torch.ldexp(torch.ones_like(t[..., :1]), exponent + max(1, math.ceil(math.log2(d))))
    q = (sigma + t) - sigma
    return q.sum(dim=-1), t - q


def sum_dd(t: Tensor) -> DD:
    """:math:`\\sum_i t_i` along the last axis as a double-double (drops the axis)."""
    s1, r1 = _extract(t)
    s2, r2 = _extract(r1)
    hi, lo = _two_sum(s1, s2)
    return _fast_two_sum(hi, lo + r2.sum(dim=-1))


def dot_dd(a: Tensor, b: Tensor) -> DD:
    """:math:`\\langle a, b\\rangle` along the last axis in double-double (operands broadcast)."""
    a, b = torch.broadcast_tensors(a, b)
    p, e = _two_prod(a, b)
    return sum_dd(torch.cat([p, e], dim=-1))


def dot_dd_dd(a: DD, b: DD) -> DD:
    """Inner product of two double-double vectors (``lo * lo`` dropped)."""
    p, e = _two_prod(*torch.broadcast_tensors(a[0], b[0]))
    cross = (a[0] * b[1] + a[1] * b[0]).expand_as(p)
    return sum_dd(torch.cat([p, e, cross], dim=-1))


def c_dd(c: Tensor | float, like: Tensor) -> DD:
    """The curvature as a double-double broadcastable against ``like`` (per-vector)."""
    ct = c.detach() if isinstance(c, Tensor) else torch.tensor(c, dtype=like.dtype)
    return dd_of(ct.to(like).expand_as(like))


def conorm_dd(x: Tensor, c: Tensor | float) -> DD:
    """:math:`w(x) = 1 - c|x|^2` (drops the vector axis) as a double-double."""
    hi, lo = sum_sq_dd(x)
    hi, lo = hi.squeeze(-1), lo.squeeze(-1)
    cc = c_dd(c, hi)[0]
    ch, ce = _two_prod(cc, hi)
    s, e = _two_sum(torch.ones_like(ch), -ch)
    return _fast_two_sum(s, e - (ce + cc * lo))


def c_sumsq_dd(v: DD, c: Tensor | float) -> DD:
    """:math:`c|v|^2` of a double-double vector (drops the vector axis)."""
    s = dot_dd_dd(v, v)
    return dd_mul(c_dd(c, s[0]), s)


# ----------------------------------------------------------------------------- gyration


def gyration_dd(a: Tensor, b: Tensor, wa: DD, wb: DD, z: Tensor, c: Tensor | float) -> DD:
    """:math:`\\operatorname{gyr}[a, b]z` (float64 ``a``, ``b``, ``z`` broadcast to one shape;
    per-vector co-norms ``wa``, ``wb``) as a double-double vector.

    With :math:`b_\\perp = b - (\\langle a,b\\rangle/|a|^2)\\,a`,
    :math:`2P = w(a) + w(b) + c|a+b|^2` and :math:`D = w(a)w(b) + c|a+b|^2`,

    .. math::
        \\operatorname{gyr}[a,b]z = z + \\frac{2}{D}\\Big(
            cP\\,(\\langle z,b_\\perp\\rangle a - \\langle z,a\\rangle b_\\perp)
            - c^2|b_\\perp|^2\\langle z,a\\rangle a
            - c^2|a|^2\\langle z,b_\\perp\\rangle b_\\perp\\Big).
    """
    a2 = dot_dd(a, a)
    has_a = a2[0] > 0
    one = torch.ones_like(a2[0])
    t = dd_div(dot_dd(a, b), (torch.where(has_a, a2[0], one), torch.where(has_a, a2[1], 0.0)))
    t = (torch.where(has_a, t[0], 0.0), torch.where(has_a, t[1], 0.0))
    ad = dd_of(a)
    bp = dd_add(dd_of(b), dd_neg(dd_mul(dd_col(t), ad)))  # b_perp, (..., d)
    bp2 = dot_dd_dd(bp, bp)
    q = c_sumsq_dd(dd_add(ad, dd_of(b)), c)
    two_p = dd_add(dd_add(wa, wb), q)
    den = dd_add(dd_mul(wa, wb), q)
    za = dot_dd(z, a)
    zb = dot_dd_dd(dd_of(z), bp)
    cc = c_dd(c, za[0])
    c2 = _fast_two_sum(*_two_prod(cc[0], cc[0]))
    cp = dd_mul(cc, (0.5 * two_p[0], 0.5 * two_p[1]))  # c P
    coef_a = dd_add(dd_neg(dd_mul(c2, dd_mul(bp2, za))), dd_mul(cp, zb))
    coef_b = dd_neg(dd_add(dd_mul(c2, dd_mul(a2, zb)), dd_mul(cp, za)))
    shift = dd_add(dd_mul(dd_col(coef_a), ad), dd_mul(dd_col(coef_b), bp))
    shift = dd_div((2.0 * shift[0], 2.0 * shift[1]), dd_col(den))
    return dd_add(dd_of(z), shift)


# ----------------------------------------------------------------------------- tanh

#: tanh_dd halves its argument this many times (s / 2**6 < 1/64 for s < 1).
_HALVINGS = 6
#: Taylor coefficients of tanh(a)/a in a^2 as exact fractions, enough for |a| < 1/64 to
#: 2**-106 (the next term).
_TANH_SERIES = (
    (1, 1),
    (-1, 3),
    (2, 15),
    (-17, 315),
    (62, 2835),
    (-1382, 155925),
    (21844, 6081075),
    (-929569, 638512875),
)


def _coef_dd(k: int, like: Tensor) -> DD:
    """The k-th series coefficient as a double-double shaped like ``like``."""
    num, den = (torch.full_like(like, float(v)) for v in _TANH_SERIES[k])
    return dd_div(dd_of(num), dd_of(den))


def tanh_dd(s: Tensor) -> DD:
    """:math:`\\tanh s` for :math:`0 \\le s < 1` as a double-double (relative ``~2**-100``).

    :math:`a = s/2^6`; :math:`\\tanh a = a\\sum_k c_k a^{2k}` (8 terms, the next below
    ``2**-110``); then six doublings :math:`\\tanh 2a = 2\\tanh a / (1 + \\tanh^2 a)`.
    """
    a = torch.ldexp(s, torch.tensor(-_HALVINGS))
    a2 = _fast_two_sum(*_two_prod(a, a))
    acc = _coef_dd(len(_TANH_SERIES) - 1, s)
    for k in range(len(_TANH_SERIES) - 2, -1, -1):
        acc = dd_add(dd_mul(acc, a2), _coef_dd(k, s))
    t = dd_mul(acc, dd_of(a))
    one = dd_of(torch.ones_like(s))
    for _ in range(_HALVINGS):
        t = dd_div((2.0 * t[0], 2.0 * t[1]), dd_add(one, dd_mul(t, t)))
    return t


# ----------------------------------------------------------------------------- Möbius addition


def mobius_add_parts(x: DD, wx: DD, y: DD, wy: DD, c: Tensor | float) -> tuple[DD, DD, DD, DD]:
    """:math:`x \\oplus y` of double-double vectors with known double-double co-norms, from
    nonnegative terms only: :math:`(w(x)(x + y) + q\\,x) / D`, :math:`q = c|x+y|^2`,
    :math:`D = w(x)w(y) + q`. Returns ``(x (+) y, w(x (+) y), q, D)`` with the exact identity
    :math:`w(x \\oplus y) = w(x)w(y)/D`."""
    v = dd_add(x, y)
    q = c_sumsq_dd(v, c)
    wxwy = dd_mul(wx, wy)
    den = dd_add(wxwy, q)
    num = dd_add(dd_mul(dd_col(wx), v), dd_mul(dd_col(q), x))
    return dd_div(num, dd_col(den)), dd_div(wxwy, den), q, den


def mobius_add_dd(x: DD, wx: DD, y: DD, wy: DD, c: Tensor | float) -> DD:
    """:math:`x \\oplus y` (see :func:`mobius_add_parts`)."""
    return mobius_add_parts(x, wx, y, wy, c)[0]


def logmap_dd(x: Tensor, y: Tensor, c: Tensor | float) -> Tensor:
    """:math:`\\log_x y = w(x)\\,h\\,v`, :math:`v = (-x) \\oplus y`,
    :math:`h = \\operatorname{artanh}(\\rho)/\\rho` with :math:`\\rho^2 = q/D` and
    :math:`w(v) = w(x)w(y)/D` from the addition (never from the rounded ``v``); rounded once."""
    wx = conorm_dd(x, c)
    v, wv, q, den = mobius_add_parts(dd_of(-x), wx, dd_of(y), conorm_dd(y, c), c)
    h = artanh_over_rho_dd(dd_div(q, den), wv)
    out = dd_mul(dd_col(dd_mul(wx, h)), v)
    return out[0] + out[1]


# ----------------------------------------------------------------------------- expmap


def expmap_dd(x: Tensor, u: Tensor, c: Tensor | float) -> Tensor:
    """:math:`\\exp_x(u) = x \\oplus p`, :math:`p = \\tanh(s)\\,u/(\\sqrt c|u|)`,
    :math:`s = \\sqrt c|u|/w(x)`, with ``p`` and :math:`w(p) = 1 - \\tanh^2 s` in double-double
    (``tanh`` by :func:`tanh_dd` below ``s = 1/2``, as ``1 - m``, :math:`m = 2e^{-2s}/(1 +
    e^{-2s})`, above) and the addition by :func:`mobius_add_dd`; rounded once. ``x``, ``u``
    float64 of one shape; rows with ``u = 0`` return ``x``."""
    wx = conorm_dd(x, c)
    _, e = torch.frexp(u.abs().amax(dim=-1, keepdim=True))
    v = torch.ldexp(u, -e)  # exact, |v_i| < 1 (u is finite, so e <= 1024)
    hi, lo = sum_sq_dd(v)
    zero = hi.squeeze(-1) == 0
    nv = dd_sqrt((torch.where(zero, 1.0, hi.squeeze(-1)), torch.where(zero, 0.0, lo.squeeze(-1))))
    sqrt_c = dd_sqrt(c_dd(c, nv[0]))
    cnv = dd_mul(sqrt_c, nv)  # sqrt(c) |v|
    s_dd = dd_div(cnv, wx)
    s = torch.ldexp(s_dd[0], e.squeeze(-1))  # may overflow to inf: the large branch
    small = s < 0.5
    # small: p = (tanh(s)/s) * u / w(x), the ratio's error from rounding s is damped by 2s^2/3
    # (below 2**-30 the series 1 - s^2/3 is exact to 2**-90; tanh_dd would halve subnormals)
    series = s < 2.0**-30
    s_small = torch.where(small & ~series, s, 0.25)
    ratio = dd_div(tanh_dd(s_small), dd_of(s_small))
    s_tiny = torch.where(series, s, 0.0)
    ratio = (
        torch.where(series, 1.0 - s_tiny * s_tiny / 3.0, ratio[0]),
        torch.where(series, 0.0, ratio[1]),
    )
    t_small = dd_mul(ratio, dd_of(torch.where(small, s, 0.0)))
    p_small = dd_mul(dd_col(dd_div(ratio, wx)), dd_of(u))
    one = dd_of(torch.ones_like(s))
    wp_small = dd_add(one, dd_neg(dd_mul(t_small, t_small)))
    # large: tanh(s) = 1 - m, p = (1 - m) v / (sqrt(c)|v|), w(p) = m (2 - m)
    q = torch.exp(-2.0 * torch.where(small, 1.0, s))
    m = 2.0 * q / (1.0 + q)
    t_big = _two_sum(torch.ones_like(m), -m)
    p_big = dd_mul(dd_col(dd_div(t_big, cnv)), dd_of(v))
    wp_big = dd_mul(dd_of(m), _two_sum(2.0 * torch.ones_like(m), -m))
    col = small.unsqueeze(-1)
    p = (torch.where(col, p_small[0], p_big[0]), torch.where(col, p_small[1], p_big[1]))
    wp = (torch.where(small, wp_small[0], wp_big[0]), torch.where(small, wp_small[1], wp_big[1]))
    out = mobius_add_dd(dd_of(x), wx, p, wp, c)
    return torch.where(zero.unsqueeze(-1), x, out[0] + out[1])


# ----------------------------------------------------------------------------- artanh, matvec


def _scaled_norm_dd(v: DD) -> tuple[DD, Tensor]:
    """``(|v_s|, k)`` with ``v = 2**k v_s`` (last axis, ``|v_s|_inf`` in [1/2, 1)), ``|v_s|`` a
    double-double (1 where ``v = 0``: masked by callers); ``k`` keeps the vector axis."""
    _, k = torch.frexp(v[0].abs().amax(dim=-1, keepdim=True))
    vs = (torch.ldexp(v[0], -k), torch.ldexp(v[1], -k))
    s2 = dot_dd_dd(vs, vs)
    zero = s2[0] == 0
    return dd_sqrt((torch.where(zero, 1.0, s2[0]), torch.where(zero, 0.0, s2[1]))), k


def artanh_over_rho_dd(z2: DD, w: DD) -> DD:
    """:math:`h = \\operatorname{artanh}(\\rho)/\\rho` for :math:`\\rho^2 = z2`, :math:`1 - \\rho^2
    = w`, through :math:`\\operatorname{artanh}\\rho = \\operatorname{asinh}(a)`,
    :math:`a = \\rho/\\sqrt w` in double-double (series :math:`(1 - a^2/6)/\\sqrt w` for tiny
    ``a``)."""
    a = dd_sqrt_safe(dd_div(z2, w))
    small = a[0] < 2.0**-26
    rho = dd_sqrt_safe((torch.where(small, 1.0, z2[0]), torch.where(small, 0.0, z2[1])))
    ah = torch.where(small, 1.0, a[0])
    asinh = torch.asinh(ah) + torch.where(small, 0.0, a[1]) / torch.sqrt(1.0 + ah * ah)
    big = dd_div(_fast_two_sum(asinh, torch.zeros_like(asinh)), rho)
    at = torch.where(small, a[0], 0.0)
    tiny = dd_div(dd_of(1.0 - at * at / 6.0), dd_sqrt_safe(w))
    return torch.where(small, tiny[0], big[0]), torch.where(small, tiny[1], big[1])


def dd_sqrt_safe(a: DD) -> DD:
    """:math:`\\sqrt a` for ``a >= 0`` (0 at 0)."""
    pos = a[0] > 0
    r = dd_sqrt((torch.where(pos, a[0], 1.0), torch.where(pos, a[1], 0.0)))
    return torch.where(pos, r[0], 0.0), torch.where(pos, r[1], 0.0)


def matvec_dd(mx: DD, x: Tensor, c: Tensor | float) -> Tensor:
    """:math:`M \\otimes x` from ``Mx`` (a double-double vector) and the point ``x`` (float64),
    as in the reference:

    .. math::
        s = \\sqrt c\\,|Mx|\\,h,\\quad h = \\frac{\\operatorname{artanh}\\sqrt c|x|}{\\sqrt c|x|};
        \\qquad M \\otimes x = \\frac{\\tanh s}{s}\\,h\\,Mx\\ (s < 0.55),\\qquad
        \\frac{1 - \\tau}{\\sqrt c|Mx|}\\,Mx\\ (s \\ge 0.55),

    :math:`\\tau = 1 - \\tanh s = 2e^{-2s}/(1 + e^{-2s})`, ``tanh(s)/s`` from :func:`tanh_dd`
    (its error from rounding ``s`` is damped by :math:`2s^2/3`), norms scaled by powers of two.
    Rounded once; rows with ``Mx = 0`` or ``x = 0`` give 0.
    """
    nx, kx = _scaled_norm_dd(dd_of(x))
    cc = c_dd(c, nx[0])
    sqrt_c = dd_sqrt(cc)
    x_zero = (x == 0).all(dim=-1)
    # z2 = c |x|^2 = c |x_s|^2 4**kx (underflows to 0 only where h = 1 anyway)
    z2 = dd_mul(cc, dd_mul(nx, nx))
    z2 = (torch.ldexp(z2[0], 2 * kx.squeeze(-1)), torch.ldexp(z2[1], 2 * kx.squeeze(-1)))
    h = artanh_over_rho_dd(z2, conorm_dd(x, c))
    nm, km = _scaled_norm_dd(mx)
    m_zero = (mx[0] == 0).all(dim=-1) & (mx[1] == 0).all(dim=-1)
    s_s = dd_mul(dd_mul(sqrt_c, nm), h)  # s / 2**km
    s = torch.ldexp(s_s[0], km.squeeze(-1))  # may overflow to inf: the large branch
    small = s < 0.55
    series = s < 2.0**-30
    s_mid = torch.where(small & ~series, s, 0.25)
    g = dd_div(tanh_dd(s_mid), dd_of(s_mid))  # tanh(s)/s
    s_tiny = torch.where(series, s, 0.0)
    g = (torch.where(series, 1.0 - s_tiny * s_tiny / 3.0, g[0]), torch.where(series, 0.0, g[1]))
    p_small = dd_mul(dd_col(dd_mul(g, h)), mx)
    q = torch.exp(-2.0 * torch.where(small, 1.0, s))
    t = _two_sum(torch.ones_like(q), -(2.0 * q / (1.0 + q)))
    unit = dd_div((torch.ldexp(mx[0], -km), torch.ldexp(mx[1], -km)), dd_col(nm))
    p_big = dd_mul(dd_col(dd_div(t, sqrt_c)), unit)
    out = torch.where(small.unsqueeze(-1), p_small[0] + p_small[1], p_big[0] + p_big[1])
    return torch.where((x_zero | m_zero).unsqueeze(-1), 0.0, out)


# ----------------------------------------------------------------------------- distances


def radius_dd(v: DD, wxwy: DD, c: Tensor | float) -> Tensor:
    """:math:`\\frac{2}{\\sqrt c}\\operatorname{asinh}(a)`, :math:`a = \\sqrt c|v| /
    \\sqrt{w_x w_y}` in double-double (``v`` a double-double vector scaled by a power of two;
    series :math:`2|v|(1 - a^2/6)/\\sqrt{w_x w_y}` for tiny ``a``): ``Rad(x)`` for ``v = x``,
    ``w_y = 1``; ``d(x, y)`` for ``v = x - y``. Rounded once."""
    nv, k = _scaled_norm_dd(v)
    k = k.squeeze(-1)
    v_zero = (v[0] == 0).all(dim=-1)
    cc = c_dd(c, nv[0])
    sqrt_c = dd_sqrt(cc)
    root = dd_sqrt(wxwy)
    b = dd_div(nv, root)  # |v_s| / sqrt(wx wy)
    a_s = dd_mul(sqrt_c, b)
    a = (torch.ldexp(a_s[0], k), torch.ldexp(a_s[1], k))  # may overflow only past float64
    small = a[0] < 2.0**-26
    ah = torch.where(small, 1.0, a[0])
    asinh = torch.asinh(ah) + torch.where(small, 0.0, a[1]) / torch.sqrt(1.0 + ah * ah)
    big = dd_div((2.0 * asinh, torch.zeros_like(asinh)), sqrt_c)
    at = torch.where(small, a[0], 0.0)
    tiny = dd_mul(b, dd_of(2.0 * (1.0 - at * at / 6.0)))
    tiny_v = torch.ldexp(tiny[0] + tiny[1], k)
    out = torch.where(small, tiny_v, big[0] + big[1])
    return torch.where(v_zero, 0.0, out)


def dist_dd(x: Tensor, y: Tensor, c: Tensor | float) -> Tensor:
    """:math:`d(x, y)` with ``x - y`` formed exactly (double-double) (see :func:`radius_dd`)."""
    v = _two_sum(x, -y)
    return radius_dd(v, dd_mul(conorm_dd(x, c), conorm_dd(y, c)), c)


def dist0_dd(x: Tensor, c: Tensor | float) -> Tensor:
    """:math:`\\mathrm{Rad}(x)` (see :func:`radius_dd`)."""
    return radius_dd(dd_of(x), conorm_dd(x, c), c)


def logmap0_dd(x: Tensor, c: Tensor | float) -> Tensor:
    """:math:`\\log_0 x = h\\,x`, :math:`h = \\operatorname{artanh}(\\rho)/\\rho` in
    double-double (:func:`artanh_over_rho_dd`), rounded once."""
    nx, k = _scaled_norm_dd(dd_of(x))
    z2 = dd_mul(c_dd(c, nx[0]), dd_mul(nx, nx))
    z2 = (torch.ldexp(z2[0], 2 * k.squeeze(-1)), torch.ldexp(z2[1], 2 * k.squeeze(-1)))
    out = dd_mul(dd_col(artanh_over_rho_dd(z2, conorm_dd(x, c))), dd_of(x))
    return out[0] + out[1]


# ----------------------------------------------------------------------------- products

#: matmul_dd: products per chunk (bounds the double-double temporaries to about 100 MB).
_CHUNK_TERMS = 1 << 22


def _pow2_scaled(t: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """``(t / 2**k, k)`` with ``2**k`` the power of two of ``max |t|`` over ``dims`` (exact:
    products of the scaled operands neither underflow nor overflow)."""
    _, k = torch.frexp(t.abs().amax(dim=dims, keepdim=True))
    return torch.ldexp(t, -k), k


def _scaled_back(a: DD, k: Tensor) -> DD:
    return torch.ldexp(a[0], k), torch.ldexp(a[1], k)


def matmul_dd(m: Tensor, x: Tensor) -> DD:
    """:math:`Mx` (see :func:`_matmul_dd`) from power-of-two scaled operands (subnormal and huge
    entries keep their digits)."""
    ms, km = _pow2_scaled(m, (-2, -1))  # (..., 1, 1)
    xs, kx = _pow2_scaled(x, (-1,))  # (..., 1)
    return _scaled_back(_matmul_dd(ms, xs), km.squeeze(-1) + kx)


def _matmul_dd(m: Tensor, x: Tensor) -> DD:
    """:math:`Mx` for ``m`` ``(n, d)`` or ``(..., n, d)`` and ``x`` ``(..., d)`` as a double-double
    ``(..., n)`` (compensated dot products, in chunks of the batch)."""
    lead = torch.broadcast_shapes(m.shape[:-2], x.shape[:-1])
    n, d = m.shape[-2:]
    mb = m.expand(*lead, n, d).reshape(-1, n, d)
    xb = x.expand(*lead, d).reshape(-1, 1, d)
    step = max(1, _CHUNK_TERMS // max(1, n * d))
    parts = [dot_dd(mb[i : i + step], xb[i : i + step]) for i in range(0, mb.shape[0], step)]
    if not parts:
        zero = m.new_zeros(*lead, n)
        return zero, zero
    return torch.cat([p[0] for p in parts]).reshape(*lead, n), torch.cat(
        [p[1] for p in parts]
    ).reshape(*lead, n)


def structured_apply_dd(kind: str, param: Tensor, x: Tensor) -> DD:
    """:math:`Mx` of a structured matrix (``hyperet.ops.structured`` layouts) in double-double:
    the diagonal product is exact, block and banded rows are compensated dot products (from
    power-of-two scaled operands)."""
    ps, kp = _pow2_scaled(param, tuple(range(param.dim())))
    xs, kx = _pow2_scaled(x, (-1,))
    return _scaled_back(_structured_apply_dd(kind, ps, xs), kp.reshape(()) + kx)


def _structured_apply_dd(kind: str, param: Tensor, x: Tensor) -> DD:
    if kind == "diagonal":
        return two_prod_dd(param, x)
    if kind == "block":
        nb, b, _ = param.shape
        xb = x.reshape(*x.shape[:-1], nb, 1, b)  # (..., nb, 1, b) against (nb, b, b)
        hi, lo = dot_dd(param, xb)  # (..., nb, b)
        return hi.reshape(x.shape), lo.reshape(x.shape)
    width, d = param.shape
    k = (width - 1) // 2
    xp = torch.nn.functional.pad(x, (k, k))
    terms = torch.stack([xp[..., j : j + d] for j in range(width)], dim=-1)  # (..., d, width)
    return dot_dd(param.mT, terms)
