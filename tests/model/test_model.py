"""The compact MLLM's parts against independent computations (loops, float64, plain CE)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyperet.config import preset
from hyperet.model import (
    IGNORE,
    MLLM,
    LanguageModel,
    ResidualAttentionBlock,
    VisionEncoder,
    multi_positive_infonce,
    next_token_loss,
    pixel_shuffle,
)

NANO = preset("nano")
VOCAB = 30


def _model(seed: int = 0) -> MLLM:
    torch.manual_seed(seed)
    return MLLM(NANO, vocab_size=VOCAB).eval()


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    size = NANO.data.image_size
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def test_infonce_with_distinct_captions_is_clip_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 6, dtype=torch.float64)
    labels = torch.arange(6)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    got = multi_positive_infonce(logits, torch.arange(6) * 7)
    torch.testing.assert_close(got, expected)


def test_infonce_with_duplicate_captions_matches_a_loop() -> None:
    torch.manual_seed(1)
    logits = torch.randn(5, 5, dtype=torch.float64)
    ids = [3, 1, 3, 2, 3]
    total = 0.0
    for i in range(5):
        pos = [j for j in range(5) if ids[j] == ids[i]]
        row = [math.exp(v) for v in logits[i].tolist()]
        col = [math.exp(v) for v in logits[:, i].tolist()]
        total -= sum(math.log(row[j] / sum(row)) for j in pos) / len(pos)  # image i -> texts
        total -= sum(math.log(col[j] / sum(col)) for j in pos) / len(pos)  # text i -> images
    got = multi_positive_infonce(logits, torch.tensor(ids))
    assert got.item() == pytest.approx(total / 10, rel=1e-12)


def test_infonce_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"^logits"):
        multi_positive_infonce(torch.zeros(2, 3), torch.arange(2))
    with pytest.raises(ValueError, match=r"^caption_ids"):
        multi_positive_infonce(torch.zeros(3, 3), torch.arange(2))


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_pixel_shuffle_groups_neighbourhoods(factor: int) -> None:
    g, d = 4, 3
    tokens = torch.arange(2 * g * g * d, dtype=torch.float32).reshape(2, g * g, d)
    out = pixel_shuffle(tokens, factor)
    h = g // factor
    assert out.shape == (2, h * h, factor * factor * d)
    for b in range(2):
        for i in range(h):
            for j in range(h):
                parts = [
                    tokens[b, (i * factor + a) * g + (j * factor + c)]
                    for a in range(factor)
                    for c in range(factor)
                ]
                torch.testing.assert_close(out[b, i * h + j], torch.cat(parts))


def test_pixel_shuffle_rejects_bad_grids() -> None:
    with pytest.raises(ValueError, match=r"^tokens"):
        pixel_shuffle(torch.zeros(1, 15, 2), 1)
    with pytest.raises(ValueError, match=r"^factor"):
        pixel_shuffle(torch.zeros(1, 16, 2), 3)


def test_vision_blocks_are_clip_style_multihead_attention() -> None:
    vision = _model().vision
    assert len(vision.blocks) == NANO.vision.layers
    for block in vision.blocks:
        assert isinstance(block, ResidualAttentionBlock)
        assert isinstance(block.attn, nn.MultiheadAttention) and block.attn.batch_first
        assert block.attn.in_proj_weight.shape == (3 * NANO.vision.width, NANO.vision.width)


def test_residual_block_matches_its_formula() -> None:
    torch.manual_seed(0)
    block = ResidualAttentionBlock(8, 2, 2).eval()
    x = torch.randn(3, 5, 8)
    h = block.ln_1(x)
    # attention written out: q, k, v from the packed weight, softmax(q k^T / sqrt(d_h)) v
    w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
    q, k, v = (h @ w[i * 8 : (i + 1) * 8].T + b[i * 8 : (i + 1) * 8] for i in range(3))
    heads = [
        torch.softmax(q[..., s : s + 4] @ k[..., s : s + 4].transpose(1, 2) / 2.0, dim=-1)
        @ v[..., s : s + 4]
        for s in (0, 4)
    ]
    attn = block.attn.out_proj(torch.cat(heads, dim=-1))
    y = x + attn
    expected = y + block.mlp(block.ln_2(y))
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_vision_encoder_checks_its_input() -> None:
    vision = VisionEncoder(NANO.vision, image_size=NANO.data.image_size)
    with pytest.raises(ValueError, match=r"^images"):
        vision(torch.zeros(1, 3, NANO.data.image_size, NANO.data.image_size))
    with pytest.raises(ValueError, match=r"^images"):
        vision(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    out = vision(_images(2))
    assert out.shape == (2, NANO.grid_size**2, NANO.vision.width)


def test_language_model_is_causal() -> None:
    torch.manual_seed(0)
    lm = LanguageModel(NANO.language, vocab_size=VOCAB).eval()
    ids = torch.randint(1, VOCAB, (2, 9))
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % VOCAB
    prefix = torch.randn(2, 4, NANO.language.width)
    with torch.no_grad():
        a, b = lm(ids, prefix), lm(changed, prefix)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_text_positions_do_not_depend_on_the_prefix_length() -> None:
    """With a prefix of zero-influence (no prefix) vs none, text positions start at 0 either way."""
    torch.manual_seed(0)
    lm = LanguageModel(NANO.language, vocab_size=VOCAB).eval()
    ids = torch.randint(1, VOCAB, (1, 6))
    with torch.no_grad():
        plain = lm(ids)
        empty = lm(ids, torch.zeros(1, 0, NANO.language.width))
    torch.testing.assert_close(plain, empty)


def test_right_padding_does_not_change_real_positions() -> None:
    model = _model()
    images = _images(1)
    ids = torch.randint(5, VOCAB, (1, 7))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    with torch.no_grad():
        a = model(ids, images=images)[0]
        b = model(padded, images=images)[0][:, :7]
    torch.testing.assert_close(a, b)


def test_next_token_loss_matches_a_loop() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, dtype=torch.float64)
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4, IGNORE], [IGNORE, 1, 2, IGNORE, IGNORE]])
    terms = []
    for b in range(2):
        for t in range(4):
            y = int(labels[b, t + 1])
            if y != IGNORE:
                terms.append(-torch.log_softmax(logits[b, t], dim=-1)[y].item())
    assert next_token_loss(logits, labels).item() == pytest.approx(sum(terms) / len(terms))
    with pytest.raises(ValueError, match=r"^labels"):
        next_token_loss(logits, labels[:, :4])


def test_sequence_logprob_is_the_summed_label_logprob() -> None:
    model = _model()
    images = _images(2)
    ids = torch.randint(5, VOCAB, (2, 6))
    labels = torch.full_like(ids, IGNORE)
    labels[:, 3:] = ids[:, 3:]
    with torch.no_grad():
        logits = model(ids, images=images)[0]
        loss = next_token_loss(logits[:1], labels[:1])
    got = model.sequence_logprob(ids, labels, images=images)
    assert got.shape == (2,)
    assert got[0].item() == pytest.approx(-3 * loss.item(), rel=1e-5)


def test_batched_generation_equals_one_prompt_at_a_time() -> None:
    model = _model(3)
    images = _images(3, seed=4)
    prompts = [[1, 7, 8, 9], [1, 10], [1, 11, 12, 13, 14, 15]]
    width = max(map(len, prompts))
    ids = torch.zeros(3, width, dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, : len(p)] = torch.tensor(p)
    lengths = torch.tensor([len(p) for p in prompts])
    batched = model.generate(ids, lengths, eos_id=2, max_new_tokens=5, images=images)
    for r, p in enumerate(prompts):
        seq = list(p)
        expected: list[int] = []
        for _ in range(5):  # greedy, written out
            with torch.no_grad():
                logits = model(torch.tensor([seq]), images=images[r : r + 1])[0]
            token = int(logits[0, -1].argmax())
            if token == 2:
                break
            expected.append(token)
            seq.append(token)
        assert batched[r] == expected


def test_images_and_features_are_exclusive_and_equivalent() -> None:
    model = _model()
    images = _images(2)
    ids = torch.randint(5, VOCAB, (2, 4))
    with torch.no_grad():
        features = model.vision(images)
        a = model(ids, images=images)[0]
        b = model(ids, features=features)[0]
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"^images"):
        model(ids, images=images, features=features)


@pytest.mark.parametrize("rotary", [False, True])
def test_cached_decoding_equals_rerunning_the_sequence(rotary: bool) -> None:
    """The KV-cached decoder (ragged prompts, rows stopping at different steps, visual prefix)
    against re-running the whole sequence for every token, in float64 so that no argmax tie can
    differ by rounding: same tokens, and the same logits at every step within 1e-10."""
    import dataclasses

    config = dataclasses.replace(NANO, language=dataclasses.replace(NANO.language, rotary=rotary))
    torch.manual_seed(5)
    model = MLLM(config, vocab_size=VOCAB).double().eval()
    images = _images(4, seed=6)
    prompts = [[1, 7, 8, 9], [1, 10], [1, 11, 12, 13, 14, 15], [1, 5]]
    ids = torch.zeros(4, 6, dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, : len(p)] = torch.tensor(p)
    lengths = torch.tensor([len(p) for p in prompts])
    free = model.generate_uncached(ids, lengths, eos_id=0, max_new_tokens=7, images=images)
    # an end-of-sequence id that some rows emit early and others never
    eos = free[1][2]
    literal = model.generate_uncached(ids, lengths, eos_id=eos, max_new_tokens=7, images=images)
    cached = model.generate(ids, lengths, eos_id=eos, max_new_tokens=7, images=images)
    assert cached == literal
    assert len({len(r) for r in literal}) > 1  # the rows did stop at different steps
    # logits step by step: the cache's against the full forward pass at each new position
    with torch.no_grad():
        prefix = model.visual_prefix(images, None)
        logits, cache = model.lm.prefill(ids, prefix, 6 + 3)
        seq = [list(p) for p in prompts]
        position = lengths.clone()
        nxt = logits[torch.arange(4), lengths - 1].argmax(-1)
        for _ in range(3):
            for r in range(4):
                seq[r].append(int(nxt[r]))
            stepped = model.lm.step(nxt, position, cache)
            for r in range(4):
                full = model.lm(torch.tensor([seq[r]]), prefix[r : r + 1])[0, -1]
                torch.testing.assert_close(stepped[r], full, rtol=1e-10, atol=1e-10)
            nxt, position = stepped.argmax(-1), position + 1


def test_prefill_refuses_a_capacity_beyond_the_text_limit() -> None:
    model = _model()
    ids = torch.ones(1, 3, dtype=torch.long)
    limit = NANO.language.max_text_len
    with pytest.raises(ValueError, match="capacity"):
        model.lm.prefill(ids, None, limit + 1)
    with pytest.raises(ValueError, match="capacity"):
        model.lm.prefill(ids, None, 2)
