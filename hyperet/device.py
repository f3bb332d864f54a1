"""Where a run computes: ``--device {auto,cpu,cuda}`` and placing the compact MLLM there.

The recipe and the evaluation build their inputs on the CPU (numpy data, token batches). On a
GPU, :func:`place` moves the model there and registers forward pre-hooks on the model and on
its direct children (vision encoder, text tower, projector, LM, heads, aligner) that move every
tensor argument to the model's device, so no stage or metric has to know where the model is.
For evaluation (``outputs_to_cpu=True``) forward hooks bring the outputs back, so greedy decoding
and the metrics keep working on CPU tensors while the networks run on the GPU. On the CPU
nothing is registered: a CPU run is exactly what it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from hyperet.choices import DEVICES

#: ``--device`` choices: ``auto`` is CUDA when available, else the CPU.


def resolve_device(name: str) -> torch.device:
    """``"auto"`` / ``"cpu"`` / ``"cuda"`` -> a device (under torchrun: this rank's GPU).

    Raises ``ValueError`` for ``"cuda"`` without a CUDA device and for an unknown name.
    """
    if name not in DEVICES:
        raise ValueError(f"device: expected one of {DEVICES}, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but torch sees no CUDA device")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def _moved(value: Any, device: torch.device) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_moved(v, device) for v in value)
    if isinstance(value, list):
        return [_moved(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _moved(v, device) for k, v in value.items()}
    return value


def place(
    model: nn.Module,
    device: torch.device,
    *,
    outputs_to_cpu: bool = False,
    entry: Iterable[nn.Module] = (),
) -> nn.Module:
    """Move ``model`` to ``device``; off the CPU, move its inputs there too (see module doc).

    ``entry``: further submodules that are called from outside the model's own forward (e.g.
    the aligner's parts, which the alignment analysis calls through the aligner's methods).
    """
    if device.type == "cpu":
        return model
    model.to(device)

    def inputs(module: nn.Module, args: Any, kwargs: Any) -> Any:
        return _moved(args, device), _moved(kwargs, device)

    def outputs(module: nn.Module, args: Any, output: Any) -> Any:
        return _moved(output, torch.device("cpu"))

    for module in (model, *model.children(), *entry):
        module.register_forward_pre_hook(inputs, with_kwargs=True)
        if outputs_to_cpu:
            module.register_forward_hook(outputs)
    return model


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX, as oneDNN reports it)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
