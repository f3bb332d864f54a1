"""``hyperet eval``: evaluate a trained run directory and print tables (and JSON with --json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from hyperet.cli.console import (
    EXIT_BAD_INPUT,
    console,
    device_option,
    emit_json,
    fail,
    json_option,
    log_every_option,
    os_error_message,
    plain_line,
    split_option,
)


@click.command(name="eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@split_option(
    "Which scenes of the run's seeded data to evaluate on (test: held out from training)."
)
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N scenes.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Images or prompts per forward pass (memory and speed).",
)
@log_every_option(10, "batches of each task")
@device_option
@json_option
def command(
    run_dir: Path,
    split: str,
    limit: int | None,
    batch_size: int,
    log_every: int,
    device: str,
    as_json: bool,
) -> None:
    """Evaluate RUN_DIR: VQA, baselines, multiple choice, retrieval, radius probe, parameters.

    RUN_DIR is a directory written by `hyperet train` (its last complete checkpoint is used).

    \b
    Examples:
      hyperet eval runs/hra                        # tables on stderr
      hyperet eval runs/hra --json > hra.json      # and every number as JSON on stdout
      hyperet eval runs/hra --split val --limit 64

    \b
    Exit codes: 0 done; 2 missing, corrupt or incompatible run directory, or bad options;
    130 interrupted.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from hyperet.checkpoint import CheckpointError
    from hyperet.device import resolve_device
    from hyperet.evaluate import evaluate

    progress = Progress(
        TextColumn("[bold]{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def on_progress(task: str, done: int, total: int) -> None:
        if task not in tasks:
            tasks[task] = progress.add_task(task, total=total)
        progress.update(tasks[task], completed=done)

    display: Any = progress
    if not console.is_terminal:  # a log file: plain lines instead of bars
        from contextlib import nullcontext

        from hyperet.progress_log import EvalLog

        on_progress, display = EvalLog(plain_line, log_every), nullcontext()  # type: ignore[assignment, unused-ignore]
    try:
        with display:
            results = evaluate(
                run_dir,
                split=split,
                limit=limit,
                batch_size=batch_size,
                on_progress=on_progress,
                device=resolve_device(device),
            )
    except (CheckpointError, ValueError) as err:
        fail(str(err), EXIT_BAD_INPUT)
    except OSError as err:
        fail(os_error_message(err, run_dir), EXIT_BAD_INPUT)
    render(results)
    if as_json:
        emit_json(results)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def render(r: dict[str, Any]) -> None:
    """Rich tables of the evaluation results on stderr."""
    from rich.table import Table

    head = f"{r['run']} ({r['split']}, {r['scenes']} scenes, seed {r['seed']}, preset {r['preset']}"
    h = r["hyperet"]
    head += f", HyperET {h['structure']}" + (
        f" in {h['stage']}, c={h['c']})" if h["structure"] != "none" else ")"
    )
    console.print(head, highlight=False)

    vqa = Table(title=f"VQA exact match (%), {r['vqa']['n']} questions", title_justify="left")
    for col in ("type", "model", "text-only prior", "majority"):
        vqa.add_column(col, justify="left" if col == "type" else "right")
    for t, acc in r["vqa"]["per_type"].items():
        vqa.add_row(
            t,
            _pct(acc),
            _pct(r["text_only_prior"]["per_type"].get(t)),
            _pct(r["majority_baseline"]["per_type"].get(t)),
        )
    for kind, acc in r["vqa"]["by_kind"].items():
        vqa.add_row(
            f"[dim]{kind}[/]",
            _pct(acc),
            _pct(r["text_only_prior"]["by_kind"].get(kind)),
            "",
        )
    vqa.add_row(
        "[bold]overall[/]",
        f"[bold]{_pct(r['vqa']['overall'])}[/]",
        _pct(r["text_only_prior"]["overall"]),
        _pct(r["majority_baseline"]["overall"]),
    )
    console.print(vqa)

    _render_confusion(r["vqa"]["confusion"])

    mc = r["multiple_choice"]
    table = Table(
        title=f"multiple choice accuracy (%), {mc['n']} items, chance {_pct(mc['chance'])}",
        title_justify="left",
    )
    for col in ("category", "generated", "option likelihood"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for cat, acc in mc["generated"]["per_category"].items():
        table.add_row(cat, _pct(acc), _pct(mc["likelihood"]["per_category"].get(cat)))
    table.add_row(
        "[bold]overall[/]",
        f"[bold]{_pct(mc['generated']['overall'])}[/]",
        f"[bold]{_pct(mc['likelihood']['overall'])}[/]",
    )
    table.add_row("[dim]parse failures[/]", _pct(mc["generated"]["parse_failure_rate"]), "")
    console.print(table)

    ret = r["retrieval"]
    table = Table(
        title=f"caption retrieval image->caption (%), CLIP head ({ret['trained_level']} level)",
        title_justify="left",
    )
    for col in ("level", "candidates", "R@1", "R@5"):
        table.add_column(col, justify="left" if col == "level" else "right")
    for level, v in ret.items():
        if isinstance(v, dict):
            table.add_row(level, str(v["candidates"]), _pct(v["recall@1"]), _pct(v["recall@5"]))
    console.print(table)

    probe = r["radius_probe"]
    table = Table(
        title=f"hyperbolic radius probe, mean Rad(expmap0(f)) at c={probe['c']}",
        title_justify="left",
    )
    table.add_column("features", justify="left")
    table.add_column("all", justify="right")
    counts = sorted({k for v in probe["visual"].values() for k in v["by_object_count"]})
    for k in counts:
        table.add_column(f"{k} obj", justify="right")
    for name, v in probe["visual"].items():
        table.add_row(
            f"ViT tokens, {name.replace('_', ' ')}",
            f"{v['mean']:.3f}",
            *(f"{v['by_object_count'].get(k, float('nan')):.3f}" for k in counts),
        )
    console.print(table)
    levels = ", ".join(f"{k} {v:.3f}" for k, v in probe["caption_embedding_by_level"].items())
    console.print(f"caption embeddings (text tower) by level: {levels}", highlight=False)

    if "alignment" in r:
        _render_alignment(r["alignment"])

    p = r["parameters"]
    console.print(
        f"parameters: {p['total']:,} total, {p['trainable_last_stage'] or 0:,} trained in the last "
        f"stage, HyperET {p['hyperet']:,} ({p['hyperet_percent']:.3f} %)",
        highlight=False,
    )


def _render_confusion(confusion: dict[str, dict[str, dict[str, int]]], top: int = 3) -> None:
    """The ``top`` most frequent wrong answers of each question type (JSON has the full table)."""
    from rich.table import Table

    table = Table(
        title="VQA: most frequent errors (true -> predicted: count)", title_justify="left"
    )
    table.add_column("type", justify="left")
    table.add_column("errors", justify="left")
    for qtype, rows in confusion.items():
        errors = [(n, t, p) for t, c in rows.items() for p, n in c.items() if p != t]
        errors.sort(key=lambda e: (-e[0], e[1], e[2]))
        text = ", ".join(f"{t} -> {p or '(empty)'}: {n}" for n, t, p in errors[:top])
        table.add_row(qtype, text or "none")
    console.print(table)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3f}"


def _render_alignment(a: dict[str, Any]) -> None:
    """Retrieval (per level, with chance) and the radius-uncertainty numbers of an ITC run."""
    from rich.table import Table

    ret = a["retrieval"]
    table = Table(
        title=f"image-text retrieval R@1 / R@5 / R@10 (%), {a['similarity']} similarity",
        title_justify="left",
    )
    for col in ("captions", "image->text", "chance", "text->image", "chance"):
        table.add_column(col, justify="left" if col == "captions" else "right")

    def triple(block: dict[str, float]) -> str:
        return " / ".join(_pct(block[k]) for k in ("R@1", "R@5", "R@10"))

    for name, block in [("all levels", ret["overall"]), *ret["per_level"].items()]:
        table.add_row(
            name,
            triple(block["image_to_text"]),
            f"[dim]{triple(block['chance']['image_to_text'])}[/]",
            triple(block["text_to_image"]),
            f"[dim]{triple(block['chance']['text_to_image'])}[/]",
        )
    console.print(table)
    rad = a["radius"]
    labels = {
        "text_vs_level": "Spearman: caption radius vs caption level",
        "image_vs_object_count": "Spearman: image radius vs object count",
        "image_vs_corruption": "Spearman: image radius vs corruption strength",
        "image_to_text": "AUROC: -radius predicts an image->text error",
        "text_to_image": "AUROC: -radius predicts a text->image error",
    }
    table = Table(title=f"radius as uncertainty ({rad['kind']})", title_justify="left")
    table.add_column("statistic", justify="left")
    table.add_column("value", justify="right")
    for name, value in rad["spearman"].items():
        table.add_row(labels.get(name, name), _num(value))
    for name, value in rad["auroc_uncertainty_predicts_error"].items():
        table.add_row(labels.get(name, name), "-" if value is None else f"{value:.3f}")
    table.add_row("mean image radius", f"{rad['image']['mean']:.3f}")
    for level, stats in rad["text_by_level"].items():
        table.add_row(f"mean caption radius, {level}", f"{stats['mean']:.3f}")
    console.print(table)
    if rad["histogram_png"]:
        console.print(f"radius histograms: {rad['histogram_png']}", highlight=False)
    ent = a.get("entailment")
    if ent:
        table = Table(
            title=f"hierarchy: entailment cones (K = {ent['K']:g}), score psi - Xi",
            title_justify="left",
        )
        table.add_column("statistic", justify="left")
        table.add_column("value", justify="right")
        auroc = ent["auroc"]
        table.add_row(
            f"AUROC: true (coarse, fine) pairs vs cross-scene pairs "
            f"({ent['true_pairs']} / {ent['false_pairs']})",
            "-" if auroc is None else f"{auroc:.3f}",
        )
        table.add_row("accuracy (score >= 0 predicts entailment)", f"{ent['accuracy']:.3f}")
        table.add_row("true pairs inside the cone", f"{ent['true_inside_fraction']:.3f}")
        table.add_row("false pairs inside the cone", f"{ent['false_inside_fraction']:.3f}")
        console.print(table)
