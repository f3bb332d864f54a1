"""The objective comparison on the nano preset: every run evaluated, summary over seeds."""

from __future__ import annotations

import json

from hyperet.alignment.compare import compare_objectives, markdown_table


def test_compare_objectives_on_nano() -> None:
    result = compare_objectives(preset_name="nano", seeds=(0, 1), test_scenes=20)
    json.dumps(result, allow_nan=False)
    objectives = ("hyperbolic-itc", "poincare-itc", "euclidean-itc", "hyperbolic-entail", "meru")
    assert [(r["seed"], r["objective"]) for r in result["runs"]] == [
        (s, o) for s in (0, 1) for o in objectives
    ]
    summary = result["summary"]
    assert set(summary) == set(objectives)
    assert summary["meru"]["entailment/auroc"]["n"] == 2  # the hierarchy metrics are summarised
    assert "entailment/auroc" not in summary["euclidean-itc"]
    r1 = summary["hyperbolic-itc"]["overall/image_to_text/R@1"]
    values = [
        r["evaluation"]["retrieval"]["overall"]["image_to_text"]["R@1"]
        for r in result["runs"]
        if r["objective"] == "hyperbolic-itc"
    ]
    assert r1["n"] == 2 and r1["mean"] == sum(values) / 2
    table = markdown_table(summary, ["overall/image_to_text/R@1", "spearman/text_vs_level"])
    assert table.count("\n") == 3 and "hyperbolic-itc" in table.splitlines()[0]
