"""The staged training recipe of the compact MLLM, with checkpoints, resume and a NaN guard.

Stages (``STAGE_RECIPE``, run in order; each is a function ``Context -> StageTask``):

- ``vision`` (0a): ViT + CLIP text tower, symmetric multi-positive InfoNCE against captions of one
  granularity level (``train.vision_level``);
- ``itc`` (ITC objectives only): the image-text aligner of :mod:`hyperet.alignment` on the frozen
  ViT's cached tokens (hyperbolic / Poincaré / Euclidean contrastive loss; docs/alignment.md);
- ``lm`` (0b): the LM on the dataset's text (captions of every level, questions with answers,
  multiple-choice prompts with answers), next-token loss on every token;
- ``align`` (1): the projector on ``detailed`` captions, vision encoder and LM frozen;
- ``instruct`` (2): projector + LM on VQA and multiple choice, loss on answer tokens only.

HyperET (HRA on the frozen ViT's q and v rows) is applied before the first stage where it is active
(``hyperet.stage``) and stays applied afterwards; its parameters train only in active stages.
When no vision parameter trains in a stage, vision features of every training image are computed
once and cached (the frozen ViT is then never re-run).

Every stage uses AdamW with linear warm-up then cosine decay, gradient clipping and a fixed step
budget. Training never prints: progress is reported through ``on_event`` callbacks
(:class:`StageStarted`, :class:`StepDone`, :class:`CheckpointSaved`, :class:`StageFinished`).

Determinism: given the config (seed included) and the thread count, a run is bitwise
reproducible on CPU, and ``resume=True`` after an interruption reaches the same weights and losses
as an uninterrupted run: checkpoints hold model, optimizer, schedule position, sampler (data order)
and torch RNG state.
"""

from __future__ import annotations

import contextlib
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
from hyperet.alignment.stage import attach_aligner, is_itc, itc_metrics, itc_stage
from hyperet.batching import (
    Encoded,
    TextBatch,
    collate,
    encode_caption,
    encode_mc,
    encode_text,
    encode_vqa,
)
from hyperet.bucketing import BucketedSampler
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
    optimizer_from_tensors,
    optimizer_to_tensors,
    read_json,
    read_marker,
    read_tokenizer_text,
    run_lock,
    save_checkpoint,
    write_json,
    write_marker,
)
from hyperet.config import ITC_STAGE, STAGES, RunConfig, StageConfig
from hyperet.curves import CURVE_STAGES, ValidationCurve
from hyperet.data import Split, Tokenizer, build_split
from hyperet.data.mixture import CaptionMixture
from hyperet.device import place
from hyperet.model import IGNORE, MLLM

