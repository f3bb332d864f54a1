"""The hra benchmark compares like with like: its 'released approach' computes official mode."""

from __future__ import annotations

import torch

from hyperet.bench.hra import released_chain, released_dense_matrix
from hyperet.nn import HyperbolicRadiusAdjustment


def test_released_approach_equals_official_mode_for_every_structure() -> None:
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(40, 16, generator=gen, dtype=torch.float64)
    rows = rows * torch.logspace(-3, 2.5, 40, dtype=torch.float64)[:, None]  # across the cap
    for structure in ("diagonal", "block", "banded"):
        hra = HyperbolicRadiusAdjustment(
            16, structure=structure, mode="official", dtype=torch.float64
        )
        with torch.no_grad():
            for p in hra.matrix.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
        dense = released_dense_matrix(hra)
        torch.testing.assert_close(dense, hra.matrix.dense(), rtol=0, atol=0)
        torch.testing.assert_close(
            released_chain(dense, rows, 0.01), hra(rows), rtol=1e-12, atol=1e-12
        )


def test_the_step_rows_with_the_target_time_the_side_the_adapter_picks() -> None:
    from hyperet.bench.hra import STEP_TARGET, _training_step_rows

    rows = _training_step_rows(64, repeats=1)  # 16 and 256 tokens at d = 64
    targeted = [r for r in rows if r.target is not None]
    assert [r.name.rsplit(", ", 2)[1:] for r in targeted] == [
        ["16 tokens", "default: tokens side"],
        ["256 tokens", "default: weight side"],
    ] * 3
    assert all(r.target == STEP_TARGET and r.ratio > 0 for r in targeted)
    # both sides are reported too, for every structure
    assert sum("weight side" in r.name and "default" not in r.name for r in rows) == 3
    assert sum("M^T on the tokens" in r.name for r in rows) == 6
