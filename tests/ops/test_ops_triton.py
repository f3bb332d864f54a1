"""The Triton kernels (hyperet/ops/_triton_kernels.py) against eager torch and the float64
reference: values and gradients of the dense and structured Möbius matvecs, expmap0, logmap0.

Two ways to run them:

- Triton's interpreter on CPU tensors: ``nox -s triton`` (installs ``hyperet[gpu]`` and sets
  ``TRITON_INTERPRET=1``); sizes are tiny because the interpreter executes every program in
  numpy.
- A GPU: ``pytest -m cuda tests/ops/test_ops_triton.py`` (CUDA-marked copies at real widths).

Without triton, or with triton but neither the interpreter nor a GPU, everything here skips.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from backend_cases import EPS32, F64, FNS, INSIDE, REF, normwise, params, points
from torch import Tensor

import hyperet.ops as ops
import hyperet.reference as ref
from hyperet.ops import backend
from hyperet.ops.backend import use_backend

pytest.importorskip("triton")

INTERPRETING = backend.triton_interpreting()
HAS_CUDA = torch.cuda.is_available()

interpreter = pytest.mark.skipif(
    not INTERPRETING, reason="needs TRITON_INTERPRET=1 (nox -s triton)"
)
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")

ALL_FNS: dict[str, Callable[..., Tensor]] = {**FNS, "dense": ops.mobius_matvec}


def _dense_param(d: int, seed: int, scale: float) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.eye(d, dtype=F64) * scale + 0.3 * torch.randn(d, d, generator=g, dtype=F64) / d**0.5
    return m.float().double()


def _param(kind: str, d: int, seed: int, scale: float = 1.0) -> Tensor:
    return _dense_param(d, seed, scale) if kind == "dense" else params(kind, d, seed, scale)


def _run(
    name: str, fn: Callable[..., Tensor], args: list[Tensor], cot: Tensor, device: str, c: float
) -> list[Tensor]:
    """Output and gradients of ``fn(*args, c=c)`` on ``name``'s backend, in float64 on the CPU."""
    with use_backend(name):
        leaves = [a.float().to(device).requires_grad_() for a in args]
        out = fn(*leaves, c=c)
        grads = torch.autograd.grad(out, leaves, cot.float().to(device))
    return [t.detach().cpu().double() for t in (out, *grads)]


def _compare_matvec(kind: str, d: int, scale: float, device: str) -> None:
    radii = [*INSIDE, 1.0, 1.5]  # 1.0, 1.5: on / beyond the boundary, projected by the policy
    p, x = _param(kind, d, 1, scale), points(d, 2, radii, c=0.7)
    cot = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    fn = ALL_FNS[kind]
    got = _run("triton", fn, [p, x], cot, device, 0.7)
    want = _run("eager", fn, [p, x], cot, "cpu", 0.7)
    for a, b in zip(got, want, strict=True):  # same formulas: agreement to float32 rounding
        assert float((a - b).norm() / b.norm()) <= 16 * EPS32
    if scale == 1.0:  # inside rows against the exact reference (float32 contract)
        inside = slice(0, len(INSIDE))
        reference = ref.mobius_matvec if kind == "dense" else REF[kind]
        exact = torch.from_numpy(reference(p.numpy(), x[inside].numpy(), c=0.7))
        assert float(normwise(got[0][inside], exact).max()) <= 8 * EPS32


def _compare_row_op(name: str, d: int, device: str) -> None:
    c = 0.7
    if name == "expmap0":  # tangent vectors: tiny, moderate, saturating (s > artanh(z_out))
        g = torch.Generator().manual_seed(4)
        v = torch.randn(8, d, generator=g, dtype=F64)
        norms = torch.tensor([0.0, 1e-6, 0.01, 0.5, 2.0, 8.0, 20.0, 1e4], dtype=F64)
        args = (v / v.norm(dim=-1, keepdim=True) * norms[:, None] / c**0.5).float().double()
    else:
        args = points(d, 5, [*INSIDE, 1.0, 1.5], c=c)
    cot = torch.randn(args.shape, generator=torch.Generator().manual_seed(6), dtype=F64)
    fn = getattr(ops, name)
    got = _run("triton", fn, [args], cot, device, c)
    want = _run("eager", fn, [args], cot, "cpu", c)
    for a, b in zip(got, want, strict=True):
        assert float((a - b).norm() / b.norm()) <= 16 * EPS32
    rows = slice(0, 7) if name == "logmap0" else slice(0, 6)  # valid, unsaturated rows
    exact = torch.from_numpy(getattr(ref, name)(args[rows].numpy(), c=c))
    assert float(normwise(got[0][rows], exact).max()) <= 8 * EPS32


@interpreter
@pytest.mark.parametrize("scale", [1.0, 40.0])  # 40: most rows saturate at the output ceiling
@pytest.mark.parametrize("kind", ["dense", "diagonal", "block", "banded"])
def test_interpreted_matvec_matches_eager_and_reference(kind: str, scale: float) -> None:
    _compare_matvec(kind, 12, scale, "cpu")  # 12: not a power of two, the masks are exercised


@interpreter
@pytest.mark.parametrize("name", ["expmap0", "logmap0"])
def test_interpreted_row_ops_match_eager_and_reference(name: str) -> None:
    _compare_row_op(name, 12, "cpu")


@interpreter
def test_interpreted_backward_spreads_rows_over_programs() -> None:
    # more rows than programs (4 under the interpreter): each program loops over its rows and
    # the per-program parameter gradients are summed afterwards
    d = 8
    p, x = params("banded", d, 7), points(d, 8, INSIDE * 2)
    cot = torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=F64)
    got = _run("triton", ops.banded_matvec, [p, x], cot, "cpu", 1.0)
    want = _run("eager", ops.banded_matvec, [p, x], cot, "cpu", 1.0)
    for a, b in zip(got, want, strict=True):
        assert float((a - b).norm() / b.norm()) <= 16 * EPS32


@interpreter
def test_interpreted_auto_backend_keeps_cpu_tensors_off_triton() -> None:
    # the interpreter is for tests: "auto" never sends CPU tensors to Triton
    x = torch.zeros(2, 8)
    with use_backend("auto"):
        assert backend.resolve("expmap0", x) == "eager"
    with use_backend("triton"):
        assert backend.resolve("expmap0", x) == "triton"
        assert backend.resolve("expmap0", x.double()) == "eager"  # float32 kernels only


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("scale", [1.0, 40.0])
@pytest.mark.parametrize("kind", ["dense", "diagonal", "block", "banded"])
@pytest.mark.parametrize("d", [64, 1000])
def test_cuda_matvec_matches_eager_and_reference(kind: str, d: int, scale: float) -> None:
    _compare_matvec(kind, d, scale, "cuda")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", ["expmap0", "logmap0"])
@pytest.mark.parametrize("d", [64, 1000])
def test_cuda_row_ops_match_eager_and_reference(name: str, d: int) -> None:
    _compare_row_op(name, d, "cuda")


@pytest.mark.cuda
@needs_cuda
def test_cuda_auto_backend_picks_triton() -> None:
    x = torch.zeros(2, 8, device="cuda")
    with use_backend("auto"):
        assert backend.resolve("expmap0", x) == "triton"
        assert backend.resolve("matvec:diagonal", x, torch.ones(8, device="cuda")) == "triton"
