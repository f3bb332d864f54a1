"""Triton kernels of the ``"triton"`` backend (imported only by :mod:`hyperet.ops._triton`).

One program per row (a row of ``d`` floats fits in registers for ``d`` up to a few thousand):
each kernel loads the row once, forms its float64 per-row scalars (the formulas of
:mod:`hyperet.ops._fused` and :mod:`hyperet.ops.ball`'s train mode) and writes the result once.
The structured products are index maps on 2-D tiles ``(WP2, BLOCK_D)``:

- diagonal (``KIND = 1``): ``(Mx)_i = p_i x_i``;
- block (``KIND = 2``, ``WIDTH = b``): ``(Mx)_i = sum_s p[i b + s] x[(i // b) b + s]``;
- banded (``KIND = 3``, ``WIDTH = 2k + 1``): ``(Mx)_i = sum_j p[j d + i] x[i + j - k]``;
- dense (``KIND = 0``): ``Mx`` comes from a matrix product (cuBLAS) and the kernel fuses the
  rest.

Floating scalars (curvature, floors, ceilings) reach the kernels in a small float64 tensor
(``sc_ptr``), never as Python floats: Triton passes those as float32, and ``1 - c|x|^2`` near
the boundary needs every bit of ``c``.

The parameter gradient of a structured product is accumulated per program over its rows and
summed over programs afterwards (deterministic, no atomics). Scalar maths uses only ``exp``,
``log`` and ``sqrt`` (float64), with the Taylor series of the eager path below ``2**-9``.
"""

from __future__ import annotations

import triton
import triton.language as tl

SERIES_BELOW = tl.constexpr(1.0 / 512.0)  # a global a kernel reads must be a constexpr


@triton.jit
def _artanh_ratio(z, w):
    """artanh(z)/z given w = 1 - z^2 (series; atanh; log1p(z) - log(w)/2)."""
    small = z < SERIES_BELOW
    large = z >= 0.5
    zs = tl.where(small, 0.25, z)  # every branch sees a safe argument (no 0/0 or x/0)
    z2 = z * z
    series = 1.0 + z2 / 3.0 + z2 * z2 / 5.0
    mid = 0.5 * tl.log((1.0 + zs) / tl.where(large, 0.5, 1.0 - zs)) / zs
    big = (tl.log(1.0 + zs) - 0.5 * tl.log(tl.where(large, w, 1.0))) / zs
    return tl.where(small, series, tl.where(large, big, mid))


@triton.jit
def _tanh(t):
    """tanh(t) for t >= 0 (exp(-2t) never overflows)."""
    e = tl.exp(-2.0 * t)
    return (1.0 - e) / (1.0 + e)


@triton.jit
def _tanh_ratio(t):
    """tanh(t)/t for t >= 0."""
    small = t < SERIES_BELOW
    ts = tl.where(small, 1.0, t)
    t2 = t * t
    return tl.where(small, 1.0 - t2 / 3.0 + t2 * t2 * (2.0 / 15.0), _tanh(ts) / ts)


@triton.jit
def _chi(t):
    """(2t / sinh 2t - 1) / t^2."""
    small = t < SERIES_BELOW
    ts = tl.where(small, 1.0, t)
    e = tl.exp(-2.0 * ts)
    two_t_over_sinh = 4.0 * ts * e / (1.0 - e * e)  # 2t / sinh(2t) = 4t e^{-2t} / (1 - e^{-4t})
    return tl.where(small, -2.0 / 3.0 + 14.0 / 45.0 * t * t, (two_t_over_sinh - 1.0) / (ts * ts))


@triton.jit
def _psi(z, w, r):
    """(1 / (w R) - 1) / z^2."""
    small = z < SERIES_BELOW
    zs = tl.where(small, 1.0, z)
    return tl.where(small, 2.0 / 3.0 + 26.0 / 45.0 * z * z, (1.0 / (w * r) - 1.0) / (zs * zs))


