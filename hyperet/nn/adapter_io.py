"""Adapter checkpoints: only the HRA weights, as an adapter directory or a single file.

``save_adapters(model, DIR)`` writes PEFT's layout, ``DIR/adapter_config.json`` +
``DIR/adapter_model.safetensors`` (:mod:`hyperet.nn.adapter_dir`); a path ending in
``.safetensors`` writes the single-file format below (format version 1), which
``load_adapters`` keeps reading. Both hold the same tensor keys and the same per-adapter
descriptions, checked by the same strict loader.

A single file holds one tensor per adapter parameter under ``"<host path>.<role>.<parameter>"``,
e.g. ``"blocks.0.attn.q.matrix.w"`` (keys do not change when the model is merged), and metadata::

    format          "hyperet-adapters"
    format_version  "1"
    package_version hyperet.__version__
    structure, size, c, target, targets, mode, learn_curvature   (summary; "mixed" if they differ)
    adapters        JSON: key -> {structure, d, size, c, target, mode, learn_curvature}

Loading is strict: every adapter of the model must be in the file with the same structure,
width, curvature and shapes, and the file must hold nothing else. Every problem raises
:class:`AdapterCheckpointError` (a ``ValueError``) naming what is wrong. Writes are atomic
and record a SHA-256 of the content (metadata ``sha256``), verified on loading
(:mod:`hyperet._io`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyperet import __version__, _io
from hyperet.nn.adapter_config import (
    ADAPTER_DTYPES,
    AdapterCheckpointError,
    HyperETConfig,
    read_checked,
)
from hyperet.nn.adapter_dir import read_adapter_dir, write_adapter_dir
from hyperet.nn.hra import HyperbolicRadiusAdjustment
from hyperet.nn.inject import AdapterSite, adapter_sites
from hyperet.nn.merge import MERGED_ATTR
from hyperet.nn.structured import BandedMatrix, BlockDiagonalMatrix

FORMAT = "hyperet-adapters"
FORMAT_VERSION = "1"


def _size(adapter: HyperbolicRadiusAdjustment) -> int | None:
    """The structure's size: block size, half-bandwidth, or None for diagonal."""
    if isinstance(adapter.matrix, BlockDiagonalMatrix):
        return adapter.matrix.block_size
    if isinstance(adapter.matrix, BandedMatrix):
        return adapter.matrix.bandwidth
    return None


def _describe(site: AdapterSite) -> dict[str, Any]:
    a = site.adapter
    return {
        "structure": a.structure,
        "d": a.d,
        "size": _size(a),
        "c": a.c_value,
        "target": site.target,
        "mode": a.mode,
        "learn_curvature": a.learn_curvature,
    }


def _summary(values: list[Any]) -> str:
    distinct = {json.dumps(v) for v in values}
    if len(distinct) == 1:
        value = values[0]
        return "" if value is None else str(value)
    return "mixed"


