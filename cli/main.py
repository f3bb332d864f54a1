"""Entry point: the ``hyperet`` click group.

Commands are imported lazily (only the one invoked), so ``hyperet --help`` never imports torch.

Exit codes (shared by every command):

=====  ==========================================================
0      success
1      the work ran but its result failed a check (e.g. a grade out of tolerance)
2      bad usage or bad input (click's usage errors, invalid files, invalid options)
3      training stopped on a non-finite loss
=====  ==========================================================
"""

from __future__ import annotations

import importlib

import click

from hyperet import __version__

# name -> (module under hyperet.cli, one-line help shown by `hyperet --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "Train the compact MLLM (staged recipe, optional HyperET) into a run dir."),
    "eval": ("evaluate", "Evaluate a run dir: VQA, multiple choice, retrieval, radius probe."),
    "branch": ("branch", "Start a run from another run's checkpoints after a completed stage."),
    "probe": (
        "probe",
        "Linear probes of a run's frozen vision features (colour, shape, count...).",
    ),
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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hyperet")
def main() -> None:
    """hyperet: HyperET reference implementation (hyperbolic radius adjustment for MLLMs)."""


if __name__ == "__main__":  # pragma: no cover
    main()
