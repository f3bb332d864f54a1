"""The project's one pre-norm transformer: attention, block and token-id encoder.

Every transformer that reads text or queries is built from :class:`TransformerBlock`:

- the decoder LM and the CLIP text tower (:mod:`hyperet.model.language`, :mod:`hyperet.model.clip`)
  use :class:`TextTransformer` with ``causal=True`` (right padding needs no mask: a pad never
  influences an earlier position);
- the aligner's text encoder (:class:`hyperet.alignment.connector.TextEncoder`) uses it with
  ``causal=False``, a learned ``[CLS]`` vector as prefix and a key-padding mask;
- the aligner's Q-Former-lite (:class:`hyperet.alignment.connector.QueryConnector`) uses the
  block with a cross-attention sub-layer.

A block is pre-LayerNorm with residual connections:

.. math::

    x \\leftarrow x + \\operatorname{attn}(\\mathrm{LN}_1(x)), \\qquad
    x \\leftarrow x + \\operatorname{cross}(\\mathrm{LN}_x(x), C) \\text{ (optional)}, \\qquad
    x \\leftarrow x + \\operatorname{MLP}(\\mathrm{LN}_2(x)).

Positions are either learned vectors added to the text tokens' embeddings (GPT-2, CLIP) or, with
``rotary=True``, rotary embeddings (RoPE, Su et al. 2021, as in LLaMA and so in LLaVA's LM) applied
to the queries and keys of self-attention: with :math:`\\theta_i = 10000^{-2i/d_h}` the pair
:math:`(x_i, x_{i + d_h/2})` of a head vector at position :math:`m` is rotated by the angle
:math:`m \\theta_i`, so that :math:`\\langle R_m q, R_n k \\rangle` depends on :math:`m - n` only.
Relative offsets are what copying from a neighbouring token needs (an option's letter two tokens
before the option's word); learned absolute vectors have to learn each offset position by position.

(The vision encoder keeps ``nn.MultiheadAttention`` blocks: HRA adapts their packed
``in_proj_weight``, see :mod:`hyperet.model.vision`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Base of the rotary frequencies :math:`\\theta_i = \\text{base}^{-2i/d_h}` (RoPE's and LLaMA's).
ROTARY_BASE = 10000.0


def rotary_tables(positions: int, head_width: int, *, device: torch.device | None = None) -> Tensor:
    """``(2, positions, head_width / 2)``: cosines and sines of the angles :math:`m \\theta_i`.

    Computed in float64 (the angles reach ``positions`` radians) and cast by :func:`apply_rotary`.
    """
    if head_width % 2:
        raise ValueError(f"head_width: rotary embeddings need an even head width, got {head_width}")
    f64 = torch.float64
    theta = ROTARY_BASE ** (-torch.arange(0, head_width, 2, dtype=f64, device=device) / head_width)
    angle = torch.arange(positions, dtype=f64, device=device)[:, None] * theta  # (P, D_h/2)
    return torch.stack([angle.cos(), angle.sin()])


def apply_rotary(x: Tensor, tables: Tensor) -> Tensor:
    """Rotate each pair :math:`(x_i, x_{i + d_h/2})` of ``x`` ``(B, T, H, D_h)`` by position."""
    cos, sin = tables[0][:, None, :].to(x.dtype), tables[1][:, None, :].to(x.dtype)  # (T, 1, D_h/2)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    """Multi-head attention (``scaled_dot_product_attention``) with one packed q/k/v projection.

    Self-attention reads q, k, v from ``x``; cross-attention (``context`` given) reads q from
    ``x`` through the q rows of the packed weight and k, v from ``context`` through its k and v
    rows. ``mask`` (bool, True = may attend) broadcasts to ``(B, H, T, S)``; with ``causal``
    position ``t`` also attends only to positions ``<= t``. ``rotary`` (the tables of
    :func:`rotary_tables` for the ``T`` positions) rotates self-attention's queries and keys.
    """

    def __init__(self, width: int, heads: int, *, causal: bool) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"heads: {heads} does not divide width {width}")
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        rotary: Tensor | None = None,
        record: list[tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:  # (B, T, D), context (B, S, D) -> (B, T, D)
        b, t, d = x.shape
        if context is None:
            q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).unbind(dim=2)
            if rotary is not None:
                q, k = apply_rotary(q, rotary), apply_rotary(k, rotary)
            if record is not None:  # the keys and values a decoding cache starts from
                record.append((k, v))
        else:
            if rotary is not None:
                raise ValueError("rotary: cross-attention has no shared positions to rotate")
            w, bias = self.qkv.weight, self.qkv.bias
            s = context.shape[1]
            q = F.linear(x, w[:d], bias[:d]).view(b, t, self.heads, d // self.heads)
            kv = F.linear(context, w[d:], bias[d:]).view(b, s, 2, self.heads, d // self.heads)
            k, v = kv.unbind(dim=2)
        if mask is not None and self.causal:
            mask = mask & torch.ones(t, k.shape[1], dtype=torch.bool, device=x.device).tril()
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=mask,
            is_causal=self.causal and mask is None,
        )  # (B, H, T, D/H)
        return self.out(y.transpose(1, 2).reshape(b, t, d))

    def step(self, x: Tensor, keys: Tensor, values: Tensor, position: Tensor,
             rotary: Tensor | None) -> Tensor:  # fmt: skip
        """Causal self-attention of one new token per row against a key/value cache.

        ``x`` ``(B, 1, D)`` is the token at ``position[b]`` of row ``b`` (``(B,)``, any mix of
        positions); its key and value are written into ``keys`` / ``values`` ``(B, H, S, D_h)``
        there, and it attends to that row's positions ``<= position[b]`` - what
        :meth:`forward` computes for that token when the row's earlier positions hold the same
        tokens. ``rotary``: the tables of :func:`rotary_tables` for all ``S`` positions.
        """
        b, _, d = x.shape
        q, k, v = self.qkv(x).view(b, 3, self.heads, d // self.heads).unbind(dim=1)  # (B, H, D_h)
        if rotary is not None:
            rows = rotary[:, position][:, :, None, :]  # (2, B, 1, D_h/2): each row's angle
            q, k = apply_rotary(q[:, None], rows)[:, 0], apply_rotary(k[:, None], rows)[:, 0]
        batch = torch.arange(b, device=x.device)
        keys[batch, :, position] = k
        values[batch, :, position] = v
        allowed = torch.arange(keys.shape[2], device=x.device)[None, :] <= position[:, None]
        y = F.scaled_dot_product_attention(
            q[:, :, None], keys, values, attn_mask=allowed[:, None, None, :]
        )  # (B, H, 1, D_h)
        return self.out(y.reshape(b, 1, d))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: self-attention, optional cross-attention, GELU MLP; all residual."""

    def __init__(
        self, width: int, heads: int, mlp_ratio: int, *, causal: bool, cross: bool = False
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, causal=causal)
        self.ln_x = nn.LayerNorm(width) if cross else None
        self.cross = Attention(width, heads, causal=False) if cross else None
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, width * mlp_ratio), nn.GELU(), nn.Linear(width * mlp_ratio, width)
        )

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        rotary: Tensor | None = None,
        record: list[tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:  # (B, T, D) -> (B, T, D)
        if (self.cross is None) != (context is None):
            raise ValueError("context: needed by a cross-attention block, and only by one")
        x = x + self.attn(self.ln_1(x), mask=mask, rotary=rotary, record=record)
        if self.cross is not None and self.ln_x is not None:
            x = x + self.cross(self.ln_x(x), context)
        return x + self.mlp(self.ln_2(x))

    def step(self, x: Tensor, keys: Tensor, values: Tensor, position: Tensor,
             rotary: Tensor | None) -> Tensor:  # fmt: skip
        """One new token per row ``(B, 1, D)`` through a self-attention block with a cache."""
        if self.cross is not None:
            raise ValueError("step: a cross-attention block has no decoding cache")
        x = x + self.attn.step(self.ln_1(x), keys, values, position, rotary)
        return x + self.mlp(self.ln_2(x))


@dataclass
class DecodingCache:
    """Keys and values of every block for incremental decoding (:meth:`TextTransformer.prefill`).

    ``keys[i]`` / ``values[i]`` are ``(B, H, P + capacity, D_h)``; ``prefix`` is ``P``;
    ``rotary`` the tables of every position (``None`` with learned positions).
    """

    keys: list[Tensor]
    values: list[Tensor]
    prefix: int
    rotary: Tensor | None


class TextTransformer(nn.Module):
    """Token + position embeddings, transformer blocks, final LayerNorm; optional prefix.

    Learned positions: only text tokens carry position embeddings (from 0 at the first text
    token); the prefix ``(B, P, D)`` (visual tokens, a ``[CLS]`` vector) is prepended as given.
    Rotary positions (``rotary=True``): no position vectors; every self-attention rotates queries
    and keys by the position in the whole sequence (prefix ``0 .. P-1``, text ``P .. P+T-1``).

    Parameters
    ----------
    vocab_size, width, layers, heads, mlp_ratio : int
        Vocabulary size, model width ``D``, number of blocks, heads, MLP width ratio.
    max_len : int
        Longest accepted text ``T``.
    causal : bool
        Causal (decoder) or bidirectional (encoder) self-attention.
    embedding_std : float
        Standard deviation of the token embeddings' normal initialisation.
    rotary : bool
        Rotary (RoPE) instead of learned absolute positions.
    """

    def __init__(
        self,
        vocab_size: int,
        width: int,
        layers: int,
        heads: int,
        mlp_ratio: int,
        max_len: int,
        *,
        causal: bool = True,
        embedding_std: float = 0.02,
        rotary: bool = False,
    ) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size: must be >= 1, got {vocab_size}")
        if rotary and (width // heads) % 2:
            raise ValueError(
                f"heads: rotary positions need an even head width, got {width // heads}"
            )
        self.max_len, self.causal, self.head_width = max_len, causal, width // heads
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = (
            None if rotary else nn.Parameter(torch.randn(max_len, width) * 0.01)
        )
        self.blocks = nn.ModuleList(
            TransformerBlock(width, heads, mlp_ratio, causal=causal) for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(width)
        nn.init.normal_(self.token_embedding.weight, std=embedding_std)

    def forward(
        self,
        input_ids: Tensor,
        prefix: Tensor | None = None,
        *,
        padding: Tensor | None = None,
        keep_prefix: bool = False,
        record: list[tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:
        """Hidden states ``(B, T, D)`` of the text (``(B, P + T, D)`` with ``keep_prefix``).

        ``input_ids`` is ``(B, T)``; ``prefix`` is ``(B, P, D)`` or ``None``; ``padding`` is a
        ``(B, T)`` bool mask of text positions no position may attend to (the prefix never is).
        ``record``, a list, receives each block's self-attention keys and values
        ``(B, P + T, H, D_h)`` (after rotation), for :meth:`prefill`.
        """
        t = input_ids.shape[1]
        if t > self.max_len:
            raise ValueError(f"input_ids: {t} text tokens exceed max_text_len {self.max_len}")
        x = self.token_embedding(input_ids)  # (B, T, D)
        if self.position_embedding is not None:
            x = x + self.position_embedding[:t]
        p = 0
        if prefix is not None:
            p = prefix.shape[1]
            x = torch.cat([prefix.to(x.dtype), x], dim=1)  # (B, P + T, D)
        mask = None
        if padding is not None:
            masked = torch.cat([padding.new_zeros(padding.shape[0], p), padding], dim=1)
            mask = ~masked[:, None, None, :]  # (B, 1, 1, P + T): True = may attend
        rotary = None
        if self.position_embedding is None:
            rotary = rotary_tables(
                x.shape[1], self.head_width, device=x.device
            )  # (2, P + T, D_h/2)
        for block in self.blocks:
            x = block(x, mask=mask, rotary=rotary, record=record)
        return self.ln_f(x if keep_prefix else x[:, p:])  # (B, T, D) or (B, P + T, D)

    @torch.no_grad()
    def prefill(
        self, input_ids: Tensor, prefix: Tensor | None, capacity: int
    ) -> tuple[Tensor, DecodingCache]:
        """:meth:`forward` on right-padded prompts ``(B, T)``, keeping every block's keys and
        values in a :class:`DecodingCache` with room for ``capacity >= T`` text positions.

        Continue with :meth:`step`; a row's pads (past its prompt) are overwritten as its new
        tokens arrive, and never attended to before (causal attention).
        """
        if not self.causal:
            raise ValueError("prefill: incremental decoding needs a causal transformer")
        t = input_ids.shape[1]
        if not t <= capacity <= self.max_len:
            raise ValueError(
                f"capacity: must be in [{t}, max_text_len {self.max_len}], got {capacity}"
            )
        recorded: list[tuple[Tensor, Tensor]] = []
        hidden = self(input_ids, prefix, record=recorded)  # (B, T, D)
        p = 0 if prefix is None else prefix.shape[1]
        keys, values = [], []
        for k, v in recorded:  # each (B, P + T, H, D_h)
            shape = (k.shape[0], k.shape[2], p + capacity, k.shape[3])
            keys.append(k.new_zeros(shape))
            values.append(v.new_zeros(shape))
            keys[-1][:, :, : p + t] = k.transpose(1, 2)
            values[-1][:, :, : p + t] = v.transpose(1, 2)
        rotary = None
        if self.position_embedding is None:
            rotary = rotary_tables(p + capacity, self.head_width, device=input_ids.device)
        return hidden, DecodingCache(keys, values, p, rotary)

    @torch.no_grad()
    def step(self, token: Tensor, position: Tensor, cache: DecodingCache) -> Tensor:
        """Hidden state ``(B, D)`` of one new text token per row: ``token`` ``(B,)`` at text
        position ``position`` ``(B,)`` (``< capacity``), attending to the row's cached positions
        before it; its keys and values are added to ``cache``."""
        x = self.token_embedding(token)[:, None]  # (B, 1, D)
        if self.position_embedding is not None:
            x = x + self.position_embedding[position][:, None]
        absolute = position + cache.prefix
        for block, keys, values in zip(self.blocks, cache.keys, cache.values, strict=True):
            x = cast(TransformerBlock, block).step(x, keys, values, absolute, cache.rotary)
        return self.ln_f(x[:, 0])
