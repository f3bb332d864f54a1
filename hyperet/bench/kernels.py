"""Suite ``kernels`` (``hyperet bench --device cuda``): each train-policy op on the Triton
kernels against the same op on eager torch, on one CUDA device in one run.

Ops: ``expmap0``, ``logmap0``, ``mobius_add``, ``dist``, ``pairwise_dist`` and the dense,
diagonal, block (b = 4) and banded (k = 2) Möbius matvecs, each forward + backward (the
cotangent given as ``grad_outputs``, gradients for every input), in float32 and bfloat16, at
``B x d = 256 x 1024`` (the CPU suites' size: launch-bound) and ``16384 x 1024 = 2**24``
(memory-bound; ``pairwise_dist``: ``N = M = 4096``, ``D = 256``, an ``N x M = 2**24`` result).

Per row: ``ratio`` = eager / Triton (target >= 3x), ``passes`` = the Triton step's time over
``clone()`` of the largest activation (a device-to-device copy: one read and one write), and
``bandwidth`` = the step's minimal traffic (:func:`min_traffic`, in copies) over ``passes``:
the fraction of the copy's bandwidth the step reaches (target >= 0.6 at ``2**24`` elements;
none for the dense matvec, whose ``d x d`` matrix product is compute-bound).

Timing (:func:`device_medians`): wall clock, synchronised with the device, around ``inner``
back-to-back calls (launch overhead included, no host sync inside), the three callables
interleaved in every repeat, median over repeats; a first call and warm-ups come before, so
Triton's compilation (the first call's time is in each row's note) is never timed. On a CPU
device (tests, Triton's interpreter) the same code runs without the synchronisation.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

import hyperet.ops as ops
from hyperet.bench import Row, SuiteUnavailable, interleaved_medians
from hyperet.ops.backend import use_backend

TARGET_RATIO = 3.0
TARGET_BANDWIDTH = 0.6
LARGE = 2**24
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
OPS: tuple[str, ...] = (
    "expmap0",
    "logmap0",
    "mobius_add",
    "dist",
    "pairwise_dist",
    "matvec dense",
    "matvec diagonal",
    "matvec block",
    "matvec banded",
)


@dataclass(frozen=True)
class Case:
    """One timed op: the callable's inputs (leaves needing gradients) and its name."""

    op: str
    dtype: str
    batch: int
    width: int
    inputs: tuple[Tensor, ...]

    @property
    def elements(self) -> int:
        """Elements of the largest activation (``B d``, or ``N M`` for pairwise_dist)."""
        if self.op == "pairwise_dist":
            return self.batch * self.batch
        return self.batch * self.width


def min_traffic(op: str) -> float:
    """The least memory traffic of a fused forward + backward, in copies of the largest
    activation (a copy reads and writes it once: 2 units). Row ops and the Möbius matvecs read
    x (and y) and write the result forward, read g and the inputs and write their gradients
    backward; dist's result is one scalar per row; pairwise_dist writes and reads back its
    ``N x M`` result (its ``N x D`` inputs are small beside it)."""
    units = {"mobius_add": 3 + 5, "dist": 2 + 4, "pairwise_dist": 1 + 1}.get(op, 2 + 3)
    return units / 2.0


def _fn(op: str) -> Callable[..., Tensor]:
    if op.startswith("matvec"):
        kind = op.split()[1]
        return {
            "dense": ops.mobius_matvec,
            "diagonal": ops.diagonal_matvec,
            "block": ops.block_diagonal_matvec,
            "banded": ops.banded_matvec,
        }[kind]
    fn: Callable[..., Tensor] = getattr(ops, op)
    return fn


