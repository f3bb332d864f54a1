"""The study results committed under docs/evidence/ agree with themselves and with the page.

``results.json`` is what ``hyperet study --grid full`` wrote; these checks recompute what can be
recomputed from its per-seed values (means, standard deviations, paired differences against the
baseline) and check that ``results.md`` is the table of that file and that every figure the page
shows is committed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from hyperet.study.grid import FULL
from hyperet.study.report import markdown

EVIDENCE = Path(__file__).resolve().parents[2] / "docs" / "evidence"
PAGE = EVIDENCE.parent / "evidence.md"


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((EVIDENCE / "results.json").read_text())


def test_results_are_the_full_grid_on_three_seeds(results: dict) -> None:
    assert results["grid"] == "full" and results["seeds"] == [0, 1, 2]
    assert list(results["arms"]) == [arm.name for arm in FULL.arms]


def test_every_summary_is_its_per_seed_values(results: dict) -> None:
    base = results["arms"]["baseline"]["measurements"]
    for name, arm in results["arms"].items():
        for key, entry in arm["measurements"].items():
            x = np.asarray(entry["values"], dtype=np.float64)
            assert entry["n"] == x.size == 3, (name, key)
            assert entry["mean"] == pytest.approx(x.sum() / 3, abs=1e-12)
            sd = np.sqrt(((x - x.mean()) ** 2).sum() / 2)
            assert entry["std"] == pytest.approx(sd, abs=1e-12)
            if "paired" in entry:  # same seeds, same order: the mean paired difference
                diff = x - np.asarray(base[key]["values"])
                assert entry["paired"]["mean_diff"] == pytest.approx(diff.mean(), abs=1e-12)


def test_the_committed_table_is_the_table_of_the_committed_results(results: dict) -> None:
    assert (EVIDENCE / "results.md").read_text() == markdown(results)


def test_every_figure_on_the_page_is_committed() -> None:
    shown = re.findall(r"\((evidence/figures/[\w.-]+\.png)\)", PAGE.read_text())
    assert shown, "the page shows the study's figures"
    for rel in shown:
        assert (PAGE.parent / rel).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), rel
