"""Random Text Pruning: specials and padding survive, order is kept, the drop rate is right."""

from __future__ import annotations

import math

import pytest
import torch

from hyperet.alignment.pruning import random_text_pruning

PAD, BOS, EOS = 0, 1, 2
SPECIALS = (BOS, EOS)


def _captions(
    n: int, gen: torch.Generator, *, max_words: int = 12, length: int = 16
) -> torch.Tensor:
    ids = torch.zeros(n, length, dtype=torch.long)
    words = torch.randint(1, max_words + 1, (n,), generator=gen)
    for i, w in enumerate(words.tolist()):
        ids[i, 0] = BOS
        ids[i, 1 : w + 1] = torch.randint(5, 60, (w,), generator=gen)
        ids[i, w + 1] = EOS
    return ids


def _is_subsequence(short: list[int], long: list[int]) -> bool:
    it = iter(long)
    return all(any(t == s for t in it) for s in short)


def test_pruned_captions_keep_specials_order_and_trailing_padding() -> None:
    gen = torch.Generator().manual_seed(0)
    ids = _captions(300, gen)
    out = random_text_pruning(ids, rate=0.4, pad_id=PAD, special_ids=SPECIALS, generator=gen)
    assert out.shape == ids.shape and out.dtype == ids.dtype
    for before, after in zip(ids.tolist(), out.tolist(), strict=True):
        kept = [t for t in after if t != PAD]
        assert after == kept + [PAD] * (len(after) - len(kept))  # padding only at the end
        assert _is_subsequence(kept, [t for t in before if t != PAD])  # order kept
        assert kept[0] == BOS and kept[-1] == EOS  # specials survive
        assert kept.count(BOS) == before.count(BOS) and kept.count(EOS) == before.count(EOS)


def test_drop_fraction_is_the_rate_within_binomial_tolerance() -> None:
    gen = torch.Generator().manual_seed(1)
    ids = _captions(3000, gen)
    ordinary = int(((ids != PAD) & (ids != BOS) & (ids != EOS)).sum())
    for rate in (0.1, 0.25, 0.6):
        out = random_text_pruning(ids, rate=rate, special_ids=SPECIALS, generator=gen)
        survived = int(((out != PAD) & (out != BOS) & (out != EOS)).sum())
        dropped = (ordinary - survived) / ordinary
        sigma = math.sqrt(rate * (1 - rate) / ordinary)
        assert abs(dropped - rate) < 5 * sigma, (rate, dropped, sigma)


def test_rate_zero_is_the_identity_and_rate_one_drops_every_word() -> None:
    gen = torch.Generator().manual_seed(2)
    ids = _captions(50, gen)
    assert torch.equal(random_text_pruning(ids, rate=0.0, special_ids=SPECIALS), ids)
    out = random_text_pruning(ids, rate=1.0, special_ids=SPECIALS)
    want = torch.zeros_like(ids)
    want[:, 0], want[:, 1] = BOS, EOS
    assert torch.equal(out, want)


def test_pruning_is_reproducible_with_a_generator() -> None:
    ids = _captions(20, torch.Generator().manual_seed(3))
    a = random_text_pruning(ids, rate=0.3, generator=torch.Generator().manual_seed(9))
    b = random_text_pruning(ids, rate=0.3, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_pruning_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"^rate:"):
        random_text_pruning(torch.zeros(2, 3, dtype=torch.long), rate=1.5)
    with pytest.raises(ValueError, match=r"^ids:"):
        random_text_pruning(torch.zeros(2, 3), rate=0.1)
