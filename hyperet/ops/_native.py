"""The CPU backend ``"native"``: the train-policy structured Möbius matvec as one C pass per
direction (``_native_matvec.c``), built on first use with the system C compiler.

Same formulas as :mod:`hyperet.ops._fused` (the eager path), fused per row so that the forward
reads ``x`` once and writes ``y`` once and the backward reads ``g`` and ``x`` once (it
recomputes :math:`Mx` per row) and writes ``grad_x`` once (docs/performance.md counts "passes
of memory traffic"). Scalars per vector are float64, products float32, as in the eager path.

The shared library is compiled with ``$CC`` (default ``cc``) ``-O3 -march=native -fopenmp``
into ``$HYPERET_CACHE_DIR`` (default ``~/.cache/hyperet``), named by a hash of the source and
the flags, and written atomically (a temporary file, then a rename), so concurrent processes
can build it at the same time. Building takes about 8 s of CPU on the project machine (GCC 12,
2026-11-27), once per source version; :func:`status` says why the backend is unavailable when
it is (no compiler, a failed build), :func:`build_note` how this process got the library.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("_native_matvec.c")
#: kind name -> the C code of that structure
KIND_CODES: dict[str, int] = {"diagonal": 1, "block": 2, "banded": 3}
_FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=gnu99")

_i64, _f32p, _f64p, _dbl = ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_double


#: wall seconds of each compilation this process ran, failed ones included (empty: the library
#: came from the cache)
_BUILD_SECONDS: list[float] = []


def _cache_dir() -> Path:
    root = os.environ.get("HYPERET_CACHE_DIR") or Path.home() / ".cache" / "hyperet"
    return Path(root) / "native"


def _build(compiler: str, openmp: bool) -> Path:
    source = SOURCE.read_bytes()
    flags = (*_FLAGS, "-fopenmp") if openmp else _FLAGS
    tag = hashlib.sha256(source + " ".join((compiler, *flags)).encode()).hexdigest()[:16]
    target = _cache_dir() / f"matvec-{tag}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    start = time.perf_counter()
    try:
        subprocess.run(
            [compiler, *flags, str(SOURCE), "-o", tmp, "-lm"],
            check=True,
            capture_output=True,
            text=True,
        )
        os.replace(tmp, target)  # atomic: a concurrent build writes the same bytes
    finally:
        _BUILD_SECONDS.append(time.perf_counter() - start)  # failed attempts count too
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _first_error(output: str) -> str:
    """The compiler's first line that names an error (its last line is often a source excerpt
    such as ``|   ^~~~``), else its last non-empty line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[-1] if lines else ""


@functools.cache
def _library() -> tuple[ctypes.CDLL | None, str]:
    """The loaded library, or ``None`` and the reason it is unavailable."""
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        return None, f"no C compiler ({compiler!r} not found; set CC)"
    errors = []
    for openmp in (True, False):
        try:
            lib = ctypes.CDLL(str(_build(compiler, openmp)))
        except (subprocess.CalledProcessError, OSError) as exc:
            errors.append(_first_error(getattr(exc, "stderr", "") or str(exc)) or repr(exc))
            continue
        lib.hyperet_matvec_forward.restype = ctypes.c_int
        lib.hyperet_matvec_forward.argtypes = [
            ctypes.c_int, _i64, _i64, _f32p, _i64, _f32p, _f32p, _f64p, _f64p,
            _dbl, _dbl, _dbl, ctypes.c_int,
        ]  # fmt: skip
        lib.hyperet_matvec_backward.restype = ctypes.c_int
        lib.hyperet_matvec_backward.argtypes = [
            ctypes.c_int, _i64, _i64, _f32p, _i64, _f32p, _f32p, _f32p, _f64p, _f64p,
            _f32p, _f32p, _dbl, _dbl, _dbl, ctypes.c_int,
        ]  # fmt: skip
        lib.hyperet_linear_forward.restype = ctypes.c_int
        lib.hyperet_linear_forward.argtypes = [
            ctypes.c_int, _i64, _i64, _f32p, _i64, _f32p, _f32p, ctypes.c_int, ctypes.c_int,
        ]  # fmt: skip
        lib.hyperet_linear_backward.restype = ctypes.c_int
        lib.hyperet_linear_backward.argtypes = [
            ctypes.c_int, _i64, _i64, _f32p, _i64, _f32p, _f32p, _f32p, _f32p, ctypes.c_int,
            ctypes.c_int,
        ]  # fmt: skip
        return lib, "built"
    return None, f"build failed: {'; '.join(errors)}"


def status() -> str:
    """``"built"`` when the native backend is usable, else why not (builds on first call)."""
    return _library()[1]


def build_note() -> str:
    """How this process got the library (builds it on first call): compiled, and how long that
    took, or loaded from the build cache, or why it is unavailable. Benchmarks record it: the
    build happens before any timed repeat."""
    lib, why = _library()
    if lib is None:
        return f"unavailable: {why}"
    if _BUILD_SECONDS:
        return f"compiled in {sum(_BUILD_SECONDS):.1f} s (wall) on first use, before any timing"
    return "loaded from the build cache (compiled by an earlier process)"


def available() -> bool:
    """Whether the native backend can run here (builds the library on first call)."""
    return _library()[0] is not None


