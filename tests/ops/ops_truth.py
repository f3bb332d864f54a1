"""Independent ground truth for the op tests: the textbook formulas in mpmath at 80 digits.

Inputs are converted exactly (``mpf(float(v))``); cancelling forms are avoided (the distance
uses :math:`\\operatorname{log1p}` of the arcosh argument, the gyration its definition through
Möbius additions, which at 80 digits keeps far more than float64's 16).
"""

from __future__ import annotations

from collections.abc import Sequence

import mpmath as mp
import numpy as np

mp.mp.dps = 80

Vec = list


def vec(a: Sequence[float] | np.ndarray) -> Vec:
    return [mp.mpf(float(v)) for v in np.asarray(a, dtype=np.float64).ravel()]


def dot(a: Vec, b: Vec) -> mp.mpf:
    return mp.fsum(p * q for p, q in zip(a, b, strict=True))


def norm(a: Vec) -> mp.mpf:
    return mp.sqrt(dot(a, a))


def add(x: Vec, y: Vec, c: mp.mpf) -> Vec:
    xy, x2, y2 = dot(x, y), dot(x, x), dot(y, y)
    a = 1 + 2 * c * xy + c * y2
    b = 1 - c * x2
    den = 1 + 2 * c * xy + c * c * x2 * y2
    return [(a * p + b * q) / den for p, q in zip(x, y, strict=True)]


def expmap0(u: Vec, c: mp.mpf) -> Vec:
    n = norm(u)
    if n == 0:
        return [mp.mpf(0)] * len(u)
    s = mp.sqrt(c) * n
    return [mp.tanh(s) / s * p for p in u]


def logmap0(x: Vec, c: mp.mpf) -> Vec:
    n = norm(x)
    if n == 0:
        return [mp.mpf(0)] * len(x)
    z = mp.sqrt(c) * n
    return [mp.atanh(z) / z * p for p in x]


def scalar_mul(r: float, x: Vec, c: mp.mpf) -> Vec:
    n = norm(x)
    if n == 0:
        return [mp.mpf(0)] * len(x)
    z = mp.sqrt(c) * n
    return [mp.tanh(mp.mpf(r) * mp.atanh(z)) / z * p for p in x]


def matvec(m: np.ndarray, x: Vec, c: mp.mpf) -> Vec:
    mx = [mp.fsum(mp.mpf(float(m[i, j])) * x[j] for j in range(len(x))) for i in range(m.shape[0])]
    nx, nmx = norm(x), norm(mx)
    if nx == 0 or nmx == 0:
        return [mp.mpf(0)] * len(mx)
    sc = mp.sqrt(c)
    t = mp.tanh(nmx / nx * mp.atanh(sc * nx))
    return [t / (sc * nmx) * p for p in mx]


def lam(x: Vec, c: mp.mpf) -> mp.mpf:
    return 2 / (1 - c * dot(x, x))


def expmap(x: Vec, u: Vec, c: mp.mpf) -> Vec:
    return add(x, expmap0([lam(x, c) / 2 * p for p in u], c), c)


def logmap(x: Vec, y: Vec, c: mp.mpf) -> Vec:
    v = logmap0(add([-p for p in x], y, c), c)
    return [2 / lam(x, c) * p for p in v]


def dist(x: Vec, y: Vec, c: mp.mpf) -> mp.mpf:
    d = [p - q for p, q in zip(x, y, strict=True)]
    t = 2 * c * dot(d, d) / ((1 - c * dot(x, x)) * (1 - c * dot(y, y)))
    return mp.log1p(t + mp.sqrt(t * (t + 2))) / mp.sqrt(c)


def dist0(x: Vec, c: mp.mpf) -> mp.mpf:
    return 2 * mp.atanh(mp.sqrt(c) * norm(x)) / mp.sqrt(c)


def gyration(a: Vec, b: Vec, z: Vec, c: mp.mpf) -> Vec:
    # gyr[a, b] is linear: apply it to z scaled into the ball, via its definition.
    s = mp.mpf(1) / (4 * mp.sqrt(c) * (norm(z) or 1))
    zs = [s * p for p in z]
    ab = add(a, b, c)
    g = add([-p for p in ab], add(a, add(b, zs, c), c), c)
    return [p / s for p in g]


def transport(x: Vec, y: Vec, v: Vec, c: mp.mpf) -> Vec:
    g = gyration(y, [-p for p in x], v, c)
    f = lam(x, c) / lam(y, c)
    return [f * p for p in g]


def to_array(v: Vec | mp.mpf) -> np.ndarray:
    if isinstance(v, list):
        return np.array([float(p) for p in v])
    return np.array(float(v))


def ulp_error(got: np.ndarray, exact: Vec | mp.mpf, eps: float, tiny: float = 2.0**-1074) -> float:
    """Normwise forward error in ulps: ``|got - exact| / max(eps |exact|, tiny)``.

    ``tiny`` (the format's smallest subnormal) is the spacing that limits subnormal results.
    """
    ex = exact if isinstance(exact, list) else [exact]
    g = np.asarray(got, dtype=np.float64).ravel()
    diff = mp.sqrt(mp.fsum((mp.mpf(float(p)) - q) ** 2 for p, q in zip(g, ex, strict=True)))
    scale = mp.sqrt(mp.fsum(q * q for q in ex))
    return float(diff / max(scale * mp.mpf(eps), mp.mpf(tiny)))
