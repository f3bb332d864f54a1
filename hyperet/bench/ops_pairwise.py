"""Suite ``pairwise``: :func:`hyperet.ops.pairwise_dist` (one matrix product) vs the broadcast
form ``dist(x[:, None], y[None])`` (an N x M x D difference tensor), forward + backward, float32
train mode, N = M = 1024, D = 256. Target (issue 3): >= 10x."""

from __future__ import annotations

import torch

import hyperet.ops as ops
from hyperet.bench import Row, interleaved_medians

TARGET = 10.0


def run(quick: bool = False) -> list[Row]:
    n, dim, repeats = (128, 64, 3) if quick else (1024, 256, 5)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=g)
    y = torch.randn(n, dim, generator=g)
    x = (x / x.norm(dim=-1, keepdim=True) * 0.9).requires_grad_()
    y = (y / y.norm(dim=-1, keepdim=True) * 0.9).requires_grad_()

    def fast() -> None:
        torch.autograd.grad(ops.pairwise_dist(x, y, c=1.0).sum(), (x, y))

    def broadcast() -> None:
        torch.autograd.grad(ops.dist(x.unsqueeze(1), y.unsqueeze(0), c=1.0).sum(), (x, y))

    med = interleaved_medians({"fast": fast, "broadcast": broadcast}, repeats=repeats, warmup=1)
    return [
        Row(
            suite="pairwise",
            name=f"pairwise_dist vs broadcast, N=M={n}, D={dim} (fwd+bwd, float32)",
            ours=med["fast"],
            theirs=med["broadcast"],
            ratio=med["broadcast"] / med["fast"],
            target=TARGET,
            note="fast path: relative error ~ eps(|x|^2+|y|^2)/|x-y|^2 (docstring)",
        )
    ]
