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
config last, each atomically (:mod:`hyperet._io`): a directory with a config always has the
weights that go with it. The weights record a SHA-256 of their content (metadata ``sha256``),
verified on loading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hyperet import _io
from hyperet.nn.adapter_config import (
    ADAPTER_DTYPES,
    CONFIG_NAME,
    METHOD,
    WEIGHTS_NAME,
    AdapterCheckpointError,
    read_checked,
    read_config_json,
)

#: Version of the directory format (the single file is version "1").
DIR_FORMAT_VERSION = "2"


def write_adapter_dir(
    directory: Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]
) -> None:
    """Write ``tensors`` and ``config`` (``adapter_config.json``'s content) into ``directory``."""
    if directory.exists() and not directory.is_dir():
        raise AdapterCheckpointError(f"path: {str(directory)!r} exists and is not a directory")
    payload = {"method": METHOD, "format_version": DIR_FORMAT_VERSION, **config}
    metadata = {"format": "pt", "method": METHOD}
    _io.atomic_write_bytes(directory / WEIGHTS_NAME, _io.encode_safetensors(tensors, metadata))
    _io.write_json(directory / CONFIG_NAME, payload, sort_keys=True)


def read_adapter_dir(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, config)`` of an adapter directory; :class:`AdapterCheckpointError` naming
    what is wrong."""
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise AdapterCheckpointError(f"path: {str(directory)!r} has no {path.name}")
    config = read_config_json(config_path)
    _io.check_version(
        config.get("format_version"), DIR_FORMAT_VERSION, "path", AdapterCheckpointError
    )
    if not isinstance(config.get("adapters"), dict):
        raise AdapterCheckpointError(f"path: {str(config_path)!r} has no 'adapters' description")
    # the digest is verified when present (directories of hyperet <= 0.1.0 have none)
    tensors, _ = read_checked(
        weights_path, _io.read_safetensors, dtypes=ADAPTER_DTYPES, require_digest=False
    )
    return tensors, config
