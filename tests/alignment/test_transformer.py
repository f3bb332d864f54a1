"""The shared transformer against a literal float64 attention (softmax written out per head)."""

from __future__ import annotations

import math

import pytest
import torch

from hyperet.alignment.transformer import Attention, TextTransformer, TransformerBlock

F64 = torch.float64


def _literal(attn: Attention, x: torch.Tensor, context: torch.Tensor, allowed: torch.Tensor):
    """softmax(q k^T / sqrt(d) over allowed keys) v per head, then the output projection."""
    d = x.shape[-1]
    w, b = attn.qkv.weight.detach(), attn.qkv.bias.detach()
    q = x @ w[:d].T + b[:d]
    k = context @ w[d : 2 * d].T + b[d : 2 * d]
    v = context @ w[2 * d :].T + b[2 * d :]
    dh = d // attn.heads
    heads = []
    for h in range(attn.heads):
        s = slice(h * dh, (h + 1) * dh)
        scores = q[..., s] @ k[..., s].transpose(-1, -2) / math.sqrt(dh)  # (B, T, S)
        scores = scores.masked_fill(~allowed, -math.inf)
        heads.append(scores.softmax(-1) @ v[..., s])
    return attn.out(torch.cat(heads, dim=-1))


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_with_padding_is_the_literal_masked_softmax(causal: bool) -> None:
    torch.manual_seed(0)
    attn = Attention(8, 2, causal=causal).double()
    x = torch.randn(2, 5, 8, dtype=F64)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    allowed = (~pad)[:, None, :].expand(2, 5, 5)  # (B, T, S)
    if causal:
        allowed = allowed & torch.ones(5, 5, dtype=torch.bool).tril()
    got = attn(x, mask=~pad[:, None, None, :])
    torch.testing.assert_close(got, _literal(attn, x, x, allowed), rtol=1e-12, atol=1e-12)
    if causal:  # no mask: the causal fast path, the same numbers
        all_ones = torch.ones(2, 5, 5, dtype=torch.bool).tril()
        torch.testing.assert_close(attn(x), _literal(attn, x, x, all_ones), rtol=1e-12, atol=1e-12)


def test_cross_attention_reads_q_from_x_and_k_v_from_the_context() -> None:
    torch.manual_seed(1)
    attn = Attention(8, 4, causal=False).double()
    x, context = torch.randn(3, 2, 8, dtype=F64), torch.randn(3, 7, 8, dtype=F64)
    allowed = torch.ones(3, 2, 7, dtype=torch.bool)
    torch.testing.assert_close(
        attn(x, context), _literal(attn, x, context, allowed), rtol=1e-12, atol=1e-12
    )
    with pytest.raises(ValueError, match=r"^context:"):
        TransformerBlock(8, 4, 2, causal=False, cross=True)(x)


def test_causal_transformer_ignores_the_future_and_the_encoder_does_not() -> None:
    torch.manual_seed(2)
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    changed = ids.clone()
    changed[0, -1] = 9
    for causal in (True, False):
        model = TextTransformer(10, 8, 2, 2, 4, 6, causal=causal).double().eval()
        a, b = model(ids), model(changed)
        same_prefix = torch.allclose(a[:, :-1], b[:, :-1], rtol=1e-13, atol=1e-13)
        assert same_prefix is causal
