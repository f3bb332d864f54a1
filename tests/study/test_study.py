"""The smoke grid end to end: every arm, sharing, tuning, resume after an interruption, the CLI."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hyperet.cli.main import main

from hyperet.checkpoint import CHECKPOINTS, METRICS_FILE
from hyperet.study import SMOKE, Study, StudyError
from hyperet.study.grid import COMPLETE, FULL, make_arm
from hyperet.study.run import run_key
from hyperet.train import StepDone


class Interrupt(Exception):
    """Stands for a kill in the middle of a run."""


def without_cost(results: dict[str, Any]) -> dict[str, Any]:
    """The results minus what depends on the machine (CPU seconds)."""
    data = json.loads(json.dumps(results))
    data.pop("figures", None)
    for arm in data["arms"].values():
        arm.pop("cost")
    return data


def test_smoke_grid_end_to_end_and_resume_after_an_interruption(tmp_path: Path) -> None:
    reference = Study(SMOKE, tmp_path / "reference").run()

    # --- what the uninterrupted study holds
    arms = reference["arms"]
    assert list(arms) == [a.name for a in SMOKE.arms]
    for arm in arms.values():
        assert arm["measurements"]["vqa"]["n"] == 2
        assert len(arm["curve"]) == 2  # stage-2 validation points at steps 1 and 2
    # the exact Euclidean twin of HRA fast trains to the same numbers (log0(M (x) exp0 a) = M a)
    fast, euclid = arms["hra-fast-diagonal-stage2"], arms["euclidean-diagonal-stage2"]
    assert fast["measurements"] == euclid["measurements"]
    assert fast["curve"] == euclid["curve"]
    assert arms["lora-both"]["parameters"] == 2 * (2 * 16 * 2)  # q and v of 1 block: 2 E r each
    assert set(reference["tuning"]) == {"lora"}  # the only family with two candidates
    assert reference["lr_scale"]["lora"] in (1.0, 10.0)
    assert [row["c"] for row in reference["curvature_sweep"]] == [1.0]
    for name, arm in arms.items():  # per seed, every visual token's radius in one histogram
        assert [h["seed"] for h in arm["radius_histograms"]] == [0, 1]
        for h in arm["radius_histograms"]:
            kinds = {"without_hyperet"} | ({"with_hyperet"} if arm["parameters"] else set())
            assert set(h) - {"seed"} == kinds, name
            assert len({sum(h[k]["counts"]) for k in kinds}) == 1  # the same tokens
    ref_dir = tmp_path / "reference"
    for arm, after in (("lora-both", "lm"), ("hra-fast-diagonal-stage2", "align")):
        metrics = json.loads((ref_dir / run_key(arm, 0) / METRICS_FILE).read_text())
        assert metrics["branched_from"]["after"] == after  # shared stages, not retrained
    table = (ref_dir / "results.md").read_text()
    assert "| hra-official-diagonal-stage2-c1 |" in table and "(p " in table
    if importlib.util.find_spec("matplotlib") is not None:  # the optional plot extra
        figures = {Path(p).name for p in reference["figures"]}
        assert figures == {
            "accuracy_vs_step.png",
            "retrieval_per_level.png",
            "curvature_sweep.png",
            "radius_histograms.png",
        }
    else:
        assert "figures" not in reference

    # --- interrupted in the middle of a run's stage 2, then the same command again
    out = tmp_path / "study"
    seen: list[str] = []

    def kill(key: str, event: Any) -> None:
        if key == run_key("lora-both", 1) and isinstance(event, StepDone):
            if event.stage == "instruct" and event.step == 1:
                raise Interrupt

    with pytest.raises(Interrupt):
        Study(SMOKE, out, on_run=lambda key, what: seen.append(key), on_event=kill).run()
    finished_before = {k for k in seen}
    assert run_key("lora-both", 0) in finished_before
    stamps = {
        key: (out / key / CHECKPOINTS / "instruct" / "model.safetensors").stat().st_mtime_ns
        for key in finished_before
    }
    log: list[tuple[str, str]] = []
    resumed = Study(SMOKE, out, on_run=lambda key, what: log.append((key, what))).run()
    trained = {key for key, what in log if what == "trained"}
    assert trained.isdisjoint(finished_before)  # finished runs are never trained again
    assert run_key("lora-both", 1) in trained
    for key, stamp in stamps.items():
        path = out / key / CHECKPOINTS / "instruct" / "model.safetensors"
        assert path.stat().st_mtime_ns == stamp
    assert without_cost(resumed) == without_cost(reference)

    # --- a third call does nothing but re-read (an evaluation record of an older schema is
    # recomputed, not trusted); a corrupt finished run is refused, not trusted
    stale = out / "evals" / "baseline" / "seed-0.json"
    record = json.loads(stale.read_text())
    record["schema"] = 1
    record["test"]["vqa"]["overall"] = 0.123
    stale.write_text(json.dumps(record))
    log.clear()
    again = Study(SMOKE, out, on_run=lambda key, what: log.append((key, what))).run()
    assert {what for _, what in log} <= {"finished before", "evaluated"}
    assert without_cost(again) == without_cost(reference)
    assert json.loads(stale.read_text())["schema"] == 2
    victim = out / run_key("baseline", 0) / CHECKPOINTS / "instruct" / "model.safetensors"
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0x40
    victim.write_bytes(bytes(data))
    with pytest.raises(StudyError, match=r"model\.safetensors"):
        Study(SMOKE, out).run()


def test_a_study_directory_belongs_to_one_grid(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.txt").write_text("mine")
    with pytest.raises(StudyError, match="not empty"):
        Study(SMOKE, tmp_path / "s").run()
    study = Study(SMOKE, tmp_path / "t", seeds=1)
    study._check_directory()
    with pytest.raises(StudyError, match="another study"):
        Study(SMOKE, tmp_path / "t", seeds=2).run()
    with pytest.raises(StudyError, match="tuning seed"):
        Study(SMOKE, tmp_path / "u", seeds=SMOKE.tuning_seed + 1)


def test_a_study_grows_in_its_own_directory(tmp_path: Path) -> None:
    """Arms appended to a finished study's grid train alone; the finished runs are reused."""
    small = dataclasses.replace(SMOKE, arms=SMOKE.arms[:2], lr_scales={})
    first = Study(small, tmp_path / "s", seeds=1).run()
    extra = make_arm("hra-fast", "stage2", structure="diagonal", lr_scale=10.0)
    assert extra.name == "hra-fast-diagonal-stage2-lr10"
    grown = dataclasses.replace(small, arms=(*small.arms, extra))
    log: list[tuple[str, str]] = []
    second = Study(grown, tmp_path / "s", seeds=1, on_run=lambda k, w: log.append((k, w))).run()
    assert {k for k, w in log if w == "trained"} == {run_key(extra.name, 0)}
    for name in first["arms"]:  # the finished arms' numbers are unchanged
        assert second["arms"][name]["measurements"] == first["arms"][name]["measurements"]
    new = second["arms"][extra.name]
    assert new["lr_scale"] == 10.0 and new["fixed_lr_scale"] == 10.0
    assert second["arms"]["hra-fast-diagonal-stage2"]["lr_scale"] == 1.0
    assert json.loads((tmp_path / "s" / "study.json").read_text())["grid"]["arms"][-1] == {
        "name": extra.name,
        "settings": list(extra.settings),
        "after": "align",
        "lr_scale": 10.0,
    }
    # shrinking, reordering or changing anything else is another study
    for other in (small, dataclasses.replace(grown, arms=grown.arms[::-1])):
        with pytest.raises(StudyError, match="another study"):
            Study(other, tmp_path / "s", seeds=1).run()
    with pytest.raises(ValueError, match="lr_scale"):
        make_arm("ia3", "stage2", lr_scale=0.0)