def serves(kind: str, x: Tensor, param: Tensor) -> bool:
    """Whether this call fits the kernel: a structured kind with unbatched parameters, float32
    CPU tensors."""
    return (
        kind in KIND_CODES
        and param.dim() == (1 if kind == "diagonal" else 3 if kind == "block" else 2)
        and x.dim() >= 1
        and x.shape[-1] == (param.shape[-1] if kind != "block" else param.shape[0] * param.shape[1])
        and x.device.type == "cpu"
        and param.device.type == "cpu"
        and x.dtype == torch.float32
        and param.dtype == torch.float32
    )


def _width(kind: str, param: Tensor) -> int:
    return int(param.shape[1] if kind == "block" else (param.shape[0] if kind == "banded" else 1))


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _ok(code: int) -> None:
    if code:
        raise MemoryError("native backend: the C kernel could not allocate its scratch memory")


# The two Functions below keep their Python side to the minimum (docs/performance.md, "Third
# revision"): at d = 1024 the kernels take a few hundred microseconds, and each further torch
# call, view or Python helper on the path costs microseconds - tens of them when the caches are
# cold, as they are in a training step. So: no .detach() (grad mode is off inside forward), one
# allocation for both float64 norm vectors (addressed by pointer offset, not by views), the call's
# constants saved as one tuple.


class NativeMatvec(torch.autograd.Function):
    """:math:`M \\otimes x` (train policy) along the last axis of ``x`` ``(..., d)``, float32 on
    the CPU: one C call forward (``y``, and the float64 norms ``|x|``, ``|Mx|`` saved for the
    backward), one C call backward (``grad_x`` and the parameter gradient, each only when
    needed; it reads ``y`` back instead of forming :math:`Mx` again for bands and blocks, as the
    eager path does). No reshapes (no view nodes in the graph), no temporaries besides the
    outputs."""

    @staticmethod
    def forward(
        ctx: Any, kind: str, param: Tensor, x: Tensor, c: float, w_min: float, t_max: float
    ) -> Tensor:
        lib = _library()[0]
        assert lib is not None
        param, x = param.contiguous(), x.contiguous()
        d = x.shape[-1]
        rows = x.numel() // d if d else 0
        y = torch.empty_like(x)
        norms = torch.empty(2 * rows, dtype=torch.float64)  # |x| (rows), then |Mx| (rows)
        n_ptr = norms.data_ptr()
        code, width, threads = KIND_CODES[kind], _width(kind, param), torch.get_num_threads()
        _ok(lib.hyperet_matvec_forward(
            code, rows, d, param.data_ptr(), width, x.data_ptr(), y.data_ptr(), n_ptr,
            n_ptr + 8 * rows, c, w_min, t_max, threads,
        ))  # fmt: skip
        ctx.call = (code, rows, d, width, c, w_min, t_max)
        ctx.save_for_backward(param, x, norms, y)
        return y

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        lib = _library()[0]
        assert lib is not None
        param, x, norms, y = ctx.saved_tensors
        code, rows, d, width, c, w_min, t_max = ctx.call
        g = g.contiguous()
        want_p, want_x = ctx.needs_input_grad[1:3]
        grad_p = torch.empty_like(param) if want_p else None
        grad_x = torch.empty_like(x) if want_x else None
        n_ptr = norms.data_ptr()
        _ok(lib.hyperet_matvec_backward(
            code, rows, d, param.data_ptr(), width, g.data_ptr(), x.data_ptr(), y.data_ptr(),
            n_ptr, n_ptr + 8 * rows, _ptr(grad_x), _ptr(grad_p), c, w_min, t_max,
            torch.get_num_threads(),
        ))  # fmt: skip
        return None, grad_p, grad_x, None, None, None


class NativeLinear(torch.autograd.Function):
    """The plain structured product :math:`Mx` (or :math:`M^T x` with ``transposed``) along the
    last axis of ``x`` ``(..., d)`` (float32 CPU): one pass forward, one pass backward
    (``grad_x`` and the parameter gradient, each only when needed)."""

    @staticmethod
    def forward(ctx: Any, kind: str, param: Tensor, x: Tensor, transposed: bool = False) -> Tensor:
        lib = _library()[0]
        assert lib is not None
        param, x = param.contiguous(), x.contiguous()
        d = x.shape[-1]
        rows = x.numel() // d if d else 0
        y = torch.empty_like(x)
        code, width, flag = KIND_CODES[kind], _width(kind, param), int(transposed)
        _ok(lib.hyperet_linear_forward(
            code, rows, d, param.data_ptr(), width, x.data_ptr(), y.data_ptr(), flag,
            torch.get_num_threads(),
        ))  # fmt: skip
        ctx.call = (code, rows, d, width, flag)
        ctx.save_for_backward(param, x)
        return y

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        lib = _library()[0]
        assert lib is not None
        param, x = ctx.saved_tensors
        code, rows, d, width, flag = ctx.call
        g = g.contiguous()
        want_p, want_x = ctx.needs_input_grad[1:3]
        grad_p = torch.empty_like(param) if want_p else None
        grad_x = torch.empty_like(x) if want_x else None
        _ok(lib.hyperet_linear_backward(
            code, rows, d, param.data_ptr(), width, g.data_ptr(), x.data_ptr(), _ptr(grad_x),
            _ptr(grad_p), flag, torch.get_num_threads(),
        ))  # fmt: skip
        return None, grad_p, grad_x, None
