"""A run: the recipe's stages in order into a run directory, with exact resume.

:func:`train` checks and prepares the run directory (marker, ``config.json``,
``tokenizer.json``; the lock held throughout), builds data and model, then runs every stage of
``config.train.stage_names()`` with :func:`~hyperet.train.engine.run_stage`, writing
``metrics.json`` after each. ``resume=True`` verifies the checkpoints and continues where the
last one ended: completed stages are skipped, a mid-stage checkpoint restores optimizer,
samplers and RNG, so the run reaches bitwise the same weights and losses as an uninterrupted one
(given the config, seed included, and the thread count).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from hyperet import __version__, _io, distributed
from hyperet import device as device_facts
from hyperet.checkpoint import (
    CHECKPOINTS,
    CONFIG_FILE,
    MARKER_FILE,
    METRICS_FILE,
    TOKENIZER_FILE,
    Checkpoint,
    CheckpointError,
    check_stage_identity,
    clear_run_directory,
    config_differences,
    config_sha256,
    content_entries,
    foreign_entries,
    load_checkpoint,
    load_config,
    load_model_state,
    read_json,
    read_marker,
    read_tokenizer_text,
    run_lock,
    write_json,
    write_marker,
)
from hyperet.config import DEFAULT_PRESET, RunConfig, parse_steps, preset, with_overrides
from hyperet.curves import CURVE_STAGES, ValidationCurve
from hyperet.data import Tokenizer
from hyperet.device import place
from hyperet.model import build_model
from hyperet.overrides import apply_settings
from hyperet.train import stages
from hyperet.train.data import build_training_data
from hyperet.train.engine import Context, EventHandler, StageSkipped, run_stage, state_field
from hyperet.train.stages import apply_hyperet_to, hyperet_applied_in


class RunDirectoryError(ValueError):
    """The output directory cannot be used (non-empty without resume, incompatible, ...)."""


def run_config(
    out: Path,
    *,
    preset_name: str | None = None,
    resume: bool = False,
    steps: Sequence[str] = (),
    settings: Sequence[str] = (),
    **options: Any,
) -> RunConfig:
    """The config of ``hyperet train``: the preset (resuming: the run's stored ``config.json``)
    with only the options that were given applied.

    ``options`` are :func:`~hyperet.config.with_overrides`'s (``None``: not given, the preset
    decides); then ``steps`` (``"STAGE=N"``) and ``settings`` (``"dotted.path=value"``,
    :func:`~hyperet.overrides.apply_settings`). Raises ``ValueError`` naming the bad option
    (:class:`RunDirectoryError` when ``preset_name`` contradicts the run being resumed).
    """
    stored = out / CONFIG_FILE
    if resume and (stored.exists() or stored.is_symlink()):
        base = load_config(stored, root=out)
        if preset_name is not None and preset_name != base.preset:
            raise RunDirectoryError(f"--preset {preset_name}: the run in {out} uses {base.preset}")
    else:
        base = preset(DEFAULT_PRESET if preset_name is None else preset_name)
    config = with_overrides(base, steps=parse_steps(list(steps)), **options)
    return apply_settings(config, settings) if settings else config


def check_new_directory(out: Path, force: bool) -> None:
    """Refuse, before anything is written, an ``out`` that a new run cannot use."""
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"{out}: exists and is not a directory")
    if not out.is_dir():
        return
    if not content_entries(out):  # a killed start leaves only temporaries
        return
    if not force:
        raise RunDirectoryError(
            f"{out}: directory is not empty (use --resume to continue it or --force to "
            "replace a hyperet run directory)"
        )
    if not (out / MARKER_FILE).is_file() or foreign_entries(out):
        clear_run_directory(out)  # raises, naming what it would have deleted


def prepare_run_directory(
    out: Path, config: RunConfig, tokenizer: Tokenizer, *, resume: bool, force: bool
) -> None:
    """With the lock held: clean temporaries, then check (resume) or create the run directory.

    A new directory gets its marker first (the digests of config and tokenizer), then
    ``config.json`` and ``tokenizer.json``; resuming verifies all three (and writes whichever
    of the two a kill kept from being written). ``--force`` clears a run directory first
    (:func:`~hyperet.checkpoint.clear_run_directory`).
    """
    for directory in (out, out / CHECKPOINTS):
        _io.check_inside(directory, out, error=RunDirectoryError)
        _io.clean_temporaries(directory)
    text = tokenizer.to_json() + "\n"
    if resume:
        if not (out / MARKER_FILE).is_file():
            raise RunDirectoryError(f"{out}: nothing to resume (no {MARKER_FILE})")
        marker = read_marker(out)
        if marker["config_sha256"] != config_sha256(config):
            stored = load_config(out / CONFIG_FILE, root=out)
            diff = config_differences(stored, config)
            raise RunDirectoryError(
                f"{out}: the run was started with a different config (fields: "
                f"{', '.join(diff) or 'none; config.json does not match ' + MARKER_FILE})"
            )
        if marker["tokenizer_sha256"] != _io.sha256_bytes(text.encode("utf-8")):
            raise RunDirectoryError(f"{out}: the run used a different tokenizer")
        if (out / CONFIG_FILE).exists() or (out / CONFIG_FILE).is_symlink():
            if config_sha256(load_config(out / CONFIG_FILE, root=out)) != marker["config_sha256"]:
                raise RunDirectoryError(f"{out / CONFIG_FILE}: does not match {MARKER_FILE}")
        else:
            write_json(out / CONFIG_FILE, config.to_dict())
        if (out / TOKENIZER_FILE).exists() or (out / TOKENIZER_FILE).is_symlink():
            read_tokenizer_text(out, marker)
        else:
            _io.atomic_write_bytes(out / TOKENIZER_FILE, text.encode("utf-8"))
        return
    if force:
        clear_run_directory(out)
    elif content_entries(out):  # filled since the first check
        raise RunDirectoryError(f"{out}: directory is not empty")
    write_marker(out, config, text)
    write_json(out / CONFIG_FILE, config.to_dict())
    _io.atomic_write_bytes(out / TOKENIZER_FILE, text.encode("utf-8"))


def load_stage_checkpoints(out: Path, config: RunConfig) -> dict[str, Checkpoint]:
    """The run's existing stage checkpoints, in order, verified (identity, config, sequence).

    Every stage before the last checkpointed one must be complete; each checkpoint must be its
    own stage's and carry ``config``.
    """
    found: dict[str, Checkpoint] = {}
    order = config.train.stage_names()
    for name in order:
        directory = out / CHECKPOINTS / name
        if not (directory.exists() or directory.is_symlink()):
            continue
        ckpt = load_checkpoint(directory, root=out)
        check_stage_identity(ckpt, name, config.train.budget(name).steps)
        if ckpt.config != config:
            raise CheckpointError(f"{ckpt.path}: checkpoint config differs from the run's")
        found[name] = ckpt
    if found:
        last = order.index(list(found)[-1])
        for name in order[:last]:
            if name not in found or not found[name].complete:
                raise CheckpointError(
                    f"{out / CHECKPOINTS / name}: missing or incomplete, but a later stage "
                    "has a checkpoint"
                )
    return found


def check_metrics_file(path: Path, root: Path) -> dict[str, Any]:
    """Read a run's ``metrics.json`` and check its shape: ``{"stages": {name: {...}}, ...}``."""
    data = read_json(path, root=root)
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        raise CheckpointError(f"{path}: expected a JSON object with a 'stages' object")
    for name, stage in data["stages"].items():
        if not isinstance(stage, dict):
            raise CheckpointError(f"{path}: stages.{name} is not a JSON object")
    return data


