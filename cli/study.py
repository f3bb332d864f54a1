"""``hyperet study``: run an evidence grid resumably and write results.json, tables and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from hyperet.cli.console import EXIT_BAD_INPUT, EXIT_INTERRUPTED, emit_json, fail, plain_line

GRID_NAMES = (
    "smoke",
    "full",
    "complete",
)  # hyperet.study.grid.GRIDS (not imported: no torch on --help)


@click.command(name="study")
@click.option(
    "--grid",
    "grid_name",
    type=click.Choice(GRID_NAMES),
    required=True,
    help="The grid: smoke (seconds, tests), full (about 2 h) or complete (every arm of issue 12).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Study directory (created; rerun the same command to continue it).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=None,
    help="Seeds 0..N-1 of every arm (default: the grid's, 3 for full).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Runs trained in parallel processes (cores / jobs torch threads each).",
)
@click.option(
    "--plan",
    "plan_only",
    is_flag=True,
    help="Print the runs and the training steps they cost; train nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print results.json on stdout.")
def command(
    grid_name: str, out: Path, seeds: int | None, jobs: int, plan_only: bool, as_json: bool
) -> None:
    """Train and evaluate every arm of a grid on every seed, resumably.

    Baselines first (their stage 0a-1 checkpoints are shared by the arms through `hyperet
    branch`), then the adapter learning-rate tuning on the tuning seed's validation split, then
    every arm. Finished runs (verified final checkpoint) are never trained again; an interrupted
    study continues where it stopped when the same command is run again. Writes
    OUT/results.json, OUT/results.md and, with matplotlib, OUT/figures/.

    \b
    Examples:
      hyperet study --grid smoke --out studies/smoke
      hyperet study --grid full --out studies/full --plan
      hyperet study --grid full --out studies/full --jobs 2

    \b
    Exit codes: 0 done; 2 bad options or a directory of another study; 3 non-finite loss;
    130 interrupted (run the same command to continue).
    """
    from hyperet.checkpoint import CheckpointError
    from hyperet.study import GRIDS, Study, StudyError
    from hyperet.train import NonFiniteLossError, RunDirectoryError

    def on_run(key: str, what: str) -> None:
        plain_line(f"study {key}: {what}")

    try:
        study = Study(GRIDS[grid_name], out, seeds=seeds, jobs=jobs, on_run=on_run)
        if plan_only:
            plan: dict[str, Any] = study.plan()
            if as_json:
                emit_json(plan)
            else:
                steps = ", ".join(f"{k} {v}" for k, v in sorted(plan["steps"].items()))
                plain_line(f"{plan['runs']} runs; training steps: {steps}")
                if plan["estimated_cpu_s"] is not None:
                    hours = plan["estimated_cpu_s"] / 3600
                    plain_line(
                        f"estimated CPU time {hours:.1f} h (one thread; --jobs 2 on 2 idle cores: "
                        f"{hours / 2:.1f} h wall)"
                    )
            return
        results = study.run()
    except NonFiniteLossError as err:
        fail(str(err), 3)
    except KeyboardInterrupt:
        fail(f"interrupted; continue with the same command (--out {out})", EXIT_INTERRUPTED)
    except (StudyError, ValueError, CheckpointError, RunDirectoryError, OSError) as err:
        fail(str(err), EXIT_BAD_INPUT)
    if as_json:
        emit_json(results)
    else:
        plain_line(f"study {grid_name}: {out / 'results.json'}, {out / 'results.md'}")
