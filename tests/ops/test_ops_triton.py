"""The Triton kernels (hyperet/ops/_triton_kernels.py) against eager torch and the float64
reference: values and gradients of the dense and structured Möbius matvecs, expmap0, logmap0,
mobius_add, dist and pairwise_dist, in float32 and (row ops) bfloat16 / float16.

Two ways to run them:

- Triton's interpreter on CPU tensors: ``nox -s triton`` (installs ``hyperet[gpu]`` and sets
  ``TRITON_INTERPRET=1``); sizes are tiny because the interpreter executes every program in
  numpy.
- A GPU: ``pytest -m cuda tests/ops/test_ops_triton.py`` (CUDA-marked copies at real widths).

Without triton, or with triton but neither the interpreter nor a GPU, everything here skips.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from backend_cases import (
    EPS32,
    F64,
    FNS,
    INSIDE,
    REF,
    normwise,
    params,
    points,
    run_every_train_op,
)
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


#: x's radii (sqrt(c)|x|); y takes them reversed. 1.0 and 1.5: on / beyond the boundary
#: (projected by the policy), 0.0: the zero limits of mobius_add; row 3 has y = x.
BINARY_RADII = [*INSIDE, 1.0, 1.5, 0.0]


def _binary_case(d: int, c: float) -> tuple[Tensor, Tensor]:
    x = points(d, 21, BINARY_RADII, c=c)
    y = points(d, 22, BINARY_RADII[::-1], c=c)
    y[3] = x[3]
    return x, y


def _rowwise(got: Tensor, want: Tensor) -> Tensor:
    """Per-row relative error (vectors: normwise; scalars: relative)."""
    if got.dim() == 1:
        return (got - want).abs() / want.abs().clamp_min(1e-300)
    return normwise(got, want)


def _binary_results(
    name: str, backend_name: str, x: Tensor, y: Tensor, dtype: torch.dtype, device: str, c: float
) -> list[Tensor]:
    """Value and both gradients of the train-policy op, in float64 on the CPU."""
    cot = torch.randn(x.shape, generator=torch.Generator().manual_seed(23), dtype=F64).float()
    with use_backend(backend_name):
        a = x.to(device, dtype).clone().requires_grad_()
        b = y.to(device, dtype).clone().requires_grad_()
        out = getattr(ops, name)(a, b, c=c, policy="train")
        grads = torch.autograd.grad(
            out,
            (a, b),
            cot.to(device, dtype)[..., : out.shape[-1]]
            if out.dim() == 2
            else cot[:, 0].to(device, dtype),
        )
    return [t.detach().cpu().double() for t in (out, *grads)]


def _compare_binary(name: str, d: int, device: str) -> None:
    # float64 train policy (same floor 2**-52, same formulas) is the truth of the float32 op:
    # the kernel must be as accurate as eager float32, row by row, near the boundary included
    c = 0.7
    x, y = _binary_case(d, c)
    truth = _binary_results(name, "eager", x, y, F64, "cpu", c)
    eager = _binary_results(name, "eager", x, y, torch.float32, "cpu", c)
    got = _binary_results(name, "triton", x, y, torch.float32, device, c)
    for k, e, t in zip(got, eager, truth, strict=True):
        assert torch.isfinite(k).all()
        err_k, err_e = _rowwise(k, t), _rowwise(e, t)
        assert bool((err_k <= torch.clamp_min(4 * err_e, 16 * EPS32)).all()), (err_k, err_e)
    # values of rows with both points strictly inside against the exact reference
    inside = [
        i
        for i, (r, q) in enumerate(zip(BINARY_RADII, BINARY_RADII[::-1], strict=True))
        if max(r, q) < 1
    ]
    exact = torch.from_numpy(getattr(ref, name)(x[inside].numpy(), y[inside].numpy(), c=c))
    assert float(_rowwise(got[0][inside], exact).max()) <= 8 * EPS32


@interpreter
@pytest.mark.parametrize("name", ["mobius_add", "dist"])
def test_interpreted_binary_ops_match_eager_and_reference(name: str) -> None:
    _compare_binary(name, 12, "cpu")


def _compare_half(name: str, dtype: torch.dtype, device: str) -> None:
    # half types: read and written as they are, computed in float32, rounded once: within
    # two ulp of the result dtype of eager (which casts to float32 and back), row by row
    c = 0.7
    x, y = _binary_case(16, c)
    if name == "expmap0":
        x = x * 3.0  # tangent vectors, several beyond the half type's output ceiling
    args = [x, y] if name in ("mobius_add", "dist") else [x]
    if name in FNS:  # structured Möbius matvec: (param, x)
        args = [params(name, 16, 36), x]
    fn = FNS.get(name) or getattr(ops, name)
    cot = torch.randn(x.shape, generator=torch.Generator().manual_seed(24), dtype=F64)
    results = {}
    for backend_name, dev in (("triton", device), ("eager", "cpu")):
        with use_backend(backend_name):
            leaves = [a.to(dev, dtype).requires_grad_() for a in args]
            out = fn(*leaves, c=c)
            ct = (cot if out.dim() == 2 else cot[:, 0]).to(dev, dtype)
            grads = torch.autograd.grad(out, leaves, ct)
        assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
        results[backend_name] = [t.detach().cpu().double() for t in (out, *grads)]
    eps = torch.finfo(dtype).eps
    radii = [
        (r, q if name in ("mobius_add", "dist") else 0.0)
        for r, q in zip(BINARY_RADII, BINARY_RADII[::-1], strict=True)
    ]
    # values: every row but those within 0.1 of the boundary (float32 w vs the half floor);
    # gradients: rows well inside (a projected row's gradient is a small tangential remainder)
    value_rows = torch.tensor([all(r <= 0.9 or r > 1.0 for r in pair) for pair in radii])
    grad_rows = torch.tensor([max(pair) <= 0.9 for pair in radii])
    if name in FNS:  # the parameter gradient sums over rows: normwise, and y = k Mx is
        # stored in the half type, which the backward reads (a few ulp more than eager)
        got_p, want_p = results["triton"].pop(1), results["eager"].pop(1)
        assert float((got_p - want_p).norm() / want_p.norm()) <= 4 * eps
    for i, (got, want) in enumerate(zip(results["triton"], results["eager"], strict=True)):
        rows = value_rows if i == 0 else grad_rows
        scale = want.norm(dim=-1) if want.dim() == 2 else want.abs()
        err = (got - want).norm(dim=-1) if got.dim() == 2 else (got - want).abs()
        assert bool((err[rows] <= 2 * eps * scale[rows] + 1e-30).all()), (err, scale)
    if name in ("expmap0", "mobius_add"):  # returned points strictly inside (dtype's ceiling)
        out = results["triton"][0]
        assert bool((c * (out * out).sum(-1) < 1).all())


@interpreter
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["expmap0", "logmap0", "mobius_add", "dist", *sorted(FNS)])
def test_interpreted_half_types_match_eager(name: str, dtype: torch.dtype) -> None:
    _compare_half(name, dtype, "cpu")


@interpreter
@pytest.mark.parametrize("name", ["mobius_add", "dist"])
def test_interpreted_binary_ops_broadcast_and_sum_gradients(name: str) -> None:
    # x (2, 3, d) against one y (d,): the kernel sees the broadcast rows, autograd sums y's
    d = 8
    x = points(d, 25, [0.1, 0.5, 0.9, 0.99, 0.3, 0.0]).reshape(2, 3, d)
    y = points(d, 26, [0.6])[0]
    results = {}
    for backend_name in ("triton", "eager"):
        with use_backend(backend_name):
            a, b = x.float().requires_grad_(), y.float().requires_grad_()
            out = getattr(ops, name)(a, b, c=1.0)
            cot = torch.ones_like(out)
            results[backend_name] = (out, *torch.autograd.grad(out, (a, b), cot))
    for got, want in zip(results["triton"], results["eager"], strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=16 * EPS32, atol=1e-6)


@interpreter
def test_interpreted_mobius_add_zero_limits_are_bitwise_with_the_formula_gradient() -> None:
    d = 8
    b = points(d, 27, [0.3, 0.9, 1 - 1e-5]).float()
    b[:, 0] = -0.0  # a negative zero must survive
    for zero in (torch.zeros_like(b), -torch.zeros_like(b)):
        with use_backend("triton"):
            z, v = zero.clone().requires_grad_(), b.clone().requires_grad_()
            outs = (ops.mobius_add(z, v, c=1.0), ops.mobius_add(v, z, c=1.0))
            assert all(torch.equal(o.view(torch.int32), b.view(torch.int32)) for o in outs)
            got = torch.autograd.grad(outs[0].sum(), (z, v))
        # d(x (+) y)/dx at x = 0 is (1 + c|y|^2) I - 2c y y^T (not 0); d/dy is I
        b64 = b.double()
        want_z = (1 + (b64 * b64).sum(-1, keepdim=True)) - 2 * b64 * b64.sum(-1, keepdim=True)
        torch.testing.assert_close(got[0].double(), want_z, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[1].double(), torch.ones_like(b64), rtol=1e-5, atol=1e-5)


def _pairwise_results(
    backend_name: str, x: Tensor, y: Tensor, dtype: torch.dtype, device: str, c: float
) -> list[Tensor]:
    g = torch.Generator().manual_seed(28)
    cot = torch.randn(x.shape[0], y.shape[0], generator=g, dtype=F64).float()
    with use_backend(backend_name):
        a = x.to(device, dtype).clone().requires_grad_()
        b = y.to(device, dtype).clone().requires_grad_()
        out = ops.pairwise_dist(a, b, c=c, policy="train")
        grads = torch.autograd.grad(out, (a, b), cot.to(device, dtype))
    return [t.detach().cpu().double() for t in (out, *grads)]


def _compare_pairwise(n: int, m: int, d: int, device: str) -> None:
    c = 0.7
    x_radii = ([0.0, 0.3, 0.9, 0.99, 1 - 1e-5, 1.0, 1.5, 0.5] * n)[:n]
    y_radii = ([0.2, 0.95, 1.5, 0.0, 0.7, 0.999] * m)[:m]
    x, y = points(d, 29, x_radii, c=c), points(d, 30, y_radii, c=c)
    y[0] = x[1]  # a zero distance: value 0, gradient 0 (as eager)
    truth = _pairwise_results("eager", x, y, F64, "cpu", c)
    eager = _pairwise_results("eager", x, y, torch.float32, "cpu", c)
    got = _pairwise_results("triton", x, y, torch.float32, device, c)
    for k, e, t in zip(got, eager, truth, strict=True):  # as accurate as eager float32
        assert torch.isfinite(k).all()
        err_k = (k - t).abs() / t.abs().clamp_min(1e-300) if k.shape == truth[0].shape else None
        err_e = (e - t).abs() / t.abs().clamp_min(1e-300) if err_k is not None else None
        if err_k is None:
            err_k, err_e = normwise(k, t), normwise(e, t)
        assert err_e is not None
        assert bool((err_k <= torch.clamp_min(4 * err_e, 16 * EPS32)).all()), (err_k, err_e)
    # well-separated pairs inside the ball against the exact reference, one by one
    inside_x = [i for i, r in enumerate(x_radii) if r < 1]
    inside_y = [j for j, r in enumerate(y_radii) if r < 1 and j > 0]
    xs, ys = x[inside_x], y[inside_y]
    exact = ref.dist(xs.numpy()[:, None, :], ys.numpy()[None, :, :], c=c)
    want = torch.from_numpy(exact)
    rel = (got[0][inside_x][:, inside_y] - want).abs() / want.clamp_min(1e-300)
    assert float(rel.max()) <= 1e-5  # the Gram expansion's cancellation (pairwise.py)


@interpreter
def test_interpreted_pairwise_dist_matches_eager_and_reference() -> None:
    _compare_pairwise(8, 6, 12, "cpu")


@interpreter
def test_interpreted_pairwise_dist_across_tiles_and_without_x_gradient() -> None:
    # 40 x 35: partial tiles on both axes, the row and column sums reduced over tiles
    _compare_pairwise(40, 35, 5, "cpu")
    x, y = points(5, 31, [0.4] * 3), points(5, 32, [0.6] * 4)
    with use_backend("triton"):
        b = y.float().requires_grad_()
        out = ops.pairwise_dist(x.float(), b, c=1.0)
        (gy,) = torch.autograd.grad(out.sum(), b)
    with use_backend("eager"):
        b2 = y.float().requires_grad_()
        (want,) = torch.autograd.grad(ops.pairwise_dist(x.float(), b2, c=1.0).sum(), b2)
    torch.testing.assert_close(gy, want, rtol=1e-5, atol=1e-6)


class _LaunchSpy:
    """Stands in for a kernel: records its launches and refuses Python float arguments (Triton
    passes those as float32 on a GPU, while the interpreter keeps all 64 bits, so only this
    check can catch a curvature rounded to float32 here)."""

    def __init__(self, name: str, kernel: Any, seen: set[str]) -> None:
        self.name, self.kernel, self.seen = name, kernel, seen

    def __getitem__(self, grid: Any) -> Callable[..., Any]:
        launch = self.kernel[grid]

        def call(*args: Any, **kwargs: Any) -> Any:
            floats = [a for a in args if isinstance(a, float)]
            assert not floats, f"{self.name} got Python floats {floats}"
            self.seen.add(self.name)
            return launch(*args, **kwargs)

        return call


@interpreter
def test_interpreted_every_kernel_runs_and_takes_no_python_floats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hyperet.ops import _triton_kernels as kern

    names = {n for n in dir(kern) if n.endswith("_kernel")}
    seen: set[str] = set()
    for name in names:
        monkeypatch.setattr(kern, name, _LaunchSpy(name, getattr(kern, name), seen))
    run_every_train_op(8, torch.float32, "triton")
    assert seen == names


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
        assert backend.resolve("expmap0", x.bfloat16()) == "triton"  # read as it is
        assert backend.resolve("expmap0", x.double()) == "eager"  # float64: exact-grade eager
        assert backend.resolve("mobius_add", x, x.double()) == "eager"  # mixed dtypes
        assert backend.resolve("pairwise_dist", x, x) == "triton"
        assert backend.resolve("pairwise_dist", x.bfloat16(), x.bfloat16()) == "eager"


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


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", ["mobius_add", "dist"])
@pytest.mark.parametrize("d", [64, 1000])
def test_cuda_binary_ops_match_eager_and_reference(name: str, d: int) -> None:
    _compare_binary(name, d, "cuda")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["expmap0", "logmap0", "mobius_add", "dist", *sorted(FNS)])
def test_cuda_half_types_match_eager(name: str, dtype: torch.dtype) -> None:
    _compare_half(name, dtype, "cuda")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize(("n", "m", "d"), [(8, 6, 12), (300, 200, 64)])
def test_cuda_pairwise_dist_matches_eager_and_reference(n: int, m: int, d: int) -> None:
    _compare_pairwise(n, m, d, "cuda")


@pytest.mark.cuda
@needs_cuda
def test_cuda_auto_backend_picks_triton_for_every_train_op() -> None:
    x = torch.zeros(2, 8, device="cuda")
    with use_backend("auto"):
        for op in ("mobius_add", "dist", "pairwise_dist"):
            assert backend.resolve(op, x, x) == "triton"
        assert backend.resolve("expmap0", x.bfloat16()) == "triton"
        assert backend.resolve("matvec:dense", x, torch.eye(8, device="cuda")) == "triton"