#: Caption level used by projector alignment (states colour, shape, size and position).
ALIGN_LEVEL = "detailed"
#: Images per chunk when caching frozen vision features.
FEATURE_CHUNK = 512


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss or gradient; nothing of that step was saved."""

    def __init__(self, stage: str, step: int, value: float) -> None:
        super().__init__(
            f"non-finite {'loss' if math.isnan(value) or math.isinf(value) else 'value'} "
            f"({value}) in stage {stage!r} at step {step}; the last checkpoint is untouched"
        )
        self.stage, self.step, self.value = stage, step, value


class RunDirectoryError(ValueError):
    """The output directory cannot be used (non-empty without resume, incompatible, ...)."""


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


# ---------------------------------------------------------------------- data
@dataclass
class TrainingData:
    """The training split and the tokenised example pools of every stage."""

    split: Split
    tokenizer: Tokenizer
    images: Tensor  # (N, 3, H, W) uint8
    vision_mixture: CaptionMixture
    vision_captions: list[Encoded]  # (L * N,): row k * N + i = image i at mixture level k
    vision_caption_ids: np.ndarray  # (L * N,) id of each caption string (duplicates share)
    lm_texts: list[Encoded]
    align: list[Encoded]
    vqa: list[tuple[int, Encoded]]
    mc: list[tuple[int, Encoded]]


def build_training_data(config: RunConfig, tokenizer: Tokenizer) -> TrainingData:
    """Generate the training split (deterministic in ``config.seed``) and tokenise it."""
    d = config.data
    split = build_split(
        "train",
        n_scenes=d.train_scenes,
        seed=config.seed,
        image_size=d.image_size,
        min_objects=d.min_objects,
        max_objects=d.max_objects,
    )
    mixture = CaptionMixture.named(config.train.vision_level)
    # vision pool: row ``k * N + i`` is image i's caption at mixture level k
    vision_texts = [c for level in mixture.levels for c in split.captions[level]]
    unique = {text: i for i, text in enumerate(sorted(set(vision_texts)))}
    lm_texts = [encode_text(tokenizer, c) for texts in split.captions.values() for c in texts]
    lm_texts += [encode_text(tokenizer, f"{qa.question} {qa.answer}") for _, qa in split.qa]
    lm_texts += [encode_mc(tokenizer, item) for _, item in split.mc]
    # LM pretraining supervises the MC prompt too
    lm_texts = [
        Encoded(e.ids, np.where(np.arange(len(e.ids)) == 0, e.labels, e.ids)) for e in lm_texts
    ]
    max_len = config.language.max_text_len
    longest = max(len(e.ids) for e in lm_texts)
    if longest > max_len:
        raise ValueError(
            f"language.max_text_len: {max_len} is shorter than the longest text ({longest} tokens)"
        )
    return TrainingData(
        split=split,
        tokenizer=tokenizer,
        images=torch.from_numpy(np.ascontiguousarray(split.images)),
        vision_mixture=mixture,
        vision_captions=[encode_text(tokenizer, c) for c in vision_texts],
        vision_caption_ids=np.asarray([unique[t] for t in vision_texts], dtype=np.int64),
        lm_texts=lm_texts,
        align=[encode_caption(tokenizer, c) for c in split.captions[ALIGN_LEVEL]],
        vqa=[(i, encode_vqa(tokenizer, qa)) for i, qa in split.qa],
        mc=[
            (i, encode_mc(tokenizer, item, restate=config.train.mc_restate)) for i, item in split.mc
        ],
    )


# ---------------------------------------------------------------------- model construction
def build_model(config: RunConfig, tokenizer: Tokenizer) -> MLLM:
    """A freshly initialised model (weights depend only on ``config.seed``)."""
    torch.manual_seed(config.seed)
    model = MLLM(config, vocab_size=tokenizer.vocab_size)
    attach_aligner(model, config, tokenizer)  # ITC objectives only: ``model.aligner``
    return model


def apply_hyperet_to(model: MLLM, config: RunConfig) -> list[nn.Parameter]:
    """Apply HRA to the ViT's q and v rows (``config.hyperet``); returns its parameters.

    ``hyperet.adapter`` other than ``hra`` applies a baseline instead
    (:func:`hyperet.nn.apply_baseline`; ``full``: the ViT's own weights train).
    """
    h = config.hyperet
    if h.adapter == "full":  # every weight the tokens depend on (not the CLIP head's ``proj``)
        return [p for name, p in model.vision.named_parameters() if name != "proj"]
    if h.adapter != "hra":
        from hyperet.nn import apply_baseline

        return apply_baseline(
            model.vision,
            "structured" if h.adapter == "euclidean" else h.adapter,
            structure=h.structure,
            block_size=h.block_size,
            bandwidth=h.bandwidth,
            rank=h.rank,
            seed=config.seed,
        )
    try:
        from hyperet.nn import apply_hyperet
    except ImportError as err:  # pragma: no cover - the adapter ships with the package
        raise RunDirectoryError(f"hyperet: the HRA adapter is not available ({err})") from None
    return apply_hyperet(
        model.vision,
        structure=h.structure,
        targets=("q", "v"),
        target="weight_rows",
        c=h.c,
        mode=h.mode,
        block_size=h.block_size,
        bandwidth=h.bandwidth,
        freeze_base=False,  # each stage sets what trains (_set_trainable)
    )


def hyperet_applied_in(config: RunConfig, stage: str) -> bool:
    """Whether HRA is applied (active or already trained and frozen) during ``stage``."""
    index = STAGES.index(stage)
    return any(config.hyperet.active_in(s) for s in STAGES[: index + 1])


# ---------------------------------------------------------------------- stages
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
    """A stage ready to run: its trainable parameters, samplers and per-step loss."""

    params: list[nn.Parameter]
    no_decay: set[int]  # ids of parameters without weight decay
    samplers: dict[str, Any]  # Sampler or BucketedSampler: take(k), state(), restore()
    loss: Callable[[int, int], Tensor]  # (step, batch_size) -> loss
    cached_features: bool = False
    hyperet_active: bool = False
    #: ids of parameters whose learning rate is ``lr_scale`` times the stage's (the adapter's)
    scaled: set[int] = field(default_factory=set)
    lr_scale: float = 1.0


def _set_trainable(model: nn.Module, modules: list[nn.Module], extra: list[nn.Parameter]) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(True)
    for p in extra:
        p.requires_grad_(True)


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _no_decay(model: nn.Module, hyperet_params: list[nn.Parameter]) -> set[int]:
    """Biases, norms, embeddings, the CLIP temperature and HRA matrices get no weight decay."""
    out = {id(p) for p in hyperet_params}
    for name, p in model.named_parameters():
        if p.ndim < 2 or "embedding" in name:
            out.add(id(p))
    return out


def _seed(config: RunConfig, stage: str, stream: int = 0) -> list[int]:
    return [config.seed, STAGES.index(stage), stream]


def vision_stage(ctx: Context) -> StageTask:
    """0a: CLIP-style pretraining of the ViT (and text tower) on a caption-level mixture.

    Each pair's caption level is drawn from ``train.vision_level`` (one level, or the coarse-
    skewed :data:`~hyperet.data.mixture.CAPTION_MIXTURE`); identical caption texts are positives.
    """
    m, data = ctx.model, ctx.data
    _set_trainable(m, [m.vision, m.text, m.clip_head], [])
    sampler = Sampler(len(data.images), _seed(ctx.config, "vision"))

    n_images = len(data.images)
    level_seed = _seed(ctx.config, "vision", 1)

    def loss(step: int, batch_size: int) -> Tensor:
        idx = sampler.take(batch_size)
        # caption row of each pair: level drawn for the global batch, then this rank's share
        rows = distributed.shard(
            idx + n_images * data.vision_mixture.draw(level_seed, step, len(idx))
        )
        text = collate([data.vision_captions[i] for i in rows])
        image_emb = m.vision.embed(m.vision(data.images[rows % n_images]))
        text_emb = m.text(text.input_ids, text.lengths)
        caption_ids = torch.from_numpy(data.vision_caption_ids[rows])
        gather = distributed.gather_rows  # data parallel: the loss sees the global batch
        return m.clip_head(gather(image_emb), gather(text_emb), gather(caption_ids))

    return StageTask(_trainable(m), _no_decay(m, []), {"main": sampler}, loss)


def lm_stage(ctx: Context) -> StageTask:
    """0b: language-model pretraining on the dataset's text."""
    m, data = ctx.model, ctx.data
    _set_trainable(m, [m.lm], [])
    sampler: Any = Sampler(len(data.lm_texts), _seed(ctx.config, "lm"))
    pool = ctx.config.train.lm_bucket_batches
    if pool:  # batches of similar length (hyperet.bucketing)
        lengths = np.asarray([len(e.ids) for e in data.lm_texts])
        sampler = BucketedSampler(sampler, lengths, pool, _seed(ctx.config, "lm", 1))

    def loss(step: int, batch_size: int) -> Tensor:
        batch = collate([data.lm_texts[i] for i in distributed.shard(sampler.take(batch_size))])
        return _token_mean_share(_required(m(batch.input_ids, batch.labels)[1]), batch.labels)

    return StageTask(_trainable(m), _no_decay(m, []), {"main": sampler}, loss)


