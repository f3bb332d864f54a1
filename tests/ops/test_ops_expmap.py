"""Regression tests for ``ops.expmap`` on the golden families E and G, graded against mpmath.

Family G: ``u = -1e3 x`` from a point ``x`` near the boundary, so ``p = exp0(u / w(x))`` lies on
the boundary opposite ``x`` and ``x + p`` cancels to ``~(1 - sqrt(c)|x|)``: ``p`` must be carried
beyond float64 (it was off by up to 8e15 ulp). Family E: ``sqrt(c)|u|`` up to ``1e300`` at
``c = 1e3`` from a point near the boundary, where ``u / w(x)`` overflows (it was NaN).
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import ops_families as fam
import ops_truth as truth
import pytest
import torch

import hyperet.ops as ops

D = 4


def _family_g(rng: np.random.Generator, dtype: torch.dtype) -> list[tuple[np.ndarray, np.ndarray]]:
    ks = (2, 5, 8, 12, 15, 16) if dtype == torch.float64 else (2, 4, 6, 7, 8, 9)
    cases = []
    for k in ks:
        for _ in range(3):
            x = fam.unit(rng, D) * (1 - 10.0**-k)
            if dtype == torch.float32:
                x = x.astype(np.float32).astype(np.float64)
                if np.linalg.norm(x) >= 1:
                    continue
            cases.append((x, (-1e3 * x).astype(np.float32 if dtype == torch.float32 else float)))
    return cases


def _family_e(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, float]]:
    cases = []
    for c in (1.0, 1e3):
        for k in (4, 10, 12, 15):
            x = fam.boundary_points(rng, D, c, range(k, k + 1))[0]
            for u in fam.huge_tangents(rng, D, c):
                cases.append((x, u, c))
    return cases


def _err(got: torch.Tensor, x: np.ndarray, u: np.ndarray, c: float, eps: float) -> float:
    exact = truth.expmap(truth.vec(x), truth.vec(u), mp.mpf(c))
    return truth.ulp_error(got.double().numpy(), exact, eps)


@pytest.mark.parametrize(
    ("dtype", "policy", "bound"),
    [
        pytest.param(torch.float64, "exact", 4.0, id="float64-exact"),
        pytest.param(torch.float32, "train", 8.0, id="float32-train"),
        pytest.param(torch.float32, "exact", 8.0, id="float32-exact"),
    ],
)
def test_expmap_tangent_pointing_back_from_near_the_boundary(
    dtype: torch.dtype, policy: str, bound: float
) -> None:
    rng = np.random.default_rng(11)
    eps = float(torch.finfo(dtype).eps)
    errors = []
    for x, u in _family_g(rng, dtype):
        xt, ut = torch.tensor(x, dtype=dtype), torch.tensor(u, dtype=dtype)
        got = ops.expmap(xt, ut, c=1.0, policy=policy)
        errors.append(_err(got, x, u.astype(np.float64), 1.0, eps))
    assert max(errors) <= bound, errors


def test_expmap_huge_tangents_near_the_boundary_float64() -> None:
    rng = np.random.default_rng(12)
    errors = []
    for x, u, c in _family_e(rng):
        got = ops.expmap(torch.tensor(x), torch.tensor(u), c=c)
        errors.append(_err(got, x, u, c, 2.0**-52))
    assert max(errors) <= 4.0, errors


def test_expmap_gradients_finite_for_huge_tangents_and_cancellation() -> None:
    rng = np.random.default_rng(13)
    xs, us = [], []
    for x, u, c in _family_e(rng):
        if c == 1e3:
            xs.append(x)
            us.append(u)
    x = torch.tensor(np.array(xs), requires_grad=True)
    u = torch.tensor(np.array(us), requires_grad=True)
    ops.expmap(x, u, c=1e3).sum().backward()
    assert x.grad is not None and u.grad is not None
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(u.grad).all())
    xg, ug = zip(*_family_g(rng, torch.float64), strict=True)
    x = torch.tensor(np.array(xg), requires_grad=True)
    u = torch.tensor(np.array(ug), requires_grad=True)
    ops.expmap(x, u, c=1.0).sum().backward()
    assert x.grad is not None and u.grad is not None
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(u.grad).all())
