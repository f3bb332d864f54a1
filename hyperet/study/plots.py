"""Plots of a study's results (optional: ``pip install 'hyperet[plot]'``, matplotlib).

Drawn from ``results.json`` only, so the numbers never depend on matplotlib: accuracy vs step
(stage-2 validation VQA, mean over seeds) per arm, caption retrieval R@1 per level, and the
curvature sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["plot_results"]
