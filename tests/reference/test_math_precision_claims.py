"""The precision claims of docs/math.md, tested as stated.

1. ``exp0(u) = u`` bitwise when ``sqrt(c)|u| <= 1e-8`` (the ratio ``tanh(s)/s = 1 - s^2/3``
   rounds to 1 below ``s = sqrt(3) 2**-27 = 1.29e-8``) - for the reference and float64 exact
   ``hyperet.ops`` - and NOT merely when ``|u| <= 1e-8``: at ``c = 100`` such a ``u`` moves.
2. Theorem 1 in float64: ``Rad(r (x) x) = |r| Rad(x)`` holds to about
   ``eps e^{R} / (2 sqrt c)``, ``R = sqrt(c) |r| Rad(x)`` (the rounding of the result's
   coordinates, amplified by its conformal factor), and breaks at ``R = 38.12``, where
   ``tanh(R/2)`` rounds to 1: beyond, the result is the nearest interior float vector and its
   radius stays between about ``36.5 / sqrt(c)`` and ``42 / sqrt(c)`` (a vector of floats can
   lie closer to the boundary than ``1 - eps``) whatever ``r``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hyperet.ops as ops
from hyperet import reference as R

EPS = float(np.finfo(np.float64).eps)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 16),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1e-6, 0.37, 1.0, 100.0, 1e4]),
    st.floats(-30, -8),
)
def test_exp0_is_the_identity_bitwise_when_sqrt_c_u_is_at_most_1e_8(
    d: int, seed: int, c: float, log_s: float
) -> None:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(d)
    u = v / np.linalg.norm(v) * 10.0**log_s / math.sqrt(c)
    assert math.sqrt(c) * np.linalg.norm(u) <= 1.0000001e-8
    assert np.array_equal(R.expmap0(u, c=c), u)
    assert torch.equal(ops.expmap0(torch.from_numpy(u), c=c), torch.from_numpy(u))


def test_exp0_moves_u_of_norm_1e_8_when_c_is_large() -> None:
    u = np.array([0.6e-8, -0.8e-8])  # |u| = 1e-8, sqrt(c)|u| = 1e-7 at c = 100
    assert not np.array_equal(R.expmap0(u, c=100.0), u)
    assert np.array_equal(R.expmap0(u, c=1.0), u)


def test_theorem_1_holds_to_the_derived_bound_and_breaks_at_38_12() -> None:
    rng = np.random.default_rng(0)
    for c in (1.0, 0.37, 20.0):
        x = R.expmap0(rng.standard_normal(4) * 0.3, c=c)
        rad = float(R.dist0(x, c=c))
        for big_r in (5.0, 10.0, 20.0, 30.0, 34.0, 36.0, 38.0):
            r = big_r / (math.sqrt(c) * rad)
            got = float(R.dist0(R.mobius_scalar_mul(r, x, c=c), c=c))
            bound = EPS * math.exp(big_r) / (2 * math.sqrt(c)) + 8 * EPS * abs(r) * rad
            assert abs(got - abs(r) * rad) <= bound, (c, big_r, got)
        for big_r in (38.2, 40.0, 60.0, 1e3):
            r = big_r / (math.sqrt(c) * rad)
            got = float(R.dist0(R.mobius_scalar_mul(r, x, c=c), c=c)) * math.sqrt(c)
            assert 36.5 < got < 42.0, (c, big_r, got)  # saturated: no longer |r| Rad(x)
    # tanh(T) rounds to 1 once 1 - tanh T = 2 e^{-2T} < 2**-54 (half the spacing below 1)
    assert math.isclose(55 * math.log(2), 38.12, abs_tol=0.01)
