"""Entry point: the ``hyperet`` click group.

Commands are imported lazily (only the one invoked), so ``hyperet --help`` never imports torch.

Exit codes (shared by every command):

=====  ==========================================================
0      success
1      the work ran but its result failed a check (e.g. a grade out of tolerance)
2      bad usage or bad input (click's usage errors, invalid files, invalid options)
3      training stopped on a non-finite loss
130    interrupted (Ctrl-C); ``hyperet train`` then says how to resume
=====  ==========================================================

Every error is one line on stderr, ``error: <what> (<where to look>)``, never wrapped and never a
traceback, whether stderr is a terminal or a pipe.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click
from hyperet.cli.console import EXIT_INTERRUPTED, fail

from hyperet import __version__

# name -> (module under hyperet.cli, one-line help shown by `hyperet --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "Train the compact MLLM (staged recipe, optional HyperET) into a run dir."),
    "eval": ("evaluate", "Evaluate a run dir: VQA, multiple choice, retrieval, radius probe."),
    "align-compare": (
        "compare",
        "Compare the ITC objectives over seeds (shared vision pretraining, retrieval, radius).",
    ),
    "branch": ("branch", "Start a run from another run's checkpoints after a completed stage."),
    "probe": (
        "probe",
        "Linear probes of a run's frozen vision features (colour, shape, count...).",
    ),
    "study": ("study", "Run an evidence grid (arms x seeds) resumably: tables, tests, plots."),
    "bench": ("bench", "Benchmark ops, structured products and HRA (ratios measured in one run)."),
    "oracle": ("oracle", "Golden vectors, grading other implementations, accuracy vs mpmath."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"hyperet.cli.{COMMANDS[cmd_name][0]}")
        command: click.Command = module.command
        return command

    def main(  # type: ignore[override, unused-ignore]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the CLI; click's own errors are printed in the one ``error:`` style (exit 2)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as error:
            hint = ""
            if isinstance(error, click.UsageError) and error.ctx is not None:
                hint = f" (see '{error.ctx.command_path} --help')"
            fail(error.format_message() + hint, error.exit_code)
        except click.Abort:
            fail("interrupted", EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hyperet", help="Print the version.")
def main() -> None:
    """hyperet: HyperET reference implementation (hyperbolic radius adjustment for MLLMs).

    \b
    Examples:
      hyperet train --out runs/hra --hyperet diagonal     # train with HyperET (minutes, CPU)
      hyperet eval runs/hra                               # VQA, multiple choice, retrieval
      hyperet oracle grade golden results.safetensors     # grade another library
      hyperet bench structured --quick                    # speed ratios, side by side

    \b
    Exit codes: 0 success; 1 a check failed (grade out of tolerance); 2 bad usage or
    input; 3 non-finite training loss; 130 interrupted. Errors are one line on stderr.
    """


if __name__ == "__main__":  # pragma: no cover
    main()