def train(
    config: RunConfig,
    out: Path,
    *,
    resume: bool = False,
    force: bool = False,
    on_event: EventHandler | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Run the whole recipe into ``out``; returns the metrics written to ``metrics.json``.

    ``device``: where the model computes (:mod:`hyperet.device`). Under torchrun (a process group
    initialised by the caller) the ranks train together (:mod:`hyperet.distributed`); rank 0
    holds ``out``'s lock throughout (:func:`~hyperet.checkpoint.run_lock`) and writes the run
    directory.

    Raises :class:`RunDirectoryError` / :class:`~hyperet.checkpoint.CheckpointError` on unusable
    directories, :class:`NonFiniteLossError` when a loss or gradient becomes non-finite.
    """
    emit: EventHandler = on_event if on_event is not None else (lambda event: None)
    out = Path(out)
    for name in config.train.stage_names():  # under torchrun the batch is split over the ranks
        budget = config.train.budget(name)
        distributed.check_divisible(budget.batch_size, f"train.stages.{name}.batch_size")
    tokenizer = Tokenizer.build()
    with contextlib.ExitStack() as held:  # rank 0: the run directory's lock
        distributed.on_main(_prepare, out, config, tokenizer, held, resume=resume, force=force)
        return _train_locked(config, out, tokenizer, resume, emit, device)


def slow_bfloat16(config: RunConfig, device: torch.device) -> str | None:
    """A warning when a stage trains in bfloat16 on a CPU without native bfloat16 math
    (AVX512-BF16 or AMX): autocast still works there, but slower than float32."""
    stages = [
        n for n in config.train.stage_names() if config.train.budget(n).precision == "bfloat16"
    ]
    if not stages or device.type != "cpu":
        return None
    if device_facts.cpu_has_native_bfloat16():
        return None
    first = stages[0]
    return (
        f"bfloat16 stages ({', '.join(stages)}): this CPU has no native bfloat16 arithmetic, so "
        f"they train slower than in float32; use --set train.stages.{first}.precision=float32"
    )


def _train_locked(
    config: RunConfig,
    out: Path,
    tokenizer: Tokenizer,
    resume: bool,
    emit: EventHandler,
    device: torch.device | str,
) -> dict[str, Any]:
    found = load_stage_checkpoints(out, config) if resume else {}  # verified before any work
    metrics_path = out / METRICS_FILE
    stored: dict[str, Any] = {}
    if resume and (metrics_path.exists() or metrics_path.is_symlink()):
        stored = check_metrics_file(metrics_path, out)
    slow = slow_bfloat16(config, torch.device(device))
    if slow:
        warnings.warn(slow, stacklevel=2)
    data = build_training_data(config, tokenizer)
    model = build_model(config, tokenizer)
    place(model, torch.device(device))
    ctx = Context(config=config, data=data, model=model)
    metrics: dict[str, Any] = {
        "package_version": __version__,
        "seed": config.seed,
        "config": config.to_dict(),
        "stages": {},
    }
    if "branched_from" in stored:  # provenance of a run started by hyperet.branch
        metrics["branched_from"] = stored["branched_from"]
    latest = found[list(found)[-1]] if found else None
    done_stages = [name for name, ckpt in found.items() if ckpt.complete]
    if latest is not None:
        if latest.meta.get("hyperet_applied"):
            ctx.hyperet_params = apply_hyperet_to(model, config)
        load_model_state(model, latest.model, source=latest.path)
        for name in done_stages:  # the stage metrics landed with the stage's checkpoint
            metrics["stages"][name] = found[name].metrics
        if latest.complete:  # the next stage starts where this one ended
            torch.set_rng_state(
                state_field(
                    latest, "torch_rng_state", torch.uint8, (torch.get_rng_state().numel(),)
                )
            )

    recipe = dict(stages.STAGE_RECIPE)
    for name in config.train.stage_names():
        if name in done_stages:
            emit(StageSkipped(name))
            continue
        if hyperet_applied_in(config, name) and not ctx.hyperet_params:
            ctx.hyperet_params = apply_hyperet_to(model, config)
        task = recipe[name](ctx)
        from_ckpt = None
        if latest is not None and latest.meta["stage"] == name and not latest.complete:
            from_ckpt = latest
        curve = None
        if name in CURVE_STAGES and config.train.val_every:
            curve = ValidationCurve(name, config, tokenizer, model, config.train.val_every)
        metrics["stages"][name] = run_stage(ctx, name, task, out, emit, from_ckpt, curve)
        distributed.on_main(write_json, metrics_path, metrics)
    distributed.on_main(write_json, metrics_path, metrics)
    return metrics


def _prepare(
    out: Path,
    config: RunConfig,
    tokenizer: Tokenizer,
    held: contextlib.ExitStack,
    *,
    resume: bool,
    force: bool,
) -> None:
    """Rank 0: check ``out``, take its lock (kept in ``held``), prepare the run directory."""
    if resume:
        if not out.is_dir():
            raise RunDirectoryError(f"{out}: nothing to resume (directory not found)")
    else:
        check_new_directory(out, force)
    out.mkdir(parents=True, exist_ok=True)
    held.enter_context(run_lock(out))
    prepare_run_directory(out, config, tokenizer, resume=resume, force=force)
