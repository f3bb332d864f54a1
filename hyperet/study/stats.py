r"""Statistics over seeds: mean, standard deviation, Student-t interval, paired t-test.

For values :math:`x_1, \dots, x_n` (one per seed):

.. math::

    \bar x = \frac1n \sum_i x_i, \qquad
    s = \sqrt{\frac{1}{n-1} \sum_i (x_i - \bar x)^2}, \qquad
    \bar x \pm t_{0.975,\,n-1} \frac{s}{\sqrt n} \quad (95\,\%\ \text{interval})

Paired test of an arm against the baseline on the same seeds (same data, same data order):
:math:`d_i = x_i - y_i`,

.. math::

    t = \frac{\bar d}{s_d / \sqrt n}, \qquad
    p = P(|T_{n-1}| \ge |t|) = I_{\nu / (\nu + t^2)}\!\left(\tfrac{\nu}{2}, \tfrac12\right),
    \quad \nu = n - 1

with :math:`I_x(a, b)` the regularised incomplete beta function (evaluated by mpmath, a core
dependency; the quantile :math:`t_{0.975,\nu}` is its inverse, found by bisection). Every formula
here is executed by ``tests/study/test_stats.py`` against closed forms (``nu = 1``: Cauchy;
``nu = 2``) and published table values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import mpmath
import numpy as np


def t_two_sided_p(t: float, df: int) -> float:
    r"""``P(|T| >= |t|)`` for Student's ``T`` with ``df`` degrees of freedom.

    .. math:: p = I_{\nu/(\nu+t^2)}(\nu/2, 1/2)

    >>> round(t_two_sided_p(1.0, 1), 12)  # Cauchy: 1 - 2 atan(1) / pi
    0.5
    """
    if df < 1:
        raise ValueError(f"df: need at least 1 degree of freedom, got {df}")
    if not math.isfinite(t):
        raise ValueError(f"t: must be finite, got {t}")
    x = mpmath.mpf(df) / (df + mpmath.mpf(t) ** 2)
    return float(mpmath.betainc(mpmath.mpf(df) / 2, mpmath.mpf(1) / 2, 0, x, regularized=True))


def t_quantile(q: float, df: int) -> float:
    """The ``q``-quantile of Student's t with ``df`` degrees of freedom (``0.5 < q < 1``).

    Solves ``t_two_sided_p(t, df) = 2 (1 - q)`` by bisection (the p-value falls with ``t``).

    >>> round(t_quantile(0.975, 2), 6)
    4.302653
    """
    if not 0.5 < q < 1:
        raise ValueError(f"q: expected 0.5 < q < 1, got {q}")
    target = 2 * (1 - q)
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_two_sided_p(mid, df) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return (lo + hi) / 2


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """``{"n", "mean", "std", "ci95": [lo, hi], "values"}`` of one measurement over seeds.

    ``std`` and ``ci95`` are ``None`` for fewer than two values.
    """
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None, "values": []}
    mean = float(x.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "std": None, "ci95": None, "values": x.tolist()}
    std = float(x.std(ddof=1))
    half = t_quantile(0.975, n - 1) * std / math.sqrt(n)
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "ci95": [mean - half, mean + half],
        "values": x.tolist(),
    }


def paired_t_test(arm: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """Paired t-test of ``arm`` against ``baseline`` (same seeds, in the same order).

    Returns ``{"n", "mean_diff", "t", "df", "p"}``. With identical differences (``s_d = 0``)
    ``t`` is undefined: ``t`` is ``None`` and ``p`` is 1 when every difference is zero, else 0.
    Fewer than two pairs give ``t = p = None``.
    """
    a, b = np.asarray(arm, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"arm, baseline: need paired values, got {a.size} and {b.size}")
    d = a - b
    n = int(d.size)
    out: dict[str, Any] = {"n": n, "mean_diff": float(d.mean()) if n else None, "df": n - 1}
    if n < 2:
        return {**out, "t": None, "p": None}
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return {**out, "t": None, "p": 1.0 if float(d.mean()) == 0.0 else 0.0}
    t = float(d.mean()) / (sd / math.sqrt(n))
    return {**out, "t": t, "p": t_two_sided_p(t, n - 1)}


__all__ = ["paired_t_test", "summarize", "t_quantile", "t_two_sided_p"]
