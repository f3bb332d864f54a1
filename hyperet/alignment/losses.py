"""Image-text contrastive (ITC) losses: similarities, query aggregation, symmetric InfoNCE.

Three similarities between an image embedding ``x`` and a text embedding ``y``:

- ``"cosine"``: the cosine of two points of the Poincaré ball, the stable hyperbolic recipe.
  ``expmap0`` only rescales a tangent vector, so
  :math:`\\cos(\\exp_0^c u, \\exp_0^c v) = \\cos(u, v)` for every ``c``: the loss fixes
  directions and leaves the radius free to carry uncertainty.
- ``"poincare"``: the negative Poincaré distance :math:`-d_c(x, y)` (the ablation reported
  unstable: the loss rewards pushing points towards the boundary, where distances saturate).
- ``"euclidean"``: the cosine of Euclidean embeddings (no ``expmap0``), the baseline. Its
  formula is the cosine's; the name records that the embeddings were never mapped to the ball.
- ``"lorentz"``: the negative Lorentz distance of hyperboloid points given by their space
  components (MERU; :func:`~hyperet.alignment.entailment.pairwise_lorentz_dist`).

Image embeddings carry ``K`` query vectors ``(B, K, E)``; a text embedding is ``(N, E)``. The
image-text score reduces the ``K`` query similarities: ``max`` (BLIP-2), ``mean``, or, in
training, Random Query Selection (RQS): the maximum over ``num`` queries drawn uniformly
without replacement, one draw per image (``per="sample"``) or one for the whole batch
(``per="batch"``).

Logits are ``s * sim`` with a learnable logit scale ``s`` (CLIP: initialised at ``1/0.07``,
capped at 100), and the symmetric InfoNCE loss averages the image-to-text and text-to-image
cross-entropies against targets spread evenly over every positive (a duplicated caption is a
positive, not a negative) and mixed with label smoothing ``epsilon``:

.. math::

    t_{ij} = (1 - \\epsilon) \\frac{P_{ij}}{\\sum_k P_{ik}} + \\frac{\\epsilon}{N}, \\qquad
    \\mathcal L_{i \\to t} = -\\frac1B \\sum_i \\sum_j t_{ij}
        \\log \\frac{e^{\\ell_{ij}}}{\\sum_k e^{\\ell_{ik}}},

and the same over columns for text-to-image; :math:`\\mathcal L = (\\mathcal L_{i\\to t} +
\\mathcal L_{t \\to i}) / 2`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperet import ops
from hyperet.alignment.connector import BoundedLogScalar
from hyperet.alignment.entailment import pairwise_lorentz_dist

Similarity = Literal["cosine", "poincare", "euclidean", "lorentz"]
Aggregation = Literal["max", "mean"]
Selection = Literal["max", "random"]
Per = Literal["sample", "batch"]

SIMILARITIES: tuple[Similarity, ...] = ("cosine", "poincare", "euclidean", "lorentz")
#: Whether each similarity works on points of the ball (and so needs expmap0 upstream).
USES_BALL: dict[str, bool] = {
    "cosine": True,
    "poincare": True,
    "euclidean": False,
    "lorentz": False,
}


def similarity_matrix(
    image: Tensor, text: Tensor, *, kind: Similarity, c: Tensor | float | None = None
) -> Tensor:
    """Similarity of every image (query) embedding with every text embedding.

    Parameters
    ----------
    image : Tensor
        ``(B, E)`` or ``(B, K, E)`` image embeddings (ball points for ``cosine``/``poincare``).
    text : Tensor
        ``(N, E)`` text embeddings.
    kind : {"cosine", "poincare", "euclidean"}
    c : float or Tensor, optional
        Curvature, required by ``"poincare"``.

    Returns
    -------
    Tensor
        ``(B, N)`` or ``(B, K, N)``. Cosines of a zero vector are 0 (``F.normalize`` floors the
        norm at 1e-12: the fast-path policy).
    """
    if kind in ("cosine", "euclidean"):
        return F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    if kind == "poincare":
        if c is None:
            raise ValueError("c: the 'poincare' similarity needs the curvature")
        return -ops.pairwise_dist(image, text, c=c)
    if kind == "lorentz":
        if c is None:
            raise ValueError("c: the 'lorentz' similarity needs the curvature")
        return -pairwise_lorentz_dist(image, text, c=c)
    raise ValueError(f"kind: expected one of {SIMILARITIES}, got {kind!r}")


def aggregate_queries(sim: Tensor, *, how: Aggregation = "max") -> Tensor:
    """Reduce per-query similarities ``(B, K, N)`` to image-text scores ``(B, N)``."""
    if how == "max":
        return sim.amax(dim=1)
    if how == "mean":
        return sim.mean(dim=1)
    raise ValueError(f"how: expected 'max' or 'mean', got {how!r}")


def random_query_mask(
    batch: int,
    num_queries: int,
    *,
    num: int,
    per: Per = "sample",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random Query Selection: a ``(B, K)`` boolean mask with ``num`` true entries per row.

    Queries are drawn uniformly without replacement, independently per image (``"sample"``) or
    once for the whole batch (``"batch"``); each query is selected with probability ``num / K``.
    """
    if not 1 <= num <= num_queries:
        raise ValueError(f"num: need 1 <= num <= K = {num_queries}, got {num}")
    if per not in ("sample", "batch"):
        raise ValueError(f"per: expected 'sample' or 'batch', got {per!r}")
    rows = batch if per == "sample" else 1
    noise = torch.rand(rows, num_queries, generator=generator, device=device)  # (rows, K)
    chosen = noise.argsort(dim=1)[:, :num]  # (rows, num)
    mask = torch.zeros(rows, num_queries, dtype=torch.bool, device=device)
    mask.scatter_(1, chosen, True)
    return mask.expand(batch, num_queries)  # (B, K)


