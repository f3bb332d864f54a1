"""``hyperet bench --quick --json`` runs every suite through click and emits valid JSON.

No timing assertions: speed is reported by the benchmark, never tested."""

from __future__ import annotations

import itertools
import json

import pytest
from click.testing import CliRunner
from hyperet.cli.main import main


@pytest.mark.parametrize("suite", ["structured", "geoopt", "pairwise", "recipe"])
def test_bench_quick_emits_valid_json(suite: str) -> None:
    result = CliRunner().invoke(main, ["bench", suite, "--quick", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["quick"] is True
    assert payload["native"].startswith(
        ("compiled in", "loaded from the build cache", "unavailable")
    )
    rows = payload["rows"]
    assert rows or suite in payload["skipped"]
    for row in rows:
        assert row["suite"] == suite
        assert row["ours"] > 0 and row["theirs"] > 0
        assert row["ratio"] == pytest.approx(row["theirs"] / row["ours"])
        assert row["met"] in (True, False, None)


def test_bench_unknown_suite_exits_2() -> None:
    result = CliRunner().invoke(main, ["bench", "nope"])
    assert result.exit_code == 2


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_balanced_orders_put_every_callable_after_every_other_equally_often(n: int) -> None:
    from collections import Counter

    from hyperet.bench import balanced_orders

    period = n if n % 2 == 0 else 2 * n  # a Williams design balances over n (even) or 2n rows
    orders = balanced_orders(n, period)
    assert all(sorted(order) == list(range(n)) for order in orders)
    follows = Counter((a, b) for order in orders for a, b in itertools.pairwise(order))
    # brute force: every ordered pair of distinct callables, the same number of times
    want = {(a, b) for a in range(n) for b in range(n) if a != b}
    assert set(follows) == want
    assert len(set(follows.values())) <= 1
    assert balanced_orders(n, 2 * period)[period:] == orders  # then the rows repeat


def test_interleaved_medians_times_every_callable_with_the_collector_off() -> None:
    import doctest
    import gc

    import hyperet.bench as bench

    assert doctest.testmod(bench).failed == 0  # the balanced_orders example
    seen: dict[str, list[bool]] = {"a": [], "b": [], "c": []}
    fns = {name: (lambda name=name: seen[name].append(gc.isenabled())) for name in seen}
    ticks = iter(range(10_000))
    medians = bench.interleaved_medians(fns, repeats=6, warmup=1, clock=lambda: next(ticks))
    assert set(medians) == set(seen)
    for calls in seen.values():  # one warm-up with the collector on, six timed calls off
        assert calls == [True] + [False] * 6
    assert gc.isenabled()


def test_structured_suite_reports_the_passes_floor_beside_the_products() -> None:
    import torch

    from hyperet.bench import ops_structured

    # the floor's op is the identity, values and gradient (a copy each way, nothing else)
    x = torch.randn(3, 5, requires_grad=True)
    cot = torch.randn(3, 5)
    y = ops_structured._CopyThrough.apply(x)
    (grad,) = torch.autograd.grad(y, (x,), cot)
    assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()
    assert torch.equal(grad, cot) and grad.data_ptr() != cot.data_ptr()

    rows = ops_structured.run(quick=True)
    products = [r for r in rows if not r.name.startswith("reference: ")]
    references = [r for r in rows if r.name.startswith("reference: ")]
    assert [r.name.split(",")[0] for r in references] == [
        f"reference: {label}" for label in ops_structured.REFERENCES
    ]
    assert len(products) == len(ops_structured.KINDS)  # quick: no eager rows
    for row in references:  # reported in passes, never graded
        assert row.passes is not None and row.passes > 0
        assert row.target is None and row.passes_target is None and row.met is None
