"""``hyperet branch``: start a run from another run's checkpoints after a completed stage."""

from __future__ import annotations

from pathlib import Path

import click
from hyperet.cli.console import EXIT_BAD_INPUT, console, fail

from hyperet.config import ITC_STAGE, STAGES


@click.command(name="branch")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--after",
    type=click.Choice([*STAGES[:-1], ITC_STAGE]),
    required=True,
    help="Last stage taken from SOURCE; the new run trains the stages after it.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Change a config.json field of the new run (repeatable), e.g. "
    "train.stages.instruct.steps=2000; only fields of the later stages may change.",
)
@click.option(
    "--steps",
    "steps_items",
    multiple=True,
    metavar="STAGE=N",
    help="Steps of a later stage (repeatable), e.g. instruct=2000.",
)
@click.option("--force", is_flag=True, help="Overwrite a non-empty OUT.")
def command(
    source: Path,
    out: Path,
    after: str,
    settings: tuple[str, ...],
    steps_items: tuple[str, ...],
    force: bool,
) -> None:
    """Copy SOURCE's checkpoints up to --after into OUT with a changed config.

    Then `hyperet train --out OUT --resume` trains the later stages only; the result equals
    training the new config from scratch. Only the later stages' budgets and optimiser settings
    (and HyperET, when no kept stage applied it) may change.

    \b
    Examples:
      hyperet branch runs/default runs/long --after align --steps instruct=6000
      hyperet branch runs/default runs/hra --after align --set hyperet.structure=diagonal
      hyperet train --out runs/hra --resume && hyperet eval runs/hra

    \b
    Exit codes: 0 done; 2 bad options, a field the kept stages read, or unusable run
    directories.
    """
    from hyperet.branch import branch_run
    from hyperet.checkpoint import CheckpointError, load_config
    from hyperet.config import parse_steps, with_overrides
    from hyperet.overrides import apply_settings
    from hyperet.train import RunDirectoryError

    try:
        config = load_config(source / "config.json")
        config = with_overrides(config, steps=parse_steps(list(steps_items)))
        config = apply_settings(config, settings)
        changes = branch_run(source, out, config, after=after, force=force)
    except (ValueError, CheckpointError, RunDirectoryError) as err:
        fail(str(err), EXIT_BAD_INPUT)
    console.print(
        f"{out}: stages up to {after} from {source}; changed: {', '.join(changes) or 'nothing'}",
        highlight=False,
    )
    console.print(f"continue with: [bold]hyperet train --out {out} --resume[/]", highlight=False)