def select_queries(sim: Tensor, mask: Tensor) -> Tensor:
    """Maximum of ``sim`` ``(B, K, N)`` over the queries selected by ``mask`` ``(B, K)``."""
    masked = sim.masked_fill(~mask.unsqueeze(-1), -math.inf)  # (B, K, N)
    return masked.amax(dim=1)  # (B, N)


def info_nce(
    logits: Tensor, *, positives: Tensor | None = None, label_smoothing: float = 0.0
) -> Tensor:
    """Symmetric InfoNCE of image-text logits ``(B, N)`` (see the module docstring).

    The one InfoNCE of the package: the CLIP head of vision pretraining uses it too
    (:func:`hyperet.model.clip.multi_positive_infonce`, no label smoothing).

    Parameters
    ----------
    logits : Tensor
        ``(B, N)``: row ``i`` scores image ``i`` against every text.
    positives : Tensor, optional
        ``(B, N)`` boolean mask of matching pairs; default the identity (needs ``B == N``).
        Every row and every column needs at least one positive.
    label_smoothing : float
        ``epsilon`` in ``[0, 1)``.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits: expected shape (B, N), got {tuple(logits.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing: need 0 <= epsilon < 1, got {label_smoothing}")
    if positives is None:
        if logits.shape[0] != logits.shape[1]:
            raise ValueError(f"positives: needed when B != N, got logits {tuple(logits.shape)}")
        positives = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    if positives.shape != logits.shape:
        raise ValueError(
            f"positives: shape {tuple(positives.shape)} != logits {tuple(logits.shape)}"
        )
    if not (positives.any(dim=1).all() and positives.any(dim=0).all()):
        raise ValueError("positives: every image and every text needs at least one positive")
    p = positives.to(logits.dtype)  # (B, N)
    b, n = p.shape
    rows = p / p.sum(1, keepdim=True)  # image i's targets: its positives share the mass evenly
    pt = p.T.contiguous()  # (N, B)
    cols = (pt / pt.sum(1, keepdim=True)).T  # (B, N) view: text j's targets over the images
    if label_smoothing:
        rows = (1 - label_smoothing) * rows + label_smoothing / n
        cols = (1 - label_smoothing) * cols + label_smoothing / b
    image_to_text = -(rows * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    text_to_image = -(cols * F.log_softmax(logits, dim=0)).sum(dim=0).mean()
    return (image_to_text + text_to_image) / 2


def duplicate_positives(keys: Tensor) -> Tensor:
    """Positive mask ``(B, B)`` of a batch of pairs: ``i, j`` match when ``keys[i] == keys[j]``.

    ``keys`` ``(B, ...)``: e.g. the token ids of each caption (identical captions of different
    images are then positives of both) or an image id per pair (several captions per image).
    """
    flat = keys.reshape(keys.shape[0], -1)  # (B, F)
    return (flat.unsqueeze(1) == flat.unsqueeze(0)).all(-1)  # (B, B)


@dataclass(frozen=True)
class ITCOutput:
    """What :class:`ContrastiveLoss` returns: the loss, the logits and the logit scale used."""

    loss: Tensor
    logits: Tensor  # (B, N)
    logit_scale: Tensor  # 0-d


class ContrastiveLoss(nn.Module):
    """Symmetric InfoNCE with a learnable capped logit scale and query aggregation.

    Parameters
    ----------
    similarity : {"cosine", "poincare", "euclidean"}
    logit_scale : float
        Initial logit scale (CLIP: ``1/0.07``).
    max_logit_scale : float
        Cap of the logit scale (CLIP: 100).
    label_smoothing : float
        ``epsilon`` of :func:`info_nce` (BLIP-2: 0.1).
    train_selection : {"max", "random"}
        Query reduction in training: ``max`` or Random Query Selection.
    rqs_queries : int
        Queries kept by RQS (our default 1: every query gets gradient).
    rqs_per : {"sample", "batch"}
        One RQS draw per image or one per batch.
    eval_aggregation : {"max", "mean"}
        Query reduction in evaluation mode (and in training when ``train_selection="max"``
        uses ``max`` regardless).
    """

    def __init__(
        self,
        *,
        similarity: Similarity = "cosine",
        logit_scale: float = 1 / 0.07,
        max_logit_scale: float = 100.0,
        label_smoothing: float = 0.1,
        train_selection: Selection = "random",
        rqs_queries: int = 1,
        rqs_per: Per = "sample",
        eval_aggregation: Aggregation = "max",
    ) -> None:
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity: expected one of {SIMILARITIES}, got {similarity!r}")
        if train_selection not in ("max", "random"):
            raise ValueError(
                f"train_selection: expected 'max' or 'random', got {train_selection!r}"
            )
        if eval_aggregation not in ("max", "mean"):
            raise ValueError(
                f"eval_aggregation: expected 'max' or 'mean', got {eval_aggregation!r}"
            )
        if rqs_per not in ("sample", "batch"):
            raise ValueError(f"rqs_per: expected 'sample' or 'batch', got {rqs_per!r}")
        if rqs_queries < 1:
            raise ValueError(f"rqs_queries: need at least 1, got {rqs_queries}")
        self.similarity: Similarity = similarity
        self.logit_scale = BoundedLogScalar(
            logit_scale, low=1.0, high=max_logit_scale, learnable=True
        )
        self.label_smoothing = label_smoothing
        self.train_selection: Selection = train_selection
        self.rqs_queries, self.rqs_per = rqs_queries, rqs_per
        self.eval_aggregation: Aggregation = eval_aggregation

    def scores(
        self,
        image: Tensor,
        text: Tensor,
        *,
        c: Tensor | float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Image-text scores ``(B, N)`` (before the logit scale), aggregated over queries."""
        sim = similarity_matrix(image, text, kind=self.similarity, c=c)
        if sim.ndim == 2:
            return sim
        if self.training and self.train_selection == "random":
            mask = random_query_mask(  # raises if rqs_queries > K
                sim.shape[0],
                sim.shape[1],
                num=self.rqs_queries,
                per=self.rqs_per,
                generator=generator,
                device=sim.device,
            )
            return select_queries(sim, mask)
        how: Aggregation = "max" if self.training else self.eval_aggregation
        return aggregate_queries(sim, how=how)

    def forward(
        self,
        image: Tensor,
        text: Tensor,
        *,
        c: Tensor | float | None = None,
        positives: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ITCOutput:
        """Loss of image embeddings ``(B, [K,] E)`` against text embeddings ``(N, E)``."""
        scale = self.logit_scale()
        logits = scale * self.scores(image, text, c=c, generator=generator)  # (B, N)
        loss = info_nce(logits, positives=positives, label_smoothing=self.label_smoothing)
        return ITCOutput(loss=loss, logits=logits, logit_scale=scale)
