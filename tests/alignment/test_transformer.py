"""The shared transformer against a literal float64 attention (softmax written out per head)."""

from __future__ import annotations

import math

import pytest
import torch

from hyperet.alignment.transformer import (
    Attention,
    TextTransformer,
    TransformerBlock,
    apply_rotary,
    rotary_tables,
)

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


def test_rotary_is_the_complex_rotation_of_each_pair_by_m_theta() -> None:
    """RoPE as complex numbers: (x_i + i x_{i+h}) e^{i m theta_i}, theta_i = 10000^{-2i/d_h}."""
    torch.manual_seed(1)
    x = torch.randn(2, 7, 3, 8, dtype=F64)  # (B, T, H, D_h)
    got = apply_rotary(x, rotary_tables(7, 8))
    half = 4
    theta = torch.tensor([10000.0 ** (-2 * i / 8) for i in range(half)], dtype=F64)
    m = torch.arange(7, dtype=F64)[:, None, None]  # (T, 1, 1) broadcast over heads
    z = torch.complex(x[..., :half], x[..., half:]) * torch.exp(1j * m * theta)
    torch.testing.assert_close(got, torch.cat([z.real, z.imag], dim=-1), rtol=1e-12, atol=1e-12)


def test_rotary_scores_depend_on_the_offset_only() -> None:
    """<R_m q, R_n k> = <R_{m+s} q, R_{n+s} k>: attention sees relative positions."""
    torch.manual_seed(2)
    q, k = torch.randn(2, 1, 1, 16, dtype=F64).unbind(0)  # each (1, 1, 16)
    tables = rotary_tables(40, 16)

    def score(m: int, n: int) -> torch.Tensor:
        rq = apply_rotary(q[None], tables[:, m : m + 1])
        rk = apply_rotary(k[None], tables[:, n : n + 1])
        return (rq * rk).sum()

    for m, n in [(5, 2), (9, 9), (3, 7)]:
        torch.testing.assert_close(score(m, n), score(m + 20, n + 20), rtol=1e-12, atol=1e-12)
    assert not torch.isclose(score(5, 2), score(5, 3))


def test_rotary_transformer_is_the_literal_attention_on_rotated_queries_and_keys() -> None:
    """One causal rotary block over prefix + text against the literal softmax of rotated q, k."""
    torch.manual_seed(3)
    tt = TextTransformer(11, 8, 1, 2, 2, 6, rotary=True).double()
    assert tt.position_embedding is None
    ids = torch.randint(0, 11, (2, 5))
    prefix = torch.randn(2, 3, 8, dtype=F64)
    block = tt.blocks[0]
    x = torch.cat([prefix, tt.token_embedding(ids)], dim=1)  # (B, P + T, D): positions 0 .. 7
    h = block.ln_1(x)
    w, b = block.attn.qkv.weight.detach(), block.attn.qkv.bias.detach()
    q, k, v = (h @ w[i * 8 : (i + 1) * 8].T + b[i * 8 : (i + 1) * 8] for i in range(3))
    tables = rotary_tables(8, 4)
    heads = []
    for head in range(2):
        s = slice(head * 4, (head + 1) * 4)
        rq = apply_rotary(q[..., s][:, :, None], tables)[:, :, 0]  # (B, T, 4)
        rk = apply_rotary(k[..., s][:, :, None], tables)[:, :, 0]
        scores = rq @ rk.transpose(-1, -2) / 2.0
        scores = scores.masked_fill(~torch.ones(8, 8, dtype=torch.bool).tril(), -math.inf)
        heads.append(scores.softmax(-1) @ v[..., s])
    x = x + block.attn.out(torch.cat(heads, dim=-1))
    want = tt.ln_f(x + block.mlp(block.ln_2(x)))[:, 3:]
    torch.testing.assert_close(tt(ids, prefix), want, rtol=1e-10, atol=1e-10)


def test_rotary_needs_an_even_head_width_and_no_cross_attention() -> None:
    with pytest.raises(ValueError, match="heads"):
        TextTransformer(11, 6, 1, 2, 2, 6, rotary=True)  # head width 3
    attn = Attention(8, 2, causal=False)
    with pytest.raises(ValueError, match="rotary"):
        attn(torch.randn(1, 2, 8), torch.randn(1, 3, 8), rotary=rotary_tables(2, 4))
