"""The recipe: one stage function per stage, all in one table (:data:`STAGE_RECIPE`).

Stages, in the order of :data:`hyperet.config.RECIPE_STAGES` (each a function
``Context -> StageTask`` run by :func:`hyperet.train.engine.run_stage`):

- ``vision`` (0a): ViT + CLIP text tower, symmetric multi-positive InfoNCE against captions of one
  granularity level (``train.vision_level``);
- ``itc`` (ITC objectives only): the model's image-text aligner on the frozen ViT's cached tokens
  (hyperbolic / Poincaré / Euclidean contrastive loss; docs/alignment.md);
- ``lm`` (0b): the LM on the dataset's text (captions of every level, questions with answers,
  multiple-choice prompts with answers), next-token loss on every token;
- ``align`` (1): the projector on ``detailed`` captions, vision encoder and LM frozen;
- ``instruct`` (2): projector + LM on VQA and multiple choice, loss on answer tokens only.

HyperET (HRA on the frozen ViT's q and v rows) is applied before the first stage where it is active
(``hyperet.stage``) and stays applied afterwards; its parameters train only in active stages.
When no vision parameter trains in a stage, vision features of every training image are computed
once and cached (the frozen ViT is then never re-run).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hyperet import distributed
from hyperet.alignment.aligner import ImageTextAligner
from hyperet.alignment.entailment import Hierarchy
from hyperet.alignment.losses import duplicate_positives
from hyperet.alignment.monitors import StabilityMonitor
from hyperet.batching import IGNORE, Encoded, TextBatch, collate, encode_text
from hyperet.bucketing import BucketedSampler
from hyperet.config import RECIPE_STAGES, STAGES, RunConfig
from hyperet.data import LEVELS, Tokenizer, caption
from hyperet.data.scenes import Scene, SceneObject
from hyperet.model import MLLM
from hyperet.nn import apply_baseline, apply_hyperet
from hyperet.train.engine import (
    Context,
    Sampler,
    StageTask,
    no_decay,
    set_trainable,
    trainable,
)

#: Sampler stream of the ITC stage (independent of the recipe's other stages).
ITC_SAMPLER_STREAM = 100
#: The ITC stage's monitors record every this many steps (and at the first and last step).
MONITOR_EVERY = 10


def apply_hyperet_to(model: MLLM, config: RunConfig) -> list[nn.Parameter]:
    """Apply HRA to the ViT's q and v rows (``config.hyperet``); returns its parameters.

    ``hyperet.adapter`` other than ``hra`` applies a baseline instead
    (:func:`hyperet.nn.apply_baseline`; ``full``: the ViT's own weights train).
    """
    h = config.hyperet
    if h.adapter == "full":  # every weight the tokens depend on (not the CLIP head's ``proj``)
        return [p for name, p in model.vision.named_parameters() if name != "proj"]
    if h.adapter != "hra":
        return apply_baseline(
            model.vision,
            "structured" if h.adapter == "euclidean" else h.adapter,
            structure=h.structure,
            block_size=h.block_size,
            bandwidth=h.bandwidth,
            rank=h.rank,
            seed=config.seed,
        )
    return apply_hyperet(
        model.vision,
        structure=h.structure,
        targets=("q", "v"),
        target="weight_rows",
        c=h.c,
        mode=h.mode,
        block_size=h.block_size,
        bandwidth=h.bandwidth,
        freeze_base=False,  # each stage sets what trains (set_trainable)
    )


def hyperet_applied_in(config: RunConfig, stage: str) -> bool:
    """Whether HRA is applied (active or already trained and frozen) during ``stage``."""
    index = RECIPE_STAGES.index(stage)
    return any(config.hyperet.active_in(s) for s in RECIPE_STAGES[: index + 1])


def _seed(config: RunConfig, stage: str, stream: int = 0) -> list[int]:
    """Sampler seed of a stage's stream: ``(seed, index in STAGES, stream)`` (the ITC stage,
    outside ``STAGES``, seeds its own streams)."""
    return [config.seed, STAGES.index(stage), stream]


def vision_stage(ctx: Context) -> StageTask:
    """0a: CLIP-style pretraining of the ViT (and text tower) on a caption-level mixture.

    Each pair's caption level is drawn from ``train.vision_level`` (one level, or the coarse-
    skewed :data:`~hyperet.data.mixture.CAPTION_MIXTURE`); identical caption texts are positives.
    """
    m, data = ctx.model, ctx.data
    set_trainable(m, [m.vision, m.text, m.clip_head], [])
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
        if data.vision_negatives is None or data.vision_negative_ids is None:
            return m.clip_head(gather(image_emb), gather(text_emb), gather(caption_ids))
        negative = collate([data.vision_negatives[i] for i in rows])
        negative_emb = m.text(negative.input_ids, negative.lengths)
        negative_ids = torch.from_numpy(data.vision_negative_ids[rows])
        return m.clip_head(
            gather(image_emb),
            gather(text_emb),
            gather(caption_ids),
            gather(negative_emb),
            gather(negative_ids),
        )

    return StageTask(trainable(m), no_decay(m, []), {"main": sampler}, loss)


def lm_stage(ctx: Context) -> StageTask:
    """0b: language-model pretraining on the dataset's text."""
    m, data = ctx.model, ctx.data
    set_trainable(m, [m.lm], [])
    sampler: Any = Sampler(len(data.lm_texts), _seed(ctx.config, "lm"))
    pool = ctx.config.train.lm_bucket_batches
    if pool:  # batches of similar length (hyperet.bucketing)
        lengths = np.asarray([len(e.ids) for e in data.lm_texts])
        sampler = BucketedSampler(sampler, lengths, pool, _seed(ctx.config, "lm", 1))

    def loss(step: int, batch_size: int) -> Tensor:
        batch = collate([data.lm_texts[i] for i in distributed.shard(sampler.take(batch_size))])
        return _token_mean_share(_required(m(batch.input_ids, batch.labels)[1]), batch.labels)

    return StageTask(trainable(m), no_decay(m, []), {"main": sampler}, loss)


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
    before = RECIPE_STAGES[: RECIPE_STAGES.index(stage)]
    trained = tuple(s for s in before if ctx.config.hyperet.active_in(s))
    return ("vision", *trained)


