"""Run and checkpoint directories: atomic writes, verified loading, a lock, clear errors.

A run directory::

    RUN/
      hyperet-run.json       marker: format, SHA-256 of the config and of the tokenizer
      config.json            resolved RunConfig
      tokenizer.json         the tokenizer the model was trained with
      metrics.json           per-stage metrics (a summary rebuilt from the checkpoints)
      .hyperet.lock          held (flock) while a process trains into RUN; holds its pid
      checkpoints/<stage>/   one directory per stage (the latest state of that stage)
        config.json          the RunConfig again (a checkpoint is self-describing)
        model.safetensors    every model tensor; metadata: format, version, meta (stage, step,
                             complete, ...), config_sha256, metrics_sha256, sha256
        state.safetensors    optimizer tensors + torch RNG state; the same metadata
        metrics.json         this stage's metrics (complete stages only)

Every file is written through :mod:`hyperet._io` (temporary sibling, fsync, ``os.replace``) and
a checkpoint directory - the stage's metrics included - is moved into place as a whole, so it is
either the old one or the new one. Loading verifies everything it reads: the SHA-256 of each
safetensors file's content, the dtypes (nothing is cast), finite weights, the identity (the
directory's stage, the config's SHA-256, the metrics' SHA-256) and the config; every problem
raises :class:`CheckpointError` naming the file and field. Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyperet import __version__, _io
from hyperet.config import RECIPE_STAGES, RunConfig

CHECKPOINT_FORMAT = "hyperet-mllm-2"
RUN_FORMAT = "hyperet-run-1"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
TOKENIZER_FILE = "tokenizer.json"
MARKER_FILE = "hyperet-run.json"
LOCK_FILE = ".hyperet.lock"
CHECKPOINTS = "checkpoints"
#: dtypes a checkpoint may hold (safetensors codes): model weights; optimizer, RNG, order, losses.
MODEL_DTYPES = frozenset({"F32", "F64", "F16", "BF16"})
STATE_DTYPES = frozenset({"F32", "F64", "I64", "U8"})
#: Entries of a run directory that ``--force`` may delete (plus temporaries and eval's PNGs).
RUN_ENTRIES = frozenset(
    {MARKER_FILE, CONFIG_FILE, TOKENIZER_FILE, METRICS_FILE, LOCK_FILE, CHECKPOINTS}
)
CHECKPOINT_ENTRIES = frozenset({CONFIG_FILE, MODEL_FILE, STATE_FILE, METRICS_FILE})


class CheckpointError(ValueError):
    """A run directory or checkpoint is missing, corrupt, tampered with or incompatible."""


class RunLockedError(CheckpointError):
    """Another live process holds the run directory's lock."""


@dataclass
class Checkpoint:
    """A loaded, verified checkpoint: tensors and metadata (see the module docstring)."""

    path: Path
    config: RunConfig
    model: dict[str, torch.Tensor]
    meta: dict[str, Any]
    state: dict[str, torch.Tensor]
    metrics: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        """Whether the stage finished (a mid-stage checkpoint is incomplete)."""
        return bool(self.meta["complete"])


