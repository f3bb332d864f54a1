"""The decoder-only language model (and the causal transformer it shares with the CLIP text tower).

Positions: only text tokens carry learned position embeddings, counted from 0 at the first text
token. Visual tokens arrive as a *prefix* of embeddings (they already carry the ViT's patch
positions), so the same text sits at the same positions with or without an image. That makes
text-only LM pretraining and the text-only prior (the same LM with the image removed) consistent
with multimodal training.

Sequences are right-padded; with causal attention a pad never influences an earlier position, so no
padding mask is needed (pads are excluded from losses by the labels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperet.config import LanguageConfig


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with a causal mask (``scaled_dot_product_attention``)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).unbind(dim=2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )  # (B, H, T, D/H)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class DecoderBlock(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, width * mlp_ratio), nn.GELU(), nn.Linear(width * mlp_ratio, width)
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class CausalTransformer(nn.Module):
    """Token + position embeddings, causal blocks, final LayerNorm; optional embedding prefix."""

    def __init__(
        self, vocab_size: int, width: int, layers: int, heads: int, mlp_ratio: int, max_len: int
    ) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size: must be >= 1, got {vocab_size}")
        self.max_len = max_len
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Parameter(torch.randn(max_len, width) * 0.01)
        self.blocks = nn.ModuleList(DecoderBlock(width, heads, mlp_ratio) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, input_ids: Tensor, prefix: Tensor | None = None) -> Tensor:
        """Hidden states of the text positions, ``(B, T, D)``, after the optional prefix.

        ``input_ids`` is ``(B, T)``; ``prefix`` is ``(B, P, D)`` (visual tokens) or ``None``.
        """
        t = input_ids.shape[1]
        if t > self.max_len:
            raise ValueError(f"input_ids: {t} text tokens exceed max_text_len {self.max_len}")
        x = self.token_embedding(input_ids) + self.position_embedding[:t]  # (B, T, D)
        p = 0
        if prefix is not None:
            p = prefix.shape[1]
            x = torch.cat([prefix.to(x.dtype), x], dim=1)  # (B, P + T, D)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x[:, p:])  # (B, T, D)


class LanguageModel(nn.Module):
    """Decoder LM with a tied output head: ``logits = h E^T``; returns ``(B, T, V)``."""

    def __init__(self, config: LanguageConfig, *, vocab_size: int) -> None:
        super().__init__()
        self.width = config.width
        self.transformer = CausalTransformer(
            vocab_size,
            config.width,
            config.layers,
            config.heads,
            config.mlp_ratio,
            config.max_text_len,
        )

    def forward(self, input_ids: Tensor, prefix: Tensor | None = None) -> Tensor:
        """Logits ``(B, T, V)``: ``logits[:, t]`` predicts ``input_ids[:, t + 1]``."""
        h = self.transformer(input_ids, prefix)  # (B, T, D)
        return h @ self.transformer.token_embedding.weight.T  # (B, T, V)