def align_stage(ctx: Context) -> StageTask:
    """1: projector alignment on captions (ViT and LM frozen; HRA trains when active)."""
    m, data = ctx.model, ctx.data
    active = ctx.config.hyperet.active_in("align")
    set_trainable(m, [m.projector], ctx.hyperet_params if active else [])
    sampler = Sampler(len(data.align), _seed(ctx.config, "align"))
    run = _multimodal_loss(ctx, active, _vision_key(ctx, "align"))

    def loss(step: int, batch_size: int) -> Tensor:
        idx = distributed.shard(sampler.take(batch_size))
        return run(idx, collate([data.align[i] for i in idx]))

    return StageTask(
        trainable(m),
        no_decay(m, ctx.hyperet_params),
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


def instruct_pool(step: int, mc_fraction: float, caption_fraction: float) -> str:
    """The pool instruction-tuning step ``step`` draws from: ``mc``, ``caption`` or ``vqa``.

    MC steps are a ``mc_fraction`` of all steps (:func:`is_mc_step`); of the other steps, the
    ``j``-th (``j = step - floor(step * mc_fraction)``) is a caption step when
    ``is_mc_step(j, caption_fraction)``, so captions are a ``caption_fraction`` of them, spread
    evenly; the rest are VQA steps.
    """
    if is_mc_step(step, mc_fraction):
        return "mc"
    j = step - math.floor(step * mc_fraction)  # index among the non-MC steps
    return "caption" if is_mc_step(j, caption_fraction) else "vqa"


def instruct_stage(ctx: Context) -> StageTask:
    """2: instruction tuning of projector + LM on VQA and multiple choice (answer tokens only),
    and on ``detailed`` captions (every caption token) for ``train.caption_fraction`` > 0."""
    m, data = ctx.model, ctx.data
    active = ctx.config.hyperet.active_in("instruct")
    set_trainable(m, [m.projector, m.lm], ctx.hyperet_params if active else [])
    samplers = {
        "vqa": Sampler(len(data.vqa), _seed(ctx.config, "instruct", 0)),
        "mc": Sampler(len(data.mc), _seed(ctx.config, "instruct", 1)),
    }
    captions = ctx.config.train.caption_fraction
    if captions > 0:  # absent otherwise: runs without captions keep their checkpoints' layout
        samplers["caption"] = Sampler(len(data.align), _seed(ctx.config, "instruct", 2))
    run = _multimodal_loss(ctx, active, _vision_key(ctx, "instruct"))
    fraction = ctx.config.train.mc_fraction

    def loss(step: int, batch_size: int) -> Tensor:
        pool = instruct_pool(step, fraction, captions)
        taken = distributed.shard(samplers[pool].take(batch_size))
        if pool == "caption":  # align pool: row i is image i's detailed caption
            return run(taken.astype(np.int64), collate([data.align[i] for i in taken]))
        items = [(data.mc if pool == "mc" else data.vqa)[i] for i in taken]
        image_idx = np.asarray([i for i, _ in items], dtype=np.int64)
        return run(image_idx, collate([e for _, e in items]))

    return StageTask(
        trainable(m),
        no_decay(m, ctx.hyperet_params),
        samplers,
        loss,
        cached_features=not active,
        hyperet_active=active,
        **_adapter_lr(ctx, active),
    )


class _Captions:
    """Every training caption of every level, tokenised, with an id per distinct string."""

    def __init__(self, captions: dict[str, list[str]], tokenizer: Tokenizer) -> None:
        self.levels = [level for level in LEVELS if level in captions]
        strings = sorted({t for level in self.levels for t in captions[level]})
        index = {t: i for i, t in enumerate(strings)}
        self.encoded: list[list[Encoded]] = [
            [encode_text(tokenizer, t) for t in captions[level]] for level in self.levels
        ]
        self.string_id = np.asarray(
            [[index[t] for t in captions[level]] for level in self.levels], dtype=np.int64
        )  # (levels, N)


class _Parts:
    """Each scene's objects as captions of their own (``"a red circle."``: the ``objects``
    caption of a scene holding only that object), tokenised once per distinct string."""

    def __init__(self, scenes: list[Scene], tokenizer: Tokenizer) -> None:
        cache: dict[str, Encoded] = {}

        def encode(scene: Scene, obj: SceneObject) -> Encoded:
            text = caption(dataclasses.replace(scene, objects=(obj,)), "objects")
            if text not in cache:
                cache[text] = encode_text(tokenizer, text)
            return cache[text]

        self.encoded = [[encode(scene, obj) for obj in scene.objects] for scene in scenes]

    def draw(self, idx: np.ndarray, u: np.ndarray) -> list[Encoded]:
        """One object of each scene ``idx`` ``(B,)``, chosen by uniforms ``u`` ``(B,)``."""
        return [self.encoded[i][int(x * len(self.encoded[i]))] for i, x in zip(idx, u, strict=True)]


def _hierarchy(
    aligner: ImageTextAligner,
    captions: _Captions,
    parts: _Parts | None,
    idx: np.ndarray,
    level: np.ndarray,
    rng: np.random.Generator,
) -> Hierarchy:
    """A second caption of each image at another level, ordered (coarse, fine), and what the
    negative and part terms need (:class:`~hyperet.alignment.entailment.Hierarchy`); the part
    draws come after the level draws, so runs without parts draw what they always did."""
    n_levels = len(captions.levels)
    other = (level + rng.integers(1, n_levels, size=len(idx))) % n_levels
    pair = np.sort(np.stack([level, other]), axis=0)  # (2, B): coarse, fine
    both = collate(
        [captions.encoded[lv][i] for row in pair for lv, i in zip(row, idx, strict=True)]
    )
    h = Hierarchy(both.input_ids[: len(idx)], both.input_ids[len(idx) :])
    if aligner.config.negative_weight > 0:
        own = captions.string_id[pair[0], idx]  # (B,)
        at_coarse_level = captions.string_id[pair[0][:, None], idx[None, :]]  # (B, B)
        h = h._replace(negatives=torch.from_numpy(at_coarse_level != own[:, None]))
    if parts is not None:
        names = np.asarray([LEVELS.index(lv) for lv in captions.levels])
        in_fine = names[pair[1]] >= LEVELS.index("objects")
        h = h._replace(
            parts=collate(parts.draw(idx, rng.random(len(idx)))).input_ids,
            part_in_fine=torch.from_numpy(in_fine),
        )
    return h


class _ITCMonitoring:
    """Stability monitors of one ITC stage run, fed by the loss closure and gradient hooks.

    The gradient norm is taken before the engine clips it: every aligner parameter has a
    post-accumulate-grad hook that adds its squared gradient norm to the current step's total.
    """

    def __init__(self, aligner: ImageTextAligner, params: list[nn.Parameter], steps: int) -> None:
        self.aligner, self.steps = aligner, steps
        self.monitor = StabilityMonitor()
        self.squared = 0.0
        self.handles = [p.register_post_accumulate_grad_hook(self._accumulate) for p in params]

    def _accumulate(self, p: torch.Tensor) -> None:
        if p.grad is not None:
            self.squared += float(p.grad.detach().to(torch.float64).pow(2).sum())

    def take_grad_norm(self) -> float:
        """Pre-clipping gradient norm of the last backward pass (0 before the first); resets."""
        value, self.squared = math.sqrt(self.squared), 0.0
        return value

    def finish(self) -> dict[str, Any]:
        """Last step's clamp hits and gradient norm, hooks removed; the monitor summary."""
        hits, norm = self.aligner.clamp_scalars_(), self.take_grad_norm()
        for handle in self.handles:
            handle.remove()
        summary = self.monitor.summary()
        summary["clamp_hits"] += hits
        summary["grad_norm_last"] = norm
        if not norm <= summary["grad_norm_max"]:  # also replaces a nan maximum (no record yet)
            summary["grad_norm_max"] = norm
        return summary


def itc_stage(ctx: Context) -> StageTask:
    """The ITC stage: only the model's aligner trains, on the frozen ViT's cached tokens.

    Batches: ``batch_size`` images from the recipe's resumable sampler, each paired with its
    caption at a level drawn uniformly from ``LEVELS`` (so every granularity is trained and the
    radius can order them). Identical caption strings in a batch are positives of each other
    (:func:`~hyperet.alignment.losses.duplicate_positives`). The level draw and the RQS/RTP
    generator are seeded from ``(seed, step)``, so a resumed run draws exactly what an
    uninterrupted one does.

    Bookkeeping per step: the bounded scalars are clamped back into range (clamp hits), the
    stability monitors record radius statistics, the gradient norm of the previous step and
    non-finite losses (:class:`~hyperet.alignment.monitors.StabilityMonitor`); the task's
    ``finish`` hook returns their summary as the stage's ``alignment`` metrics.
    """
    m, data, config = ctx.model, ctx.data, ctx.config
    aligner = m.image_text_aligner()
    set_trainable(m, [aligner], [])
    features = ctx.vision_features(("vision",))  # (N, T, Dv), the frozen ViT, cached
    captions = _Captions(data.split.captions, data.tokenizer)
    parts = _Parts(data.split.scenes, data.tokenizer) if aligner.config.part_entailment else None
    sampler = Sampler(len(data.images), [config.seed, ITC_SAMPLER_STREAM])
    params = trainable(m)
    watch = _ITCMonitoring(aligner, params, config.train.itc.steps)

    def loss(step: int, batch_size: int) -> torch.Tensor:
        clamp_hits = aligner.clamp_scalars_()  # after the previous optimizer step
        previous_grad = watch.take_grad_norm()
        idx = sampler.take(batch_size)
        rng = np.random.default_rng([config.seed, 1_000_003, step])
        level = rng.integers(0, len(captions.levels), size=len(idx))  # (B,)
        ids = collate([captions.encoded[lv][i] for lv, i in zip(level, idx, strict=True)])
        keys = torch.from_numpy(captions.string_id[level, idx])  # (B,)
        gen = torch.Generator(features.device).manual_seed(int(rng.integers(0, 2**62)))
        rows = distributed.shard_slice(len(idx))  # data parallel: this process's images
        hierarchy = None
        if aligner.config.caption_entailment:  # a second, different level per image
            hierarchy = _hierarchy(aligner, captions, parts, idx, level, rng)
        out = aligner(
            features[torch.from_numpy(idx[rows])],
            ids.input_ids,
            positives=duplicate_positives(keys),
            generator=gen,
            hierarchy=hierarchy,
            rows=rows if distributed.is_active() else None,
            gather=distributed.gather_rows if distributed.is_active() else None,
        )
        # the engine's NaN guard stops the run on a non-finite loss; record what led there
        finite = math.isfinite(out.loss.item())
        last = step == watch.steps - 1
        if step % MONITOR_EVERY == 0 or last or clamp_hits or not finite:
            watch.monitor.record(
                step=step + 1,
                embeddings={"image": out.image.detach(), "text": out.text.detach()},
                c=out.c.detach() if aligner.uses_ball else None,
                grad_norm=previous_grad if step > 0 else None,
                clamp_hits=clamp_hits,
            )
        else:
            watch.monitor.clamp_hits += clamp_hits
        return out.loss

    def finish() -> dict[str, Any]:
        """Monitor summary and final scalars (strict-JSON numbers); clamps the bounded scalars
        a last time, so the saved checkpoint holds in-range values."""
        summary = watch.finish()
        return {
            "alignment": {
                "objective": aligner.config.objective,
                "aligner": aligner.config.to_dict(),
                "scalars": aligner.scalars(),
                "monitors": _finite(summary),
            }
        }

    return StageTask(
        params, no_decay(m, []), {"main": sampler}, loss, cached_features=True, finish=finish
    )


#: The recipe: (stage name, stage function), in the order of
#: :data:`~hyperet.config.RECIPE_STAGES`. A run goes through ``config.train.stage_names()``.
STAGE_RECIPE: list[tuple[str, Callable[[Context], StageTask]]] = [
    ("vision", vision_stage),
    ("itc", itc_stage),
    ("lm", lm_stage),
    ("align", align_stage),
    ("instruct", instruct_stage),
]


def _finite(value: Any) -> Any:
    """Replace nan/inf floats by None (recursively), so metrics.json stays strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
