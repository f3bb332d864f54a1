"""The numerical policy: defaults per dtype, validation in exact mode, train-mode limits,
half-precision round trips, and CUDA parity (skipped without a GPU)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import hyperet.ops as ops
from hyperet.ops.policy import (
    input_conorm_floor,
    input_radius_ceiling,
    output_ceiling,
    radius_ceiling,
    resolve_policy,
)

F64 = torch.float64


def _unit(d: int, dtype: torch.dtype = F64) -> Tensor:
    v = torch.arange(1.0, d + 1, dtype=F64)
    return (v / v.norm()).to(dtype)


def _inside_float64(y: Tensor, c: float) -> bool:
    """Strictly inside the ball, decided in 80-digit-free exact rational arithmetic."""
    from fractions import Fraction

    for row in y.double().reshape(-1, y.shape[-1]).tolist():
        if Fraction(c) * sum(Fraction(v) ** 2 for v in row) >= 1:
            return False
    return True


def test_default_policy_per_dtype() -> None:
    assert resolve_policy(None, F64) == "exact"
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert resolve_policy(None, dtype) == "train"
    with pytest.raises(ValueError, match=r"^policy:"):
        resolve_policy("fast", F64)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda x: ops.logmap0(x, c=1.0), "x"),
        (lambda x: ops.dist(torch.zeros_like(x), x, c=1.0), "y"),
        (lambda x: ops.mobius_add(x, torch.zeros_like(x), c=1.0), "x"),
        (lambda x: ops.gyration(torch.zeros_like(x), x, x, c=1.0), "b"),
        (lambda x: ops.banded_matvec(torch.ones(3, x.shape[-1], dtype=F64), x, c=1.0), "x"),
    ],
)
@pytest.mark.parametrize("bad", ["boundary", "outside", "nan", "inf"])
def test_exact_mode_refuses_invalid_points_naming_the_argument(call, name, bad) -> None:  # type: ignore[no-untyped-def]
    x = {
        "boundary": _unit(3),
        "outside": _unit(3) * 1.5,
        "nan": torch.tensor([0.1, math.nan, 0.0], dtype=F64),
        "inf": torch.tensor([0.1, math.inf, 0.0], dtype=F64),
    }[bad]
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call(x)


def test_exact_mode_refuses_the_last_float_beyond_the_boundary_but_accepts_the_one_inside() -> None:
    e = torch.zeros(2, dtype=F64)
    e[0] = 1 - 2.0**-53  # the largest float below 1
    assert math.isfinite(float(ops.dist0(e, c=1.0)))
    # on the boundary in exact arithmetic only after the compensated co-norm: 0.6^2 + 0.8^2
    x = torch.tensor([0.6, 0.8], dtype=F64)
    exact_sq = sum(__import__("fractions").Fraction(v) ** 2 for v in x.tolist())

    def call():
        return ops.dist0(x, c=1.0)

    if exact_sq >= 1:
        with pytest.raises(ValueError, match=r"^x:"):
            call()
    else:
        assert math.isfinite(float(call()))


def test_exact_mode_refuses_bad_curvature_and_tangents() -> None:
    x = _unit(3) * 0.5
    for c in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match=r"^c:"):
            ops.logmap0(x, c=c)
        with pytest.raises(ValueError, match=r"^c:"):
            ops.logmap0(x, c=torch.tensor(c))
    with pytest.raises(ValueError, match=r"^u:"):
        ops.expmap0(torch.tensor([math.inf, 0.0], dtype=F64), c=1.0)
    with pytest.raises(ValueError, match=r"^eps:"):
        ops.project(x, c=1.0, eps=1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, F64])
def test_train_mode_accepts_invalid_points_and_returns_points_inside_the_ceiling(
    dtype: torch.dtype,
) -> None:
    x = torch.stack([_unit(4) * r for r in (0.5, 1.0, 1.5, 50.0)]).to(dtype)
    y = torch.flip(x, [0])
    for out in (
        ops.mobius_add(x, y, c=1.0, policy="train"),
        ops.expmap0(x * 100, c=1.0, policy="train"),
        ops.mobius_matvec(torch.eye(4, dtype=dtype) * 1e3, x, c=1.0, policy="train"),
        ops.mobius_scalar_mul(1e6, x, c=1.0, policy="train"),
    ):
        assert out.dtype == dtype and torch.isfinite(out).all()
        assert _inside_float64(out, 1.0)
        z = out.double().norm(dim=-1)
        assert (z <= output_ceiling(dtype) * (1 + 4 * torch.finfo(dtype).eps)).all()
    for out in (ops.dist0(x, c=1.0, policy="train"), ops.logmap0(x, c=1.0, policy="train")):
        assert torch.isfinite(out).all()
    # points on or beyond the boundary are projected onto the input co-norm floor
    assert float(ops.dist0(x, c=1.0, policy="train").double().max()) <= input_radius_ceiling(
        dtype
    ) * (1 + 4 * torch.finfo(dtype).eps)


def test_radius_ceilings_are_derived_from_finfo() -> None:
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        eps = torch.finfo(dtype).eps
        if dtype in (torch.float16, torch.bfloat16):
            assert input_conorm_floor(dtype) == eps
        else:  # w is formed in float64 for float32 points: nothing below eps64 is resolved
            assert input_conorm_floor(dtype) == torch.finfo(torch.float64).eps
        assert radius_ceiling(dtype) == pytest.approx(math.log(1 / eps - 1), rel=1e-12)
        assert radius_ceiling(dtype, c=4.0) == pytest.approx(radius_ceiling(dtype) / 2)


def test_exact_mode_keeps_results_that_round_onto_the_boundary_inside() -> None:
    # tanh rounds to 1 beyond sqrt(c)|u| = 19.06 in float64 and 9.01 in float32
    for dtype, s in ((F64, 25.0), (torch.float32, 12.0), (torch.float32, 1e30)):
        u = _unit(3, dtype) * s
        y = ops.expmap0(u, c=1.0, policy="exact")
        assert y.dtype == dtype and _inside_float64(y, 1.0)
        # and it is the nearest interior point along the ray, up to a few ulp
        assert float(1 - y.double().norm()) < 8 * torch.finfo(dtype).eps


def test_zero_identities_are_bitwise() -> None:
    y = _unit(5) * 0.7
    zero = torch.zeros(5, dtype=F64)
    assert torch.equal(ops.mobius_add(zero, y, c=2.0), y)
    assert torch.equal(ops.mobius_add(y, zero, c=2.0), y)
    assert torch.equal(ops.expmap0(zero, c=2.0), zero)
    assert torch.equal(ops.logmap0(zero, c=2.0), zero)
    assert float(ops.dist(y, y, c=2.0)) == 0.0
    for r, want in ((0.0, zero), (1.0, y), (-1.0, -y)):
        assert torch.equal(ops.mobius_scalar_mul(r, y, c=2.0), want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32_and_cast_back(dtype: torch.dtype) -> None:
    x = (torch.stack([_unit(4) * r for r in (0.1, 0.5, 0.9)])).to(dtype)
    for policy in ("train", "exact"):
        got = ops.logmap0(x, c=1.0, policy=policy)
        want = ops.logmap0(x.double(), c=1.0).to(dtype)
        assert got.dtype == dtype
        torch.testing.assert_close(got, want, rtol=2 * torch.finfo(dtype).eps, atol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 32, generator=g, dtype=F64)
    x = x / x.norm(dim=-1, keepdim=True) * torch.rand(64, 1, generator=g, dtype=F64)
    y = x.flip(0)
    bands = torch.randn(5, 32, generator=g, dtype=F64)
    for dtype in (F64, torch.float32):
        xs, ys, bs = x.to(dtype), y.to(dtype), bands.to(dtype)
        calls = [
            lambda a, b, p: ops.mobius_add(a, b, c=1.0),
            lambda a, b, p: ops.dist(a, b, c=1.0),
            lambda a, b, p: ops.logmap0(a, c=1.0),
            lambda a, b, p: ops.expmap0(a * 30, c=1.0),
            lambda a, b, p: ops.banded_matvec(p, a, c=1.0),
            lambda a, b, p: ops.pairwise_dist(a, b, c=1.0),
        ]
        for call in calls:
            cpu = call(xs, ys, bs)
            gpu = call(xs.cuda(), ys.cuda(), bs.cuda()).cpu()
            torch.testing.assert_close(gpu, cpu, rtol=64 * torch.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("d", [8, 256])
def test_train_mode_leaves_valid_float32_points_near_the_boundary_untouched(d: int) -> None:
    # float32 vectors lie far closer to the boundary than 1 - eps/2 (their norm is not a
    # float32): co-norms 1e-12 ... 1e-8 must not be clamped (they were, at w = 1.2e-7). Graded
    # against exact mode on the same float32 inputs (compensated float64 co-norm): train mode
    # forms w in float64 with an absolute error of a few eps64 (<= 7 eps64 measured up to
    # d = 1024), so the relative error is 8 eps32 + 8 eps64 / w (docs/policy.md).
    rng = torch.Generator().manual_seed(5)
    v = torch.randn(320000 // d, d, generator=rng, dtype=F64)
    cand = (v / v.norm(dim=-1, keepdim=True)).float()  # rounding scatters w over +-1e-7
    w_all = 1 - cand.double().square().sum(-1)
    keep = torch.argsort(torch.where(w_all > 0, w_all, 1.0))[:60]  # the 60 smallest positive
    x, w = cand[keep], w_all[keep]
    assert float(w.max()) < 1e-8 and float(w.min()) < 1e-10
    bound = 8 * torch.finfo(torch.float32).eps + 8 * 2.0**-52 / w
    for fn in (ops.conformal_factor, ops.dist0, ops.logmap0):
        got = fn(x, c=1.0, policy="train").double().reshape(len(x), -1)
        want = fn(x, c=1.0, policy="exact").double().reshape(len(x), -1)
        err = (got - want).norm(dim=-1) / want.norm(dim=-1)
        assert bool((err <= bound).all()), (fn.__name__, float((err / bound).max()))
