"""Aggregate a study: statistics over seeds, paired tests, efficiency, tables, plots.

``results.json`` holds, per arm and measurement, the values per seed, mean, standard deviation,
95 % t-interval and the paired t-test against the baseline on the same seeds
(:mod:`hyperet.study.stats`); the learning curves; the steps each seed needed to reach its
baseline's final validation accuracy; per seed, the histograms of every visual token's
hyperbolic radius (with the trained adapter and with it reset to the identity); and, under
``cost`` (the only part that depends on the machine), the median process CPU seconds of one
training step per stage the run trained itself (mean over the seeds whose last training call
measured it). ``results.md`` renders the tables;
``figures/`` the plots when matplotlib is installed (``pip install 'hyperet[plot]'``; the
numbers never depend on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hyperet import _io
from hyperet.study.grid import BASELINE
from hyperet.study.stats import paired_t_test, summarize

if TYPE_CHECKING:
    from hyperet.study.run import Study

#: Headline measurements (name -> label) of the main table.
HEADLINE: dict[str, str] = {
    "vqa": "VQA exact match",
    "mc": "MC (option likelihood)",
    "retrieval_r1": "retrieval R@1 (mean of levels)",
    "radius": "visual radius",
}


def measurements(record: dict[str, Any]) -> dict[str, float]:
    """Flat ``{name: value}`` of one run's test evaluation (accuracies in [0, 1])."""
    test = record["test"]
    out: dict[str, float] = {"vqa": test["vqa"]["overall"]}
    for kind, value in test["vqa"]["per_type"].items():
        out[f"vqa/{kind}"] = value
    mc = test["multiple_choice"]["likelihood"]
    out["mc"] = mc["overall"]
    for category, value in mc["per_category"].items():
        out[f"mc/{category}"] = value
    out["mc_generated"] = test["multiple_choice"]["generated"]["overall"]
    levels = [k for k, v in test["retrieval"].items() if isinstance(v, dict)]
    for level in levels:
        out[f"retrieval/{level}"] = test["retrieval"][level]["recall@1"]
    out["retrieval_r1"] = float(np.mean([out[f"retrieval/{lv}"] for lv in levels]))
    visual = test["radius_probe"]["visual"]
    out["radius"] = (visual.get("with_hyperet") or visual["without_hyperet"])["mean"]
    if "with_hyperet" in visual:  # how far the trained adapter moved the tokens' mean radius
        out["radius_shift"] = visual["with_hyperet"]["mean"] - visual["without_hyperet"]["mean"]
    curve = record["curves"].get("instruct") or []
    if curve:
        out["val_vqa_final"] = curve[-1]["vqa"]
    return {k: float(v) for k, v in out.items() if v is not None}


def steps_to_reach(curve: Sequence[dict[str, Any]], target: float) -> int | None:
    """First step of a stage-2 validation curve whose VQA accuracy is ``>= target``."""
    for point in curve:
        if point["vqa"] >= target:
            return int(point["step"])
    return None


