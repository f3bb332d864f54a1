"""The decoder-only language model: :class:`~hyperet.alignment.transformer.TextTransformer`, causal.

Positions: with learned positions (``language.rotary=False``) only text tokens carry position
embeddings, counted from 0 at the first text token; visual tokens arrive as a *prefix* of
embeddings (they already carry the ViT's patch positions), so the same text sits at the same
positions with or without an image. With rotary positions (the small preset) attention sees
relative offsets only, so the text's internal geometry is the same with or without the prefix.
Either way text-only LM pretraining and the text-only prior (the same LM with the image removed)
are consistent with multimodal training.

Sequences are right-padded; with causal attention a pad never influences an earlier position, so no
padding mask is needed (pads are excluded from losses by the labels).
"""

from __future__ import annotations

from torch import Tensor, nn

from hyperet.alignment.transformer import DecodingCache, TextTransformer
from hyperet.config import LanguageConfig


class LanguageModel(nn.Module):
    """Decoder LM with a tied output head: ``logits = h E^T``; returns ``(B, T, V)``."""

    def __init__(self, config: LanguageConfig, *, vocab_size: int) -> None:
        super().__init__()
        self.width = config.width
        self.transformer = TextTransformer(
            vocab_size,
            config.width,
            config.layers,
            config.heads,
            config.mlp_ratio,
            config.max_text_len,
            rotary=config.rotary,
        )

    def forward(self, input_ids: Tensor, prefix: Tensor | None = None) -> Tensor:
        """Logits ``(B, T, V)``: ``logits[:, t]`` predicts ``input_ids[:, t + 1]``."""
        h = self.transformer(input_ids, prefix)  # (B, T, D)
        return h @ self.transformer.token_embedding.weight.T  # (B, T, V)

    def prefill(
        self, input_ids: Tensor, prefix: Tensor | None, capacity: int
    ) -> tuple[Tensor, DecodingCache]:
        """Logits ``(B, T, V)`` of right-padded prompts and the cache to continue them with
        :meth:`step` (:meth:`TextTransformer.prefill`)."""
        h, cache = self.transformer.prefill(input_ids, prefix, capacity)
        return h @ self.transformer.token_embedding.weight.T, cache

    def step(self, token: Tensor, position: Tensor, cache: DecodingCache) -> Tensor:
        """Logits ``(B, V)`` after one new token per row at text ``position`` ``(B,)``."""
        h = self.transformer.step(token, position, cache)  # (B, D)
        return h @ self.transformer.token_embedding.weight.T
