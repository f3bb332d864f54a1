"""``hyperet align-compare``: the measured comparison of the ITC objectives over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from hyperet.cli.console import EXIT_BAD_INPUT, EXIT_NONFINITE, console, fail, os_error_message

from hyperet.config import ITC_OBJECTIVES, PRESETS


@click.command(name="align-compare")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Result JSON (every run and the summary; holds the finished runs while it runs).",
)
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    default="small",
    show_default=True,
    help="Model size, data and step budgets (vision and itc stages).",
)
@click.option(
    "--seed",
    "seeds",
    type=click.IntRange(min=0),
    multiple=True,
    help="Seed (repeatable; default 0, 1 and 2).",
)
@click.option(
    "--objective",
    "objectives",
    multiple=True,
    metavar="OBJECTIVE[:KEY=VALUE,...]",
    help=f"ITC objective ({', '.join(ITC_OBJECTIVES)}), optionally with aligner settings "
    "changed, e.g. hyperbolic-entail:aperture_K=0.02,learn_curvature=true (repeatable; "
    "default all).",
)
@click.option("--test-scenes", type=click.IntRange(min=1), help="Test split size (preset's).")
@click.option(
    "--steps",
    "steps_items",
    multiple=True,
    metavar="STAGE=N",
    help="Step budget of vision or itc, replacing the preset's (repeatable).",
)
@click.option(
    "--vision-cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory keeping each seed's pretrained vision stage for later calls.",
)
@click.option(
    "--merge",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="Only merge these result files (e.g. one per seed) into --out.",
)
def command(**opts: Any) -> None:
    """Compare the ITC objectives: one vision pretraining per seed, shared by every objective.

    Each objective's aligner trains with the recipe's itc stage on the frozen ViT and is
    evaluated on the test split (retrieval per level, radius analysis); the table shows the
    mean ± standard deviation over seeds (docs/alignment.md).

    \b
    Examples:
      hyperet align-compare --preset nano --seed 0 --out /tmp/compare.json
      hyperet align-compare --seed 0 --steps vision=500 --steps itc=300 --out s0.json
      hyperet align-compare --seed 0 --vision-cache cache \\
        --objective hyperbolic-entail:aperture_K=0.02 --out k002.json
      hyperet align-compare --merge s0.json --merge s1.json --out merged.json

    \b
    Exit codes: 0 done; 2 bad options or file (one line on stderr); 3 non-finite loss.
    """
    from hyperet.config import parse_steps
    from hyperet.train import NonFiniteLossError
    from hyperet.train.compare import HEADLINE_KEYS, markdown_table, run_comparison

    try:
        result = run_comparison(
            opts["out"],
            merge=opts["merge"],
            preset_name=opts["preset"],
            seeds=opts["seeds"] or (0, 1, 2),
            objectives=opts["objectives"] or ITC_OBJECTIVES,
            test_scenes=opts["test_scenes"],
            steps=parse_steps(list(opts["steps_items"])),
            log=lambda message: console.print(message, highlight=False),
            vision_cache=opts["vision_cache"],
        )
    except NonFiniteLossError as err:
        fail(str(err), EXIT_NONFINITE)
    except ValueError as err:
        fail(str(err), EXIT_BAD_INPUT)
    except OSError as err:
        fail(os_error_message(err, opts["out"]), EXIT_BAD_INPUT)
    click.echo(markdown_table(result["summary"], HEADLINE_KEYS))