def _mean_curve(records: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Mean stage-2 validation VQA accuracy per step over seeds (steps common to all)."""
    curves = [r["curves"].get("instruct") or [] for r in records]
    if not curves or not all(curves):
        return []
    steps = sorted(set.intersection(*({p["step"] for p in c} for c in curves)))
    by_step = [{p["step"]: p["vqa"] for p in c} for c in curves]
    return [{"step": s, "vqa": float(np.mean([b[s] for b in by_step]))} for s in steps]


def _histograms(seed: int, record: dict[str, Any]) -> dict[str, Any]:
    """The radius probe's per-token histograms of one run (with / without the adapter)."""
    visual = record["test"]["radius_probe"]["visual"]
    return {"seed": seed, **{k: v["histogram"] for k, v in visual.items() if "histogram" in v}}


def aggregate(study: Study, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The results dict (see the module docstring)."""
    from hyperet.study.run import run_key

    seeds = study.seeds
    base = {s: records[run_key(BASELINE, s)] for s in seeds}
    base_values = {s: measurements(r) for s, r in base.items()}
    arms: dict[str, Any] = {}
    for arm in study.grid.arms:
        recs = [records[run_key(arm.name, s)] for s in seeds]
        values = [measurements(r) for r in recs]
        names = sorted(set.intersection(*(set(v) for v in values)))
        table: dict[str, Any] = {}
        for name in names:
            xs = [v[name] for v in values]
            entry = summarize(xs)
            if arm.family != BASELINE and all(name in base_values[s] for s in seeds):
                entry["paired"] = paired_t_test(xs, [base_values[s][name] for s in seeds])
            table[name] = entry
        reached = []
        for s, r in zip(seeds, recs, strict=True):
            target = base_values[s].get("val_vqa_final")
            curve = r["curves"].get("instruct") or []
            reached.append(None if target is None else steps_to_reach(curve, target))
        step_cost: dict[str, list[float]] = {}  # stage -> median CPU s per step, per seed
        for s in seeds:
            path = study.out / "costs" / arm.name / f"seed-{s}.json"
            cost = _io.read_json(path) if path.is_file() else {}
            for stage, value in cost.get("step_cpu_s", {}).items():
                step_cost.setdefault(stage, []).append(value)
        arms[arm.name] = {
            "family": arm.family,
            "stage": arm.stage,
            "structure": arm.structure,
            "curvature": arm.curvature,
            "settings": list(arm.settings),
            "lr_scale": recs[0]["lr_scale"],
            "fixed_lr_scale": arm.lr_scale,
            "parameters": recs[0]["test"]["parameters"]["hyperet"],
            "measurements": table,
            "efficiency": {"steps_to_baseline_final_val_vqa": reached},
            "curve": _mean_curve(recs),
            "radius_histograms": [_histograms(s, r) for s, r in zip(seeds, recs, strict=True)],
            "cost": {
                "cpu_s_per_step": {k: float(np.mean(v)) for k, v in step_cost.items()},
                "seeds_measured": {k: len(v) for k, v in step_cost.items()},
            },
        }
    curvature = []
    for c in study.grid.curvatures:
        for name, arm in arms.items():
            if (
                arm["family"] == "hra-official"
                and arm["structure"] == "diagonal"
                and (arm["stage"] == "stage2" and (arm["curvature"] or 0.01) == c)
                and arm["fixed_lr_scale"] is None  # the sweep runs at the family's rate
            ):
                curvature.append({"c": c, "arm": name, "vqa": arm["measurements"]["vqa"]})
    return {
        "grid": study.grid.name,
        "seeds": seeds,
        "tuning_seed": study.grid.tuning_seed,
        "tuning": study.tuning,
        "lr_scale": study.lr_scale,
        "arms": arms,
        "curvature_sweep": curvature,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _cell(entry: dict[str, Any] | None) -> str:
    """``mean ± std [lo, hi]`` in percent."""
    if not entry or entry["mean"] is None:
        return "-"
    if entry["std"] is None:
        return _pct(entry["mean"])
    lo, hi = entry["ci95"]
    return f"{_pct(entry['mean'])} ± {_pct(entry['std'])} [{_pct(lo)}, {_pct(hi)}]"


def _paired(entry: dict[str, Any] | None) -> str:
    paired = (entry or {}).get("paired")
    if not paired or paired["mean_diff"] is None:
        return "-"
    p = "-" if paired["p"] is None else f"{paired['p']:.3f}"
    return f"{100 * paired['mean_diff']:+.1f} (p {p})"


def group_keys(arms: dict[str, Any], prefix: str) -> list[str]:
    """The sub-measurements ``prefix/<key>`` present in any arm (question types, levels...)."""
    keys = {k for a in arms.values() for k in a["measurements"] if k.startswith(prefix + "/")}
    return sorted(k.split("/", 1)[1] for k in keys)


def _group_table(arms: dict[str, Any], prefix: str, title: str) -> list[str]:
    keys = group_keys(arms, prefix)
    lines = ["", f"## {title}", "", "| arm | " + " | ".join(keys) + " |"]
    lines.append("|---|" + "---|" * len(keys))
    for name, arm in arms.items():
        m = arm["measurements"]
        cells = [_pct(m[f"{prefix}/{k}"]["mean"]) if f"{prefix}/{k}" in m else "-" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The tables of ``results.md``: accuracies in percent over seeds."""
    arms = results["arms"]
    n = len(results["seeds"])
    lines = [
        f"# Study `{results['grid']}`: {len(arms)} arms x {n} seeds",
        "",
        "Cells: mean ± standard deviation [95 % t-interval] over seeds, in percent; Δ: paired "
        "difference to the baseline on the same seeds (paired t-test p); radius: mean hyperbolic "
        "radius of the visual tokens (c = 0.01) with the trained adapter, radius shift: minus "
        "the same tokens' radius with the adapter reset to the identity.",
        "",
        "| arm | adapter params | lr x | VQA | Δ VQA | MC | Δ MC | R@1 | radius | "
        "radius shift | steps to base | CPU s/step (stage 2) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, arm in arms.items():
        m = arm["measurements"]
        reached = [r for r in arm["efficiency"]["steps_to_baseline_final_val_vqa"]]
        hit = [r for r in reached if r is not None]
        steps = (
            f"{np.mean(hit):.0f} ({len(hit)}/{len(reached)})" if hit else f"- (0/{len(reached)})"
        )
        cost = arm["cost"]["cpu_s_per_step"].get("instruct")
        radius = m.get("radius", {}).get("mean")
        shift = m.get("radius_shift", {}).get("mean")
        lines.append(
            f"| {name} | {arm['parameters']} | {arm['lr_scale']:g} | {_cell(m.get('vqa'))} | "
            f"{_paired(m.get('vqa'))} | {_cell(m.get('mc'))} | {_paired(m.get('mc'))} | "
            f"{_cell(m.get('retrieval_r1'))} | "
            f"{'-' if radius is None else f'{radius:.2f}'} | "
            f"{'-' if shift is None else f'{shift:+.3f}'} | {steps} | "
            f"{'-' if cost is None else f'{cost:.3f}'} |"
        )
    lines += _group_table(arms, "vqa", "VQA per question type (mean over seeds, %)")
    lines += _group_table(arms, "retrieval", "Caption retrieval R@1 per level (mean over seeds, %)")
    lines += _group_table(arms, "mc", "Multiple choice per category (mean over seeds, %)")
    if results["curvature_sweep"]:
        lines += ["", "## Curvature sweep (HRA diagonal, official mode, stage 2)", ""]
        lines += ["| c | arm | VQA | Δ VQA |", "|---|---|---|---|"]
        for row in results["curvature_sweep"]:
            vqa = row["vqa"]
            lines.append(f"| {row['c']:g} | {row['arm']} | {_cell(vqa)} | {_paired(vqa)} |")
    if results["tuning"]:
        lines += ["", "## Adapter learning-rate multiplier (validation VQA, tuning seed)", ""]
        lines += ["| family | candidates | chosen |", "|---|---|---|"]
        for family, t in results["tuning"].items():
            cands = ", ".join(f"{k}: {_pct(v)}" for k, v in t["candidates"].items())
            lines.append(f"| {family} | {cands} | {t['chosen']:g} |")
    return "\n".join(lines) + "\n"


def write_report(study: Study, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write ``results.json``, ``results.md`` and (with matplotlib) ``figures/``."""
    results = aggregate(study, records)
    _io.write_json(study.out / "results.json", results)
    _io.atomic_write_bytes(study.out / "results.md", markdown(results).encode("utf-8"))
    try:
        from hyperet.study.plots import plot_results
    except ImportError:  # pragma: no cover - the module itself has no optional import
        return results
    results_figures = plot_results(results, study.out / "figures")
    if results_figures is not None:
        results = {**results, "figures": [str(p) for p in results_figures]}
    return results


__all__ = ["HEADLINE", "aggregate", "markdown", "measurements", "steps_to_reach", "write_report"]
