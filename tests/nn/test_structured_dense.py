"""``StructuredMatrix.dense()`` is hyperet.ops' ``*_to_dense`` of its parameter, with gradients."""

from __future__ import annotations

import pytest
import torch

from hyperet import ops
from hyperet.nn import make_structured

F64 = torch.float64
TO_DENSE = {
    "diagonal": ("w", ops.diagonal_to_dense),
    "block": ("blocks", ops.block_diagonal_to_dense),
    "banded": ("bands", ops.banded_to_dense),
}


def _random(structure: str, d: int = 12):
    module = make_structured(structure, d, block_size=3, bandwidth=2, dtype=F64)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=F64))
    return module


@pytest.mark.parametrize("structure", sorted(TO_DENSE))
def test_dense_is_the_ops_function_bitwise(structure: str) -> None:
    module = _random(structure)
    name, to_dense = TO_DENSE[structure]
    assert torch.equal(module.dense(), to_dense(getattr(module, name).detach()))


@pytest.mark.parametrize("structure", sorted(TO_DENSE))
def test_dense_gradient_is_the_cotangent_at_the_layout_positions(structure: str) -> None:
    """d/dp sum(G * M(p)) = G read at the entries p fills; structural zeros of the banded layout
    (columns outside [0, d)) get exactly zero."""
    module = _random(structure)
    name, _ = TO_DENSE[structure]
    param = getattr(module, name)
    cot = torch.randn(12, 12, dtype=F64, generator=torch.Generator().manual_seed(4))
    (grad,) = torch.autograd.grad((module.dense() * cot).sum(), param)
    want = torch.zeros_like(param)
    if structure == "diagonal":
        want = cot.diagonal().clone()
    elif structure == "block":
        for i in range(4):
            want[i] = cot[3 * i : 3 * i + 3, 3 * i : 3 * i + 3]
    else:
        for j in range(5):
            for i in range(12):
                if 0 <= i + j - 2 < 12:
                    want[j, i] = cot[i, i + j - 2]
    assert torch.equal(grad, want)
