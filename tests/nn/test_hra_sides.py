"""HRA on projection weight rows, applied on the token side or the weight side
(HyperbolicRadiusAdjustment.adapt_projection): both equal the projection by the adapted weight
(values and parameter gradients, float64, every structure and backend), the automatic choice
follows the token / row count, and a non-linear adapter refuses the token side."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hyperet.nn.hra import HyperbolicRadiusAdjustment
from hyperet.ops.backend import use_backend

STRUCTURES = ("diagonal", "block", "banded")


def _adapter(structure: str, d: int, dtype: torch.dtype) -> HyperbolicRadiusAdjustment:
    hra = HyperbolicRadiusAdjustment(d, structure=structure, dtype=dtype)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in hra.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=dtype))
    return hra


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize(("dtype", "backend"), [(torch.float64, "eager"), (torch.float32, "auto")])
def test_both_sides_equal_the_projection_by_the_adapted_weight(
    structure: str, dtype: torch.dtype, backend: str
) -> None:
    d, rows = 24, 12
    hra = _adapter(structure, d, dtype)
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(rows, d, generator=g, dtype=dtype)  # frozen A
    x = torch.randn(2, 3, d, generator=g, dtype=dtype)
    cot = torch.randn(2, 3, rows, generator=g, dtype=dtype)
    # ground truth: the dense adapted weight A M^T, float64
    m = hra.matrix.dense().detach().double().requires_grad_()
    want = F.linear(x.double(), weight.double() @ m.mT)
    results = {}
    with use_backend(backend):
        for side in ("tokens", "weight"):
            x_side, w_side, used = hra.adapt_projection(x, weight, side)
            assert used == side
            out = F.linear(x_side, w_side)
            grads = torch.autograd.grad(out, list(hra.parameters()), cot)
            results[side] = (out.detach(), grads)
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    for out, _ in results.values():
        torch.testing.assert_close(out.double(), want, **tol)
    # the parameter gradients of the two sides agree (the dense matrix's gradient restricted
    # to the structure, through two different computations)
    for a, b in zip(results["tokens"][1], results["weight"][1], strict=True):
        torch.testing.assert_close(a.double(), b.double(), **tol)


def test_auto_picks_the_side_with_fewer_vectors() -> None:
    hra = _adapter("banded", 16, torch.float32)
    weight = torch.randn(16, 16)
    assert hra.adapt_projection(torch.randn(3, 5, 16), weight)[2] == "tokens"  # 15 < 16
    assert hra.adapt_projection(torch.randn(4, 4, 16), weight)[2] == "weight"  # 16 = 16
    assert hra.adapt_projection(torch.randn(64, 16), weight)[2] == "weight"
    x = torch.randn(64, 16)
    x_side, w_side, _ = hra.adapt_projection(x, weight)
    assert x_side is x
    torch.testing.assert_close(w_side, hra(weight))


def test_a_nonlinear_adapter_uses_the_weight_side_and_refuses_the_token_side() -> None:
    hra = HyperbolicRadiusAdjustment(8, structure="diagonal", policy="train")
    weight, x = torch.randn(8, 8), torch.randn(2, 8)
    assert hra.cheaper_side(tokens=2, rows=8) == "weight"
    assert hra.adapt_projection(x, weight)[2] == "weight"
    with pytest.raises(ValueError, match=r"^side: 'tokens' needs a linear adapter"):
        hra.adapt_projection(x, weight, "tokens")
    with pytest.raises(ValueError, match=r"^side: expected one of"):
        hra.adapt_projection(x, weight, "rows")
    with pytest.raises(ValueError, match=r"^weight: expected shape \(rows, 8\)"):
        hra.adapt_projection(x, torch.randn(8, 7))