def test_full_grid_holds_every_arm_of_the_issue() -> None:
    names = {a.name for a in COMPLETE.arms}
    for stage in ("stage1", "stage2", "both"):
        for family in ("hra-fast", "hra-official", "euclidean"):
            for structure in ("diagonal", "block", "banded"):
                assert f"{family}-{structure}-{stage}" in names
        for family in ("ia3", "lora", "full"):
            assert f"{family}-{stage}" in names
    sweep = {
        a.curvature for a in COMPLETE.arms if a.name.startswith("hra-official-diagonal-stage2")
    }
    assert sweep == {None, 1e-4, 1e-3, 1e-1, 1.0}  # c = 1e-2 is the main arm
    assert "baseline" in names and len(names) == len(COMPLETE.arms)
    with pytest.raises(ValueError, match="structure"):
        make_arm("lora", "stage2", structure="diagonal")


def test_cli_plan_and_refusals(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["study", "--grid", "smoke", "--out", str(tmp_path / "p"), "--plan", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["runs"] == 2 + 1 + 2 + 4 * 2  # baselines, tuning baseline, lora tuning, arms
    assert plan["steps"]["instruct/live"] == 2 * (2 + 4 * 2)  # tuning and adapter arms
    assert plan["feature_caches"] == 3 * 2  # baselines: align + instruct; adapters: live ViT
    assert plan["estimated_cpu_s"] is None  # the smoke grid has no cost model
    assert not (tmp_path / "p").exists()  # --plan trains nothing
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "thesis.tex").write_text("x")
    result = runner.invoke(main, ["study", "--grid", "smoke", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "not empty" in result.stderr


def test_the_full_grid_fits_two_hours_of_two_cores_by_its_cost_model(tmp_path: Path) -> None:
    plan = Study(FULL, tmp_path / "f").plan()
    cost = dict(FULL.cost_model)
    # recomputed here from the plan's parts: steps x per-step cost + per-run overheads
    total = sum(n * cost[key] for key, n in plan["steps"].items())
    total += plan["runs"] * cost["run"] + plan["feature_caches"] * cost["cache"]
    total += plan["evaluated"] * cost["eval"]
    assert plan["estimated_cpu_s"] == pytest.approx(total)
    assert plan["runs"] == 3 + 10 * 3  # baselines, then 10 adapter arms on 3 seeds (no tuning)
    assert 1.5 * 3600 * 2 <= total <= 2.2 * 3600 * 2  # 2 cores, --jobs 2
    assert not (tmp_path / "f").exists()
