"""Suite ``structured``: each structured Möbius product vs the dense Möbius matvec.

Forward + backward (gradients for the parameters and the points) of ``M (x) x`` for a batch of
float32 points (train mode), at d = 256, 1024, 4096. Structures: diagonal, block-diagonal
(b = 4), banded (k = 2); the dense side is :func:`hyperet.ops.mobius_matvec` with a learnable
``d x d`` matrix. Target (issue 3): >= 20x at d = 1024.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

import hyperet.ops as ops
from hyperet.bench import Row, interleaved_medians

TARGET_AT_1024 = 20.0


def _step(fn: Callable[[Tensor, Tensor], Tensor], param: Tensor, x: Tensor, cot: Tensor) -> None:
    out = fn(param, x)
    torch.autograd.grad((out * cot).sum(), (param, x))


def run(quick: bool = False) -> list[Row]:
    widths, batch, repeats = ((256,), 64, 3) if quick else ((256, 1024, 4096), 256, 7)
    g = torch.Generator().manual_seed(0)
    rows: list[Row] = []
    for d in widths:
        x = torch.randn(batch, d, generator=g)
        x = (x / x.norm(dim=-1, keepdim=True) * 0.9).requires_grad_()
        cot = torch.randn(batch, d, generator=g)
        params = {
            "dense": torch.eye(d) + 0.01 * torch.randn(d, d, generator=g),
            "diagonal": 1 + 0.01 * torch.randn(d, generator=g),
            "block": torch.eye(4).repeat(d // 4, 1, 1)
            + 0.01 * torch.randn(d // 4, 4, 4, generator=g),
            "banded": torch.zeros(5, d).index_fill_(0, torch.tensor([2]), 1.0)
            + 0.01 * torch.randn(5, d, generator=g),
        }
        params = {k: v.requires_grad_() for k, v in params.items()}
        fns: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
            "dense": lambda m, v: ops.mobius_matvec(m, v, c=1.0),
            "diagonal": lambda w, v: ops.diagonal_matvec(w, v, c=1.0),
            "block": lambda b, v: ops.block_diagonal_matvec(b, v, c=1.0),
            "banded": lambda b, v: ops.banded_matvec(b, v, c=1.0),
        }
        med = interleaved_medians(
            {k: functools.partial(_step, fns[k], params[k], x, cot) for k in fns}, repeats=repeats
        )
        for kind in ("diagonal", "block", "banded"):
            rows.append(
                Row(
                    suite="structured",
                    name=f"{kind} vs dense, d={d} (fwd+bwd, B={batch}, float32)",
                    ours=med[kind],
                    theirs=med["dense"],
                    ratio=med["dense"] / med[kind],
                    target=TARGET_AT_1024 if d == 1024 else None,
                    note="b=4" if kind == "block" else ("k=2" if kind == "banded" else ""),
                )
            )
    return rows
