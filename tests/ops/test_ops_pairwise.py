"""pairwise_dist: equals dist on every pair; the fast path's stated accuracy; the accurate path."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import hyperet.ops as ops

F64 = torch.float64


def _points(n: int, d: int, seed: int, radius: float | None = None) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g, dtype=F64)
    r = torch.rand(n, 1, generator=g, dtype=F64) * 0.95 if radius is None else radius
    return v / v.norm(dim=-1, keepdim=True) * r


@pytest.mark.parametrize("accurate", [False, True])
def test_pairwise_matches_dist_on_every_pair(accurate: bool) -> None:
    x, y = _points(9, 6, seed=1).reshape(3, 3, 6), _points(12, 6, seed=2).reshape(3, 4, 6)
    got = ops.pairwise_dist(x, y, c=1.0, accurate=accurate)
    want = ops.dist(x.unsqueeze(-2), y.unsqueeze(-3), c=1.0)
    assert got.shape == (3, 3, 4)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_fast_path_error_within_the_stated_bound_and_accurate_path_exact() -> None:
    # nearby points: |x - y| = delta |x|; the docstring's bound on the relative error is
    # gamma eps (|x|^2 + |y|^2) / (2 |x - y|^2) with gamma a small multiple (here 8 D)
    d = 16
    x = _points(8, d, seed=3, radius=0.9)
    eps = 2.0**-52
    for delta in (1e-2, 1e-4, 1e-6, 1e-9):
        y = x + delta * 0.9 * _points(8, d, seed=4, radius=1.0)
        exact = ops.dist(x, y, c=1.0)  # explicit differences: a few ulp (test_ops_accuracy)
        fast = ops.pairwise_dist(x, y, c=1.0).diagonal()
        accurate = ops.pairwise_dist(x, y, c=1.0, accurate=True).diagonal()
        sq = (x - y).pow(2).sum(-1)
        bound = 8 * d * eps * (x.pow(2).sum(-1) + y.pow(2).sum(-1)) / (2 * sq)
        assert ((fast - exact).abs() / exact <= bound).all(), delta
        torch.testing.assert_close(accurate, exact, rtol=4 * eps, atol=0)


def test_fast_path_loses_nearby_points_below_sqrt_eps() -> None:
    # the stated limitation is real: at |x - y| = 1e-10 |x| the fast path is off by > 1 %
    x = _points(4, 8, seed=5, radius=0.9)
    y = x + 1e-10 * _points(4, 8, seed=6, radius=1.0)
    exact = ops.dist(x, y, c=1.0)
    fast = ops.pairwise_dist(x, y, c=1.0).diagonal()
    assert ((fast - exact).abs() / exact > 1e-2).any()


def test_pairwise_gradients_finite_when_points_coincide() -> None:
    for dtype in (torch.float32, F64):
        x = _points(5, 4, seed=7).to(dtype).requires_grad_()
        for accurate in (False, True):
            out = ops.pairwise_dist(x, x, c=1.0, accurate=accurate)
            (grad,) = torch.autograd.grad(out.sum(), x)
            assert torch.isfinite(grad).all()


def test_pairwise_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"^x:"):
        ops.pairwise_dist(torch.zeros(3, dtype=F64), torch.zeros(2, 3, dtype=F64), c=1.0)