def _multimodal_loss(ctx: Context, active: bool, key: tuple[str, ...]) -> Callable[..., Tensor]:
    """Loss of image-indexed examples, from cached features when the ViT is frozen."""
    m = ctx.model
    features = None if active else ctx.vision_features(key)

    def run(image_idx: np.ndarray, batch: TextBatch) -> Tensor:
        idx = torch.from_numpy(image_idx)
        if features is None:
            out = m(batch.input_ids, batch.labels, images=ctx.data.images[idx])
        else:
            out = m(batch.input_ids, batch.labels, features=features[idx])
        return _token_mean_share(_required(out[1]), batch.labels)

    return run


def _required(loss: Tensor | None) -> Tensor:
    if loss is None:  # pragma: no cover - labels are always given in training
        raise RuntimeError("loss: the model returned no loss")
    return loss


def _token_mean_share(loss: Tensor, labels: Tensor) -> Tensor:
    """Data parallel: this rank's share of the per-token mean over the global batch.

    Every example has at least one supervised token, so no rank's own mean is empty.
    """
    return distributed.weighted_share(loss, float((labels[:, 1:] != IGNORE).sum()))


def _vision_key(ctx: Context, stage: str) -> tuple[str, ...]:
    """Identifies the frozen vision weights: they change only in stages where HRA trains."""
    trained = tuple(s for s in STAGES[: STAGES.index(stage)] if ctx.config.hyperet.active_in(s))
    return ("vision", *trained)


