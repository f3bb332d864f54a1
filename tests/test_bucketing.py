"""Length-bucketed LM batches: an epoch still covers every text once, batches are homogeneous,
resume is exact."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import resume_helpers

from hyperet.bucketing import BucketedSampler
from hyperet.config import preset
from hyperet.train import Sampler, train

NANO = preset("nano")


def _sampler(lengths: np.ndarray, pool: int) -> BucketedSampler:
    return BucketedSampler(Sampler(len(lengths), [0, 1, 0]), lengths, pool, [0, 1, 1])


def test_pools_partition_the_epoch_into_sorted_batches() -> None:
    lengths = np.random.default_rng(0).integers(3, 74, 96)
    s = _sampler(lengths, pool=4)
    epoch = [s.take(8) for _ in range(12)]  # 96 = 3 pools of 4 batches of 8
    assert sorted(np.concatenate(epoch).tolist()) == list(range(96))  # each index once
    for p in range(3):
        batches = epoch[4 * p : 4 * p + 4]
        pool = np.concatenate(batches)
        # sorting the pool's lengths and cutting it gives exactly these batches, in some order
        ordered = sorted(batches, key=lambda b: (lengths[b].min(), lengths[b].max()))
        flat = np.concatenate(ordered)
        assert np.all(np.diff(lengths[flat]) >= 0)
        assert sorted(pool.tolist()) == sorted(flat.tolist())


def test_bucketing_shortens_batches_of_mixed_lengths() -> None:
    lengths = np.random.default_rng(1).integers(3, 74, 4096)
    plain = Sampler(4096, [0, 1, 0])
    bucketed = _sampler(lengths, pool=16)
    width_plain = np.mean([lengths[plain.take(64)].max() for _ in range(64)])
    width_bucketed = np.mean([lengths[bucketed.take(64)].max() for _ in range(64)])
    # uniform lengths: the mean of the 16 slice maxima of a sorted pool is about 0.55 x 73
    assert width_bucketed < 0.65 * width_plain


def test_state_and_restore_mid_pool() -> None:
    lengths = np.random.default_rng(2).integers(3, 74, 50)
    a = _sampler(lengths, pool=3)
    for _ in range(4):
        a.take(5)
    state, order = a.state()
    expected = [a.take(5).tolist() for _ in range(9)]
    b = _sampler(lengths, pool=3)
    b.restore(state, order)
    assert [b.take(5).tolist() for _ in range(9)] == expected


def test_bad_arguments_are_refused() -> None:
    lengths = np.arange(10)
    with pytest.raises(ValueError, match="pool_batches"):
        _sampler(lengths, pool=0)
    with pytest.raises(ValueError, match="lengths"):
        BucketedSampler(Sampler(9, [0]), lengths, 2, [0])
    s = _sampler(lengths, pool=2)
    s.take(3)
    with pytest.raises(ValueError, match="batches of 3"):
        s.take(4)


def test_bucketed_lm_stage_resumes_bitwise(tmp_path: Path) -> None:
    config = dataclasses.replace(
        NANO,
        train=dataclasses.replace(NANO.train, checkpoint_every=3, lm_bucket_batches=4),
    )
    resumed, reference = resume_helpers.interrupted_and_reference(config, tmp_path, "lm", 5)
    assert {k: v["losses"] for k, v in resumed["stages"].items()} == {
        k: v["losses"] for k, v in reference["stages"].items()
    }
    assert resume_helpers.same_final_weights(tmp_path / "ref", tmp_path / "run")
    plain = train(NANO, tmp_path / "plain")
    assert plain["stages"]["lm"]["losses"] != reference["stages"]["lm"]["losses"]
