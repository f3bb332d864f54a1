"""The vision encoder: a small ViT with CLIP-style residual attention blocks.

Each block is ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))`` with the attention an
``nn.MultiheadAttention(d, heads, batch_first=True)``, whose packed ``in_proj_weight`` (3d x d:
rows of q, then k, then v) is what HyperET's HRA adapts (the q and v slices), exactly as in a CLIP
ViT. The encoder returns every patch token (no class token); its CLIP head mean-pools them and
projects to the joint embedding used by vision pretraining and caption retrieval.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from hyperet.config import VisionConfig


class ResidualAttentionBlock(nn.Module):
    """CLIP's block: pre-LayerNorm self-attention and MLP, each with a residual connection.

    .. math::
        x \\leftarrow x + \\mathrm{Attn}(\\mathrm{LN}_1(x)), \\qquad
        x \\leftarrow x + \\mathrm{MLP}(\\mathrm{LN}_2(x))
    """

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = width * mlp_ratio
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(width, hidden), gelu=nn.GELU(), c_proj=nn.Linear(hidden, width)
            )
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, N, D)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class VisionEncoder(nn.Module):
    """ViT over ``uint8`` images ``(B, 3, H, W)``; returns patch tokens ``(B, N, width)``."""

    def __init__(self, config: VisionConfig, *, image_size: int) -> None:
        super().__init__()
        if image_size % config.patch_size:
            raise ValueError(
                f"image_size: {image_size} is not a multiple of patch_size {config.patch_size}"
            )
        self.image_size = image_size
        self.grid_size = image_size // config.patch_size
        width = config.width
        self.conv1 = nn.Conv2d(3, width, config.patch_size, stride=config.patch_size, bias=False)
        self.positional_embedding = nn.Parameter(torch.randn(self.grid_size**2, width) * 0.02)
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(
            ResidualAttentionBlock(width, config.heads, config.mlp_ratio)
            for _ in range(config.layers)
        )
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, config.embed_dim) * width**-0.5)

    @property
    def num_tokens(self) -> int:
        """Patch tokens per image."""
        return self.grid_size**2

    def forward(self, images: Tensor, *, layer: int = -1) -> Tensor:
        """Patch tokens ``(B, N, D)`` of uint8 images ``(B, 3, H, W)``.

        ``layer = -1`` (the default) returns the encoder's output, ``ln_post`` of the last block;
        ``layer = k >= 0`` the residual stream after the first ``k`` blocks (``0``: after
        ``ln_pre``) without running the rest - what LLaVA's ``mm_vision_select_layer`` reads.
        """
        return self.layers(images, (layer,))[0]

    def layers(self, images: Tensor, layers: tuple[int, ...]) -> list[Tensor]:
        """The tokens ``(B, N, D)`` of each of ``layers`` (as in :meth:`forward`), one pass.

        The pass stops after the deepest block asked for (``-1``: every block and ``ln_post``).
        """
        for layer in layers:
            if not -1 <= layer <= len(self.blocks):
                raise ValueError(f"layer: must be -1 or in [0, {len(self.blocks)}], got {layer}")
        if images.dtype != torch.uint8:
            raise ValueError(f"images: expected dtype uint8, got {images.dtype}")
        if images.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(
                f"images: expected shape (B, 3, {self.image_size}, {self.image_size}), "
                f"got {tuple(images.shape)}"
            )
        x = images.to(self.positional_embedding.dtype) / 127.5 - 1.0  # [-1, 1]
        x = self.conv1(x)  # (B, D, g, g)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D), row-major patch order
        x = self.ln_pre(x + self.positional_embedding)
        depth = len(self.blocks) if -1 in layers else max(layers)
        out: dict[int, Tensor] = {0: x}
        for k, block in enumerate(self.blocks[:depth], start=1):
            x = block(x)
            out[k] = x  # (B, N, D) after k blocks
        if -1 in layers:
            out[-1] = self.ln_post(x)
        return [out[layer] for layer in layers]

    def embed(self, tokens: Tensor) -> Tensor:  # (B, N, D) -> (B, E), the CLIP head
        """Mean-pool the patch tokens and project to the joint image-text embedding."""
        return tokens.mean(dim=1) @ self.proj
