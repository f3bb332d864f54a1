"""The train-mode Möbius matvec with an analytic backward (hyperet/ops/_fused.py) against autograd
through the plain formula (the same op with a 0-d tensor curvature, which takes the unfused
path), and gradcheck in float64."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

import hyperet.ops as ops

F64 = torch.float64
D = 8


def _params(seed: int, scale: float) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "dense": torch.eye(D, dtype=F64) * scale + 0.3 * torch.randn(D, D, generator=g, dtype=F64),
        "diagonal": scale + 0.3 * torch.randn(D, generator=g, dtype=F64),
        "block": torch.eye(2, dtype=F64).repeat(D // 2, 1, 1) * scale
        + 0.3 * torch.randn(D // 2, 2, 2, generator=g, dtype=F64),
        "banded": torch.zeros(5, D, dtype=F64).index_fill_(0, torch.tensor([2]), scale)
        + 0.3 * torch.randn(5, D, generator=g, dtype=F64),
    }


FNS: dict[str, Callable[..., Tensor]] = {
    "dense": ops.mobius_matvec,
    "diagonal": ops.diagonal_matvec,
    "block": ops.block_diagonal_matvec,
    "banded": ops.banded_matvec,
}


def _points(c: float) -> Tensor:
    """sqrt(c)|x|: random radii, near (float64 train mode forms w = 1 - c|x|^2 with an absolute
    error ~1e-16, so its gradients are only defined to ~1e-16 / w: stop at w = 2e-7) and on or
    beyond the boundary (projected), tiny and zero."""
    g = torch.Generator().manual_seed(3)
    v = torch.randn(10, D, generator=g, dtype=F64)
    u = v / v.norm(dim=-1, keepdim=True)
    radii = [0.1, 0.5, 0.9, 0.99, 1 - 1e-5, 1 - 1e-7, 1 + 1e-9, 1.5, 1e-6, 0.0]
    return u * torch.tensor(radii, dtype=F64)[:, None] / c**0.5


@pytest.mark.parametrize("scale", [1.0, 40.0])  # 40: most rows saturate at the output ceiling
@pytest.mark.parametrize("kind", sorted(FNS))
def test_fused_matches_autograd_through_the_plain_formula(kind: str, scale: float) -> None:
    fn = FNS[kind]
    p0 = _params(1, scale)[kind]
    x0 = _points(0.7)
    cot = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4), dtype=F64)
    results = []
    for c in (0.7, torch.tensor(0.7, dtype=F64)):  # float: fused; 0-d tensor: plain autograd
        p, x = p0.clone().requires_grad_(), x0.clone().requires_grad_()
        out = fn(p, x, c=c, policy="train")
        gp, gx = torch.autograd.grad((out * cot).sum(), (p, x))
        results.append((out, gp, gx))
    (o1, p1, x1), (o2, p2, x2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(p1, p2, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(x1, x2, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kind", sorted(FNS))
def test_fused_gradcheck_float64(kind: str) -> None:
    fn = FNS[kind]
    p = _params(2, 1.3)[kind].requires_grad_()
    x = _points(0.7)[[0, 1, 2, 3, 8, 9]].requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, c=0.7, policy="train"), (p, x))


@pytest.mark.parametrize("kind", sorted(FNS))
def test_fused_float32_matches_float64_and_saturates_precisely(kind: str) -> None:
    fn = FNS[kind]
    p = _params(5, 40.0)[kind]
    x = _points(1.0)[:6]
    got = fn(p.float(), x.float(), c=1.0)
    want = fn(p, x, c=1.0, policy="train")
    torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=1e-7)
    # saturated rows: sqrt(c)|y| = z_out (1 + rho), |rho| <= eps (one rounding of the per-vector
    # coefficient, one of the product; the scalars are float64)
    eps = torch.finfo(torch.float32).eps
    z_out = ops.policy.output_ceiling(torch.float32)
    norm = got.double().norm(dim=-1)
    sat = norm > z_out * (1 - 2 * eps)
    assert sat.sum() >= 3
    assert bool(((norm[sat] / z_out - 1).abs() <= eps * (1 + 1e-6)).all())


def test_train_expmap0_saturates_precisely() -> None:
    # train-mode expmap0 caps tanh(s) at z_out with one float64 per-vector coefficient: the
    # stored point has sqrt(c)|y| = z_out (1 + rho), |rho| <= eps
    g = torch.Generator().manual_seed(6)
    v = torch.randn(200, 16, generator=g)
    u = v / v.norm(dim=-1, keepdim=True) * torch.logspace(0.95, 8, 200)[:, None]
    c = 0.01
    y = ops.expmap0(u, c=c).double()
    z = c**0.5 * y.norm(dim=-1)
    z_out, eps = ops.policy.output_ceiling(torch.float32), torch.finfo(torch.float32).eps
    sat = c**0.5 * u.double().norm(dim=-1) > math.atanh(z_out)
    assert sat.sum() > 150
    assert bool(((z[sat] / z_out - 1).abs() <= eps * (1 + 1e-6)).all())
    assert bool((z[~sat] <= z_out * (1 + eps)).all())
