"""Every Triton kernel launch of the train-policy ops compiles for a GPU (sm_90), here, without
one: Triton's interpreter runs kernels as Python and so accepts code that its compiler refuses
(a global that is not a constexpr, a tuple the compiler cannot index, a type it cannot lower).

The launches are captured, not run: each kernel is replaced by a recorder, the ops run forward
and backward on small CPU tensors (their outputs are then garbage, which is fine), and every
distinct launch (argument types, constexprs, warps) is compiled to a cubin with the ``ptxas``
that the triton wheel ships. Runs in ``nox -s triton`` (without ``TRITON_INTERPRET``); skips
where triton, or its CUDA backend, is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from backend_cases import run_every_train_op
from torch import Tensor

from hyperet.ops import backend

triton = pytest.importorskip("triton")
if backend.triton_interpreting():
    pytest.skip("compiles kernels: run without TRITON_INTERPRET", allow_module_level=True)

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from hyperet.ops import _triton_kernels as kern  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)  # H100 / H200
POINTER = {
    torch.float32: "*fp32",
    torch.float64: "*fp64",
    torch.bfloat16: "*bf16",
    torch.float16: "*fp16",
}


class _Recorder:
    """Stands in for a kernel: records ``(name, signature, constexprs, num_warps)`` per launch."""

    def __init__(self, name: str, kernel: Any, launches: dict[tuple[Any, ...], Any]) -> None:
        self.name, self.kernel, self.launches = name, kernel, launches

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            num_warps = kwargs.pop("num_warps", 4)
            names = self.kernel.arg_names
            signature = {}
            for arg_name, value in zip(names, [*args, *kwargs.values()], strict=True):
                if arg_name in kwargs:
                    signature[arg_name] = "constexpr"
                elif isinstance(value, Tensor):
                    signature[arg_name] = POINTER[value.dtype]
                else:
                    assert isinstance(value, int), f"{self.name}.{arg_name}: {value!r}"
                    signature[arg_name] = "i32"
            key = (self.name, tuple(signature.items()), tuple(kwargs.items()), num_warps)
            self.launches[key] = self.kernel

        return record


def _launches(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[Any, ...], Any]:
    launches: dict[tuple[Any, ...], Any] = {}
    for name in dir(kern):
        if name.endswith("_kernel"):
            monkeypatch.setattr(kern, name, _Recorder(name, getattr(kern, name), launches))
    monkeypatch.setattr(backend, "triton_interpreting", lambda: True)  # CPU tensors allowed
    for dtype in (torch.float32, torch.bfloat16):
        run_every_train_op(24, dtype, "triton")
    return launches


@pytest.mark.slow  # about 20 s of compiling; nox -s triton runs it
def test_every_kernel_launch_compiles_for_sm90(monkeypatch: pytest.MonkeyPatch) -> None:
    launches = _launches(monkeypatch)
    names = {key[0] for key in launches}
    assert names == {n for n in dir(kern) if n.endswith("_kernel")}  # every kernel launched
    for (name, signature, constexprs, num_warps), kernel in launches.items():
        source = ASTSource(fn=kernel, signature=dict(signature), constexprs=dict(constexprs))
        compiled = triton.compile(
            source, target=TARGET, options={"num_warps": num_warps, "enable_fp_fusion": True}
        )
        assert compiled.asm["cubin"], name