def save_adapters(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write the HRA adapters of ``model`` to the adapter directory ``path``, atomically.

    ``path`` ending in ``.safetensors``: the single-file format instead. Returns the path
    written. Raises :class:`AdapterCheckpointError` when the model has no adapters or an
    adapter holds non-finite values.
    """
    path = Path(path)
    sites = adapter_sites(model)
    if not sites:
        raise AdapterCheckpointError("model: carries no HRA adapters (call apply_hyperet first)")
    tensors: dict[str, torch.Tensor] = {}
    described: dict[str, dict[str, Any]] = {}
    for site in sites:
        described[site.key] = _describe(site)
        for name, value in site.adapter.state_dict().items():
            if not bool(torch.isfinite(value).all()):
                raise AdapterCheckpointError(f"model: adapter {site.key}.{name} is not finite")
            tensors[f"{site.key}.{name}"] = value.detach().to("cpu").contiguous()
    if path.suffix != ".safetensors":
        try:
            config = HyperETConfig.from_model(model).to_dict()
        except ValueError as error:  # adapters that no one config describes
            raise AdapterCheckpointError(str(error)) from error
        config.update(format=FORMAT, package_version=__version__, adapters=described)
        write_adapter_dir(path, tensors, config)
        return path
    info = list(described.values())
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "structure": _summary([i["structure"] for i in info]),
        "size": _summary([i["size"] for i in info]),
        "c": _summary([i["c"] for i in info]),
        "target": _summary([i["target"] for i in info]),
        "targets": ",".join(sorted({key.rsplit(".", 1)[-1] for key in described})),
        "mode": _summary([i["mode"] for i in info]),
        "learn_curvature": _summary([i["learn_curvature"] for i in info]),
        "adapters": json.dumps(described, sort_keys=True),
    }
    _io.atomic_write_bytes(path, _io.encode_safetensors(tensors, metadata))
    return path


def read_adapter_file(
    path: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read an adapter file: ``(tensors, metadata)``; raises on a missing or corrupt file."""
    tensors, metadata, _ = _read_adapter_file(Path(path))
    return tensors, metadata


def _read_adapter_file(
    path: Path,
) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, dict[str, Any]]]:
    """``(tensors, metadata, adapter descriptions)`` of a single adapter file."""
    if not path.is_file():
        raise AdapterCheckpointError(f"path: no adapter file at {str(path)!r}")
    # digest verified when present (files of hyperet <= 0.1.0 have none); nothing is cast
    tensors, metadata = read_checked(
        path, _io.read_safetensors, dtypes=ADAPTER_DTYPES, require_digest=False
    )
    if metadata.get("format") != FORMAT:
        raise AdapterCheckpointError(f"path: {str(path)!r} is not a hyperet adapter file")
    _io.check_version(
        metadata.get("format_version"), FORMAT_VERSION, "path", AdapterCheckpointError
    )
    try:
        described = _io.parse_json(metadata["adapters"].encode(), "adapters", max_depth=3)
    except (KeyError, ValueError) as error:
        raise AdapterCheckpointError(f"path: {str(path)!r} has damaged metadata") from error
    if not isinstance(described, dict) or not all(isinstance(v, dict) for v in described.values()):
        raise AdapterCheckpointError(
            f"path: {str(path)!r} metadata 'adapters' must map adapter keys to JSON objects"
        )
    return tensors, metadata, described


@torch.no_grad()
def load_adapters(model: nn.Module, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load adapter weights saved by :func:`save_adapters` into ``model`` (strict).

    ``path``: an adapter directory or a single file. ``model`` must already carry adapters of
    the same structure, width and curvature (``apply_hyperet`` with the same arguments, or
    ``HyperETConfig.from_pretrained(path).apply(model)``) and must not be merged. Returns the
    metadata (a directory: the content of ``adapter_config.json``).
    """
    described: dict[str, dict[str, Any]]
    metadata: dict[str, Any]
    if Path(path).is_dir():
        tensors, metadata = read_adapter_dir(Path(path))
        described = metadata["adapters"]
    else:
        tensors, metadata, described = _read_adapter_file(Path(path))
    sites = adapter_sites(model)
    if not sites:
        raise AdapterCheckpointError("model: carries no HRA adapters (call apply_hyperet first)")
    if any(isinstance(getattr(m, MERGED_ATTR, None), nn.Module) for m in model.modules()):
        raise AdapterCheckpointError("model: adapters are merged; call unmerge_hyperet first")

    problems: list[str] = []
    expected: dict[str, torch.Tensor] = {}
    for site in sites:
        info = described.get(site.key)
        if info is not None:
            mine = _describe(site)
            for field in ("structure", "d", "size", "target", "learn_curvature"):
                if info.get(field) != mine[field]:
                    problems.append(
                        f"{site.key}: {field} is {info.get(field)!r} in the file, "
                        f"{mine[field]!r} in the model"
                    )
            if not site.adapter.learn_curvature and not math.isclose(
                float(info.get("c", math.nan)), mine["c"], rel_tol=1e-12
            ):
                problems.append(
                    f"{site.key}: c is {info.get('c')!r} in the file, {mine['c']!r} in the model"
                )
        for name, value in site.adapter.state_dict().items():
            expected[f"{site.key}.{name}"] = value
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    for key in sorted(set(expected) & set(tensors)):
        if tensors[key].dtype != expected[key].dtype:  # never cast silently
            problems.append(
                f"{key}: dtype {tensors[key].dtype} in the file, {expected[key].dtype} in the model"
            )
        elif tensors[key].shape != expected[key].shape:
            problems.append(
                f"{key}: shape {tuple(tensors[key].shape)} in the file, "
                f"{tuple(expected[key].shape)} in the model"
            )
        elif not bool(torch.isfinite(tensors[key]).all()):
            problems.append(f"{key}: non-finite values in the file")
    if problems:
        raise AdapterCheckpointError(
            f"path: {str(path)!r} does not match the model's adapters: " + "; ".join(problems)
        )
    for site in sites:
        state = {name: tensors[f"{site.key}.{name}"] for name in site.adapter.state_dict()}
        site.adapter.load_state_dict(state, strict=True)
    return metadata
