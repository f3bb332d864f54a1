"""``hyperet bench --quick --json`` runs every suite through click and emits valid JSON.

No timing assertions: speed is reported by the benchmark, never tested."""

from __future__ import annotations

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