def config_sha256(config: RunConfig) -> str:
    """SHA-256 of the config's canonical JSON (sorted keys): its identity in checkpoints."""
    return hashlib.sha256(config.to_json().encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------- JSON files
def write_json(path: Path, payload: Any) -> None:
    """Atomically write ``payload`` as indented JSON."""
    _io.write_json(path, payload)


def read_json(path: Path, *, root: Path | None = None) -> Any:
    """Read a JSON file (guarded: regular file, size, depth, finite numbers); CheckpointError."""
    return _io.read_json(path, root=root, error=CheckpointError)


def load_config(path: Path, *, root: Path | None = None) -> RunConfig:
    """Read and validate a ``config.json``; :class:`CheckpointError` on any problem."""
    data = read_json(path, root=root)
    try:
        return RunConfig.from_dict(data)
    except ValueError as err:
        raise CheckpointError(f"{path}: invalid config ({err})") from None


# ---------------------------------------------------------------------- checkpoints
def save_checkpoint(
    directory: Path,
    *,
    config: RunConfig,
    model: nn.Module | dict[str, torch.Tensor],
    meta: dict[str, Any],
    state: dict[str, torch.Tensor],
    metrics: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint directory atomically, the stage's ``metrics`` included.

    ``meta`` (JSON-serialisable; must hold ``stage``, ``step`` and ``complete``) is stored in the
    string metadata of both safetensors files, next to the format, package version, the config's
    and the metrics' SHA-256 and the file's own content digest.
    """
    for key in ("stage", "step", "complete"):
        if key not in meta:
            raise ValueError(f"meta: missing key {key!r}")
    metrics_text = None if metrics is None else _io.json_text(metrics, sort_keys=True)
    header = {
        "format": CHECKPOINT_FORMAT,
        "version": __version__,
        "meta": json.dumps(meta, sort_keys=True, allow_nan=False),
        "config_sha256": config_sha256(config),
    }
    if metrics_text is not None:
        header["metrics_sha256"] = _io.sha256_bytes(metrics_text.encode("utf-8"))
    weights = model.state_dict() if isinstance(model, nn.Module) else model
    tensors = {k: v.detach().contiguous() for k, v in weights.items()}
    model_blob = _io.encode_safetensors(tensors, header)
    state_blob = _io.encode_safetensors({k: v.contiguous() for k, v in state.items()}, header)
    with _io.atomic_directory(directory) as tmp:
        _io.write_file_synced(tmp / MODEL_FILE, model_blob)
        _io.write_file_synced(tmp / STATE_FILE, state_blob)
        _io.write_file_synced(tmp / CONFIG_FILE, (config.to_json() + "\n").encode("utf-8"))
        if metrics_text is not None:
            _io.write_file_synced(tmp / METRICS_FILE, metrics_text.encode("utf-8"))


def load_checkpoint(directory: Path, *, root: Path | None = None) -> Checkpoint:
    """Read and verify a checkpoint directory (``root``: the run directory it must stay in).

    Raises :class:`CheckpointError` naming the file and field: a missing or non-regular file,
    a symlink out of ``root``, a content-digest mismatch, a dtype other than the allowed ones,
    NaN/inf weights, files from different steps, a meta field of the wrong type, a config or
    metrics file that does not match the identity recorded in the checkpoint.
    """
    directory = Path(directory)
    _io.check_inside(directory, root, error=CheckpointError)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory not found")
    config = load_config(directory / CONFIG_FILE, root=root)
    model, header = _read_tensors(directory / MODEL_FILE, MODEL_DTYPES, root)
    state, state_header = _read_tensors(directory / STATE_FILE, STATE_DTYPES, root)
    identity = ("meta", "config_sha256", "metrics_sha256")
    if any(header.get(k) != state_header.get(k) for k in identity):
        raise CheckpointError(
            f"{directory}: {MODEL_FILE} and {STATE_FILE} are from different checkpoints"
        )
    meta = _parse_meta(header, directory / MODEL_FILE)
    if header.get("config_sha256") != config_sha256(config):
        raise CheckpointError(
            f"{directory / CONFIG_FILE}: does not match the config the checkpoint was saved with"
        )
    metrics = None
    if meta["complete"]:
        path = directory / METRICS_FILE
        text = _io.read_bytes(path, max_bytes=_io.MAX_JSON_BYTES, root=root, error=CheckpointError)
        if _io.sha256_bytes(text) != header.get("metrics_sha256"):
            raise CheckpointError(f"{path}: does not match the checkpoint (SHA-256 differs)")
        metrics = _io.parse_json(text, str(path), error=CheckpointError)
        if not isinstance(metrics, dict):
            raise CheckpointError(f"{path}: expected a JSON object")
    return Checkpoint(directory, config, model, meta, state, metrics)


def _read_tensors(
    path: Path, dtypes: frozenset[str], root: Path | None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors, header = _io.read_safetensors(
        path, dtypes=dtypes, root=root, finite=True, error=CheckpointError
    )
    if header.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: unknown checkpoint format {header.get('format')!r} "
            f"(expected {CHECKPOINT_FORMAT!r}; a run of another hyperet version)"
        )
    return tensors, header


def _parse_meta(header: dict[str, str], path: Path) -> dict[str, Any]:
    meta = _io.parse_json(header.get("meta", "").encode(), f"{path} (meta)", error=CheckpointError)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata 'meta' is not a JSON object")
    where = f"{path}: meta"
    _io.expect(meta.get("stage"), str, f"{where}.stage", CheckpointError)
    step = _io.expect(meta.get("step"), int, f"{where}.step", CheckpointError)
    if step < 0:
        raise CheckpointError(f"{where}.step: must be >= 0, got {step}")
    _io.expect(meta.get("complete"), bool, f"{where}.complete", CheckpointError)
    return meta


def check_stage_identity(ckpt: Checkpoint, stage: str, steps: int) -> None:
    """Refuse a checkpoint that is not ``stage``'s (a copied directory) or whose step is out of
    range ``[0, steps]`` (a complete one must be at ``steps``)."""
    meta, where = ckpt.meta, ckpt.path / MODEL_FILE
    if meta["stage"] != stage:
        raise CheckpointError(f"{where}: holds stage {meta['stage']!r}, expected {stage!r}")
    if not 0 <= meta["step"] <= steps or (meta["complete"] and meta["step"] != steps):
        raise CheckpointError(
            f"{where}: meta.step {meta['step']} does not fit stage {stage!r} of {steps} steps"
        )


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
        if tensor.dtype != expected[name].dtype:  # never cast silently
            raise CheckpointError(
                f"{source}: tensor {name!r} has dtype {tensor.dtype}, the model expects "
                f"{expected[name].dtype}"
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
    fresh = optimizer.state_dict()
    try:
        _check_param_groups(rest["param_groups"], fresh["param_groups"])
        params = [p for group in optimizer.param_groups for p in group["params"]]
        state: dict[int, dict[str, Any]] = {}
        for name, value in tensors.items():
            if not name.startswith("optimizer."):
                continue
            _, index, key = name.split(".", 2)
            i = int(index)
            if not 0 <= i < len(params):
                raise ValueError(f"{name}: no parameter {i}")
            shape = () if key == "step" else params[i].shape
            dtypes = (torch.float32, torch.float64) if key == "step" else (params[i].dtype,)
            if value.shape != shape or value.dtype not in dtypes:
                raise ValueError(f"{name}: {value.dtype} {tuple(value.shape)} does not fit")
            state.setdefault(i, {})[key] = value
        for index, entry in rest["scalars"].items():
            state.setdefault(int(index), {}).update(entry)
        optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
        raise CheckpointError(f"optimizer state does not match the model ({err})") from None


def _check_param_groups(stored: Any, fresh: list[dict[str, Any]]) -> None:
    """The stored param groups must be the fresh optimizer's (the learning rate aside)."""
    if not isinstance(stored, list) or len(stored) != len(fresh):
        raise ValueError("param_groups: wrong number of groups")
    for got, want in zip(stored, fresh, strict=True):
        if not isinstance(got, dict) or set(got) != set(want):
            raise ValueError("param_groups: wrong keys")
        for key, value in want.items():
            if key == "lr":
                _io.expect(got[key], (int, float), "param_groups.lr", ValueError)
                if not (math.isfinite(got[key]) and got[key] >= 0):
                    raise ValueError(f"param_groups.lr: {got[key]} is not a learning rate")
            elif got[key] != (list(value) if isinstance(value, tuple) else value):
                raise ValueError(f"param_groups.{key}: {got[key]!r}, expected {value!r}")


# ---------------------------------------------------------------------- the run directory
@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[Path]:
    """Hold the run directory's exclusive lock (``.hyperet.lock``, holding the owner's pid).

    The lock is an ``flock`` on that file, so a lock left by a killed process is stale by
    construction: the kernel released it, and the next process takes it over (the file's pid is
    then only a record). A live owner makes :class:`RunLockedError` name its pid. The file is
    removed on release.
    """
    path = Path(run_dir) / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"{run_dir}: in use by another hyperet process (pid {owner}); "
                "wait for it to finish or stop it"
            ) from None
        try:  # the file we locked must still be the one at the path (a releaser unlinks it)
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def stage_directories() -> frozenset[str]:
    """Names a directory under ``checkpoints/`` may have."""
    return frozenset(RECIPE_STAGES)


def foreign_entries(run_dir: Path) -> list[str]:
    """Entries of ``run_dir`` that a hyperet run does not write (relative paths, sorted).

    Symlinks are foreign wherever they are; so is anything unknown under ``checkpoints/``.
    """
    run_dir = Path(run_dir)
    foreign: list[str] = []

    def known(entry: Path, names: frozenset[str]) -> bool:
        name = entry.name
        return not entry.is_symlink() and (name in names or _io.is_temporary(name))

    for entry in sorted(run_dir.iterdir()):
        png = entry.name.startswith("radius_histograms_") and entry.name.endswith(".png")
        if not (known(entry, RUN_ENTRIES) or (png and not entry.is_symlink())):
            foreign.append(entry.name)
        elif entry.name == CHECKPOINTS:
            if not entry.is_dir():
                foreign.append(entry.name)
                continue
            for stage in sorted(entry.iterdir()):
                rel = f"{CHECKPOINTS}/{stage.name}"
                if not known(stage, stage_directories()) or not stage.is_dir():
                    foreign.append(rel)
                    continue
                if _io.is_temporary(stage.name):
                    continue
                for item in sorted(stage.iterdir()):
                    if not known(item, CHECKPOINT_ENTRIES) or not item.is_file():
                        foreign.append(f"{rel}/{item.name}")
    return foreign


def content_entries(run_dir: Path) -> list[str]:
    """Names in ``run_dir`` other than the lock file and temporaries (what makes it non-empty)."""
    return sorted(
        e.name
        for e in Path(run_dir).iterdir()
        if e.name != LOCK_FILE and not _io.is_temporary(e.name)
    )


def clear_run_directory(run_dir: Path) -> list[str]:
    """``--force``: delete a hyperet run directory's entries (the lock file aside).

    Refuses, deleting nothing, unless ``run_dir`` carries the marker ``hyperet-run.json`` and
    holds nothing foreign (:func:`foreign_entries`); the message names what would have been
    deleted. Returns the names deleted.
    """
    run_dir = Path(run_dir)
    entries = sorted(e.name for e in run_dir.iterdir() if e.name != LOCK_FILE)
    if not content_entries(run_dir):
        return []
    shown = _short(entries, 8)
    if not (run_dir / MARKER_FILE).is_file() or (run_dir / MARKER_FILE).is_symlink():
        raise CheckpointError(
            f"{run_dir}: not a hyperet run directory (no {MARKER_FILE}); --force replaces only "
            f"run directories and would have deleted: {shown}"
        )
    foreign = foreign_entries(run_dir)
    if foreign:
        raise CheckpointError(
            f"{run_dir}: holds files a hyperet run does not write ({_short(foreign, 8)}); "
            f"--force refuses to delete them (it would have deleted: {shown})"
        )
    for name in entries:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    _io.fsync_directory(run_dir)
    return entries


def write_marker(run_dir: Path, config: RunConfig, tokenizer_json: str) -> None:
    """Write ``hyperet-run.json``: the directory's identity (config and tokenizer digests)."""
    write_json(
        Path(run_dir) / MARKER_FILE,
        {
            "format": RUN_FORMAT,
            "package_version": __version__,
            "config_sha256": config_sha256(config),
            "tokenizer_sha256": _io.sha256_bytes(tokenizer_json.encode("utf-8")),
        },
    )


def read_marker(run_dir: Path) -> dict[str, str]:
    """Read and check ``hyperet-run.json`` (format and both digests)."""
    path = Path(run_dir) / MARKER_FILE
    data = read_json(path, root=run_dir)
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{path}: not a hyperet run marker of format {RUN_FORMAT!r}")
    for key in ("package_version", "config_sha256", "tokenizer_sha256"):
        _io.expect(data.get(key), str, f"{path}: {key}", CheckpointError)
    return data


def read_tokenizer_text(run_dir: Path, marker: dict[str, str]) -> str:
    """The run's ``tokenizer.json`` text, verified against the marker's digest."""
    path = Path(run_dir) / TOKENIZER_FILE
    data = _io.read_bytes(path, max_bytes=_io.MAX_JSON_BYTES, root=run_dir, error=CheckpointError)
    if _io.sha256_bytes(data) != marker["tokenizer_sha256"]:
        raise CheckpointError(f"{path}: does not match {MARKER_FILE} (SHA-256 differs)")
    return data.decode("utf-8")
