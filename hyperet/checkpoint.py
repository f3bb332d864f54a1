"""Run and checkpoint directories: atomic writes, strict loading, clear errors.

A run directory::

    RUN/
      config.json            resolved RunConfig
      tokenizer.json         the tokenizer the model was trained with
      metrics.json           per-stage metrics (steps, wall time, losses, seed, config, version)
      checkpoints/<stage>/   one directory per stage (the latest state of that stage)
        config.json          the RunConfig again (a checkpoint is self-describing)
        model.safetensors    every model tensor; metadata: format, version, stage, step, ...
        state.safetensors    optimizer tensors + torch RNG state; metadata: JSON of the
                             scheduler, sampler (data order) and progress state
        metrics.json         this stage's metrics (complete stages only)

Every directory is written into a temporary sibling and moved into place with ``os.replace``, so a
checkpoint is either the old one or the new one, never half written. Loading is strict: a missing or
unexpected tensor, a shape mismatch or a config that differs from the run's raises
:class:`CheckpointError` with the names involved. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from hyperet import __version__
from hyperet.config import RunConfig

CHECKPOINT_FORMAT = "hyperet-mllm-1"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
TOKENIZER_FILE = "tokenizer.json"


class CheckpointError(ValueError):
    """A run directory or checkpoint is missing, corrupt or incompatible."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: tensors and metadata (see the module docstring)."""

    path: Path
    config: RunConfig
    model: dict[str, torch.Tensor]
    meta: dict[str, Any]
    state: dict[str, torch.Tensor]

    @property
    def complete(self) -> bool:
        """Whether the stage finished (a mid-stage checkpoint is incomplete)."""
        return bool(self.meta["complete"])


# ---------------------------------------------------------------------- atomic writes
def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: Any) -> None:
    """Atomically write ``payload`` as indented JSON."""
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file, raising :class:`CheckpointError` when missing or corrupt."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: corrupt JSON ({err})") from None


def save_checkpoint(
    directory: Path,
    *,
    config: RunConfig,
    model: nn.Module,
    meta: dict[str, Any],
    state: dict[str, torch.Tensor],
    metrics: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint directory atomically (temporary sibling, then ``os.replace``).

    ``meta`` (JSON-serialisable; must hold ``stage``, ``step`` and ``complete``) is stored in the
    string metadata of both safetensors files, next to the format and package version.
    """
    for key in ("stage", "step", "complete"):
        if key not in meta:
            raise ValueError(f"meta: missing key {key!r}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        header = {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            "meta": json.dumps(meta, sort_keys=True, allow_nan=False),
        }
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / MODEL_FILE), metadata=header)
        save_file(
            {k: v.contiguous() for k, v in state.items()}, str(tmp / STATE_FILE), metadata=header
        )
        (tmp / CONFIG_FILE).write_text(config.to_json() + "\n")
        if metrics is not None:
            (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        old = None
        if directory.exists():  # keep the old one until the new one is in place
            old = directory.parent / f".{directory.name}.old"
            if old.exists():
                shutil.rmtree(old)
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(directory: Path) -> Checkpoint:
    """Read a checkpoint directory; :class:`CheckpointError` names what is missing or corrupt."""
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory not found")
    config = load_config(directory / CONFIG_FILE)
    model, header = _read_safetensors(directory / MODEL_FILE)
    state, state_header = _read_safetensors(directory / STATE_FILE)
    if header.get("meta") != state_header.get("meta"):
        raise CheckpointError(
            f"{directory}: {MODEL_FILE} and {STATE_FILE} are from different steps"
        )
    try:
        meta = json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{directory / MODEL_FILE}: metadata lacks a valid 'meta'") from None
    return Checkpoint(path=directory, config=config, model=model, meta=meta, state=state)


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt safetensors file ({err})") from None
    if header.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: unknown checkpoint format {header.get('format')!r} "
            f"(expected {CHECKPOINT_FORMAT!r})"
        )
    return tensors, header


def load_config(path: Path) -> RunConfig:
    """Read and validate a ``config.json``; :class:`CheckpointError` on any problem."""
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return RunConfig.from_json(path.read_text())
    except ValueError as err:
        raise CheckpointError(f"{path}: invalid config ({err})") from None


def load_model_state(model: nn.Module, tensors: dict[str, torch.Tensor], *, source: Path) -> None:
    """Strictly copy ``tensors`` into ``model``; names missing/unexpected keys and shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: checkpoint does not match the model "
            f"(missing: {_short(missing)}; unexpected: {_short(unexpected)})"
        )
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[name].shape)}"
            )
    model.load_state_dict(tensors, strict=True)


def config_differences(a: RunConfig, b: RunConfig) -> list[str]:
    """Dotted paths of the fields that differ between two configs."""
    out: list[str] = []

    def walk(x: Any, y: Any, path: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                walk(x.get(key), y.get(key), f"{path}.{key}" if path else key)
        elif x != y:
            out.append(path)

    walk(a.to_dict(), b.to_dict(), "")
    return out


def _short(names: list[str], limit: int = 5) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ---------------------------------------------------------------------- optimizer state
def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    """Split an optimizer's state_dict into tensors and a JSON-able rest (no pickle)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: Any
) -> None:
    """Inverse of :func:`optimizer_to_tensors`: restore the optimizer's full state."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optimizer."):
            continue
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, entry in rest["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"optimizer state does not match the model ({err})") from None
