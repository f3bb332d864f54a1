"""``0 (+) b = b (+) 0 = b`` bitwise in every policy and dtype (signed zeros included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hyperet.ops as ops

CASES = [
    pytest.param(torch.float64, "exact", id="float64-exact"),
    pytest.param(torch.float64, "train", id="float64-train"),
    pytest.param(torch.float32, "exact", id="float32-exact"),
    pytest.param(torch.float32, "train", id="float32-train"),
    pytest.param(torch.float16, "train", id="float16-train"),
    pytest.param(torch.bfloat16, "train", id="bfloat16-train"),
]


@st.composite
def points(draw: st.DrawFn) -> tuple[np.ndarray, float]:
    """Rows of b at radii from 1e-30 to the last float32 below the boundary, some with -0."""
    d = draw(st.integers(2, 12))
    c = draw(st.sampled_from([1e-3, 0.37, 1.0, 37.5]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    v = rng.standard_normal((5, d))
    v[1:, 0] = -0.0  # a negative zero component must survive (b itself is never zero)
    v /= np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-300)
    r = np.array([1e-30, 0.3, 0.9, 1 - 1e-4, 1 - 2.0**-20])[:, None]
    return v * r / np.sqrt(c), c


@settings(max_examples=30, deadline=None)
@given(points())
@pytest.mark.parametrize(("dtype", "policy"), CASES)
def test_zero_is_the_identity_of_mobius_addition_bitwise(
    dtype: torch.dtype, policy: str, case: tuple[np.ndarray, float]
) -> None:
    b64, c = case
    b = torch.from_numpy(b64).to(dtype)
    norm2 = b.double().square().sum(-1) * c
    b = b[(norm2 < 1) & (norm2 > 0)]  # rounding to half may reach the boundary or underflow
    zeros = [torch.zeros_like(b), -torch.zeros_like(b)]
    for zero in zeros:
        for out in (
            ops.mobius_add(zero, b, c=c, policy=policy),
            ops.mobius_add(b, zero, c=c, policy=policy),
        ):
            assert out.dtype == dtype
            # bitwise: compare the bit patterns, so -0 and +0 differ
            assert torch.equal(out.view(_int_of(dtype)), b.view(_int_of(dtype)))


def _int_of(dtype: torch.dtype) -> torch.dtype:
    return {
        torch.float64: torch.int64,
        torch.float32: torch.int32,
        torch.float16: torch.int16,
        torch.bfloat16: torch.int16,
    }[dtype]


@pytest.mark.parametrize("policy", ["exact", "train"])
def test_mobius_addition_at_zero_keeps_the_formula_gradient(policy: str) -> None:
    # the bitwise limit must not cut the gradient: d(x (+) y)/dx at x = 0 is
    # (1 + c|y|^2) I - 2c y y^T (a bias initialised at 0 learns), d/dy is I
    c = 0.7
    y = torch.tensor([[0.3, 0.1, -0.2, 0.05]], dtype=torch.float64)
    x = torch.zeros(1, 4, dtype=torch.float64)
    jx, jy = torch.autograd.functional.jacobian(
        lambda a, b: ops.mobius_add(a, b, c=c, policy=policy), (x, y)
    )
    want = (1 + c * (y * y).sum()) * torch.eye(4, dtype=torch.float64) - 2 * c * y.T @ y
    torch.testing.assert_close(jx.reshape(4, 4), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(jy.reshape(4, 4), torch.eye(4, dtype=torch.float64))
    # and the value stays bitwise with autograd on (no "+ 0" turning -0 into +0)
    neg = -torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    yb = y.clone()
    yb[0, 1] = -0.0
    out = ops.mobius_add(neg, yb, c=c, policy=policy)
    assert torch.equal(out.detach().view(torch.int64), yb.view(torch.int64))
