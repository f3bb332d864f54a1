"""CLIP-style vision pretraining parts: the text tower and the multi-positive InfoNCE loss.

The text tower is a small causal transformer over the caption tokens; its embedding is the final
hidden state at the caption's last token (``<eos>``), projected to the joint space, as in CLIP.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperet.alignment.losses import duplicate_positives, info_nce
from hyperet.alignment.transformer import TextTransformer
from hyperet.config import TextEncoderConfig


class TextEncoder(nn.Module):
    """CLIP text tower: ``(B, T)`` right-padded ids and lengths -> ``(B, E)`` embeddings."""

    def __init__(
        self, config: TextEncoderConfig, *, vocab_size: int, max_len: int, embed_dim: int
    ) -> None:
        super().__init__()
        self.transformer = TextTransformer(
            vocab_size, config.width, config.layers, config.heads, config.mlp_ratio, max_len
        )
        self.proj = nn.Parameter(torch.randn(config.width, embed_dim) * config.width**-0.5)

    def forward(self, input_ids: Tensor, lengths: Tensor) -> Tensor:  # -> (B, E)
        h = self.transformer(input_ids)  # (B, T, D)
        last = h[torch.arange(h.shape[0]), lengths - 1]  # (B, D) at each row's last token
        return last @ self.proj


class ContrastiveHead(nn.Module):
    """The learnable temperature of CLIP: ``logit_scale = log(1 / 0.07)``, capped at 100."""

    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(
        self,
        image_emb: Tensor,
        text_emb: Tensor,
        caption_ids: Tensor,
        negative_emb: Tensor | None = None,
        negative_ids: Tensor | None = None,
    ) -> Tensor:
        """Symmetric multi-positive InfoNCE loss; see :func:`multi_positive_infonce`.

        With ``negative_emb`` ``(B', E)`` (hard-negative captions, ids ``negative_ids``) the
        image-to-text half also ranks them: :func:`hard_negative_infonce`.
        """
        if negative_emb is not None and negative_ids is None:
            raise ValueError("negative_ids: needed with negative_emb")
        # the similarities and the loss in float32, also under bfloat16 autocast
        with torch.autocast(image_emb.device.type, enabled=False):
            scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
            image = F.normalize(image_emb.float(), dim=-1)  # (B, E)
            logits = scale * image @ F.normalize(text_emb.float(), dim=-1).T  # (B, B)
            if negative_emb is None or negative_ids is None:
                return multi_positive_infonce(logits, caption_ids)
            negative = F.normalize(negative_emb.float(), dim=-1)
            negative_logits = scale * image @ negative.T  # (B, B')
            return hard_negative_infonce(logits, negative_logits, caption_ids, negative_ids)


def multi_positive_infonce(logits: Tensor, caption_ids: Tensor) -> Tensor:
    """Symmetric InfoNCE where every pair with the *same caption* is a positive.

    With ``logits`` ``L`` of shape ``(B, B)`` (image ``i`` vs caption ``j``) and positives
    ``P_ij = [caption_i = caption_j]``, the targets are ``T = P / P 1`` (rows sum to one) and

    .. math::
        \\mathcal{L} = -\\frac{1}{2B} \\sum_i \\sum_j T_{ij}
            \\left(\\log \\operatorname{softmax}_j L_{ij} + \\log \\operatorname{softmax}_i L_{ij}
            \\right)

    (``P`` is symmetric, so the same targets serve both directions). With all captions distinct
    this is CLIP's loss with diagonal labels; with duplicates (coarse captions repeat) a plain
    diagonal label would push apart identical texts. This is
    :func:`hyperet.alignment.losses.info_nce` with positives from ``caption_ids``.
    """
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"logits: expected a square (B, B) matrix, got {tuple(logits.shape)}")
    if caption_ids.shape != logits.shape[:1]:
        raise ValueError(f"caption_ids: expected shape ({logits.shape[0]},)")
    return info_nce(logits, positives=duplicate_positives(caption_ids))


def hard_negative_infonce(
    logits: Tensor, negative_logits: Tensor, caption_ids: Tensor, negative_ids: Tensor
) -> Tensor:
    """:func:`multi_positive_infonce` with extra captions in the image-to-text softmax.

    NegCLIP's loss: the ``B'`` hard negatives (columns of ``N``, ``(B, B')``) compete with the
    ``B`` captions for each image; they have no image of their own, so the text-to-image half
    is unchanged. A hard negative equal to some pair's true caption (same id) is a positive of
    that pair. With ``P = [caption_i = caption_j]``, ``Q = [caption_i = negative_k]``,
    ``R = [P\\,Q] / [P\\,Q] 1`` and ``S = P / P 1``:

    .. math::
        \\mathcal{L} = -\\frac{1}{2B} \\sum_i \\Bigl(\\sum_k R_{ik}
            \\log \\operatorname{softmax}_k [L\\,N]_{ik}
            + \\sum_j S_{ij} \\log \\operatorname{softmax}_i L_{ij}\\Bigr)

    With no negatives (``B' = 0``) this is :func:`multi_positive_infonce`.
    """
    b = logits.shape[0]
    if logits.shape != (b, b):
        raise ValueError(f"logits: expected a square (B, B) matrix, got {tuple(logits.shape)}")
    if negative_logits.ndim != 2 or negative_logits.shape[0] != b:
        raise ValueError(
            f"negative_logits: expected shape ({b}, B'), got {tuple(negative_logits.shape)}"
        )
    if caption_ids.shape != (b,):
        raise ValueError(f"caption_ids: expected shape ({b},)")
    if negative_ids.shape != negative_logits.shape[1:]:
        raise ValueError(f"negative_ids: expected shape ({negative_logits.shape[1]},)")
    positives = duplicate_positives(caption_ids).to(logits.dtype)  # (B, B), symmetric
    extra = (caption_ids[:, None] == negative_ids[None, :]).to(logits.dtype)  # (B, B')
    every = torch.cat([positives, extra], dim=1)  # (B, B + B')
    rows = every / every.sum(1, keepdim=True)
    cols = positives / positives.sum(0, keepdim=True)  # text j's targets over the images
    ranked = torch.cat([logits, negative_logits], dim=1)
    image_to_text = -(rows * F.log_softmax(ranked, dim=1)).sum(dim=1).mean()
    text_to_image = -(cols * F.log_softmax(logits, dim=0)).sum(dim=0).mean()
    return (image_to_text + text_to_image) / 2