@triton.jit
def _matvec_scalars(n, m, c, w_min, t_max):
    """Per-row scalars of the train-policy Möbius matvec from n = |x| and m = |Mx|."""
    sqrt_c = tl.sqrt(c)
    w = 1.0 - c * n * n
    below = w < w_min
    n_safe = tl.where(below, n, 1.0)
    scale = tl.where(below, tl.sqrt(1.0 - w_min) / (sqrt_c * n_safe), 1.0)
    w = tl.maximum(w, w_min)
    z = sqrt_c * n * scale
    r = _artanh_ratio(z, w) * scale
    t = sqrt_c * m * r
    sat = t >= t_max
    m_safe = tl.where(sat, m, 1.0)
    k = tl.where(sat, _tanh(t_max) / (sqrt_c * m_safe), _tanh_ratio(t) * r)
    return k, t, sat, below, n_safe, z, w, r, m_safe


@triton.jit
def _x_index(i, j, d, KIND: tl.constexpr, WIDTH: tl.constexpr):
    """Index of x read by term j of (Mx)_i, and whether the term exists."""
    if KIND == 2:
        idx = (i // WIDTH) * WIDTH + j
        ok = (j < WIDTH) & (i < d)
    elif KIND == 3:
        idx = i + j - (WIDTH - 1) // 2
        ok = (j < WIDTH) & (i < d) & (idx >= 0) & (idx < d)
    else:
        idx = i + 0 * j
        ok = (j < 1) & (i < d)
    return idx, ok


@triton.jit
def _p_index(i, j, d, KIND: tl.constexpr, WIDTH: tl.constexpr):
    """Index of the parameter of term j of (Mx)_i."""
    if KIND == 2:
        return i * WIDTH + j
    elif KIND == 3:
        return j * d + i
    else:
        return i + 0 * j


@triton.jit
def _t_index(l, j, d, KIND: tl.constexpr, WIDTH: tl.constexpr):
    """Term j of (M^T v)_l: (row i of M it comes from, parameter index, exists)."""
    if KIND == 2:
        i = (l // WIDTH) * WIDTH + j
        ok = (j < WIDTH) & (l < d)
        return i, i * WIDTH + l % WIDTH, ok
    elif KIND == 3:
        i = l - j + (WIDTH - 1) // 2
        ok = (j < WIDTH) & (l < d) & (i >= 0) & (i < d)
        return i, j * d + i, ok
    else:
        i = l + 0 * j
        return i, i, (j < 1) & (l < d)


@triton.jit
def matvec_forward_kernel(
    x_ptr, p_ptr, y_ptr, n_ptr, m_ptr, d, sc_ptr,
    KIND: tl.constexpr, WIDTH: tl.constexpr, WP2: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """y = k Mx for one row; stores n = |x| and m = |Mx| (float64). Dense: y holds Mx."""
    c, w_min, t_max = tl.load(sc_ptr), tl.load(sc_ptr + 1), tl.load(sc_ptr + 2)  # float64 scalars
    row = tl.program_id(0).to(tl.int64)
    i = tl.arange(0, BLOCK_D)
    inside = i < d
    x = tl.load(x_ptr + row * d + i, mask=inside, other=0.0).to(tl.float32)
    n = tl.sqrt(tl.sum(x.to(tl.float64) * x.to(tl.float64), axis=0))
    if KIND == 0:
        mx = tl.load(y_ptr + row * d + i, mask=inside, other=0.0).to(tl.float32)
    else:
        j = tl.arange(0, WP2)[:, None]
        xi, ok = _x_index(i[None, :], j, d, KIND, WIDTH)
        xs = tl.load(x_ptr + row * d + xi, mask=ok, other=0.0).to(tl.float32)
        ps = tl.load(p_ptr + _p_index(i[None, :], j, d, KIND, WIDTH), mask=ok, other=0.0)
        ps = ps.to(tl.float32)
        mx = tl.sum(ps * xs, axis=0)
    m = tl.sqrt(tl.sum(mx.to(tl.float64) * mx.to(tl.float64), axis=0))
    k = _matvec_scalars(n, m, c, w_min, t_max)[0]
    tl.store(y_ptr + row * d + i, mx * k.to(tl.float32), mask=inside)
    tl.store(n_ptr + row, n)
    tl.store(m_ptr + row, m)


@triton.jit
def matvec_backward_kernel(
    g_ptr, y_ptr, x_ptr, p_ptr, n_ptr, m_ptr, gx_ptr, gm_ptr, beta_ptr, gp_ptr,
    rows, d, sc_ptr,
    KIND: tl.constexpr, WIDTH: tl.constexpr, WP2: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """Rows pid, pid + P, ...: grad_x = M^T gm + beta x with gm = k g + alpha y, and the
    program's share of the parameter gradient (structured, float32) into gp[pid]. Dense: stores
    gm and beta; the matrix products are done outside. Structured half types: x, the
    parameters, y, g and grad_x in that dtype, arithmetic in float32 (y = k Mx as stored, so the
    gradient sees Mx rounded to the half type: within a few of its ulp)."""
    c, w_min, t_max = tl.load(sc_ptr), tl.load(sc_ptr + 1), tl.load(sc_ptr + 2)  # float64 scalars
    pid = tl.program_id(0).to(tl.int64)  # the row loop then runs in int64 (no overflow)
    programs = tl.num_programs(0)
    i = tl.arange(0, BLOCK_D)
    inside = i < d
    j = tl.arange(0, WP2)[:, None]
    xi, ok = _x_index(i[None, :], j, d, KIND, WIDTH)
    ti, tp, tok = _t_index(i[None, :], j, d, KIND, WIDTH)
    if KIND != 0:
        pt = tl.load(p_ptr + tp, mask=tok, other=0.0).to(tl.float32)  # M^T's terms, every row
    acc = tl.zeros((WP2, BLOCK_D), dtype=tl.float32)
    for row in range(pid, rows, programs):
        base = row * d
        g = tl.load(g_ptr + base + i, mask=inside, other=0.0).to(tl.float32)
        y = tl.load(y_ptr + base + i, mask=inside, other=0.0).to(tl.float32)
        n = tl.load(n_ptr + row)
        m = tl.load(m_ptr + row)
        k, t, sat, below, n_safe, z, w, r, m_safe = _matvec_scalars(n, m, c, w_min, t_max)
        a = tl.sum(g.to(tl.float64) * y.to(tl.float64), axis=0) / k  # <g, Mx>
        chi = _chi(t)
        rho = tl.where(sat, 0.0, 1.0 + chi * t * t)
        alpha = a * tl.where(sat, -1.0 / (m_safe * m_safe), chi * c * r * r)  # on y = k Mx
        beta = k * a * tl.where(below, -rho / (n_safe * n_safe), rho * c * _psi(z, w, r))
        k32, alpha32, beta32 = k.to(tl.float32), alpha.to(tl.float32), beta.to(tl.float32)
        gm = g * k32 + y * alpha32
        if KIND == 0:
            tl.store(gm_ptr + base + i, gm, mask=inside)
            tl.store(beta_ptr + row, beta32)
        else:
            x = tl.load(x_ptr + base + i, mask=inside, other=0.0).to(tl.float32)
            # gm at the rows of M^T's terms, from g and y at those positions
            gs = tl.load(g_ptr + base + ti, mask=tok, other=0.0).to(tl.float32)
            ys = tl.load(y_ptr + base + ti, mask=tok, other=0.0).to(tl.float32)
            gx = tl.sum(pt * (gs * k32 + ys * alpha32), axis=0) + beta32 * x
            tl.store(gx_ptr + base + i, gx, mask=inside)
            xs = tl.load(x_ptr + base + xi, mask=ok, other=0.0).to(tl.float32)
            acc += gm[None, :] * xs
    if KIND != 0:
        p_count = d * WIDTH if KIND != 1 else d
        pi = _p_index(i[None, :], j, d, KIND, WIDTH)
        tl.store(gp_ptr + pid * p_count + pi, acc, mask=ok)


@triton.jit
def _load_row(ptr, d, BLOCK_D: tl.constexpr):
    """Row ``program_id`` of an ``(N, d)`` array of any float dtype, as float32 (zeros past
    ``d``), and its offsets (a store to them rounds to the output's dtype)."""
    row = tl.program_id(0).to(tl.int64)
    i = tl.arange(0, BLOCK_D)
    x = tl.load(ptr + row * d + i, mask=i < d, other=0.0).to(tl.float32)
    return x, row * d + i, i < d


@triton.jit
def expmap0_forward_kernel(u_ptr, y_ptr, d, sc_ptr, BLOCK_D: tl.constexpr):
    """y = k u, k = T(min(s, s_max)) s_max / max(s, s_max), s = sqrt(c)|u| (train policy)."""
    c, s_max = tl.load(sc_ptr), tl.load(sc_ptr + 1)  # float64 scalars
    u, at, inside = _load_row(u_ptr, d, BLOCK_D)
    s = tl.sqrt(c) * tl.sqrt(tl.sum(u.to(tl.float64) * u.to(tl.float64), axis=0))
    k = _tanh_ratio(tl.minimum(s, s_max)) * (s_max / tl.maximum(s, s_max))
    tl.store(y_ptr + at, u * k.to(tl.float32), mask=inside)


@triton.jit
def expmap0_backward_kernel(g_ptr, u_ptr, gu_ptr, d, sc_ptr, BLOCK_D: tl.constexpr):
    """grad_u = k g + (dk/ds) sqrt(c) <u, g> / |u| u; k = s_max-saturated T(s) as forward."""
    c, s_max = tl.load(sc_ptr), tl.load(sc_ptr + 1)  # float64 scalars
    g, at, inside = _load_row(g_ptr, d, BLOCK_D)
    u = _load_row(u_ptr, d, BLOCK_D)[0]
    u64 = u.to(tl.float64)
    n2 = tl.sum(u64 * u64, axis=0)
    ug = tl.sum(u64 * g.to(tl.float64), axis=0)
    s = tl.sqrt(c * n2)
    sat = s >= s_max
    small = s < SERIES_BELOW
    ss = tl.where(small | sat, 1.0, s)
    th = _tanh(ss)
    # k = T(s) below s_max; (1/s)(d T/ds)/s = (sech^2 s - T(s)) / s^2 (series -2/3 + 8 s^2/15)
    dk = tl.where(small, -2.0 / 3.0 + 8.0 / 15.0 * s * s, ((1.0 - th * th) - th / ss) / (ss * ss))
    s_safe = tl.where(sat, s, 1.0)
    k = tl.where(sat, _tanh(s_max) / s_safe, _tanh_ratio(s))
    # saturated: y = tanh(s_max)/sqrt(c) u/|u|: coefficient of x is -k/|u|^2
    coef = tl.where(sat, -k * c / (s_safe * s_safe), c * dk) * ug
    gu = g * k.to(tl.float32) + u * coef.to(tl.float32)
    tl.store(gu_ptr + at, gu, mask=inside)


@triton.jit
def _logmap0_scalars(n2, c, w_min):
    """Train-policy logmap0 = R(z) scale x: (coefficient, projected?, z, w, r)."""
    w = 1.0 - c * n2
    below = w < w_min
    ratio = (1.0 - w_min) / tl.where(below, 1.0 - w, 1.0)
    scale = tl.where(below, tl.sqrt(ratio), 1.0)
    z = tl.sqrt(c * n2) * scale
    w = tl.maximum(w, w_min)
    r = _artanh_ratio(z, w)
    return r * scale, below, z, w, r


@triton.jit
def logmap0_forward_kernel(x_ptr, v_ptr, d, sc_ptr, BLOCK_D: tl.constexpr):
    """v = R(z) x, z = sqrt(c)|x| (points below the co-norm floor projected onto it)."""
    c, w_min = tl.load(sc_ptr), tl.load(sc_ptr + 1)  # float64 scalars
    x, at, inside = _load_row(x_ptr, d, BLOCK_D)
    n2 = tl.sum(x.to(tl.float64) * x.to(tl.float64), axis=0)
    coef = _logmap0_scalars(n2, c, w_min)[0]
    tl.store(v_ptr + at, x * coef.to(tl.float32), mask=inside)


@triton.jit
def logmap0_backward_kernel(g_ptr, x_ptr, gx_ptr, d, sc_ptr, BLOCK_D: tl.constexpr):
    """grad_x = R g + c R psi(z) <x, g> x; projected rows: R_eff scale (g - <x,g> x/|x|^2)."""
    c, w_min = tl.load(sc_ptr), tl.load(sc_ptr + 1)  # float64 scalars
    g, at, inside = _load_row(g_ptr, d, BLOCK_D)
    x = _load_row(x_ptr, d, BLOCK_D)[0]
    x64 = x.to(tl.float64)
    n2 = tl.sum(x64 * x64, axis=0)
    xg = tl.sum(x64 * g.to(tl.float64), axis=0)
    coef, below, z, w, r = _logmap0_scalars(n2, c, w_min)
    n2_safe = tl.where(below, n2, 1.0)
    second = tl.where(below, -coef / n2_safe, c * r * _psi(z, w, r)) * xg
    gx = g * coef.to(tl.float32) + x * second.to(tl.float32)
    tl.store(gx_ptr + at, gx, mask=inside)


@triton.jit
def _log1p(u):
    """log(1 + u) for u >= 0 to a few ulp (Goldberg: log(v) u / (v - 1), v = fl(1 + u))."""
    v = 1.0 + u
    tiny = v == 1.0
    return tl.where(tiny, u, tl.log(v) * (u / tl.where(tiny, 1.0, v - 1.0)))


@triton.jit
def _sum64(a, b):
    """<a, b> of two float32 rows, accumulated in float64."""
    return tl.sum(a.to(tl.float64) * b.to(tl.float64), axis=0)


@triton.jit
def _point(x, c, w_min):
    """Train-policy point of a float32 row: (x_eff, scale, w, |x|^2). A row whose co-norm
    w = 1 - c|x|^2 is below w_min is projected radially onto it (x_eff = scale x, w = w_min)."""
    n2 = _sum64(x, x)
    w = 1.0 - c * n2
    below = w < w_min
    scale = tl.where(below, tl.sqrt((1.0 - w_min) / tl.where(below, 1.0 - w, 1.0)), 1.0)
    return x * scale.to(tl.float32), scale, tl.maximum(w, w_min), n2


@triton.jit
def _unproject(g_eff, x, scale, n2):
    """Gradient with respect to x from the gradient with respect to x_eff = scale x: a projected
    row (scale < 1, |x_eff| fixed) keeps scale times the part of g_eff orthogonal to x. Its
    floored co-norm is a constant, so callers leave out the (radial, up to 1/w large) terms that
    come from differentiating w: subtracting them here would cancel catastrophically."""
    along = tl.where(scale < 1.0, _sum64(g_eff, x) / tl.where(scale < 1.0, n2, 1.0), 0.0)
    return tl.where(scale < 1.0, (g_eff - x * along.to(tl.float32)) * scale.to(tl.float32), g_eff)


@triton.jit
def _is_zero(x):
    """Whether every entry of a row is +0 or -0."""
    return tl.max(tl.abs(x), axis=0) == 0.0


@triton.jit
def _mobius_add_parts(x, y, c, w_min, z_out):
    """Train-policy x (+) y = h (w_x s + c|s|^2 x) / D with s = x + y, D = w_x w_y + c|s|^2 and
    h = z_out / max(sqrt(c|s|^2 / D), z_out) (the output ceiling), on the projected points."""
    xe, sx, wx, nx2 = _point(x, c, w_min)
    ye, sy, wy, ny2 = _point(y, c, w_min)
    s = xe + ye
    cs2 = c * _sum64(s, s)
    den = wx * wy + cs2
    ratio = cs2 / den
    sat = ratio > z_out * z_out
    h = z_out / tl.sqrt(tl.maximum(ratio, z_out * z_out))
    return xe, sx, wx, nx2, ye, sy, wy, ny2, s, cs2, den, h, sat


@triton.jit
def mobius_add_forward_kernel(
    x_ptr, y_ptr, out_ptr, d, sc_ptr, BLOCK_D: tl.constexpr
):  # fmt: skip
    """out = a s + b x_eff with a = h w_x / D, b = h c|s|^2 / D; y where x = 0 and x where
    y = 0, bitwise (the operands as given)."""
    c, w_min, z_out = tl.load(sc_ptr), tl.load(sc_ptr + 1), tl.load(sc_ptr + 2)  # float64 scalars
    x, at, inside = _load_row(x_ptr, d, BLOCK_D)
    y = _load_row(y_ptr, d, BLOCK_D)[0]
    parts = _mobius_add_parts(x, y, c, w_min, z_out)
    xe, wx, s, cs2, den, h = parts[0], parts[2], parts[8], parts[9], parts[10], parts[11]
    a = (wx * h / den).to(tl.float32)
    b = (cs2 * h / den).to(tl.float32)
    out = a * s + b * xe
    out = tl.where(_is_zero(x), y, tl.where(_is_zero(y), x, out))
    tl.store(out_ptr + at, out, mask=inside)


@triton.jit
def mobius_add_backward_kernel(
    g_ptr, x_ptr, y_ptr, gx_ptr, gy_ptr, d, sc_ptr, BLOCK_D: tl.constexpr
):  # fmt: skip
    """Gradients of L = <g, x (+) y> (the formula's, also at the bitwise zero limits).

    With G1 = h<g, s>, G2 = h<g, x_eff> and L = (w_x G1 + c|s|^2 G2) / D:
    grad_xe = h (w_x + c|s|^2)/D g - 2c (G1 - L w_y)/D x_eff + 2c (G2 - L)/D s and
    grad_ye = h w_x/D g + 2c L w_x/D y_eff + 2c (G2 - L)/D s; a saturated row (h < 1, where
    ln h = const + (ln D - ln c|s|^2)/2) adds L/2 times the gradient of that log:
    -c L w_y/D x_eff + c L (1/D - 1/(c|s|^2)) s and -c L w_x/D y_eff + (the same) s."""
    c, w_min, z_out = tl.load(sc_ptr), tl.load(sc_ptr + 1), tl.load(sc_ptr + 2)  # float64 scalars
    g, at, inside = _load_row(g_ptr, d, BLOCK_D)
    x = _load_row(x_ptr, d, BLOCK_D)[0]
    y = _load_row(y_ptr, d, BLOCK_D)[0]
    xe, sx, wx, nx2, ye, sy, wy, ny2, s, cs2, den, h, sat = _mobius_add_parts(x, y, c, w_min, z_out)
    g1 = h * _sum64(g, s)
    g2 = h * _sum64(g, xe)
    lv = (wx * g1 + cs2 * g2) / den
    cs2_safe = tl.where(sat, cs2, 1.0)  # > 0 where saturated
    extra = tl.where(sat, c * lv, 0.0)
    coef_s = 2.0 * c * (g2 - lv) / den + extra * (1.0 / den - 1.0 / cs2_safe)
    # the terms from differentiating w_x, w_y (none for a projected row: w is floored)
    coef_x = tl.where(sx < 1.0, 0.0, -2.0 * c * (g1 - lv * wy) / den - extra * wy / den)
    coef_y = tl.where(sy < 1.0, 0.0, 2.0 * c * lv * wx / den - extra * wx / den)
    s_part = s * coef_s.to(tl.float32)
    gxe = g * (h * (wx + cs2) / den).to(tl.float32) + xe * coef_x.to(tl.float32) + s_part
    gye = g * (h * wx / den).to(tl.float32) + ye * coef_y.to(tl.float32) + s_part
    tl.store(gx_ptr + at, _unproject(gxe, x, sx, nx2), mask=inside)
    tl.store(gy_ptr + at, _unproject(gye, y, sy, ny2), mask=inside)


@triton.jit
def _dist_parts(x, y, c, w_min):
    """Train-policy d(x, y) = log1p(q^2 + q sqrt(q^2 + 2)) / sqrt(c) with
    q = sqrt(c) |x_eff - y_eff| sqrt(2 / (w_x w_y)) (float64 scalars)."""
    xe, sx, wx, nx2 = _point(x, c, w_min)
    ye, sy, wy, ny2 = _point(y, c, w_min)
    diff = xe - ye
    n = tl.sqrt(_sum64(diff, diff))
    q = tl.sqrt(c) * n * tl.sqrt(2.0 / wx) / tl.sqrt(wy)
    return xe, sx, wx, nx2, ye, sy, wy, ny2, diff, n, q


@triton.jit
def dist_forward_kernel(x_ptr, y_ptr, out_ptr, d, sc_ptr, BLOCK_D: tl.constexpr):
    """One distance per row pair."""
    c, w_min = tl.load(sc_ptr), tl.load(sc_ptr + 1)  # float64 scalars
    x = _load_row(x_ptr, d, BLOCK_D)[0]
    y = _load_row(y_ptr, d, BLOCK_D)[0]
    q = _dist_parts(x, y, c, w_min)[10]
    dist = _log1p(q * q + q * tl.sqrt(q * q + 2.0)) / tl.sqrt(c)
    # rounded to float32 first, then to the output's dtype (as eager, which computes in float32)
    tl.store(out_ptr + tl.program_id(0).to(tl.int64), dist.to(tl.float32))


@triton.jit
def dist_backward_kernel(
    g_ptr, x_ptr, y_ptr, gx_ptr, gy_ptr, d, sc_ptr, BLOCK_D: tl.constexpr
):  # fmt: skip
    """grad_xe = K (u + c n x_eff / w_x), grad_ye = K (-u + c n y_eff / w_y) with
    u = (x_eff - y_eff)/n (0 at n = 0), n = |x_eff - y_eff|, K = g 2 sqrt(2) / (sqrt(w_x w_y)
    sqrt(q^2 + 2)) - the gradient of arcosh(1 + q^2)/sqrt(c), finite at x = y."""
    c, w_min = tl.load(sc_ptr), tl.load(sc_ptr + 1)  # float64 scalars
    x, at, inside = _load_row(x_ptr, d, BLOCK_D)
    y = _load_row(y_ptr, d, BLOCK_D)[0]
    g = tl.load(g_ptr + tl.program_id(0).to(tl.int64)).to(tl.float64)
    xe, sx, wx, nx2, ye, sy, wy, ny2, diff, n, q = _dist_parts(x, y, c, w_min)
    k = g * 2.0 * tl.sqrt(2.0) / (tl.sqrt(wx * wy) * tl.sqrt(q * q + 2.0))
    k_u = tl.where(n > 0.0, k / tl.where(n > 0.0, n, 1.0), 0.0).to(tl.float32)
    # the terms from differentiating w_x, w_y (none for a projected row: w is floored)
    gxe = diff * k_u + xe * tl.where(sx < 1.0, 0.0, k * c * n / wx).to(tl.float32)
    gye = ye * tl.where(sy < 1.0, 0.0, k * c * n / wy).to(tl.float32) - diff * k_u
    tl.store(gx_ptr + at, _unproject(gxe, x, sx, nx2), mask=inside)
    tl.store(gy_ptr + at, _unproject(gye, y, sy, ny2), mask=inside)


@triton.jit
def point_rows_kernel(x_ptr, scale_ptr, w_ptr, n2_ptr, d, sc_ptr, BLOCK_D: tl.constexpr):
    """Per row of x: the projection factor, the floored co-norm and |x|^2 (raw), float64."""
    c, w_min = tl.load(sc_ptr), tl.load(sc_ptr + 1)  # float64 scalars
    x = _load_row(x_ptr, d, BLOCK_D)[0]
    row = tl.program_id(0).to(tl.int64)
    point = _point(x, c, w_min)
    scale, w, n2 = point[1], point[2], point[3]
    tl.store(scale_ptr + row, scale)
    tl.store(w_ptr + row, w)
    tl.store(n2_ptr + row, n2)


@triton.jit
def _pairwise_tile(gram_ptr, sx_ptr, wx_ptr, nx_ptr, sy_ptr, wy_ptr, ny_ptr, n_rows, m_rows, c,
                   BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr):  # fmt: skip
    """One (BLOCK_N, BLOCK_M) tile of the pairwise distances from the Gram matrix G = x y^T:
    |x_n - y_m|^2 = s_n^2 |x_n|^2 + s_m^2 |y_m|^2 - 2 s_n s_m G_nm (projected points, float64,
    clamped at 0), q = sqrt(c) |x_n - y_m| sqrt(2 / (w_n w_m))."""
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    n_ok, m_ok = n < n_rows, m < m_rows
    sx = tl.load(sx_ptr + n, mask=n_ok, other=1.0)[:, None]
    wx = tl.load(wx_ptr + n, mask=n_ok, other=1.0)[:, None]
    nx = tl.load(nx_ptr + n, mask=n_ok, other=0.0)[:, None]
    sy = tl.load(sy_ptr + m, mask=m_ok, other=1.0)[None, :]
    wy = tl.load(wy_ptr + m, mask=m_ok, other=1.0)[None, :]
    ny = tl.load(ny_ptr + m, mask=m_ok, other=0.0)[None, :]
    at = n.to(tl.int64)[:, None] * m_rows + m[None, :]
    ok = n_ok[:, None] & m_ok[None, :]
    gram = tl.load(gram_ptr + at, mask=ok, other=0.0).to(tl.float64)
    sq = tl.maximum(sx * sx * nx + sy * sy * ny - 2.0 * sx * sy * gram, 0.0)
    nd = tl.sqrt(sq)
    q = tl.sqrt(c) * nd * tl.sqrt(2.0 / wx) / tl.sqrt(wy)
    return at, ok, sx, wx, sy, wy, nd, q


@triton.jit
def pairwise_forward_kernel(
    gram_ptr, out_ptr, sx_ptr, wx_ptr, nx_ptr, sy_ptr, wy_ptr, ny_ptr, n_rows, m_rows, sc_ptr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """d_nm = log1p(q^2 + q sqrt(q^2 + 2)) / sqrt(c), one tile per program."""
    c = tl.load(sc_ptr)  # float64 scalars
    parts = _pairwise_tile(
        gram_ptr, sx_ptr, wx_ptr, nx_ptr, sy_ptr, wy_ptr, ny_ptr, n_rows, m_rows, c,
        BLOCK_N, BLOCK_M,
    )  # fmt: skip
    at, ok, q = parts[0], parts[1], parts[7]
    dist = _log1p(q * q + q * tl.sqrt(q * q + 2.0)) / tl.sqrt(c)
    tl.store(out_ptr + at, dist.to(tl.float32), mask=ok)


@triton.jit
def pairwise_backward_kernel(
    gout_ptr, gram_ptr, p_ptr, row_ptr, col_ptr, sx_ptr, wx_ptr, nx_ptr, sy_ptr, wy_ptr, ny_ptr,
    n_rows, m_rows, sc_ptr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """With K = g 2 sqrt(2) / (sqrt(w_n w_m) sqrt(q^2 + 2)) and P = K / |x_n - y_m| (0 at 0):
    grad_xe_n = xe_n sum_m (P + c/w_n K |x_n - y_m|) - sum_m P ye_m (and symmetrically for y).
    Stores P' = s_n s_m P (the Gram products then use the raw points) and this tile's share of
    the row sums (row_ptr[tile column, n]) and column sums (col_ptr[tile row, m]); a projected
    point's co-norm is floored, so its sums leave out the c/w term."""
    c = tl.load(sc_ptr)  # float64 scalars
    at, ok, sx, wx, sy, wy, nd, q = _pairwise_tile(
        gram_ptr, sx_ptr, wx_ptr, nx_ptr, sy_ptr, wy_ptr, ny_ptr, n_rows, m_rows, c,
        BLOCK_N, BLOCK_M,
    )  # fmt: skip
    g = tl.load(gout_ptr + at, mask=ok, other=0.0).to(tl.float64)
    k = g * 2.0 * tl.sqrt(2.0) / (tl.sqrt(wx * wy) * tl.sqrt(q * q + 2.0))
    p = tl.where(nd > 0.0, k / tl.where(nd > 0.0, nd, 1.0), 0.0)
    kn = k * nd
    row_sum = tl.sum(p + tl.where(sx < 1.0, 0.0, c / wx) * kn, axis=1)
    col_sum = tl.sum(p + tl.where(sy < 1.0, 0.0, c / wy) * kn, axis=0)
    tl.store(p_ptr + at, (p * sx * sy).to(tl.float32), mask=ok)
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    tl.store(row_ptr + tl.program_id(1).to(tl.int64) * n_rows + n, row_sum, mask=n < n_rows)
    tl.store(col_ptr + tl.program_id(0).to(tl.int64) * m_rows + m, col_sum, mask=m < m_rows)


@triton.jit
def pairwise_grad_rows_kernel(
    x_ptr, py_ptr, sum_ptr, s_ptr, n2_ptr, gx_ptr, d, BLOCK_D: tl.constexpr
):  # fmt: skip
    """grad_x of one row from grad_xe = s sum x - (P' y) / s, then through the projection."""
    x, at, inside = _load_row(x_ptr, d, BLOCK_D)
    py = _load_row(py_ptr, d, BLOCK_D)[0]
    row = tl.program_id(0).to(tl.int64)
    scale = tl.load(s_ptr + row)
    coef = (scale * tl.load(sum_ptr + row)).to(tl.float32)
    gxe = x * coef - py * (1.0 / scale).to(tl.float32)
    tl.store(gx_ptr + at, _unproject(gxe, x, scale, tl.load(n2_ptr + row)), mask=inside)


def block_d(d: int) -> int:
    """The tile width of a row: the next power of two >= d (at least 16)."""
    return max(16, triton.next_power_of_2(d))
