"""The image-text aligner: connector + text encoder + ball projections + contrastive loss.

One module holds everything an ITC stage trains on top of a frozen vision encoder. Each
objective name of ``hyperet train --objective`` maps to its similarity and, for the entailment
objectives, a few more settings (:data:`RECIPES`); everything else (queries, RQS, RTP, scales)
is shared so that the objectives differ only in the similarity, the embedding space (ball,
hyperboloid or Euclidean) and the entailment terms (:mod:`~hyperet.alignment.entailment`).

Defaults are **our choices**, not the hyperbolic BLIP-2 paper's (its RQS count, pruning rate,
temperature and curvature could not be read): ``K = 8`` queries, RQS keeping 1 query per image,
RTP rate 0.2, logit scale ``1/0.07`` capped at 100 (CLIP), label smoothing 0.1 (BLIP-2's ITC),
curvature fixed at 1 (learnable option clamped to ``[0.1, 10]``, MERU), scales initialised at
``1/sqrt(E)`` and clamped to ``[1e-3, 1]`` (MERU's upper bound). docs/alignment.md explains why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hyperet import ops
from hyperet.alignment.connector import (
    CURVATURE_BOUNDS,
    SCALE_BOUNDS,
    BallProjection,
    BoundedLogScalar,
    Pooling,
    QueryConnector,
    TextEncoder,
)
from hyperet.alignment.entailment import (
    Hierarchy,
    caption_entailment,
    image_entailment,
    lorentz_to_ball,
    masked_entailment,
    negative_entailment,
)
from hyperet.alignment.losses import (
    USES_BALL,
    Aggregation,
    ContrastiveLoss,
    Per,
    Selection,
    Similarity,
)
from hyperet.alignment.pruning import random_text_pruning
from hyperet.config import ITC_OBJECTIVES

#: The settings of each ITC objective of :data:`hyperet.config.ITC_OBJECTIVES` (the one list of
#: objective names): its similarity and, for the entailment objectives, a few more
#: (docs/alignment.md, "Entailment objectives"). ``meru`` follows MERU: entailment weight 0.2,
#: learnable curvature in [0.1, 10], no label smoothing; ``hyperbolic-entail`` adds
#: caption-caption entailment (our choice of weight) with the aperture scale ``K = 0.05``, the best
#: measured (docs/alignment.md, "Levers").
RECIPES: dict[str, dict[str, Any]] = {
    "hyperbolic-itc": {"similarity": "cosine"},
    "poincare-itc": {"similarity": "poincare"},
    "euclidean-itc": {"similarity": "euclidean"},
    "hyperbolic-entail": {
        "similarity": "cosine",
        "entailment_weight": 0.2,
        "caption_entailment": True,
        "aperture_K": 0.05,
    },
    "meru": {
        "similarity": "lorentz",
        "entailment_weight": 0.2,
        "learn_curvature": True,
        "label_smoothing": 0.0,
    },
}


@dataclass(frozen=True)
class AlignerConfig:
    """Shape and recipe of an :class:`ImageTextAligner` (JSON-serialisable via ``asdict``)."""

    vision_dim: int
    vocab_size: int
    width: int = 128
    embed_dim: int = 64
    num_queries: int = 8
    depth: int = 2
    heads: int = 4
    max_text_len: int = 48
    pad_id: int = 0
    special_ids: tuple[int, ...] = ()
    pooling: Pooling = "cls"
    similarity: Similarity = "cosine"
    curvature: float = 1.0
    learn_curvature: bool = False
    curvature_bounds: tuple[float, float] = CURVATURE_BOUNDS
    scale_bounds: tuple[float, float] = SCALE_BOUNDS
    logit_scale: float = 1 / 0.07
    max_logit_scale: float = 100.0
    label_smoothing: float = 0.1
    train_selection: Selection = "random"
    rqs_queries: int = 1
    rqs_per: Per = "sample"
    eval_aggregation: Aggregation = "max"
    text_prune_rate: float = 0.2
    #: ``--objective`` name ("" in configs saved before objectives had recipes)
    objective: str = ""
    #: weight of the entailment terms (0: none; MERU: 0.2)
    entailment_weight: float = 0.0
    #: also make each coarser caption of a scene entail a finer one (``hyperbolic-entail``)
    caption_entailment: bool = False
    #: aperture scale ``K`` of the cones (Ganea et al.'s and MERU's 0.1)
    aperture_K: float = 0.1
    #: weight (inside the entailment term) of Ganea et al.'s negative cone term over the batch's
    #: cross-scene pairs (0: none; needs ``caption_entailment``)
    negative_weight: float = 0.0
    #: margin of the negative term: a false pair should be at least this far (radians) outside
    negative_margin: float = 0.1
    #: one object of each scene ("a red circle.") entails its image and the scene's finer captions
    part_entailment: bool = False

    @classmethod
    def for_objective(cls, objective: str, **kwargs: Any) -> AlignerConfig:
        """The config of an ``--objective`` name (``hyperbolic-itc`` etc.) with overrides."""
        if objective not in ITC_OBJECTIVES:
            raise ValueError(f"objective: expected one of {ITC_OBJECTIVES}, got {objective!r}")
        return cls(objective=objective, **{**RECIPES[objective], **kwargs})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlignerConfig:
        data = dict(data)
        for key in ("special_ids", "curvature_bounds", "scale_bounds"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class AlignmentOutput:
    """Loss, logits ``(B, N)``, embeddings (image ``(B, K, E)``, text ``(N, E)``) and ``c``."""

    loss: Tensor
    logits: Tensor
    image: Tensor
    text: Tensor
    c: Tensor
    logit_scale: Tensor
    #: the entailment term before its weight (``None`` when the objective has none)
    entailment: Tensor | None = None


class ImageTextAligner(nn.Module):
    """Hyperbolic (or Euclidean) image-text contrastive model over frozen vision tokens."""

    def __init__(self, config: AlignerConfig) -> None:
        super().__init__()
        if not 0.0 <= config.text_prune_rate < 1.0:
            raise ValueError(f"text_prune_rate: need 0 <= rate < 1, got {config.text_prune_rate}")
        if not 1 <= config.rqs_queries <= config.num_queries:
            raise ValueError(
                f"rqs_queries: need 1 <= rqs_queries <= num_queries = {config.num_queries}, "
                f"got {config.rqs_queries}"
            )
        self.config = config
        to_ball = USES_BALL[config.similarity]
        lorentz = config.similarity == "lorentz"
        if config.entailment_weight < 0 or config.aperture_K <= 0:
            raise ValueError(
                f"entailment_weight, aperture_K: need >= 0 and > 0, got "
                f"{config.entailment_weight}, {config.aperture_K}"
            )
        if config.entailment_weight > 0 and not (to_ball or lorentz):
            raise ValueError("entailment_weight: the Euclidean objective has no cones")
        if config.negative_weight < 0 or config.negative_margin <= 0:
            raise ValueError(
                f"negative_weight, negative_margin: need >= 0 and > 0, got "
                f"{config.negative_weight}, {config.negative_margin}"
            )
        if (config.negative_weight > 0 or config.part_entailment) and not (
            config.caption_entailment and config.entailment_weight > 0
        ):
            raise ValueError(
                "negative_weight, part_entailment: need caption_entailment and "
                "entailment_weight > 0"
            )
        self.connector = QueryConnector(
            config.vision_dim,
            config.width,
            num_queries=config.num_queries,
            depth=config.depth,
            heads=config.heads,
        )
        self.text_encoder = TextEncoder(
            config.vocab_size,
            config.width,
            max_len=config.max_text_len,
            depth=config.depth,
            heads=config.heads,
            pad_id=config.pad_id,
            pooling=config.pooling,
        )
        self.image_proj = BallProjection(
            config.width,
            config.embed_dim,
            scale_bounds=config.scale_bounds,
            to_ball=to_ball,
            to_lorentz=lorentz,
        )
        self.text_proj = BallProjection(
            config.width,
            config.embed_dim,
            scale_bounds=config.scale_bounds,
            to_ball=to_ball,
            to_lorentz=lorentz,
        )
        low, high = config.curvature_bounds
        self.curvature = BoundedLogScalar(
            config.curvature, low=low, high=high, learnable=config.learn_curvature
        )
        self.loss = ContrastiveLoss(
            similarity=config.similarity,
            logit_scale=config.logit_scale,
            max_logit_scale=config.max_logit_scale,
            label_smoothing=config.label_smoothing,
            train_selection=config.train_selection,
            rqs_queries=config.rqs_queries,
            rqs_per=config.rqs_per,
            eval_aggregation=config.eval_aggregation,
        )

    @property
    def uses_ball(self) -> bool:
        return USES_BALL[self.config.similarity]

    def c(self) -> Tensor:
        """The curvature magnitude ``c`` (0-d; unused by the Euclidean objective)."""
        return self.curvature()

    def encode_image(self, vision_tokens: Tensor) -> Tensor:
        """Vision tokens ``(B, T, Dv)`` -> one embedding per query ``(B, K, E)``."""
        return self.image_proj(self.connector(vision_tokens), c=self.c())

    def encode_text(self, ids: Tensor) -> Tensor:
        """Token ids ``(N, L)`` -> text embeddings ``(N, E)`` (no pruning here)."""
        return self.text_proj(self.text_encoder(ids), c=self.c())

    @property
    def hyperbolic(self) -> bool:
        """Whether embeddings are hyperbolic points (ball or, for ``meru``, hyperboloid)."""
        return self.uses_ball or self.config.similarity == "lorentz"

    def radius(self, x: Tensor) -> Tensor:
        """Hyperbolic radius (distance to the origin) of embeddings ``(..., E)``: ``dist0`` of
        ball points, :math:`\\operatorname{asinh}(\\sqrt c|x_s|)/\\sqrt c` of hyperboloid points,
        ``|x|`` for Euclidean embeddings."""
        if self.uses_ball:
            return ops.dist0(x, c=self.c())
        norm = torch.linalg.vector_norm(x, dim=-1)
        if self.config.similarity == "lorentz":
            sqrt_c = self.c().to(x.dtype) ** 0.5
            return torch.asinh(sqrt_c * norm) / sqrt_c
        return norm

    def ball_points(self, x: Tensor) -> Tensor:
        """The embeddings as points of the Poincaré ball (``ValueError`` for Euclidean ones)."""
        if self.uses_ball:
            return x
        if self.config.similarity == "lorentz":
            return lorentz_to_ball(x, c=self.c().to(x.dtype))
        raise ValueError("x: Euclidean embeddings are not points of the ball")

    def entailment_loss(
        self,
        text: Tensor,
        image: Tensor,
        hierarchy: Hierarchy | tuple[Tensor, ...] | None,
        *,
        rows: slice | None = None,
        gather: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        """The (unweighted) entailment term: image queries in the cones of their captions and,
        with ``caption_entailment``, finer captions in the cones of coarser ones; with
        ``negative_weight``, cross-scene pairs pushed out of the cones; with
        ``part_entailment``, the image and the finer captions in the cone of one of the
        scene's objects.

        ``text`` ``(B, E)`` holds the captions of the ``B`` images ``(B, K, E)``; ``hierarchy``
        is a :class:`~hyperet.alignment.entailment.Hierarchy` (or a tuple of its fields), its
        captions unpruned (data parallel: the global batch's, encoded on this process's
        ``rows`` and gathered, like the contrastive captions).
        """
        cfg = self.config
        c, K = self.c(), cfg.aperture_K
        if not cfg.caption_entailment:
            return image_entailment(self.ball_points(text), self.ball_points(image), c=c, K=K)
        if hierarchy is None:
            raise ValueError("hierarchy: caption_entailment needs (coarse_ids, fine_ids)")
        h = Hierarchy(*hierarchy)
        needed = {"negatives": cfg.negative_weight > 0, "parts": cfg.part_entailment}
        missing = [name for name, need in needed.items() if need and getattr(h, name) is None]
        if missing or (cfg.part_entailment and h.part_in_fine is None):
            raise ValueError(f"hierarchy: the objective needs {missing or ['part_in_fine']}")
        groups = [h.coarse, h.fine] + (
            [h.parts] if h.parts is not None and cfg.part_entailment else []
        )
        if rows is not None:
            groups = [ids[rows] for ids in groups]
        width = max(ids.shape[1] for ids in groups)  # right-pad to one length (pads are masked)
        groups = [F.pad(ids, (0, width - ids.shape[1]), value=cfg.pad_id) for ids in groups]
        encoded = self.encode_text(torch.cat(groups)).chunk(len(groups))  # (B, E) each
        if gather is not None:
            encoded = tuple(gather(e) for e in encoded)
        coarse, fine, *part = (self.ball_points(e) for e in encoded)
        img = self.ball_points(image)
        loss = 0.5 * (
            image_entailment(coarse, img, c=c, K=K) + image_entailment(fine, img, c=c, K=K)
        ) + caption_entailment(coarse, fine, c=c, K=K)
        if cfg.negative_weight > 0:
            assert h.negatives is not None
            valid = h.negatives.to(img.dtype)
            margin = cfg.negative_margin
            loss = loss + cfg.negative_weight * 0.5 * (
                negative_entailment(coarse, fine, valid, c=c, K=K, margin=margin)
                + negative_entailment(coarse, img, valid, c=c, K=K, margin=margin)
            )
        if cfg.part_entailment:
            assert h.part_in_fine is not None
            in_fine = h.part_in_fine.to(img.dtype)
            loss = loss + image_entailment(part[0], img, c=c, K=K)
            loss = loss + masked_entailment(part[0], fine, in_fine, c=c, K=K)
        return loss

    def forward(
        self,
        vision_tokens: Tensor,
        ids: Tensor,
        *,
        positives: Tensor | None = None,
        generator: torch.Generator | None = None,
        hierarchy: Hierarchy | tuple[Tensor, ...] | None = None,
        rows: slice | None = None,
        gather: Callable[[Tensor], Tensor] | None = None,
    ) -> AlignmentOutput:
        """Contrastive loss of ``B`` images ``(B, T, Dv)`` against ``N`` captions ``(N, L)``,
        plus ``entailment_weight`` times :meth:`entailment_loss` (then ``N == B``: caption ``i``
        belongs to image ``i``; ``hierarchy`` as there).

        In training mode captions are pruned (RTP) and queries randomly selected (RQS) with
        ``generator``; ``positives`` ``(B, N)`` defaults to the identity.

        Data parallel (:mod:`hyperet.distributed`): ``ids`` and ``positives`` are the global
        batch's, ``vision_tokens`` only this process's ``rows`` of it; the embeddings of every
        process are concatenated by ``gather`` before the loss, so the RTP / RQS draws and the
        loss are those of the global batch.
        """
        if self.training and self.config.text_prune_rate > 0:
            ids = random_text_pruning(
                ids,
                rate=self.config.text_prune_rate,
                pad_id=self.config.pad_id,
                special_ids=self.config.special_ids,
                generator=generator,
            )
        if rows is not None:
            ids = ids[rows]
        c = self.c()
        image = self.encode_image(vision_tokens)  # (B, K, E)
        text = self.encode_text(ids)  # (N, E)
        if gather is not None:
            image, text = gather(image), gather(text)
        out = self.loss(image, text, c=c, positives=positives, generator=generator)
        loss, entail = out.loss, None
        if self.config.entailment_weight > 0:
            entail = self.entailment_loss(text, image, hierarchy, rows=rows, gather=gather)
            loss = loss + self.config.entailment_weight * entail
        return AlignmentOutput(
            loss=loss,
            logits=out.logits,
            image=image,
            text=text,
            c=c,
            logit_scale=out.logit_scale,
            entailment=entail,
        )

    def bounded_scalars(self) -> dict[str, BoundedLogScalar]:
        """Every log-parametrised clamped scalar, by module name."""
        return {name: m for name, m in self.named_modules() if isinstance(m, BoundedLogScalar)}

    def no_weight_decay(self) -> set[str]:
        """Parameter names that must not get weight decay: the learnable bounded scalars."""
        return {f"{name}.log_value" for name, m in self.bounded_scalars().items() if m.learnable}

    def clamp_scalars_(self) -> int:
        """Clamp every bounded scalar back into range after an optimizer step; return the hits."""
        return sum(m.clamp_() for m in self.bounded_scalars().values())

    def scalars(self) -> dict[str, float]:
        """Current values of ``c``, the two scales and the logit scale (for logs)."""
        logit_scale = self.loss.logit_scale().item()
        return {
            "c": self.c().item(),
            "image_scale": self.image_proj.scale().item(),
            "text_scale": self.text_proj.scale().item(),
            "logit_scale": logit_scale,
            "temperature": 1.0 / logit_scale,
        }
