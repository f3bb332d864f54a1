"""The ``"triton"`` backend (kernels in :mod:`hyperet.ops._triton_kernels`, added next)."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def available() -> bool:
    """Whether triton is importable here."""
    return False


def status() -> str:
    """Why the backend is unavailable."""
    return "triton kernels are not part of this build yet"


def serves(op: str, *tensors: Tensor) -> bool:
    """Whether a kernel covers this op on these tensors."""
    return False


TritonMatvec: Any = None
