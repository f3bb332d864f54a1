"""The training engine: one stage trained to its step budget, checkpointed, resumable.

A stage is described by a :class:`StageTask` (what trains, its samplers, its per-step loss and an
optional ``finish`` hook that adds the stage's own metrics); :func:`run_stage` trains it with
AdamW, linear warm-up then cosine decay (:func:`learning_rate`), gradient clipping and the NaN
guard (:class:`NonFiniteLossError`), and writes checkpoints that hold model, optimizer, schedule
position, sampler state and torch RNG state, so a resumed stage reaches bitwise the same weights
and losses as an uninterrupted one. The engine never prints: it reports :data:`Event` objects to
an ``on_event`` callback. It knows nothing of the recipe (:mod:`hyperet.train.stages`) or of the
run directory (:mod:`hyperet.train.run`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hyperet import __version__, _io, distributed
from hyperet.checkpoint import (
    CHECKPOINTS,
    Checkpoint,
    CheckpointError,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)
from hyperet.config import PRECISIONS, RunConfig, StageConfig
from hyperet.model import MLLM
from hyperet.train.data import TrainingData

#: Images per chunk when caching frozen vision features.
FEATURE_CHUNK = 512


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss or gradient; nothing of that step was saved.

    ``what`` is ``"loss"`` or ``"gradient norm"``; ``step`` is 1-based.
    """

    def __init__(self, stage: str, step: int, value: float, what: str = "loss") -> None:
        super().__init__(
            f"non-finite {what} ({value}) in stage {stage!r} at step {step}; "
            "the last checkpoint is untouched"
        )
        self.stage, self.step, self.value, self.what = stage, step, value, what


# ---------------------------------------------------------------------- events
@dataclass(frozen=True)
class StageStarted:
    stage: str
    steps: int
    start_step: int
    cached_features: bool
    hyperet_active: bool


@dataclass(frozen=True)
class StepDone:
    stage: str
    step: int  # 1-based count of completed steps
    steps: int
    loss: float
    lr: float


@dataclass(frozen=True)
class CheckpointSaved:
    stage: str
    step: int
    path: Path


@dataclass(frozen=True)
class StageFinished:
    stage: str
    metrics: dict[str, Any]


@dataclass(frozen=True)
class StageSkipped:
    """A stage completed by an earlier (interrupted) run of the same directory."""

    stage: str


Event = StageStarted | StepDone | CheckpointSaved | StageFinished | StageSkipped
EventHandler = Callable[[Event], None]


# ---------------------------------------------------------------------- schedule and sampling
def learning_rate(stage: StageConfig, step: int) -> float:
    """Linear warm-up then cosine decay to ``min_lr_ratio * lr`` at the last step.

    .. math::
        \\eta(s) = \\eta_0 \\frac{s + 1}{w} \\ (s < w), \\qquad
        \\eta(s) = \\eta_0 \\left(r + (1 - r) \\frac{1 + \\cos(\\pi p)}{2}\\right), \\quad
        p = \\frac{s - w}{\\max(1, S - 1 - w)}

    with ``s`` the 0-based step, ``w`` the warm-up steps, ``S`` the stage's steps, ``r`` the
    minimum ratio.
    """
    w, total, r = stage.warmup_steps, stage.steps, stage.min_lr_ratio
    if step < w:
        return stage.lr * (step + 1) / w
    p = min(1.0, (step - w) / max(1, total - 1 - w))
    return stage.lr * (r + (1 - r) * (1 + math.cos(math.pi * p)) / 2)


