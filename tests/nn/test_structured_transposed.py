"""``StructuredMatrix.apply_transposed`` is ``x @ M`` (``M^T`` on each row), so HRA on weight
rows can act on the tokens instead: ``(W M^T) x = W (M^T x)``."""

from __future__ import annotations

import pytest
import torch

from hyperet.nn.structured import STRUCTURES, make_structured
from hyperet.ops.backend import use_backend


@pytest.mark.parametrize("backend", ["eager", "auto"])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_apply_transposed_is_the_dense_transpose(structure: str, backend: str) -> None:
    d = 12
    m = make_structured(structure, d, block_size=3, bandwidth=2)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    x = torch.randn(2, 5, d, generator=g)
    weight = torch.randn(7, d, generator=g)
    with use_backend(backend):
        got = m.apply_transposed(x)
        token_side = got @ weight.mT  # W (M^T x)
        weight_side = x @ (weight @ m.dense().mT).mT  # (W M^T) x
    torch.testing.assert_close(got, x @ m.dense(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(token_side, weight_side, rtol=1e-4, atol=1e-4)
    # gradients reach the parameters through the transposed product as through the dense one
    cot = torch.randn(x.shape, generator=g)
    x.requires_grad_()
    leaves = [*m.parameters(), x]
    with use_backend(backend):
        grads = torch.autograd.grad((m.apply_transposed(x) * cot).sum(), leaves)
    dense_grads = torch.autograd.grad((x @ m.dense() * cot).sum(), leaves)
    for a, b in zip(grads, dense_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
