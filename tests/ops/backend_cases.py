"""Shared cases of the backend tests (test_ops_backends.py, test_ops_triton.py): float32-
representable parameters and points, the structured products and their float64 references."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

import hyperet.ops as ops
import hyperet.reference as ref

F64 = torch.float64
EPS32 = torch.finfo(torch.float32).eps

FNS: dict[str, Callable[..., Tensor]] = {
    "diagonal": ops.diagonal_matvec,
    "block": ops.block_diagonal_matvec,
    "banded": ops.banded_matvec,
}
REF: dict[str, Callable[..., np.ndarray]] = {
    "diagonal": ref.diagonal_matvec,
    "block": ref.block_diagonal_matvec,
    "banded": ref.banded_matvec,
}


def params(kind: str, d: int, seed: int, scale: float = 1.0, block: int = 4) -> Tensor:
    """float32-representable parameters near ``scale`` times the identity."""
    g = torch.Generator().manual_seed(seed)
    if kind == "diagonal":
        p = scale + 0.3 * torch.randn(d, generator=g, dtype=F64)
    elif kind == "block":
        p = torch.eye(block, dtype=F64).repeat(d // block, 1, 1) * scale
        p = p + 0.3 * torch.randn(d // block, block, block, generator=g, dtype=F64)
    else:
        p = torch.zeros(5, d, dtype=F64).index_fill_(0, torch.tensor([2]), scale)
        p = p + 0.3 * torch.randn(5, d, generator=g, dtype=F64)
    return p.float().double()


def points(d: int, seed: int, radii: list[float], c: float = 1.0) -> Tensor:
    """float32-representable points with the given sqrt(c)|x|."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(len(radii), d, generator=g, dtype=F64)
    x = v / v.norm(dim=-1, keepdim=True) * torch.tensor(radii, dtype=F64)[:, None] / c**0.5
    return x.float().double()


INSIDE = [0.0, 1e-6, 0.01, 0.3, 0.7, 0.9, 0.99, 0.999, 1 - 1e-5]


def normwise(got: Tensor, want: Tensor) -> Tensor:
    scale = want.norm(dim=-1).clamp_min(1e-300)
    return (got - want).norm(dim=-1) / scale


def run_every_train_op(d: int, dtype: torch.dtype, backend_name: str) -> None:
    """Forward and backward of every op the Triton backend covers (row ops, pairwise_dist,
    the dense and structured Möbius matvecs) on small ``(3, d)`` inputs, ``c = 0.7``."""
    from hyperet.ops.backend import use_backend

    x, y = points(d, 33, [0.2, 0.5, 0.9]), points(d, 34, [0.4, 0.1, 0.7])
    calls: list[tuple[Callable[..., Tensor], list[Tensor]]] = [
        (ops.expmap0, [x]),
        (ops.logmap0, [x]),
        (ops.mobius_add, [x, y]),
        (ops.dist, [x, y]),
        (ops.pairwise_dist, [x, y]),
        (ops.mobius_matvec, [torch.eye(d, dtype=F64) + 0.01, x]),
        *[(FNS[kind], [params(kind, d, 35), x]) for kind in sorted(FNS)],
    ]
    with use_backend(backend_name):
        for fn, args in calls:
            leaves = [a.to(dtype).requires_grad_() for a in args]
            out = fn(*leaves, c=0.7)
            torch.autograd.grad(out, leaves, torch.ones_like(out))