def align_stage(ctx: Context) -> StageTask:
    """1: projector alignment on captions (ViT and LM frozen; HRA trains when active)."""
    m, data = ctx.model, ctx.data
    active = ctx.config.hyperet.active_in("align")
    _set_trainable(m, [m.projector], ctx.hyperet_params if active else [])
    sampler = Sampler(len(data.align), _seed(ctx.config, "align"))
    run = _multimodal_loss(ctx, active, _vision_key(ctx, "align"))

    def loss(step: int, batch_size: int) -> Tensor:
        idx = distributed.shard(sampler.take(batch_size))
        return run(idx, collate([data.align[i] for i in idx]))

    return StageTask(
        _trainable(m),
        _no_decay(m, ctx.hyperet_params),
        {"main": sampler},
        loss,
        cached_features=not active,
        hyperet_active=active,
        **_adapter_lr(ctx, active),
    )


def _adapter_lr(ctx: Context, active: bool) -> dict[str, Any]:
    """The adapter's learning-rate multiplier (``hyperet.lr_scale``) when it trains."""
    if not active or ctx.config.hyperet.lr_scale == 1.0:
        return {}
    return {"scaled": {id(p) for p in ctx.hyperet_params}, "lr_scale": ctx.config.hyperet.lr_scale}


def is_mc_step(step: int, fraction: float) -> bool:
    """Whether instruction-tuning step ``step`` draws a multiple-choice batch.

    Batches are homogeneous (VQA prompts are short, MC prompts long: mixing them would pad every
    VQA row to MC length); MC batches are spread evenly, a ``fraction`` of all steps.
    """
    return math.floor((step + 1) * fraction) > math.floor(step * fraction)


def instruct_stage(ctx: Context) -> StageTask:
    """2: instruction tuning of projector + LM on VQA and multiple choice (answer tokens only)."""
    m, data = ctx.model, ctx.data
    active = ctx.config.hyperet.active_in("instruct")
    _set_trainable(m, [m.projector, m.lm], ctx.hyperet_params if active else [])
    samplers = {
        "vqa": Sampler(len(data.vqa), _seed(ctx.config, "instruct", 0)),
        "mc": Sampler(len(data.mc), _seed(ctx.config, "instruct", 1)),
    }
    run = _multimodal_loss(ctx, active, _vision_key(ctx, "instruct"))
    fraction = ctx.config.train.mc_fraction

    def loss(step: int, batch_size: int) -> Tensor:
        pool = "mc" if is_mc_step(step, fraction) else "vqa"
        taken = distributed.shard(samplers[pool].take(batch_size))
        items = [(data.mc if pool == "mc" else data.vqa)[i] for i in taken]
        image_idx = np.asarray([i for i, _ in items], dtype=np.int64)
        return run(image_idx, collate([e for _, e in items]))

    return StageTask(
        _trainable(m),
        _no_decay(m, ctx.hyperet_params),
        samplers,
        loss,
        cached_features=not active,
        hyperet_active=active,
        **_adapter_lr(ctx, active),
    )


#: The recipe, in order: (stage name, stage function). Extend by adding entries.
STAGE_RECIPE: list[tuple[str, Callable[[Context], StageTask]]] = [
    ("vision", vision_stage),
    (ITC_STAGE, itc_stage),
    ("lm", lm_stage),
    ("align", align_stage),
    ("instruct", instruct_stage),
]


# ---------------------------------------------------------------------- the engine
def _optimizer(task: StageTask, stage: StageConfig) -> torch.optim.AdamW:
    decay = [p for p in task.params if id(p) not in task.no_decay | task.scaled]
    plain = [p for p in task.params if id(p) in task.no_decay - task.scaled]
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": stage.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    if task.scaled:  # the adapter: no decay, its own learning-rate multiplier
        scaled = [p for p in task.params if id(p) in task.scaled]
        groups.append({"params": scaled, "weight_decay": 0.0, "lr_scale": task.lr_scale})
    return torch.optim.AdamW(groups, lr=stage.lr, betas=(0.9, 0.95))


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


