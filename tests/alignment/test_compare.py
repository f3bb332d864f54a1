"""The objective comparison on the nano preset: every run evaluated, summary over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hyperet.cli.main import main

from hyperet.checkpoint import config_sha256
from hyperet.config import preset, with_overrides
from hyperet.train.compare import compare_objectives, markdown_table, parse_variant


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


def test_align_compare_command_writes_and_merges(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["align-compare", "--preset", "nano", "--objective", "euclidean-itc"]
    args += ["--test-scenes", "20", "--steps", "itc=3"]
    for seed in (0, 1):
        out = tmp_path / f"s{seed}.json"
        result = runner.invoke(main, [*args, "--seed", str(seed), "--out", str(out)])
        assert result.exit_code == 0, result.output
        part = json.loads(out.read_text())
        assert [r["seed"] for r in part["runs"]] == [seed] and "partial" not in part
        assert part["itc_stage"]["steps"] == 3
        assert len(part["runs"][0]["training"]["monitors"]["modalities"]) == 2
    merged = tmp_path / "merged.json"
    parts = [arg for seed in (0, 1) for arg in ("--merge", str(tmp_path / f"s{seed}.json"))]
    result = runner.invoke(main, ["align-compare", *parts, "--out", str(merged)])
    assert result.exit_code == 0, result.output
    assert json.loads(merged.read_text())["seeds"] == [0, 1]
    assert "| overall/image_to_text/R@1 |" in result.stdout
    bad = runner.invoke(main, [*args, "--steps", "itc=x", "--out", str(tmp_path / "x.json")])
    assert bad.exit_code == 2 and "steps:" in bad.output
    bad = runner.invoke(main, [*args, "--objective", "meru:x", "--out", str(tmp_path / "y.json")])
    assert bad.exit_code == 2 and "objectives:" in bad.output


def test_variants_and_the_vision_cache(tmp_path: Path) -> None:
    """A variant trains its overrides; a cached vision encoder reproduces the uncached run."""
    spec = "hyperbolic-entail:aperture_K=0.02,negative_weight=1.0,part_entailment=true"
    kwargs = {"preset_name": "nano", "seeds": (0,), "objectives": (spec,), "test_scenes": 8}
    first = compare_objectives(**kwargs, vision_cache=tmp_path)
    (cached,) = tmp_path.iterdir()
    digest = config_sha256(with_overrides(preset("nano"), seed=0))
    assert cached.name == f"nano-seed0-vision6-{digest[:12]}.safetensors"
    again = compare_objectives(**kwargs, vision_cache=tmp_path)
    (run,) = first["runs"]
    assert run["objective"] == spec and again["runs"][0]["vision_seconds"] == 0.0
    aligner = run["training"]["aligner"]
    assert (aligner["aperture_K"], aligner["negative_weight"], aligner["part_entailment"]) == (
        0.02, 1.0, True
    )  # fmt: skip
    assert again["runs"][0]["evaluation"] == run["evaluation"]


def test_a_vision_cache_of_another_config_is_refused(tmp_path: Path) -> None:
    """A cache file whose recorded config differs (renamed, tampered) is a clear error, not a
    load_state_dict traceback; another budget writes its own file."""
    kwargs = {"preset_name": "nano", "seeds": (0,), "objectives": ("euclidean-itc",)}
    compare_objectives(**kwargs, test_scenes=8, vision_cache=tmp_path)
    compare_objectives(**kwargs, test_scenes=8, steps={"vision": 2}, vision_cache=tmp_path)
    six, two = sorted(tmp_path.iterdir(), key=lambda p: "vision2" in p.name)
    assert "vision2-" in two.name and "vision6-" in six.name
    six.replace(two)  # the 6-step encoder under the 2-step config's name
    with pytest.raises(ValueError, match=r"--vision-cache: .* another config"):
        compare_objectives(**kwargs, test_scenes=8, steps={"vision": 2}, vision_cache=tmp_path)


@pytest.mark.parametrize("spec", ["hyperbolic-entail:K=0.05", "nope:aperture_K=1", "meru:x"])
def test_a_bad_variant_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match=r"^objectives: "):
        parse_variant(spec)
