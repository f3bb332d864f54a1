"""``hyperet probe``: linear probes of a trained run's frozen vision features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from hyperet.cli.console import (
    EXIT_BAD_INPUT,
    console,
    emit_json,
    fail,
    json_option,
    split_option,
)

from hyperet.config import ITC_STAGE, STAGES


@click.command(name="probe")
@click.argument("run_dir", type=click.Path(path_type=Path))
@split_option("Split the probes are scored on (regenerated from the run's seed).")
@click.option("--limit", type=click.IntRange(min=1), help="Score on the first N scenes only.")
@click.option(
    "--stage",
    type=click.Choice([*STAGES, ITC_STAGE, "untrained"]),
    help="Probe the model saved at the end of this stage (default: the latest complete one; "
    "the ViT is frozen after vision); 'untrained': the freshly initialised ViT, a control.",
)
@click.option(
    "--layer",
    type=click.IntRange(min=0),
    help="Probe the tokens after this many ViT blocks (0: patch + position embedding) instead "
    "of the tokens the projector reads (projector.feature_layer; default the ViT's output).",
)
@click.option(
    "--train-scenes",
    type=click.IntRange(min=1),
    default=4000,
    show_default=True,
    help="Training scenes the probes are fitted on (the first N of the run's training split).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Images per forward pass of the ViT.",
)
@json_option
def command(
    run_dir: Path,
    split: str,
    limit: int | None,
    stage: str | None,
    layer: int | None,
    train_scenes: int,
    batch_size: int,
    as_json: bool,
) -> None:
    """Linear probes (ridge) of RUN_DIR's frozen ViT: colour, shape, size, position, count.

    Colour, shape, size and position are read from each object's own patch tokens, count from
    the mean of all tokens; each probe is reported with the majority-class accuracy.

    \b
    Examples:
      hyperet probe runs/default                    # the ViT the projector reads
      hyperet probe runs/default --stage untrained  # control: the freshly initialised ViT
      hyperet probe runs/default --layer 2 --json > probe.json

    \b
    Exit codes: 0 done; 2 missing/corrupt run directory or bad options.
    """
    from hyperet.checkpoint import CheckpointError
    from hyperet.probe import probe_run

    try:
        results = probe_run(
            run_dir,
            stage=stage,
            split=split,
            limit=limit,
            train_scenes=train_scenes,
            batch=batch_size,
            layer=layer,
        )
    except (CheckpointError, ValueError) as err:
        fail(str(err), EXIT_BAD_INPUT)
    render(results)
    if as_json:
        emit_json({"run": str(run_dir), **results})


def render(r: dict[str, Any]) -> None:
    """The probe table on stderr."""
    from rich.table import Table

    table = Table(
        title=f"linear probes of the ViT ({r['layer']}) after stage {r['stage']} (vision level "
        f"{r['vision_level']}), fitted on "
        f"{r['train_scenes']} train scenes, scored on {r['test_scenes']} {r['test_split']} scenes",
        title_justify="left",
    )
    for col in ("target", "classes", "accuracy (%)", "majority (%)", "train acc. (%)", "n"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for target, v in r["targets"].items():
        table.add_row(
            target,
            str(v["classes"]),
            f"{100 * v['accuracy']:.1f}",
            f"{100 * v['majority']:.1f}",
            f"{100 * v['train_accuracy']:.1f}",
            str(v["n_test"]),
        )
    console.print(table)