class Sampler:
    """Epochs of random permutations of ``range(n)``; its state is JSON (for exact resume)."""

    def __init__(self, n: int, seed: list[int]) -> None:
        if n < 1:
            raise ValueError(f"n: need at least one example, got {n}")
        self.n = n
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.order = self.rng.permutation(n)
        self.pos = 0

    def take(self, k: int) -> np.ndarray:
        """The next ``k`` indices (a new permutation starts when one is used up)."""
        out = []
        while k > 0:
            if self.pos == self.n:
                self.order, self.pos = self.rng.permutation(self.n), 0
            m = min(k, self.n - self.pos)
            out.append(self.order[self.pos : self.pos + m])
            self.pos += m
            k -= m
        return np.concatenate(out)

    def state(self) -> tuple[dict[str, Any], Tensor]:
        """JSON-able generator state and position, and the current permutation as a tensor."""
        return {"rng": self.rng.bit_generator.state, "pos": self.pos}, torch.from_numpy(self.order)

    def restore(self, state: dict[str, Any], order: Tensor) -> None:
        """Inverse of :meth:`state`; :class:`CheckpointError` when the saved state is malformed."""
        if order.shape != (self.n,) or order.dtype != torch.int64:
            raise CheckpointError(
                f"sampler: saved order is {order.dtype} {tuple(order.shape)}, "
                f"need int64 ({self.n},)"
            )
        if not np.array_equal(np.sort(order.numpy()), np.arange(self.n)):
            raise CheckpointError("sampler: saved order is not a permutation")
        pos = state.get("pos") if isinstance(state, dict) else None
        if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos <= self.n:
            raise CheckpointError(f"sampler: position {pos!r} is not in [0, {self.n}]")
        try:
            self.rng.bit_generator.state = state["rng"]
        except (KeyError, TypeError, ValueError, OverflowError) as err:
            raise CheckpointError(f"sampler: invalid generator state ({err})") from None
        self.order = order.numpy().astype(np.int64)
        self.pos = pos


# ---------------------------------------------------------------------- what a stage is
@dataclass
class Context:
    """What stage functions share: config, data, model, HRA parameters, feature cache."""

    config: RunConfig
    data: TrainingData
    model: MLLM
    hyperet_params: list[nn.Parameter] = field(default_factory=list)
    cache: Tensor | None = None
    cache_key: tuple[str, ...] | None = None

    def vision_features(self, key: tuple[str, ...]) -> Tensor:
        """Frozen vision features ``(N, tokens, width)`` of every training image (cached)."""
        if self.cache is None or self.cache_key != key:
            self.cache = None
            chunks = []
            with torch.no_grad():
                for start in range(0, len(self.data.images), FEATURE_CHUNK):
                    chunks.append(
                        self.model.visual_features(self.data.images[start : start + FEATURE_CHUNK])
                    )
            self.cache, self.cache_key = torch.cat(chunks), key
        return self.cache


@dataclass
class StageTask:
    """A stage ready to run: its trainable parameters, samplers and per-step loss.

    ``finish`` (optional) runs once after the last step, before the final checkpoint, and
    returns metrics added to the stage's (e.g. the ITC stage's monitors under ``alignment``).
    """

    params: list[nn.Parameter]
    no_decay: set[int]  # ids of parameters without weight decay
    samplers: dict[str, Any]  # Sampler or BucketedSampler: take(k), state(), restore()
    loss: Callable[[int, int], Tensor]  # (step, batch_size) -> loss
    cached_features: bool = False
    hyperet_active: bool = False
    finish: Callable[[], dict[str, Any]] | None = None
    #: ids of parameters whose learning rate is ``lr_scale`` times the stage's (the adapter's)
    scaled: set[int] = field(default_factory=set)
    lr_scale: float = 1.0


