"""Every backend of the train-policy structured Möbius matvec (hyperet.ops.backend) against the
float64 reference (values, float32 contract), against float64 autograd through the eager path
(gradients), against each other, and the backend switch itself.

The Triton kernels run the same checks under Triton's interpreter in tests/ops/test_ops_triton.py
(``nox -s triton``) and on a GPU in the CUDA-marked tests there.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from backend_cases import EPS32, F64, FNS, INSIDE, REF, normwise, params, points
from torch import Tensor

import hyperet.ops as ops
from hyperet.ops import _native, backend
from hyperet.ops.backend import use_backend

BACKENDS = ["eager", pytest.param("native", marks=pytest.mark.skipif(
    not _native.available(), reason=f"native backend: {_native.status()}"))]  # fmt: skip


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kind", sorted(FNS))
@pytest.mark.parametrize("d", [36, 1024])
def test_float32_values_meet_the_contract_against_the_reference(
    name: str, kind: str, d: int
) -> None:
    p, x = params(kind, d, 1), points(d, 2, INSIDE, c=0.7)
    with use_backend(name):
        got = FNS[kind](p.float(), x.float(), c=0.7).double()
    want = torch.from_numpy(REF[kind](p.numpy(), x.numpy(), c=0.7))
    # one rounding of the float64 coefficient and float32 products of at most 5 terms
    assert float(normwise(got, want).max()) <= 8 * EPS32


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kind", sorted(FNS))
@pytest.mark.parametrize("scale", [1.0, 40.0])  # 40: most rows saturate at the output ceiling
def test_float32_gradients_match_float64_autograd(name: str, kind: str, scale: float) -> None:
    d = 36
    # inside only: float32 and float64 project points beyond the boundary onto different floors
    # (input_conorm_floor), so those rows are compared between backends in the next test
    radii = [0.0, 1e-6, 0.3, 0.9, 0.99, 1 - 1e-5]
    p0, x0 = params(kind, d, 3, scale), points(d, 4, radii)
    cot = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    results = {}
    for label, dtype in (("float32", torch.float32), ("float64", F64)):
        with use_backend(name if dtype == torch.float32 else "eager"):
            p = p0.to(dtype).requires_grad_()
            x = x0.to(dtype).requires_grad_()
            out = FNS[kind](p, x, c=1.0, policy="train")
            gp, gx = torch.autograd.grad(out, (p, x), cot.to(dtype))
        results[label] = (out.detach().double(), gp.double(), gx.double())
    (o32, p32, x32), (o64, p64, x64) = results["float32"], results["float64"]
    assert float(normwise(o32, o64).max()) <= 8 * EPS32
    # gradients: float32 rounding amplified by at most the conditioning of these rows
    assert float((x32 - x64).norm() / x64.norm()) <= 1e-4
    assert float((p32 - p64).norm() / p64.norm()) <= 1e-4


@pytest.mark.parametrize("kind", sorted(FNS))
@pytest.mark.parametrize("block", [2, 4, 8])
def test_native_agrees_with_eager_in_float32(kind: str, block: int) -> None:
    if not _native.available():
        pytest.skip(f"native backend: {_native.status()}")
    d = 48
    p0, x0 = params(kind, d, 6, block=block), points(d, 7, [*INSIDE, 1.0, 2.0])
    cot = torch.randn(x0.shape, generator=torch.Generator().manual_seed(8))
    got = {}
    for name in ("eager", "native"):
        with use_backend(name):
            p = p0.float().requires_grad_()
            x = x0.float().requires_grad_()
            out = FNS[kind](p, x, c=1.3)
            got[name] = (out.detach(), *torch.autograd.grad(out, (p, x), cot))
    for a, b in zip(got["native"], got["eager"], strict=True):
        torch.testing.assert_close(a, b, rtol=4 * EPS32, atol=1e-6 * float(b.abs().max()))


@pytest.mark.parametrize("threads", [1, 2])
def test_native_parameter_gradient_does_not_depend_on_threads_beyond_rounding(
    threads: int,
) -> None:
    if not _native.available():
        pytest.skip(f"native backend: {_native.status()}")
    d = 64
    p0, x0 = params("banded", d, 9), points(d, 10, INSIDE * 4)
    cot = torch.randn(x0.shape, generator=torch.Generator().manual_seed(11))
    before = torch.get_num_threads()
    try:
        out = {}
        for n in (1, threads):
            torch.set_num_threads(n)
            with use_backend("native"):
                p = p0.float().requires_grad_()
                x = x0.float().requires_grad_()
                y = ops.banded_matvec(p, x, c=1.0)
                out[n] = (y.detach(), *torch.autograd.grad(y, (p, x), cot))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(out[threads], out[1], strict=True):
        torch.testing.assert_close(a, b, rtol=4 * EPS32, atol=1e-6 * float(b.abs().max()))


def test_native_structured_equals_dense_product() -> None:
    d = 40
    blocks = params("block", d, 12)
    x = points(d, 13, INSIDE).float()
    with use_backend("native" if _native.available() else "eager"):
        got = ops.block_diagonal_matvec(blocks.float(), x, c=1.0)
    with use_backend("eager"):
        dense = ops.mobius_matvec(ops.block_diagonal_to_dense(blocks).float(), x, c=1.0)
    torch.testing.assert_close(got, dense, rtol=8 * EPS32, atol=1e-7)


def test_backend_switch_validates_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"^backend: expected one of"):
        backend.set_backend("cuda")
    monkeypatch.setenv(backend.ENV, "nope")
    with pytest.raises(ValueError, match=r"^HYPERET_BACKEND: expected one of"):
        backend.get_backend()
    monkeypatch.setenv(backend.ENV, "eager")
    assert backend.get_backend() == "eager"
    with use_backend("native"):
        assert backend.get_backend() == "native"
    assert backend.get_backend() == "eager"
    x = torch.zeros(2, 8)
    assert backend.resolve("matvec:diagonal", x, torch.ones(8)) == "eager"


def test_forced_backend_that_cannot_load_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native, "_library", lambda: (None, "no C compiler (test)"))
    x = torch.zeros(2, 8)
    with use_backend("native"), pytest.raises(RuntimeError, match="no C compiler"):
        ops.diagonal_matvec(torch.ones(8), x, c=1.0)
    with use_backend("auto"):  # auto falls back to eager
        assert backend.resolve("matvec:diagonal", x, torch.ones(8)) == "eager"
        torch.testing.assert_close(ops.diagonal_matvec(torch.ones(8), x, c=1.0), x)


def test_auto_picks_native_for_float32_cpu_structured_only() -> None:
    if not _native.available():
        pytest.skip(f"native backend: {_native.status()}")
    x32, p32 = torch.zeros(2, 8), torch.ones(8)
    with use_backend("auto"):
        assert backend.resolve("matvec:diagonal", x32, p32) == "native"
        assert backend.resolve("matvec:dense", x32, torch.eye(8)) == "eager"
        assert backend.resolve("matvec:diagonal", x32.double(), p32.double()) == "eager"


APPLY: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "diagonal": ops.structured.diagonal_apply,
    "block": ops.structured.block_diagonal_apply,
    "banded": ops.structured.banded_apply,
}


@pytest.mark.parametrize("kind", sorted(APPLY))
@pytest.mark.parametrize("x_grad", [True, False])
def test_native_plain_product_matches_the_dense_matrix(kind: str, x_grad: bool) -> None:
    # HRA's fast mode: M x along the last axis of a non-contiguous (2, 3, d) input
    if not _native.available():
        pytest.skip(f"native backend: {_native.status()}")
    d = 24
    p64 = params(kind, d, 14, block=3)
    dense = {"diagonal": ops.diagonal_to_dense, "block": ops.block_diagonal_to_dense}.get(
        kind, ops.banded_to_dense
    )(p64)
    g = torch.Generator().manual_seed(15)
    x64 = torch.randn(2, d, 3, generator=g, dtype=F64).float().double().transpose(1, 2)
    cot = torch.randn(2, 3, d, generator=g, dtype=F64).float().double()
    with use_backend("native"):
        p = p64.float().requires_grad_()
        x = x64.float().requires_grad_(x_grad)
        y = APPLY[kind](p, x)
        grads = torch.autograd.grad(y, (p, x) if x_grad else (p,), cot.float())
    want_y = x64 @ dense.mT
    torch.testing.assert_close(y.detach().double(), want_y, rtol=1e-6, atol=1e-6)
    p_ref = p64.clone().requires_grad_()
    want_p = torch.autograd.grad((APPLY[kind](p_ref, x64) * cot).sum(), p_ref)[0]
    torch.testing.assert_close(grads[0].double(), want_p, rtol=1e-5, atol=1e-5)
    if x_grad:
        torch.testing.assert_close(grads[1].double(), cot @ dense, rtol=1e-5, atol=1e-5)


def _structure(kind: str, size: int, d: int, seed: int) -> Tensor:
    """float32-representable parameters near the identity: ``size`` is the block size or the
    half-bandwidth."""
    g = torch.Generator().manual_seed(seed)
    if kind == "block":
        eye = torch.eye(size, dtype=F64).repeat(d // size, 1, 1)
        return (eye + 0.3 * torch.randn(d // size, size, size, generator=g, dtype=F64)).float()
    bands = torch.zeros(2 * size + 1, d, dtype=F64).index_fill_(0, torch.tensor([size]), 1.0)
    return (bands + 0.3 * torch.randn(2 * size + 1, d, generator=g, dtype=F64)).float()


# every specialised kernel of _native_matvec.c and the generic ones: bands of 1, 3, 5, 7, 9
# (register shifts), 11 (generic width), 19 (wider than a register shift: loads), 33 and 35
# (the widest band whose plain product carries its chunks in registers, and the first that does
# not); blocks of 1, 2, 4, 8, 16 (inside a 16-float chunk), 3, 5 and 32 (run as bands)
WIDTHS = [("banded", k) for k in (0, 1, 2, 3, 4, 5, 9, 16, 17)] + [
    ("block", b) for b in (1, 2, 3, 4, 5, 8, 16, 32)
]


@pytest.mark.parametrize(("kind", "size"), WIDTHS)
@pytest.mark.parametrize("shape", [(7,), (2, 3)])  # rows: not a multiple of the row group
def test_native_kernels_of_every_width_agree_with_eager(
    kind: str, size: int, shape: tuple[int, ...]
) -> None:
    if not _native.available():
        pytest.skip(f"native backend: {_native.status()}")
    step = 1 if kind == "banded" else size
    for dd in (step * (96 // step), step * (89 // step)):  # 96: six whole 16-float chunks
        p0 = _structure(kind, size, dd, 16)
        x0 = points(dd, 17, [0.9, 0.3, 0.99, 0.0, 0.5, 1 - 1e-5, 0.7][: math.prod(shape)])
        x0 = x0.float().reshape(*shape, dd)
        cot = torch.randn(x0.shape, generator=torch.Generator().manual_seed(18))
        got = {}
        for name in ("eager", "native"):
            with use_backend(name):
                p = p0.clone().requires_grad_()
                x = x0.clone().requires_grad_()
                out = FNS[kind](p, x, c=0.8)
                got[name] = (out.detach(), *torch.autograd.grad(out, (p, x), cot))
        for a, b in zip(got["native"], got["eager"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-6 * float(b.abs().max()))


@pytest.mark.parametrize(("kind", "size"), WIDTHS)
@pytest.mark.parametrize("transposed", [False, True])
def test_native_plain_products_of_every_width_match_the_dense_matrix(
    kind: str, size: int, transposed: bool
) -> None:
    if not _native.available():
        pytest.skip(f"native backend: {_native.status()}")
    d = 80 if kind == "banded" else size * -(-84 // size)  # blocks: mostly a partial chunk
    p0 = _structure(kind, size, d, 19)
    dense = (ops.block_diagonal_to_dense if kind == "block" else ops.banded_to_dense)(p0.double())
    matrix = dense.mT if transposed else dense
    g = torch.Generator().manual_seed(20)
    x0 = torch.randn(5, d, generator=g)
    cot = torch.randn(5, d, generator=g)
    with use_backend("native"):
        p = p0.clone().requires_grad_()
        x = x0.clone().requires_grad_()
        y = _native.NativeLinear.apply(kind, p, x, transposed)
        gp, gx = torch.autograd.grad(y, (p, x), cot)
    torch.testing.assert_close(y.double(), x0.double() @ matrix.mT, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx.double(), cot.double() @ matrix, rtol=1e-5, atol=1e-5)
    # the parameter gradient through the dense matrix, restricted to the structure
    p_ref = p0.double().requires_grad_()
    dense_ref = (ops.block_diagonal_to_dense if kind == "block" else ops.banded_to_dense)(p_ref)
    m_ref = dense_ref.mT if transposed else dense_ref
    want = torch.autograd.grad((x0.double() @ m_ref.mT * cot.double()).sum(), p_ref)[0]
    torch.testing.assert_close(gp.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kind", "size"), WIDTHS)
@pytest.mark.parametrize("d", [96, 89])  # 96: whole chunks (the frozen-input path reads g in place)
def test_native_plain_product_with_a_frozen_input_matches_the_dense_matrix(
    kind: str, size: int, d: int
) -> None:
    # HRA's weight side: y = M W with W frozen, so the backward forms the parameter gradient
    # alone; six rows: one group of four rows per parameter load, then two single rows
    if not _native.available():
        pytest.skip(f"native backend: {_native.status()}")
    d = d if kind == "banded" else size * (d // size)
    p0 = _structure(kind, size, d, 21)
    g = torch.Generator().manual_seed(22)
    x0, cot = torch.randn(6, d, generator=g), torch.randn(6, d, generator=g)
    with use_backend("native"):
        p = p0.clone().requires_grad_()
        y = _native.NativeLinear.apply(kind, p, x0)
        (gp,) = torch.autograd.grad(y, (p,), cot)
    to_dense = ops.block_diagonal_to_dense if kind == "block" else ops.banded_to_dense
    torch.testing.assert_close(
        y.double(), x0.double() @ to_dense(p0.double()).mT, rtol=1e-5, atol=1e-5
    )
    p_ref = p0.double().requires_grad_()
    want = torch.autograd.grad((x0.double() @ to_dense(p_ref).mT * cot.double()).sum(), p_ref)[0]
    torch.testing.assert_close(gp.double(), want, rtol=1e-5, atol=1e-5)


def test_native_backend_builds_where_a_compiler_is_present() -> None:
    # the native tests skip when the library cannot be built; with a compiler here, a build
    # failure is a bug, not a reason to skip
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler!r})")
    assert _native.available(), _native.status()


# (kind, size, d): one band, blocks inside a chunk, blocks of 3 run as carried bands (d = 1008
# = 63 chunks, divisible by 3), bands of k = 2 and the widest carried band
STREAMED = [
    ("diagonal", 1, 1024),
    ("block", 4, 1024),
    ("block", 16, 1024),
    ("block", 3, 1008),
    ("banded", 2, 1024),
    ("banded", 16, 1024),
]


@pytest.mark.parametrize(("kind", "size", "d"), STREAMED)
@pytest.mark.parametrize("transposed", [False, True])
def test_native_plain_products_streamed_to_memory_match_the_dense_matrix(
    kind: str, size: int, d: int, transposed: bool
) -> None:
    # outputs over 2 MiB are written with non-temporal stores (_native_matvec.c, STREAM_BYTES):
    # 528 rows, the HRA weight side's shape class, against the float64 product; the parameter
    # gradient of a frozen input (the weight side's backward) likewise
    if not _native.available():
        pytest.skip(f"native backend: {_native.status()}")
    rows = 528
    assert rows * d * 4 > 2 << 20
    if kind == "diagonal":
        g = torch.Generator().manual_seed(23)
        p0 = (1 + 0.3 * torch.randn(d, generator=g, dtype=F64)).float()
        dense = torch.diag(p0.double())
    else:
        p0 = _structure(kind, size, d, 23)
        to_dense = ops.block_diagonal_to_dense if kind == "block" else ops.banded_to_dense
        dense = to_dense(p0.double())
    matrix = dense.mT if transposed else dense
    g = torch.Generator().manual_seed(24)
    x0, cot = torch.randn(rows, d, generator=g), torch.randn(rows, d, generator=g)
    with use_backend("native"):
        p = p0.clone().requires_grad_()
        y = _native.NativeLinear.apply(kind, p, x0, transposed)
        (gp,) = torch.autograd.grad(y, (p,), cot)
    torch.testing.assert_close(y.double(), x0.double() @ matrix.mT, rtol=1e-5, atol=1e-5)
    p_ref = p0.double().requires_grad_()
    if kind == "diagonal":
        m_ref = torch.diag(p_ref)
    else:
        m_ref = (ops.block_diagonal_to_dense if kind == "block" else ops.banded_to_dense)(p_ref)
    m_ref = m_ref.mT if transposed else m_ref
    want = torch.autograd.grad((x0.double() @ m_ref.mT * cot.double()).sum(), p_ref)[0]
    torch.testing.assert_close(gp.double(), want, rtol=1e-5, atol=1e-4)


def test_native_plain_product_into_an_unaligned_output_is_stored_plainly() -> None:
    # non-temporal stores need 64-byte aligned rows: an output 4 bytes off takes plain stores
    lib = _native._library()[0]
    if lib is None:
        pytest.skip(f"native backend: {_native.status()}")
    rows, d = 520, 1024
    g = torch.Generator().manual_seed(25)
    bands = _structure("banded", 2, d, 25)
    x = torch.randn(rows, d, generator=g)
    buffer = torch.full((rows * d + 1,), float("nan"))
    out = buffer[1:].view(rows, d)
    assert out.data_ptr() % 64 != 0
    code = _native.KIND_CODES["banded"]
    assert (
        lib.hyperet_linear_forward(
            code, rows, d, bands.data_ptr(), 5, x.data_ptr(), out.data_ptr(), 0, 1
        )
        == 0
    )
    want = x.double() @ ops.banded_to_dense(bands.double()).mT
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)
    assert torch.isnan(buffer[0])  # nothing written before the output


def test_build_note_says_how_the_library_was_obtained(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _native.available():
        pytest.skip(f"native backend: {_native.status()}")
    monkeypatch.setattr(_native, "_BUILD_SECONDS", [8.24])
    assert _native.build_note().startswith("compiled in 8.2 s")
    monkeypatch.setattr(_native, "_BUILD_SECONDS", [])
    assert _native.build_note().startswith("loaded from the build cache")
    monkeypatch.setattr(_native, "_library", lambda: (None, "no C compiler ('cc' not found)"))
    assert _native.build_note() == "unavailable: no C compiler ('cc' not found)"


def test_a_fresh_build_is_timed(tmp_path: Path) -> None:
    # a process that compiles the library reports how long that took; the next one loads it
    import subprocess
    import sys

    if not _native.available():
        pytest.skip(f"native backend: {_native.status()}")
    script = "from hyperet.ops import _native; print(_native.build_note())"
    env = {**os.environ, "HYPERET_CACHE_DIR": str(tmp_path)}
    notes = [
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    assert notes[0].startswith("compiled in"), notes
    assert notes[1].startswith("loaded from the build cache"), notes


def test_a_failed_build_reports_the_compilers_error_line(tmp_path: Path) -> None:
    # GCC ends its message with a source excerpt ("|   ^~~~"): the status names the error line
    import subprocess
    import sys

    fake_cc = tmp_path / "fake-cc"
    fake_cc.write_text(
        "#!/bin/sh\n"
        "echo 'x.c: In function f:' >&2\n"
        "echo 'x.c:3:5: error: expected expression' >&2\n"
        "echo '    3 |     ;' >&2\n"
        "echo '      |     ^' >&2\n"
        "exit 1\n"
    )
    fake_cc.chmod(0o755)
    env = {**os.environ, "CC": str(fake_cc), "HYPERET_CACHE_DIR": str(tmp_path / "cache")}
    script = "from hyperet.ops import _native; print(_native.status())"
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == (
        "build failed: x.c:3:5: error: expected expression; x.c:3:5: error: expected expression"
    )
