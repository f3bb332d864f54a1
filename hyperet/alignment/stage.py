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

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from hyperet.alignment.aligner import OBJECTIVES, AlignerConfig, ImageTextAligner
from hyperet.alignment.losses import duplicate_positives
from hyperet.alignment.monitors import StabilityMonitor, grad_norm
from hyperet.batching import Encoded, collate, encode_text
from hyperet.config import RunConfig
from hyperet.data import LEVELS, Tokenizer

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


def itc_stage(ctx: Context) -> StageTask:
    """The ITC stage (see the module docstring): only ``model.aligner`` trains."""
    from hyperet.train import Sampler, StageTask, _no_decay, _set_trainable, _trainable

    m, data, config = ctx.model, ctx.data, ctx.config
    aligner = get_aligner(m)
    _set_trainable(m, [aligner], [])
    features = ctx.vision_features(("vision",))  # (N, T, Dv), the frozen ViT, cached
    captions = _Captions(data.split.captions, data.tokenizer)
    sampler = Sampler(len(data.images), [config.seed, SAMPLER_STREAM])
    monitor = StabilityMonitor()
    params = _trainable(m)

    def loss(step: int, batch_size: int) -> torch.Tensor:
        clamp_hits = aligner.clamp_scalars_()  # after the previous optimizer step
        previous_grad = grad_norm(params) if step > 0 else None
        idx = sampler.take(batch_size)
        rng = np.random.default_rng([config.seed, 1_000_003, step])
        level = rng.integers(0, len(captions.levels), size=len(idx))  # (B,)
        ids = collate([captions.encoded[lv][i] for lv, i in zip(level, idx, strict=True)])
        keys = torch.from_numpy(captions.string_id[level, idx])  # (B,)
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        out = aligner(
            features[torch.from_numpy(idx)],
            ids.input_ids,
            positives=duplicate_positives(keys),
            generator=gen,
        )
        # the engine's NaN guard stops the run on a non-finite loss; record what led there
        finite = math.isfinite(out.loss.item())
        if step % MONITOR_EVERY == 0 or clamp_hits or not finite:
            monitor.record(
                step=step + 1,
                embeddings={"image": out.image.detach(), "text": out.text.detach()},
                c=out.c.detach() if aligner.uses_ball else None,
                grad_norm=previous_grad,
                clamp_hits=clamp_hits,
            )
        return out.loss

    task = StageTask(params, _no_decay(m, []), {"main": sampler}, loss, cached_features=True)
    _MONITORS[id(task)] = monitor
    return task


#: The monitor of each ITC stage task (by id), read back by :func:`itc_metrics`.
_MONITORS: dict[int, StabilityMonitor] = {}


def itc_metrics(model: nn.Module, task: StageTask) -> dict[str, Any]:
    """Monitor summary and final scalars of a finished ITC stage (strict-JSON numbers)."""
    aligner = get_aligner(model)
    monitor = _MONITORS.pop(id(task))
    return {
        "objective": {v: k for k, v in OBJECTIVES.items()}[aligner.config.similarity],
        "aligner": aligner.config.to_dict(),
        "scalars": aligner.scalars(),
        "monitors": _finite(monitor.summary()),
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
