"""Gradients: gradcheck in float64 for every op (random, near 0, near the boundary, learnable c),
identity Jacobians at 0, and finite float32 gradients on the families (train mode)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

import hyperet.ops as ops

F64 = torch.float64


def _points(n: int, d: int, radius: float, *, dtype: torch.dtype = F64, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g, dtype=torch.float64)
    return (v / v.norm(dim=-1, keepdim=True) * radius).to(dtype)


# op name -> (function of (x, y, c) returning a tensor, needs y distinct from x)
OPS: dict[str, Callable[[Tensor, Tensor, Tensor | float], Tensor]] = {
    "conformal_factor": lambda x, y, c: ops.conformal_factor(x, c=c),
    "mobius_add": lambda x, y, c: ops.mobius_add(x, y, c=c),
    "mobius_scalar_mul": lambda x, y, c: ops.mobius_scalar_mul(0.7, x, c=c),
    "mobius_scalar_mul_r": lambda x, y, c: ops.mobius_scalar_mul(y[..., 0] * 3, x, c=c),
    "mobius_matvec": lambda x, y, c: ops.mobius_matvec(y.mT @ y + 0.5, x, c=c),
    "expmap0": lambda x, y, c: ops.expmap0(x * 40, c=c),
    "logmap0": lambda x, y, c: ops.logmap0(x, c=c),
    "expmap": lambda x, y, c: ops.expmap(x, y * 5, c=c),
    "logmap": lambda x, y, c: ops.logmap(x, y, c=c),
    "dist": lambda x, y, c: ops.dist(x, y, c=c),
    "dist0": lambda x, y, c: ops.dist0(x, c=c),
    "gyration": lambda x, y, c: ops.gyration(x, y, x + y, c=c),
    "transport": lambda x, y, c: ops.transport(x, y, y - 2 * x, c=c),
    "project": lambda x, y, c: ops.project(x * 3, c=c, eps=1e-3),
    "diagonal_matvec": lambda x, y, c: ops.diagonal_matvec(y * 2, x, c=c),
    "block_diagonal_matvec": lambda x, y, c: ops.block_diagonal_matvec(
        y[:2].reshape(2, 2, 2) * 3, x, c=c
    ),
    "banded_matvec": lambda x, y, c: ops.banded_matvec(
        torch.stack([y[0], y[1], y[0] * y[1]]) * 3, x, c=c
    ),
    "pairwise_dist": lambda x, y, c: ops.pairwise_dist(x, y, c=c),
    "pairwise_dist_accurate": lambda x, y, c: ops.pairwise_dist(x, y, c=c, accurate=True),
}


def _check(name: str, x: Tensor, y: Tensor, c: Tensor | float, **kw: float) -> None:
    fn = OPS[name]
    inputs = (x.requires_grad_(), y.requires_grad_())
    if isinstance(c, Tensor):
        c.requires_grad_()
        inputs = (*inputs, c)

        def f(*a: Tensor) -> Tensor:
            return fn(a[0], a[1], a[2])
    else:

        def f(*a: Tensor) -> Tensor:
            return fn(a[0], a[1], c)

    assert torch.autograd.gradcheck(f, inputs, **kw), name


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradcheck_random_points(name: str) -> None:
    _check(name, _points(2, 4, 0.6, seed=1), _points(2, 4, 0.4, seed=2), 1.3)


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradcheck_learnable_curvature(name: str) -> None:
    c = torch.tensor(0.8, dtype=F64)
    _check(name, _points(2, 4, 0.5, seed=3), _points(2, 4, 0.7, seed=4), c)


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradcheck_near_zero(name: str) -> None:
    # points of norm 1e-4: every branch switch (series / atanh) is exercised across the probe
    _check(name, _points(2, 4, 1e-4, seed=5), _points(2, 4, 3e-4, seed=6), 2.0)


@pytest.mark.parametrize("name", sorted(set(OPS) - {"project"}))
def test_gradcheck_near_boundary(name: str) -> None:
    # sqrt(c)|x| = 1 - 1e-6: gradients ~1e6; central differences with a step far inside the gap
    x = _points(2, 4, 1 - 1e-6, seed=7)
    y = _points(2, 4, 1 - 1e-5, seed=8)
    _check(name, x, y, 1.0, eps=1e-11, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("c", [1e-6, 1.0, 250.0])
@pytest.mark.parametrize("fn", [ops.expmap0, ops.logmap0], ids=["expmap0", "logmap0"])
def test_jacobian_at_zero_is_identity(fn: Callable[..., Tensor], c: float) -> None:
    for dtype in (torch.float64, torch.float32):
        jac = torch.autograd.functional.jacobian(lambda v: fn(v, c=c), torch.zeros(5, dtype=dtype))
        assert torch.equal(jac, torch.eye(5, dtype=dtype))


def test_gradients_at_zero_vector_are_finite_and_exact() -> None:
    zero = torch.zeros(3, 4, dtype=F64, requires_grad=True)
    y = _points(3, 4, 0.5, seed=9)
    ops.mobius_add(zero, y, c=1.0).sum().backward()
    assert zero.grad is not None and torch.isfinite(zero.grad).all()
    # d/dx (x (+) y) at x = 0 is w(y)^2 ... finite and nonzero; d(x, x) has a zero subgradient
    x = _points(3, 4, 0.5, seed=10).requires_grad_()
    ops.dist(x, x.detach(), c=1.0).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def _float32_family() -> Tensor:
    """float32 points: the last float below the boundary, within 1e-7 of it, on it and beyond
    (train mode treats those as the boundary), tiny, subnormal and zero vectors."""
    d = 4
    unit = _points(1, d, 1.0, seed=11)[0].float()
    radii = [1 - 2.0**-24, 1 - 1e-7, 1 - 3e-7, 1.0, 1.5, 0.999, 0.5, 1e-20, 1e-38]
    pts = [unit * r for r in radii]
    sub = torch.zeros(d)
    sub[0] = 1e-45
    return torch.stack([*pts, sub, torch.zeros(d)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(OPS))
def test_train_mode_gradients_finite_on_float32_families(name: str, dtype: torch.dtype) -> None:
    x = _float32_family().to(dtype).requires_grad_()
    y = x.detach().flip(0).clone().requires_grad_()
    c = torch.tensor(1.0, requires_grad=True)
    out = OPS[name](x, y, c)
    assert out.dtype == dtype
    assert torch.isfinite(out).all(), name
    (out.float() * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    for t in (x, y, c):
        assert t.grad is None or torch.isfinite(t.grad).all(), name


def test_train_mode_huge_tangent_vectors_have_finite_gradients() -> None:
    u = _points(4, 3, 1.0, seed=12).float() * torch.tensor([[1e-30], [9.0], [1e10], [1e30]])
    u.requires_grad_()
    y = ops.expmap0(u, c=1.0)
    y.sum().backward()
    assert torch.isfinite(y).all() and u.grad is not None and torch.isfinite(u.grad).all()


@pytest.mark.parametrize("name", sorted(set(OPS) - {"project", "expmap0"}))
def test_train_mode_gradients_finite_for_pairs_at_the_input_conorm_floor(name: str) -> None:
    # both points on or beyond the boundary (projected onto w = 2**-52 in float32), equal,
    # antipodal and orthogonal: backward forms powers of 1/w up to w^-4 (docs/policy.md)
    u = _points(2, 4, 1.0, seed=14).float()
    x = torch.stack([u[0], u[0] * 1.5, u[0], u[0], u[0] * 1.0000001])
    y = torch.stack([u[0], -u[0] * 2.0, -u[0], u[1], -u[0]])
    x, y = x.requires_grad_(), y.requires_grad_()
    c = torch.tensor(1.0, requires_grad=True)
    out = OPS[name](x, y, c)
    assert torch.isfinite(out).all(), name
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    for t in (x, y, c):
        assert t.grad is None or torch.isfinite(t.grad).all(), name
