"""The ITC stage of the staged recipe: train an aligner on the frozen vision encoder's tokens.

``hyperet train --objective {hyperbolic-itc,poincare-itc,euclidean-itc}`` attaches an
:class:`~hyperet.alignment.aligner.ImageTextAligner` to the MLLM as ``model.aligner``
(:func:`attach_aligner`, so checkpoints and ``hyperet eval`` see it) and runs
:func:`itc_stage` after vision pretraining. The stage trains only the aligner; the ViT is frozen
and its tokens are computed once and cached.

Batches: ``batch_size`` images from the recipe's resumable sampler, each paired with its caption
at a level drawn uniformly from ``LEVELS`` (so every granularity is trained and the radius can
order them). Identical caption strings in a batch are positives of each other
(:func:`~hyperet.alignment.losses.duplicate_positives`). The level draw and the RQS/RTP generator
are seeded from ``(seed, step)``, so a resumed run draws exactly what an uninterrupted one does.

Bookkeeping per step: the bounded scalars are clamped back into range (clamp hits), the stability
monitors record radius statistics, the gradient norm of the previous step and non-finite losses
(:class:`~hyperet.alignment.monitors.StabilityMonitor`); :func:`itc_metrics` returns the
summary for metrics.json.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from hyperet import distributed
from hyperet.alignment.aligner import OBJECTIVES, AlignerConfig, ImageTextAligner
from hyperet.alignment.entailment import Hierarchy
from hyperet.alignment.losses import duplicate_positives
from hyperet.alignment.monitors import StabilityMonitor
from hyperet.batching import Encoded, collate, encode_text
from hyperet.config import RunConfig
from hyperet.data import LEVELS, Tokenizer, caption
from hyperet.data.scenes import Scene, SceneObject

if TYPE_CHECKING:  # hyperet.train imports this module: import it back lazily only
    from hyperet.train import Context, StageTask

#: Number of learnable queries of the connector (our default; see docs/alignment.md).
NUM_QUERIES = 8
#: Sampler stream of the ITC stage (independent of the recipe's other stages).
SAMPLER_STREAM = 100
#: Monitors record every this many steps (and at the first and last step).
MONITOR_EVERY = 10


def is_itc(objective: str) -> bool:
    """Whether ``objective`` is one of the ITC objectives."""
    return objective in OBJECTIVES


def aligner_config_for(config: RunConfig, tokenizer: Tokenizer) -> AlignerConfig:
    """The aligner of a run: sized like the run's CLIP text tower, over the ViT's tokens."""
    return AlignerConfig.for_objective(
        config.train.objective,
        vision_dim=config.vision.width,
        vocab_size=tokenizer.vocab_size,
        width=config.text.width,
        embed_dim=config.vision.embed_dim,
        num_queries=NUM_QUERIES,
        depth=config.text.layers,
        heads=config.text.heads,
        max_text_len=config.language.max_text_len,
        pad_id=tokenizer.pad_id,
        special_ids=(tokenizer.bos_id, tokenizer.eos_id, tokenizer.image_id, tokenizer.sep_id),
    )


def attach_aligner(model: nn.Module, config: RunConfig, tokenizer: Tokenizer) -> None:
    """Add ``model.aligner`` when the run's objective is an ITC one (no-op for ``lm``)."""
    if is_itc(config.train.objective):
        model.aligner = ImageTextAligner(aligner_config_for(config, tokenizer))


def get_aligner(model: nn.Module) -> ImageTextAligner:
    """``model.aligner``, or a ``ValueError`` when the model has none (an ``lm`` run)."""
    aligner = getattr(model, "aligner", None)
    if not isinstance(aligner, ImageTextAligner):
        raise ValueError("model: no aligner attached (the run's objective is not an ITC one)")
    return aligner


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
    negative and part terms need (:class:`~hyperet.alignment.entailment.Hierarchy`)."""
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
    """The ITC stage (see the module docstring): only ``model.aligner`` trains."""
    from hyperet.train import Sampler, StageTask, _no_decay, _set_trainable, _trainable

    m, data, config = ctx.model, ctx.data, ctx.config
    aligner = get_aligner(m)
    _set_trainable(m, [aligner], [])
    features = ctx.vision_features(("vision",))  # (N, T, Dv), the frozen ViT, cached
    captions = _Captions(data.split.captions, data.tokenizer)
    parts = _Parts(data.split.scenes, data.tokenizer) if aligner.config.part_entailment else None
    sampler = Sampler(len(data.images), [config.seed, SAMPLER_STREAM])
    params = _trainable(m)
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

    loss.monitoring = watch  # type: ignore[attr-defined]  # read back by itc_metrics
    return StageTask(params, _no_decay(m, []), {"main": sampler}, loss, cached_features=True)


def itc_metrics(model: nn.Module, task: StageTask) -> dict[str, Any]:
    """Monitor summary and final scalars of a finished ITC stage (strict-JSON numbers).

    Also clamps the bounded scalars a last time, so the saved checkpoint holds in-range values.
    """
    aligner = get_aligner(model)
    watch: _ITCMonitoring = task.loss.monitoring  # type: ignore[attr-defined]
    summary = watch.finish()
    return {
        "objective": aligner.config.objective
        or {v: k for k, v in OBJECTIVES.items()}[aligner.config.similarity],
        "aligner": aligner.config.to_dict(),
        "scalars": aligner.scalars(),
        "monitors": _finite(summary),
    }


def _finite(value: Any) -> Any:
    """Replace nan/inf floats by None (recursively), so metrics.json stays strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
