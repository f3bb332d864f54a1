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

    def forward(self, image_emb: Tensor, text_emb: Tensor, caption_ids: Tensor) -> Tensor:
        """Symmetric multi-positive InfoNCE loss; see :func:`multi_positive_infonce`."""
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        logits = scale * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T
        return multi_positive_infonce(logits, caption_ids)


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
