"""``train.caption_fraction``: detailed-caption batches among the instruction-tuning steps."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch

from hyperet.batching import collate
from hyperet.config import preset
from hyperet.data import Tokenizer
from hyperet.train import (
    Context,
    build_model,
    build_training_data,
    instruct_pool,
    instruct_stage,
    is_mc_step,
)

NANO = preset("nano")


@pytest.mark.parametrize(("mc", "cap"), [(0.2, 0.25), (0.2, 0.0), (0.0, 0.5), (0.3, 1.0)])
def test_pools_have_the_requested_shares(mc: float, cap: float) -> None:
    n = 1000
    pools = [instruct_pool(s, mc, cap) for s in range(n)]
    counts = Counter(pools)
    assert counts["mc"] == round(n * mc)
    other = n - counts["mc"]
    assert abs(counts["caption"] - other * cap) <= 1
    # MC steps are exactly those of is_mc_step: adding captions moves no MC step
    assert [p == "mc" for p in pools] == [is_mc_step(s, mc) for s in range(n)]
    # captions are spread evenly: no window of 100 non-MC steps is off by more than one
    flags = [p == "caption" for p in pools if p != "mc"]
    for start in range(0, len(flags) - 100, 50):
        assert abs(sum(flags[start : start + 100]) - 100 * cap) <= 1


def _stage(caption_fraction: float):
    config = dataclasses.replace(
        NANO, train=dataclasses.replace(NANO.train, caption_fraction=caption_fraction)
    )
    tokenizer = Tokenizer.build()
    data = build_training_data(config, tokenizer)
    torch.manual_seed(0)
    model = build_model(config, tokenizer)
    ctx = Context(config=config, data=data, model=model)
    return ctx, instruct_stage(ctx)


def test_a_caption_step_is_the_caption_loss_of_its_images() -> None:
    _, task = _stage(1.0)
    step = next(s for s in range(20) if instruct_pool(s, NANO.train.mc_fraction, 1.0) == "caption")
    for s in range(step):  # advance the samplers as training would
        task.loss(s, 4)
    order = task.samplers["caption"].state()
    got = task.loss(step, 4)
    # replay: the same sampler state draws the same images; their detailed captions, all tokens
    ctx2, task2 = _stage(1.0)
    task2.samplers["caption"].restore(*order)
    idx = task2.samplers["caption"].take(4)
    batch = collate([ctx2.data.align[i] for i in idx])
    features = ctx2.vision_features(("vision",))[torch.from_numpy(idx.astype(np.int64))]
    _, expected = ctx2.model(batch.input_ids, batch.labels, features=features)
    assert expected is not None
    torch.testing.assert_close(got, expected)


def test_without_captions_the_stage_is_unchanged() -> None:
    _, task = _stage(0.0)
    assert set(task.samplers) == {"vqa", "mc"}
    _, with_captions = _stage(0.5)
    assert set(with_captions.samplers) == {"vqa", "mc", "caption"}


def test_caption_fraction_is_validated() -> None:
    with pytest.raises(ValueError, match=r"^train\.caption_fraction"):
        dataclasses.replace(NANO, train=dataclasses.replace(NANO.train, caption_fraction=1.5))
