"""The adapter directory format (PEFT's layout), written and read by ``save/load_adapters``.

::

    DIR/
      adapter_config.json        HyperETConfig fields (structure, targets, target, c, mode,
                                 block_size, bandwidth, learn_curvature, policy, modules = the
                                 matched module names) + method "hyperet", format, format_version,
                                 package_version, adapters (key -> {structure, d, size, c, ...})
      adapter_model.safetensors  one tensor per adapter parameter, "<host>.<role>.<parameter>"

Tensor keys are those of the single-file format (:mod:`hyperet.nn.adapter_io`), so both formats
describe adapters the same way and share the strict loader. The weights are written first and the
config last, each through a temporary file and ``os.replace``: a directory with a config always
has the weights that go with it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hyperet.nn.adapter_config import CONFIG_NAME, METHOD, WEIGHTS_NAME

#: Version of the directory format (the single file is version "1").
DIR_FORMAT_VERSION = "2"


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary name)`` in ``path``'s directory, then move it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_adapter_dir(
    directory: Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]
) -> None:
    """Write ``tensors`` and ``config`` (``adapter_config.json``'s content) into ``directory``."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"path: {str(directory)!r} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"method": METHOD, "format_version": DIR_FORMAT_VERSION, **config}
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"

    def write_text(name: str) -> None:
        Path(name).write_text(text)

    atomic_write(
        directory / WEIGHTS_NAME,
        lambda name: save_file(tensors, name, metadata={"format": "pt", "method": METHOD}),
    )
    atomic_write(directory / CONFIG_NAME, write_text)


def read_adapter_dir(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, config)`` of an adapter directory; ``ValueError`` naming what is wrong."""
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ValueError(f"path: {str(directory)!r} has no {path.name}")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"path: {str(config_path)!r} is not valid JSON ({error})") from error
    if isinstance(config, dict) and "peft_type" in config:  # e.g. PEFT's HRA (Householder)
        raise ValueError(
            f"path: {str(config_path)!r} is a PEFT adapter config (peft_type "
            f"{config['peft_type']!r}), not a HyperET one"
        )
    if not isinstance(config, dict) or config.get("method") != METHOD:
        raise ValueError(
            f"path: {str(config_path)!r} is not a HyperET adapter config (method "
            f"{config.get('method') if isinstance(config, dict) else None!r}, expected {METHOD!r})"
        )
    if config.get("format_version") != DIR_FORMAT_VERSION:
        raise ValueError(
            f"path: format version {config.get('format_version')!r} is not supported "
            f"(this hyperet reads {DIR_FORMAT_VERSION!r})"
        )
    if not isinstance(config.get("adapters"), dict):
        raise ValueError(f"path: {str(config_path)!r} has no 'adapters' description")
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises several types for damaged files
        raise ValueError(
            f"path: {str(weights_path)!r} is not a readable safetensors file ({error})"
        ) from error
    return tensors, config