def set_trainable(model: nn.Module, modules: list[nn.Module], extra: list[nn.Parameter]) -> None:
    """Freeze every parameter of ``model``, then unfreeze ``modules`` and ``extra``."""
    for p in model.parameters():
        p.requires_grad_(False)
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(True)
    for p in extra:
        p.requires_grad_(True)


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``model`` that require gradients, in registration order."""
    return [p for p in model.parameters() if p.requires_grad]


def no_decay(model: nn.Module, hyperet_params: list[nn.Parameter]) -> set[int]:
    """Biases, norms, embeddings, the CLIP temperature and HRA matrices get no weight decay."""
    out = {id(p) for p in hyperet_params}
    for name, p in model.named_parameters():
        if p.ndim < 2 or "embedding" in name:
            out.add(id(p))
    return out


# ---------------------------------------------------------------------- one step
def make_optimizer(task: StageTask, stage: StageConfig) -> torch.optim.AdamW:
    """AdamW over the task's parameters (no weight decay on ``task.no_decay``; the adapter's
    ``task.scaled`` in a group of its own, without decay, at ``lr_scale`` times the lr)."""
    decay = [p for p in task.params if id(p) not in task.no_decay | task.scaled]
    plain = [p for p in task.params if id(p) in task.no_decay - task.scaled]
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": stage.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    if task.scaled:
        scaled = [p for p in task.params if id(p) in task.scaled]
        groups.append({"params": scaled, "weight_decay": 0.0, "lr_scale": task.lr_scale})
    return torch.optim.AdamW(groups, lr=stage.lr, betas=(0.9, 0.95))


def train_step(
    name: str,
    step: int,
    stage: StageConfig,
    task: StageTask,
    optimizer: torch.optim.Optimizer,
    grad_clip: float,
    step_loss: Callable[[int, int], Tensor] | None = None,
) -> tuple[float, float]:
    """One optimizer step at 0-based ``step``; returns ``(loss, learning rate)``.

    ``step_loss`` defaults to ``task.loss`` (the data-parallel wrapper under torchrun). Raises
    :class:`NonFiniteLossError` before the update when the loss or the gradient norm is not
    finite. ``stage.precision == "bfloat16"`` runs the forward pass under ``torch.autocast`` (matrix
    products in bfloat16, reductions and losses in float32, as autocast's op lists decide); the
    backward pass follows it, and the parameters, gradients and AdamW state stay float32.
    """
    precision = stage.precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    lr = learning_rate(stage, step)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    device = task.params[0].device.type if task.params else "cpu"
    with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        loss = (step_loss or task.loss)(step, stage.batch_size)
    value = distributed.average(float(loss.detach()))
    if not math.isfinite(value):
        raise NonFiniteLossError(name, step + 1, value)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = float(torch.nn.utils.clip_grad_norm_(task.params, grad_clip))
    if not math.isfinite(norm):
        raise NonFiniteLossError(name, step + 1, norm, what="gradient norm")
    optimizer.step()
    return value, lr


# ---------------------------------------------------------------------- checkpoints
def _progress_meta(
    stage: str,
    step: int,
    complete: bool,
    task: StageTask,
    losses: list[float],
    wall: float,
    hyperet_applied: bool,
    rest: Any,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    meta = {
        "stage": stage,
        "step": step,
        "complete": complete,
        "hyperet_applied": hyperet_applied,
        "scheduler": {"kind": "warmup_cosine", "step": step},
        "samplers": {k: s.state()[0] for k, s in task.samplers.items()},
        "optimizer": rest,
        "wall_time_s": wall,
    }
    tensors = {
        "torch_rng_state": torch.get_rng_state(),
        "losses": torch.tensor(losses, dtype=torch.float64),
    }
    for key, sampler in task.samplers.items():
        tensors[f"sampler.{key}.order"] = sampler.state()[1]
    return meta, tensors


def state_field(ckpt: Checkpoint, key: str, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
    """The checkpoint's state tensor ``key``, checked to have ``dtype`` and ``shape``."""
    value = ckpt.state.get(key)
    if value is None or value.dtype != dtype or tuple(value.shape) != shape:
        got = "missing" if value is None else f"{value.dtype} {tuple(value.shape)}"
        raise CheckpointError(
            f"{ckpt.path}: state tensor {key!r} is {got}, expected {dtype} {shape}"
        )
    return value


def restore_progress(
    ckpt: Checkpoint, stage: StageConfig, task: StageTask, optimizer: torch.optim.Optimizer
) -> tuple[int, float, list[float]]:
    """Restore optimizer, samplers and torch RNG from a mid-stage checkpoint, checking every
    field; returns ``(step, wall time so far, losses so far)``."""
    meta, where = ckpt.meta, f"{ckpt.path}: meta"
    step = meta["step"]
    wall = _io.expect(
        meta.get("wall_time_s"), (int, float), f"{where}.wall_time_s", CheckpointError
    )
    if not (math.isfinite(wall) and wall >= 0):
        raise CheckpointError(f"{where}.wall_time_s: {wall} is not a duration")
    if meta.get("scheduler") != {"kind": "warmup_cosine", "step": step}:
        raise CheckpointError(
            f"{where}.scheduler: {meta.get('scheduler')!r} does not fit step {step}"
        )
    samplers = _io.expect(meta.get("samplers"), dict, f"{where}.samplers", CheckpointError)
    if set(samplers) != set(task.samplers):
        raise CheckpointError(f"{where}.samplers: expected {sorted(task.samplers)}")
    rest = _io.expect(meta.get("optimizer"), dict, f"{where}.optimizer", CheckpointError)
    _io.expect(rest.get("scalars"), dict, f"{where}.optimizer.scalars", CheckpointError)
    known = {"losses", "torch_rng_state", *(f"sampler.{k}.order" for k in task.samplers)}
    unexpected = sorted(k for k in ckpt.state if k not in known and not k.startswith("optimizer."))
    if unexpected:
        raise CheckpointError(f"{ckpt.path}: unexpected state tensors {unexpected}")
    losses = state_field(ckpt, "losses", torch.float64, (step,))
    rng = state_field(ckpt, "torch_rng_state", torch.uint8, tuple(torch.get_rng_state().shape))
    try:
        optimizer_from_tensors(optimizer, ckpt.state, rest)
        for key, sampler in task.samplers.items():
            order = ckpt.state.get(f"sampler.{key}.order")
            if order is None:
                raise CheckpointError(f"state tensor 'sampler.{key}.order' is missing")
            sampler.restore(samplers[key], order)
    except ValueError as err:  # CheckpointError included
        raise CheckpointError(f"{ckpt.path}: {err}") from None
    torch.set_rng_state(rng)
    return step, float(wall), losses.tolist()


# ---------------------------------------------------------------------- one stage
def run_stage(
    ctx: Context,
    name: str,
    task: StageTask,
    out: Path,
    on_event: EventHandler,
    resume_from: Checkpoint | None = None,
    curve: Any = None,
) -> dict[str, Any]:
    """Train one stage to its step budget, checkpointing every ``checkpoint_every`` steps.

    ``curve`` (a :class:`hyperet.curves.ValidationCurve`) measures validation points on its
    schedule; they are stored in the checkpoints and in the metrics as ``val_curve``.
    """
    config = ctx.config
    stage = config.train.budget(name)
    ckpt_dir = out / CHECKPOINTS / name
    optimizer = make_optimizer(task, stage)
    losses: list[float] = []
    points: list[dict[str, Any]] = []
    start, wall_before = 0, 0.0
    if resume_from is not None:
        start, wall_before, losses = restore_progress(resume_from, stage, task, optimizer)
        points = list(resume_from.meta.get("val_curve", []))
    on_event(StageStarted(name, stage.steps, start, task.cached_features, task.hyperet_active))
    step_loss = distributed.data_parallel(ctx.model, task.loss)  # task.loss with one process
    applied = bool(ctx.hyperet_params)
    t0 = time.perf_counter()

    def save(step: int, complete: bool, metrics: dict[str, Any] | None = None) -> None:
        wall = wall_before + time.perf_counter() - t0
        tensors, rest = optimizer_to_tensors(optimizer)
        meta, extra = _progress_meta(name, step, complete, task, losses, wall, applied, rest)
        meta["val_curve"] = points
        distributed.on_main(
            save_checkpoint,
            ckpt_dir,
            config=config,
            model=ctx.model,
            meta=meta,
            state={**tensors, **extra},
            metrics=metrics,
        )
        on_event(CheckpointSaved(name, step, ckpt_dir))

    for step in range(start, stage.steps):
        value, lr = train_step(
            name, step, stage, task, optimizer, config.train.grad_clip, step_loss
        )
        losses.append(value)
        on_event(StepDone(name, step + 1, stage.steps, value, lr))
        done = step + 1
        if curve is not None and curve.due(done, stage.steps):
            since = points[-1]["step"] if points else 0
            frozen = not task.hyperet_active
            points.append(curve.point(done, losses, since=since, frozen_vision=frozen))
        if done % config.train.checkpoint_every == 0 and done < stage.steps:
            save(done, complete=False)
    wall = wall_before + time.perf_counter() - t0
    metrics = {
        "stage": name,
        "steps": stage.steps,
        "batch_size": stage.batch_size,
        "wall_time_s": wall,
        "seconds_per_step": wall / stage.steps if stage.steps else 0.0,
        "losses": losses,
        "final_loss": final_loss(losses),
        "seed": config.seed,
        "config": config.to_dict(),
        "package_version": __version__,
        "trainable_parameters": sum(p.numel() for p in task.params),
        "total_parameters": sum(p.numel() for p in ctx.model.parameters()),
        "hyperet_active": task.hyperet_active,
        "hyperet_parameters": sum(p.numel() for p in ctx.hyperet_params),
        "cached_features": task.cached_features,
        "torch_threads": torch.get_num_threads(),
        "val_curve": points,
    }
    if task.finish is not None:
        metrics.update(task.finish())
    save(stage.steps, complete=True, metrics=metrics)
    on_event(StageFinished(name, metrics))
    return metrics


def final_loss(losses: list[float]) -> float | None:
    """Mean loss of the last tenth of the steps (at least one); ``None`` without steps."""
    tail = losses[-max(1, len(losses) // 10) :] if losses else []
    return float(np.mean(tail)) if tail else None
