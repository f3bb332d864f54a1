"""Torch cone and Lorentz ops: exact mode is the reference, train mode agrees away from the
degenerate points, gradients are right (gradcheck, float64) and finite in float32 at the apex,
on the axis, inside r_in and near the boundary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hyperet import ops
from hyperet import reference as R

C = 0.37


def _points(n: int, d: int, lo: float, hi: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, d, generator=g, dtype=torch.float64)
    r = lo + (hi - lo) * torch.rand(n, 1, generator=g, dtype=torch.float64)
    return u / u.norm(dim=-1, keepdim=True) * r / math.sqrt(C)


X = _points(32, 6, 0.15, 0.999, 0)  # apexes outside r_in(0.1) = 0.099
Y = _points(32, 6, 0.0, 0.999, 1)


def test_exact_mode_returns_the_reference_values() -> None:
    xn, yn = X.numpy(), Y.numpy()
    pairs = [
        (ops.entailment_aperture(X, c=C, K=0.1), R.entailment_aperture(xn, c=C, K=0.1)),
        (ops.entailment_angle(X, Y, c=C), R.entailment_angle(xn, yn, c=C)),
        (ops.entailment_energy(X, Y, c=C, K=0.1), R.entailment_energy(xn, yn, c=C, K=0.1)),
        (ops.to_lorentz(X, c=C), R.to_lorentz(xn, c=C)),
    ]
    lx, ly = R.to_lorentz(xn, c=C), R.to_lorentz(yn, c=C)
    pairs += [
        (ops.from_lorentz(torch.from_numpy(lx), c=C), R.from_lorentz(lx, c=C)),
        (
            ops.lorentz_dist(torch.from_numpy(lx), torch.from_numpy(ly), c=C),
            R.lorentz_dist(lx, ly, c=C),
        ),
    ]
    for got, want in pairs:
        np.testing.assert_array_equal(got.numpy(), want)


def test_train_mode_agrees_with_exact_mode_on_ordinary_points() -> None:
    lx, ly = ops.to_lorentz(X, c=C), ops.to_lorentz(Y, c=C)
    for op, args, kw in [
        (ops.entailment_aperture, (X,), {"K": 0.1}),
        (ops.entailment_angle, (X, Y), {}),
        (ops.entailment_energy, (X, Y), {"K": 0.1}),
        (ops.to_lorentz, (X,), {}),
        (ops.from_lorentz, (lx,), {}),
        (ops.lorentz_dist, (lx, ly), {}),
    ]:
        exact = op(*args, c=C, **kw)
        train = op(*args, c=C, policy="train", **kw)
        torch.testing.assert_close(train, exact, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("policy", ["exact", "train"])
def test_gradcheck_float64(policy: str) -> None:
    x = X[:4].clone().requires_grad_()
    y = Y[:4].clone().requires_grad_()
    c = torch.tensor(C, dtype=torch.float64, requires_grad=True)
    checks = [
        (lambda a, k: ops.entailment_aperture(a, c=k, K=0.1, policy=policy), (x, c)),
        (lambda a, b, k: ops.entailment_angle(a, b, c=k, policy=policy), (x, y, c)),
        (lambda a, b: ops.entailment_energy(a, b, c=C, K=0.1, policy=policy), (x, y)),
        (lambda a, k: ops.to_lorentz(a, c=k, policy=policy), (x, c)),
        (
            lambda a, b, k: ops.lorentz_dist(
                ops.to_lorentz(a, c=k, policy=policy),
                ops.to_lorentz(b, c=k, policy=policy),
                c=k,
                policy=policy,
            ),
            (x, y, c),
        ),
        (
            lambda a: ops.from_lorentz(ops.to_lorentz(a, c=C, policy=policy), c=C, policy=policy),
            (x,),
        ),
    ]
    for fn, args in checks:
        assert torch.autograd.gradcheck(fn, args)


def test_float32_train_gradients_are_finite_at_the_degenerate_points() -> None:
    x = torch.tensor(
        [
            [1 - 6e-8, 0.0],  # at the float32 boundary
            [0.0, 0.0],  # apex at the origin
            [0.05, 0.0],  # inside r_in: aperture capped
            [0.5, 0.0],  # y = x
            [0.5, 0.0],  # y on the axis beyond x
            [0.5, 0.0],  # y just off the apex
        ],
        requires_grad=True,
    )
    y = torch.tensor(
        [[0.3, 0.2], [0.2, 0.1], [0.1, 0.3], [0.5, 0.0], [0.7, 0.0], [0.5, 1e-30]],
        requires_grad=True,
    )
    energy = ops.entailment_energy(x, y, c=1.0, K=0.1)
    dist = ops.lorentz_dist(ops.to_lorentz(x, c=1.0), ops.to_lorentz(y, c=1.0), c=1.0)
    (energy.sum() + dist.sum() + ops.entailment_aperture(x, c=1.0, K=0.1).sum()).backward()
    assert torch.isfinite(energy).all() and torch.isfinite(dist).all()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    assert energy[1] == 0 and energy[3] == 0 and energy[4] == 0  # degenerate / inside: 0
    psi = ops.entailment_aperture(x[2:3].detach(), c=1.0, K=0.1)
    # the argument is capped at 1 - eps (up to float32 rounding): just below pi/2
    assert math.asin(1 - 4 * 2**-23) < float(psi) < math.pi / 2


def test_exact_mode_refuses_the_domain_errors() -> None:
    x = torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^y: equals x"):
        ops.entailment_angle(x, x.clone(), c=1.0)
    with pytest.raises(ValueError, match=r"^x: lies inside"):
        ops.entailment_aperture(x * 0.1, c=1.0, K=0.1)
    with pytest.raises(ValueError, match=r"^K: "):
        ops.entailment_energy(x, x * 0.5, c=1.0, K=-1.0)
    with pytest.raises(ValueError, match=r"^v: time component"):
        ops.from_lorentz(torch.tensor([[-1.0, 0.0]], dtype=torch.float64), c=1.0)