def make_case(op: str, dtype: str, batch: int, width: int, device: str, seed: int = 0) -> Case:
    """Inputs of ``op``: points at radii up to 0.9 (train policy, ``c = 1``), parameters near the
    identity; leaves with ``requires_grad``."""
    g = torch.Generator().manual_seed(seed)
    dt = DTYPES[dtype]

    def pts(n: int, d: int) -> Tensor:
        v = torch.randn(n, d, generator=g)
        r = 0.9 * torch.rand(n, 1, generator=g)
        return v / v.norm(dim=-1, keepdim=True) * r

    d = width
    params = {
        "dense": lambda: torch.eye(d) + 0.01 * torch.randn(d, d, generator=g),
        "diagonal": lambda: 1 + 0.01 * torch.randn(d, generator=g),
        "block": lambda: (
            torch.eye(4).repeat(d // 4, 1, 1) + 0.01 * torch.randn(d // 4, 4, 4, generator=g)
        ),
        "banded": lambda: (
            torch.zeros(5, d).index_fill_(0, torch.tensor([2]), 1.0)
            + 0.01 * torch.randn(5, d, generator=g)
        ),
    }
    if op.startswith("matvec"):
        inputs: tuple[Tensor, ...] = (params[op.split()[1]](), pts(batch, d))
    elif op in ("mobius_add", "dist", "pairwise_dist"):
        inputs = (pts(batch, d), pts(batch, d))
    else:
        inputs = (pts(batch, d),)
    leaves = tuple(t.to(device, dt).requires_grad_() for t in inputs)
    return Case(op, dtype, batch, width, leaves)


def step(case: Case, backend_name: str, cotangent: Tensor) -> None:
    """One forward + backward of the case's op on ``backend_name``."""
    with use_backend(backend_name):
        out = _fn(case.op)(*case.inputs, c=1.0)
        torch.autograd.grad(out, case.inputs, cotangent)


def served_by(case: Case) -> str:
    """The backend a forced ``"triton"`` runs the case on, as the ops dispatch: on the operands
    as given, else after the op's cast to float32 (the dense matvec and pairwise_dist read
    float32 only); a shape no kernel covers would run eagerly."""
    from hyperet.ops.backend import resolve

    op = f"matvec:{case.op.split()[1]}" if case.op.startswith("matvec") else case.op
    operands = case.inputs[::-1] if case.op.startswith("matvec") else case.inputs  # (x, param)
    with use_backend("triton"):
        if resolve(op, *operands) == "triton":
            return "triton"
        cast = resolve(op, *(t.float() for t in operands))
    return f"{cast} (after a float32 cast)"


def cotangent_of(case: Case) -> Tensor:
    with use_backend("eager"), torch.no_grad():
        out = _fn(case.op)(*case.inputs, c=1.0)
    g = torch.Generator(device=out.device).manual_seed(1)
    return torch.randn(out.shape, generator=g, device=out.device, dtype=out.dtype)


def device_medians(
    fns: dict[str, Callable[[], object]], *, device: str, repeats: int, inner: int
) -> dict[str, float]:
    """Median seconds per call of each callable: :func:`hyperet.bench.interleaved_medians` of
    ``inner`` back-to-back calls, on a wall clock read after ``torch.cuda.synchronize()`` (on a
    CUDA device: the kernels queued by the calls are finished; launch costs included)."""

    def clock() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def batch(fn: Callable[[], object]) -> None:
        for _ in range(inner):
            fn()

    batches: dict[str, Callable[[], object]] = {
        name: functools.partial(batch, fn) for name, fn in fns.items()
    }
    med = interleaved_medians(batches, repeats=repeats, clock=clock)
    return {name: seconds / inner for name, seconds in med.items()}


def row_of(case: Case, med: dict[str, float], note: str = "") -> Row:
    """The row of one case from its medians (``triton``, ``eager``, ``copy``)."""
    passes = med["triton"] / med["copy"]
    bandwidth = min_traffic(case.op) / passes
    large = case.elements >= LARGE
    shape = (
        f"N=M={case.batch}, D={case.width}"
        if case.op == "pairwise_dist"
        else f"B={case.batch}, d={case.width}"
    )
    return Row(
        suite="kernels",
        name=f"{case.op} triton vs eager ({shape}, {case.dtype}, fwd+bwd)",
        ours=med["triton"],
        theirs=med["eager"],
        ratio=med["eager"] / med["triton"],
        target=TARGET_RATIO,
        note=(f"{bandwidth:.0%} of copy bandwidth" + (f"; {note}" if note else "")),
        passes=passes,
        bandwidth=bandwidth,
        bandwidth_target=TARGET_BANDWIDTH if large and case.op != "matvec dense" else None,
    )


def shapes(op: str, quick: bool) -> list[tuple[int, int]]:
    """(B, d) per op; pairwise_dist: (N = M, D)."""
    if quick:
        return [(16, 8)]
    if op == "pairwise_dist":
        return [(256, 1024), (4096, 256)]
    return [(256, 1024), (LARGE // 1024, 1024)]


def run(quick: bool = False, device: str = "cuda") -> list[Row]:
    if device == "cuda" and not torch.cuda.is_available():
        raise SuiteUnavailable("no CUDA device (torch.cuda.is_available() is False)")
    from hyperet.ops import _triton

    if not _triton.available():
        raise SuiteUnavailable(_triton.status())
    repeats, inner = (2, 1) if quick else (7, 10)
    rows: list[Row] = []
    for op in OPS:
        for dtype in DTYPES:
            for batch, width in shapes(op, quick):
                case = make_case(op, dtype, batch, width, device)
                cot = cotangent_of(case)
                big = case.inputs[-1] if case.op != "pairwise_dist" else cot
                t0 = time.perf_counter()
                step(case, "triton", cot)  # the first call compiles (per kernel and dtype)
                if device == "cuda":
                    torch.cuda.synchronize()
                first = time.perf_counter() - t0
                fns: dict[str, Callable[[], object]] = {
                    "triton": functools.partial(step, case, "triton", cot),
                    "eager": functools.partial(step, case, "eager", cot),
                    "copy": big.detach().clone,
                }
                med = device_medians(fns, device=device, repeats=repeats, inner=inner)
                note = f"backend {served_by(case)}; first call (compiling) {first:.2f} s"
                rows.append(row_of(case, med, note))
    return rows
