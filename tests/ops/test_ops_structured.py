"""Structured Möbius products equal the dense product with the same matrix; never form it."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import hyperet.ops as ops

F64 = torch.float64


def _points(n: int, d: int, seed: int, dtype: torch.dtype = F64) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g, dtype=F64)
    r = torch.rand(n, 1, generator=g, dtype=F64) ** 0.3 * 0.999
    return (v / v.norm(dim=-1, keepdim=True) * r).to(dtype)


def _params(d: int, seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g, dtype=F64)
    blocks = torch.randn(d // 4, 4, 4, generator=g, dtype=F64)
    bands = torch.randn(5, d, generator=g, dtype=F64)
    return {
        "diagonal": (w, ops.diagonal_to_dense(w)),
        "block": (blocks, ops.block_diagonal_to_dense(blocks)),
        "banded": (bands, ops.banded_to_dense(bands)),
    }


FNS = {
    "diagonal": ops.diagonal_matvec,
    "block": ops.block_diagonal_matvec,
    "banded": ops.banded_matvec,
}


def _rel(a: Tensor, b: Tensor) -> float:
    return float(((a - b).norm(dim=-1) / b.norm(dim=-1).clamp_min(1e-300)).max())


@pytest.mark.parametrize("kind", sorted(FNS))
def test_structured_equals_dense_float64(kind: str) -> None:
    x = _points(64, 16, seed=1)
    param, dense = _params(16, seed=2)[kind]
    for c in (1e-3, 1.0, 30.0):
        xc = x / c**0.5
        got = FNS[kind](param, xc, c=c)
        want = ops.mobius_matvec(dense, xc, c=c)
        assert _rel(got, want) < 64 * 2.0**-52


@pytest.mark.parametrize("kind", sorted(FNS))
def test_structured_equals_dense_float32_train(kind: str) -> None:
    x = _points(64, 16, seed=3, dtype=torch.float32)
    param, dense = _params(16, seed=4)[kind]
    got = FNS[kind](param.float(), x, c=1.0)
    want = ops.mobius_matvec(dense, x.double(), c=1.0)
    assert got.dtype == torch.float32
    assert _rel(got.double(), want) < 64 * 2.0**-23


@pytest.mark.parametrize("kind", sorted(FNS))
def test_structured_gradients_equal_dense_gradients(kind: str) -> None:
    x = _points(8, 8, seed=5).requires_grad_()
    param, _ = _params(8, seed=6)[kind]
    param = param.clone().requires_grad_()
    to_dense = {
        "diagonal": ops.diagonal_to_dense,
        "block": ops.block_diagonal_to_dense,
        "banded": ops.banded_to_dense,
    }[kind]
    weights = torch.linspace(-1, 1, 64, dtype=F64).reshape(8, 8)
    (FNS[kind](param, x, c=1.0) * weights).sum().backward()
    g_struct = (x.grad.clone(), param.grad.clone())
    x.grad, param.grad = None, None
    (ops.mobius_matvec(to_dense(param), x, c=1.0) * weights).sum().backward()
    torch.testing.assert_close(x.grad, g_struct[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(param.grad, g_struct[1], rtol=1e-12, atol=1e-12)


def test_block_diagonal_product_uses_global_norms() -> None:
    x = _points(4, 8, seed=7)
    blocks = torch.randn(2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(8))
    whole = ops.block_diagonal_matvec(blocks, x, c=1.0)
    per_block = torch.cat(
        [ops.mobius_matvec(blocks[i], x[:, 4 * i : 4 * i + 4], c=1.0) for i in range(2)], dim=-1
    )
    assert (whole - per_block).abs().max() > 1e-3  # the pitfall differs by O(1)
    dense = ops.mobius_matvec(ops.block_diagonal_to_dense(blocks), x, c=1.0)
    assert _rel(whole, dense) < 64 * 2.0**-52


def test_banded_layout_matches_the_architecture_contract() -> None:
    d, k = 6, 2
    bands = torch.arange(1.0, 1 + (2 * k + 1) * d, dtype=F64).reshape(2 * k + 1, d)
    m = ops.banded_to_dense(bands)
    for i in range(d):
        for col in range(d):
            j = col - i + k
            want = bands[j, i] if 0 <= j < 2 * k + 1 else 0.0
            assert m[i, col] == want


def test_structured_products_scale_to_widths_whose_dense_matrix_cannot_exist() -> None:
    # d = 2**17: a dense float64 d x d matrix needs 128 GiB; O(d) per vector is instant
    d = 2**17
    x = _points(2, d, seed=9) * 0.5
    w = torch.full((d,), 0.5, dtype=F64)
    blocks = torch.eye(4, dtype=F64).expand(d // 4, 4, 4) * 0.5
    bands = torch.zeros(5, d, dtype=F64)
    bands[2] = 0.5
    want = ops.mobius_scalar_mul(0.5, x, c=1.0)  # (rI) (x) x = r (x) x
    for fn, p in (
        (ops.diagonal_matvec, w),
        (ops.block_diagonal_matvec, blocks),
        (ops.banded_matvec, bands),
    ):
        assert _rel(fn(p, x, c=1.0), want) < 1e-13


def test_layout_errors_name_the_argument() -> None:
    x = _points(2, 8, seed=10)
    with pytest.raises(ValueError, match=r"^w:"):
        ops.diagonal_matvec(torch.ones(7, dtype=F64), x, c=1.0)
    with pytest.raises(ValueError, match=r"^blocks:"):
        ops.block_diagonal_matvec(torch.ones(3, 3, 3, dtype=F64), x, c=1.0)
    with pytest.raises(ValueError, match=r"^bands:"):
        ops.banded_matvec(torch.ones(4, 8, dtype=F64), x, c=1.0)
