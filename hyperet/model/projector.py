"""The modality projector: pixel shuffle (space-to-depth over the patch grid) then an MLP.

Pixel shuffle by ``s`` merges every ``s x s`` neighbourhood of patch tokens into one token of
``s^2`` times the width (nanoVLM), cutting the visual tokens by ``s^2``; ``s = 1`` keeps every
patch token. The MLP is LLaVA-1.5's Linear-GELU-Linear into the LM's width. With
``position=True`` a learned embedding per visual token is added after the MLP, so the LM knows
where each token sits even when the frozen encoder's features no longer say it (its text position
embeddings start at the first text token).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hyperet.config import ProjectorConfig


def pixel_shuffle(tokens: Tensor, factor: int) -> Tensor:
    """``(B, g*g, D) -> (B, (g/s)^2, s^2 D)``, grouping ``s x s`` neighbourhoods (row-major).

    Output token ``(I, J)`` concatenates input tokens ``(I s + a, J s + b)`` for ``a, b`` in
    ``range(s)``, ``a`` major.
    """
    b, n, d = tokens.shape
    g = round(n**0.5)
    if g * g != n:
        raise ValueError(f"tokens: {n} tokens do not form a square grid")
    if g % factor:
        raise ValueError(f"factor: {factor} does not divide the grid side {g}")
    h = g // factor
    x = tokens.reshape(b, h, factor, h, factor, d)  # (B, I, a, J, b, D)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, I, J, a, b, D)
    return x.reshape(b, h * h, factor * factor * d)


class Projector(nn.Module):
    """Vision tokens ``(B, N, Dv)`` -> LM embeddings ``(B, N / s^2, Dlm)``."""

    def __init__(
        self, config: ProjectorConfig, *, vision_width: int, lm_width: int, tokens: int
    ) -> None:
        super().__init__()
        self.shuffle = config.shuffle
        self.mlp = nn.Sequential(
            nn.Linear(vision_width * config.shuffle**2, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, lm_width),
        )
        out_tokens = tokens // config.shuffle**2
        self.position_embedding = (
            nn.Parameter(torch.zeros(out_tokens, lm_width)) if config.position else None
        )  # (P, Dlm), zero at init: the projector starts as the plain MLP

    def forward(self, tokens: Tensor) -> Tensor:
        if self.shuffle > 1:
            tokens = pixel_shuffle(tokens, self.shuffle)
        out = self.mlp(tokens)  # (B, P, Dlm)
        return out if self.position_embedding is None else out + self.position_embedding
