r"""The modules HRA lives in inside an adapted model: a weight parametrization and two wrappers.

- :class:`RowAdapter` (``target="weight_rows"``, the released code): a parametrization of a
  frozen projection weight that maps row ranges (one per role q / k / v) by HRA.
- :class:`HRALinear` (``target="activations"``): ``HRA(linear(x))``.
- :class:`HRAMultiheadAttention` (``target="activations"``): multi-head attention that applies
  HRA to the projected q / k / v features of a frozen ``nn.MultiheadAttention``.

Why :class:`HRAMultiheadAttention` computes attention itself: ``nn.MultiheadAttention`` offers
no public hook between its input projection and the attention (``F.multi_head_attention_forward``
projects and attends in one call), and HRA on activations is nonlinear outside fast mode, so it
cannot be folded into the projection weight. The wrapper therefore projects with the packed
weight, applies HRA, and attends with ``F.scaled_dot_product_attention`` (or the explicit
softmax when the attention weights are asked for). It relies on one torch internal, the class
attribute ``_qkv_same_embed_dim = False``, read by ``nn.TransformerEncoderLayer`` to decide
whether its fused fast path (which reads ``in_proj_weight`` directly and would skip HRA) may
run.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperet.nn.hra import HyperbolicRadiusAdjustment

#: The attention projections an adapter can target, in the order of the packed weight's rows.
ROLES: tuple[str, ...] = ("q", "k", "v")


def typed_adapters(modules: nn.ModuleDict) -> dict[str, HyperbolicRadiusAdjustment]:
    """A ModuleDict of HRA modules (role -> HRA) as a typed dict."""
    return {role: cast(HyperbolicRadiusAdjustment, m) for role, m in modules.items()}


def replace_submodule(model: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` at the qualified name ``path`` of ``model`` (not the root itself)."""
    if not path:
        raise ValueError(
            "model: target='activations' cannot replace the root module itself; wrap it"
        )
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path), name, new)


# ---------------------------------------------------------------------------- weight rows
class RowAdapter(nn.Module):
    """Parametrization mapping row ranges of a weight by HRA (one adapter per role).

    ``slices[role] = (start, stop)``: rows ``start:stop`` are replaced by ``HRA(rows)``.
    """

    def __init__(
        self, adapters: dict[str, HyperbolicRadiusAdjustment], slices: dict[str, tuple[int, int]]
    ) -> None:
        super().__init__()
        self.adapters = nn.ModuleDict(adapters)
        self.slices = dict(slices)

    def forward(self, weight: Tensor) -> Tensor:
        pieces: list[Tensor] = []
        row = 0
        for role, (start, stop) in sorted(self.slices.items(), key=lambda item: item[1]):
            if start > row:
                pieces.append(weight[row:start])
            pieces.append(self.adapters[role](weight[start:stop]))  # (stop - start, in)
            row = stop
        if row < weight.shape[0]:
            pieces.append(weight[row:])
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)


# ---------------------------------------------------------------------------- activations
class HRALinear(nn.Module):
    """``HRA(linear(x))``: HRA on the output features of a frozen ``nn.Linear``."""

    def __init__(self, base: nn.Linear, adapters: dict[str, HyperbolicRadiusAdjustment]) -> None:
        super().__init__()
        self.base = base
        self.adapters = nn.ModuleDict(adapters)
        if len(self.adapters) != 1:
            raise ValueError("adapters: HRALinear takes exactly one adapter")

    def forward(self, x: Tensor) -> Tensor:
        (adapter,) = self.adapters.values()
        return adapter(self.base(x))  # (..., out_features)


def _additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``nn.MultiheadAttention`` mask (bool: True = masked out, or float: added) as a float."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, -math.inf)
    return mask.to(dtype)


def _attention_mask(
    attn_mask: Tensor | None,
    key_padding_mask: Tensor | None,
    is_causal: bool,
    shape: tuple[int, int, int, int],
    like: Tensor,
) -> Tensor | None:
    """The additive mask ``(B or 1, H or 1, L, S)`` of ``nn.MultiheadAttention``'s arguments."""
    bsz, _, tgt_len, src_len = shape
    mask: Tensor | None = None
    if attn_mask is not None:
        am = _additive_mask(attn_mask, like.dtype)
        mask = am.view(1, 1, tgt_len, src_len) if am.dim() == 2 else am.view(*shape)
    elif is_causal:
        causal = torch.ones(tgt_len, src_len, dtype=torch.bool, device=like.device).triu(1)
        mask = _additive_mask(causal, like.dtype).view(1, 1, tgt_len, src_len)
    if key_padding_mask is not None:
        kpm = _additive_mask(key_padding_mask, like.dtype).view(bsz, 1, 1, src_len)
        mask = kpm if mask is None else mask + kpm
    return mask