def _state_field(ckpt: Checkpoint, key: str, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
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
    losses = _state_field(ckpt, "losses", torch.float64, (step,))
    rng = _state_field(ckpt, "torch_rng_state", torch.uint8, tuple(torch.get_rng_state().shape))
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


def run_stage(
    ctx: Context,
    name: str,
    task: StageTask,
    out: Path,
    on_event: EventHandler,
    resume_from: Any = None,
    curve: Any = None,
) -> dict[str, Any]:
    """Train one stage to its step budget, checkpointing every ``checkpoint_every`` steps.

    ``curve`` (a :class:`hyperet.curves.ValidationCurve`) measures validation points on its
    schedule; they are stored in the checkpoints and in the metrics as ``val_curve``.
    """
    config = ctx.config
    stage = stage_config(config, name)
    ckpt_dir = out / CHECKPOINTS / name
    optimizer = _optimizer(task, stage)
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
        lr = learning_rate(stage, step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        loss = step_loss(step, stage.batch_size)
        value = distributed.average(float(loss.detach()))
        if not math.isfinite(value):
            raise NonFiniteLossError(name, step + 1, value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(task.params, config.train.grad_clip))
        if not math.isfinite(norm):
            raise NonFiniteLossError(name, step + 1, norm)
        optimizer.step()
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
    tail = losses[-max(1, len(losses) // 10) :] if losses else []
    metrics = {
        "stage": name,
        "steps": stage.steps,
        "batch_size": stage.batch_size,
        "wall_time_s": wall,
        "seconds_per_step": wall / stage.steps if stage.steps else 0.0,
        "losses": losses,
        "final_loss": float(np.mean(tail)) if tail else None,
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
    if name == ITC_STAGE:
        metrics["alignment"] = itc_metrics(ctx.model, task)
    save(stage.steps, complete=True, metrics=metrics)
    on_event(StageFinished(name, metrics))
    return metrics


def _check_new_directory(out: Path, force: bool) -> None:
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


def run_stage_names(config: RunConfig) -> list[str]:
    """The stages a run goes through, in order (``itc`` only for the ITC objectives)."""
    itc = is_itc(config.train.objective)
    return [name for name, _ in STAGE_RECIPE if name != ITC_STAGE or itc]


def stage_config(config: RunConfig, name: str) -> StageConfig:
    """The budget of stage ``name`` (``itc`` included)."""
    return config.train.itc if name == ITC_STAGE else config.train.stages[name]


def load_stage_checkpoints(out: Path, config: RunConfig) -> dict[str, Checkpoint]:
    """The run's existing stage checkpoints, in order, verified (identity, config, sequence).

    Every stage before the last checkpointed one must be complete; each checkpoint must be its
    own stage's and carry ``config``.
    """
    found: dict[str, Checkpoint] = {}
    order = run_stage_names(config)
    for name in order:
        directory = out / CHECKPOINTS / name
        if not (directory.exists() or directory.is_symlink()):
            continue
        ckpt = load_checkpoint(directory, root=out)
        check_stage_identity(ckpt, name, stage_config(config, name).steps)
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
    for name in run_stage_names(config):  # under torchrun the batch is split over the ranks
        budget = config.train.itc if name == ITC_STAGE else config.train.stages[name]
        distributed.check_divisible(budget.batch_size, f"train.stages.{name}.batch_size")
    tokenizer = Tokenizer.build()
    with contextlib.ExitStack() as held:  # rank 0: the run directory's lock
        distributed.on_main(_prepare, out, config, tokenizer, held, resume=resume, force=force)
        return _train_locked(config, out, tokenizer, resume, emit, device)


def _train_locked(
    config: RunConfig,
    out: Path,
    tokenizer: Tokenizer,
    resume: bool,
    emit: EventHandler,
    device: torch.device | str,
) -> dict[str, Any]:
    order = run_stage_names(config)
    found = load_stage_checkpoints(out, config) if resume else {}  # verified before any work
    metrics_path = out / METRICS_FILE
    stored: dict[str, Any] = {}
    if resume and (metrics_path.exists() or metrics_path.is_symlink()):
        stored = check_metrics_file(metrics_path, out)
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
                _state_field(
                    latest, "torch_rng_state", torch.uint8, (torch.get_rng_state().numel(),)
                )
            )

    for name, stage_fn in STAGE_RECIPE:
        if name not in order:
            continue
        if name in done_stages:
            emit(StageSkipped(name))
            continue
        if name in STAGES and hyperet_applied_in(config, name) and not ctx.hyperet_params:
            ctx.hyperet_params = apply_hyperet_to(model, config)
        task = stage_fn(ctx)
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
        _check_new_directory(out, force)
    out.mkdir(parents=True, exist_ok=True)
    held.enter_context(run_lock(out))
    prepare_run_directory(out, config, tokenizer, resume=resume, force=force)


__all__ = [
    "STAGE_RECIPE",
    "CheckpointSaved",
    "Context",
    "NonFiniteLossError",
    "RunDirectoryError",
    "Sampler",
    "StageFinished",
    "StageSkipped",
    "StageStarted",
    "StageTask",
    "StepDone",
    "build_model",
    "build_training_data",
    "learning_rate",
    "train",
]
