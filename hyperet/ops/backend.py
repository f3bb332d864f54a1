"""Which implementation runs the train-policy fast paths: ``"auto"``, ``"eager"``, ``"native"``,
``"triton"`` (docs/performance.md, "Backends").

- ``"eager"``: plain torch ops (:mod:`hyperet.ops._fused`), every device and dtype.
- ``"native"``: fused C kernels on the CPU (:mod:`hyperet.ops._native`; float32, the three
  structured Möbius matvecs), built on first use with the system C compiler.
- ``"triton"``: fused Triton kernels (:mod:`hyperet.ops._triton`; CUDA tensors, or CPU tensors
  under ``TRITON_INTERPRET=1``), needs the optional extra ``hyperet[gpu]``.
- ``"auto"`` (the default): ``"triton"`` for CUDA tensors when triton is installed,
  ``"native"`` for float32 CPU tensors when the C library builds, else ``"eager"``.

A forced backend serves every call it supports and leaves the others to eager torch; forcing
one that cannot load here raises :class:`RuntimeError` with the reason. Choose with the
environment variable ``HYPERET_BACKEND``, :func:`set_backend` or the :func:`use_backend`
context manager:

>>> from hyperet.ops.backend import get_backend, use_backend
>>> with use_backend("eager"):
...     get_backend()
'eager'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor

from hyperet.ops import _native, _triton

BACKENDS: tuple[str, ...] = ("auto", "eager", "native", "triton")
ENV = "HYPERET_BACKEND"

_chosen: str | None = None


def _check(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{source}: expected one of {BACKENDS}, got {name!r}")
    return name


def get_backend() -> str:
    """The backend set by :func:`set_backend`, else ``$HYPERET_BACKEND``, else ``"auto"``."""
    if _chosen is not None:
        return _chosen
    return _check(os.environ.get(ENV, "auto") or "auto", ENV)


def set_backend(name: str | None) -> None:
    """Force a backend for this process (``None``: back to ``$HYPERET_BACKEND`` / auto)."""
    global _chosen
    _chosen = None if name is None else _check(name, "backend")


@contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run a block with ``name`` forced, then restore the previous choice."""
    global _chosen
    previous = _chosen
    set_backend(name)
    try:
        yield
    finally:
        _chosen = previous


def triton_interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _native_serves(op: str, tensors: tuple[Tensor, ...]) -> bool:
    family, _, kind = op.partition(":")
    return family in ("matvec", "linear") and _native.serves(kind, *tensors)


def resolve(op: str, *tensors: Tensor) -> str:
    """The backend that runs ``op`` on these tensors: ``"matvec:<kind>"`` (train-policy Möbius
    matvec, ``tensors = (x, param)``), ``"linear:<kind>"`` (plain structured product) or the
    name of a Poincaré op."""
    chosen = get_backend()
    if chosen == "eager":
        return "eager"
    on_cuda = tensors[0].device.type == "cuda"
    if chosen == "auto":
        if on_cuda:
            return "triton" if _triton.available() and _triton.serves(op, *tensors) else "eager"
        if _native_serves(op, tensors) and _native.available():
            return "native"
        return "eager"
    if chosen == "native":
        if not _native.available():
            raise RuntimeError(f"backend: 'native' is unavailable here: {_native.status()}")
        return "native" if _native_serves(op, tensors) else "eager"
    # triton
    if not _triton.available():
        raise RuntimeError(f"backend: 'triton' is unavailable here: {_triton.status()}")
    if not (on_cuda or triton_interpreting()):
        raise RuntimeError("backend: 'triton' needs CUDA tensors or TRITON_INTERPRET=1")
    return "triton" if _triton.serves(op, *tensors) else "eager"
