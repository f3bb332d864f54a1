"""Plots of a study's results (optional: ``pip install 'hyperet[plot]'``, matplotlib).

Drawn from ``results.json`` only, so the numbers never depend on matplotlib: accuracy vs step
(stage-2 validation VQA, mean over seeds) per arm, caption retrieval R@1 per level, the
curvature sweep, and the histograms of the visual tokens' hyperbolic radius per arm and seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_results(results: dict[str, Any], directory: Path) -> list[Path] | None:
    """Write the PNGs into ``directory``; None (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    arms = results["arms"]
    written = []

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, arm in arms.items():
        if arm["curve"]:
            steps = [p["step"] for p in arm["curve"]]
            ax.plot(steps, [100 * p["vqa"] for p in arm["curve"]], label=name, lw=1.2)
    ax.set_xlabel("stage-2 step")
    ax.set_ylabel("validation VQA exact match (%)")
    ax.set_title("Accuracy vs step (mean over seeds)")
    ax.legend(fontsize=6, ncol=2)
    written.append(_save(fig, directory / "accuracy_vs_step.png"))

    from hyperet.study.report import group_keys

    levels = group_keys(arms, "retrieval")
    fig, ax = plt.subplots(figsize=(max(6, len(arms) * 0.5), 4))
    width = 0.8 / max(1, len(levels))
    for j, level in enumerate(levels):
        xs = [i + j * width for i in range(len(arms))]
        ys = [100 * a["measurements"].get(f"retrieval/{level}", {}).get("mean", 0.0)
              for a in arms.values()]  # fmt: skip
        ax.bar(xs, ys, width, label=level)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(arms))], list(arms), rotation=90)
    ax.set_ylabel("caption retrieval R@1 (%)")
    ax.legend(fontsize=7)
    written.append(_save(fig, directory / "retrieval_per_level.png"))

    if results["curvature_sweep"]:
        fig, ax = plt.subplots(figsize=(5, 4))
        rows = results["curvature_sweep"]
        ax.errorbar(
            [r["c"] for r in rows],
            [100 * r["vqa"]["mean"] for r in rows],
            yerr=[100 * (r["vqa"]["std"] or 0.0) for r in rows],
            marker="o",
        )
        ax.set_xscale("log")
        ax.set_xlabel("curvature c")
        ax.set_ylabel("test VQA exact match (%)")
        ax.set_title("HRA diagonal (official clamps), stage 2")
        written.append(_save(fig, directory / "curvature_sweep.png"))

    if any(h for arm in arms.values() for h in arm.get("radius_histograms", [])):
        written.append(_radius_histograms(arms, directory / "radius_histograms.png"))
    return written


def _radius_histograms(arms: dict[str, Any], path: Path) -> Path:
    """One panel per arm: the density of every visual token's radius, one line per seed; the
    baseline's seeds in grey behind every panel, the arm's adapter reset to the identity dashed."""
    import matplotlib.pyplot as plt

    from hyperet.study.grid import BASELINE

    def density(ax: Any, hist: dict[str, Any], **style: Any) -> None:
        edges, counts = np.asarray(hist["edges"]), np.asarray(hist["counts"], dtype=float)
        ax.stairs(counts / (counts.sum() * np.diff(edges)), edges, **style)

    base = [h["without_hyperet"] for h in arms.get(BASELINE, {}).get("radius_histograms", [])]
    columns = min(4, len(arms))
    rows = -(-len(arms) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for ax, (name, arm) in zip(axes.flat, arms.items(), strict=False):
        for hist in base:
            density(ax, hist, color="0.6", lw=1.0)
        for h in arm.get("radius_histograms", []):
            if "with_hyperet" in h:
                density(ax, h["without_hyperet"], color="C1", lw=0.8, ls="--")
            density(ax, h.get("with_hyperet", h["without_hyperet"]), color="C0", lw=1.0)
        ax.set_title(name, fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(arms) :]:
        ax.set_visible(False)
    fig.supxlabel("visual token radius dist0(expmap0(f)), c = 0.01", fontsize=8)
    fig.supylabel("density", fontsize=8)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["plot_results"]