class HRAMultiheadAttention(nn.Module):
    """Multi-head attention with HRA on the projected q / k / v features of a frozen MHA.

    Accepts ``nn.MultiheadAttention``'s call signature (as used by
    ``nn.TransformerEncoderLayer`` and CLIP-style blocks) and returns ``(output, weights)``.
    Only the packed layout (``kdim == vdim == embed_dim``, no ``bias_k``, no
    ``add_zero_attn``) is supported. See the module docstring for why it attends itself.
    """

    # torch internal read by nn.TransformerEncoderLayer: False keeps it off its fused fast path
    # (which reads in_proj_weight directly and would skip HRA); the packed weight is used here.
    _qkv_same_embed_dim = False

    def __init__(
        self, base: nn.MultiheadAttention, adapters: dict[str, HyperbolicRadiusAdjustment]
    ) -> None:
        super().__init__()
        if base.in_proj_weight is None or base.bias_k is not None or base.add_zero_attn:
            raise ValueError(
                "model: target='activations' supports nn.MultiheadAttention with a packed "
                "in_proj_weight, no bias_k/bias_v and no add_zero_attn"
            )
        self.base = base
        self.adapters = nn.ModuleDict(adapters)

    # attributes read by nn.TransformerEncoder(Layer)
    @property
    def batch_first(self) -> bool:
        return bool(self.base.batch_first)

    @property
    def embed_dim(self) -> int:
        return int(self.base.embed_dim)

    @property
    def num_heads(self) -> int:
        return int(self.base.num_heads)

    @property
    def in_proj_weight(self) -> Tensor:
        return self.base.in_proj_weight

    @property
    def in_proj_bias(self) -> Tensor | None:
        return self.base.in_proj_bias

    @property
    def out_proj(self) -> nn.Linear:
        return self.base.out_proj

    def _heads(self, query: Tensor, key: Tensor, value: Tensor) -> list[Tensor]:
        """q, k, v ``(B, H, L or S, E / H)``: packed projection, then HRA on the targeted roles."""
        e, h = self.base.embed_dim, self.base.num_heads
        w, b = self.base.in_proj_weight, self.base.in_proj_bias
        heads = []
        for i, (role, x) in enumerate(zip(ROLES, (query, key, value), strict=True)):
            y = F.linear(x, w[i * e : (i + 1) * e], None if b is None else b[i * e : (i + 1) * e])
            y = self.adapters[role](y) if role in self.adapters else y  # (B, L or S, E)
            heads.append(y.reshape(y.shape[0], y.shape[1], h, e // h).transpose(1, 2))
        return heads

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        base = self.base
        batched = query.dim() == 3
        if not batched:  # (L, E) -> (1, L, E)
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not base.batch_first:  # (L, B, E) -> (B, L, E)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        q, k, v = self._heads(query, key, value)  # (B, H, L, Dh), (B, H, S, Dh) x 2
        bsz, h, tgt_len, dh = q.shape
        shape = (bsz, h, tgt_len, k.shape[2])
        mask = _attention_mask(attn_mask, key_padding_mask, is_causal, shape, q)
        dropout_p = base.dropout if self.training else 0.0

        weights: Tensor | None = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(dh)  # (B, H, L, S)
            if mask is not None:
                scores = scores + mask
            probs = F.dropout(scores.softmax(dim=-1), p=dropout_p)
            out = probs @ v  # (B, H, L, Dh)
            weights = probs.mean(dim=1) if average_attn_weights else probs
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        out = base.out_proj(out.transpose(1, 2).reshape(bsz, tgt_len, h * dh))  # (B, L, E)
        if not batched:
            out = out.squeeze(0)
            weights = None if weights is None else weights.squeeze(0)
        elif not base.batch_first:
            out = out.transpose(0, 1)  # (L, B, E)
        return out, weights
