"""Suite ``structured``: each structured Möbius product vs the dense Möbius matvec.

Forward + backward (gradients for the parameters and the points, cotangent given as
``grad_outputs`` so only the op is timed) of ``M (x) x`` for a batch of float32 points (train
mode), at d = 256, 1024, 4096 with B = 256. Structures: diagonal, block-diagonal (b = 4), banded
(k = 2) on the backend ``hyperet.ops.backend`` picks (``auto``: native C on the CPU), and the
same on the eager backend for reference; the dense side is :func:`hyperet.ops.mobius_matvec`
with a learnable ``d x d`` matrix (a GEMM forward, two backward).

Roofline: ``passes`` is the step's time over the time of ``x.clone()`` of the same activations
(read + write of ``B d`` floats), timed in the same interleaved repeats: the step reads ``x``
and writes ``y`` forward, reads ``g`` and ``x`` and writes ``grad_x`` backward, so a fully
fused step costs about 2.5 such copies. Targets (issue 13): >= 20x at d = 1024, <= 8 passes.

Two reference rows, timed in the same repeats, say where the floor of ``passes`` is in this
harness: ``torch x * p`` (the Euclidean diagonal product, torch's own kernels, gradients for
``p`` and ``x``: the simplest structured product there is) and ``autograd floor`` (an
:class:`torch.autograd.Function` that copies ``x`` forward and ``g`` backward: what any
Python-level op pays for autograd plus the two copies it cannot avoid).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

import hyperet.ops as ops
from hyperet.bench import Row, interleaved_medians
from hyperet.choices import STRUCTURES
from hyperet.ops.backend import get_backend, resolve, use_backend

TARGET_AT_1024 = 20.0
PASSES_TARGET = 8.0
KINDS = STRUCTURES
#: reference rows (module docstring): label -> note
REFERENCES = {
    "torch x * p": "Euclidean diagonal product, torch kernels",
    "autograd floor": "a Function copying x forward and g backward",
}


def _step(
    fn: Callable[[Tensor, Tensor], Tensor], name: str, param: Tensor, x: Tensor, cot: Tensor
) -> None:
    with use_backend(name):
        out = fn(param, x)
        torch.autograd.grad(out, (param, x), cot)


class _CopyThrough(torch.autograd.Function):
    """The identity as an autograd op that copies: ``x.clone()`` forward, ``g.clone()`` back."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        return g.clone()


def _copy_through_step(x: Tensor, cot: Tensor) -> None:
    torch.autograd.grad(_CopyThrough.apply(x), (x,), cot)


def run(quick: bool = False) -> list[Row]:
    # 20 repeats: two periods of the balanced orders of the 10 callables (each right after every
    # other exactly twice)
    widths, batch, repeats = ((256,), 64, 3) if quick else ((256, 1024, 4096), 256, 20)
    g = torch.Generator().manual_seed(0)
    rows: list[Row] = []
    chosen = get_backend()
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
        steps: dict[str, Callable[[], object]] = {
            "dense": functools.partial(_step, fns["dense"], "eager", params["dense"], x, cot),
            "clone": x.detach().clone,
        }
        for kind in KINDS:
            steps[kind] = functools.partial(_step, fns[kind], chosen, params[kind], x, cot)
            if not quick:
                steps[f"{kind} eager"] = functools.partial(
                    _step, fns[kind], "eager", params[kind], x, cot
                )
        steps["torch x * p"] = functools.partial(
            _step, lambda p, v: v * p, chosen, params["diagonal"], x, cot
        )
        steps["autograd floor"] = functools.partial(_copy_through_step, x, cot)
        med = interleaved_medians(steps, repeats=repeats)
        with use_backend(chosen):
            used = {k: resolve(f"matvec:{k}", x, params[k]) for k in KINDS}
        for label in [k for k in steps if k not in ("dense", "clone")]:
            kind = label.split()[0]
            graded = d == 1024 and label == kind
            if label in REFERENCES:
                name, note = f"reference: {label}", REFERENCES[label]
            else:
                detail = {"block": "b=4, ", "banded": "k=2, "}.get(kind, "")
                backend_name = "eager" if label.endswith("eager") else used[kind]
                name, note = f"{kind} vs dense", f"{detail}backend {backend_name}"
            rows.append(
                Row(
                    suite="structured",
                    name=f"{name}, d={d} (fwd+bwd, B={batch}, float32)",
                    ours=med[label],
                    theirs=med["dense"],
                    ratio=med["dense"] / med[label],
                    target=TARGET_AT_1024 if graded else None,
                    note=note,
                    passes=med[label] / med["clone"],
                    passes_target=PASSES_TARGET if graded else None,
                )
            )
    return rows
