"""Shared CLI plumbing: one rich console on stderr, JSON on stdout, clean error exits."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from hyperet.choices import DEVICES, SPLITS

#: Every human-readable line (tables, progress) goes to stderr; stdout is kept for --json.
console = Console(stderr=True)

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3
EXIT_INTERRUPTED = 130

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Also write machine-readable results to stdout."
)

device_option = click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="cpu",
    show_default=True,
    help="Where the model computes: cpu (bitwise reproducible), cuda (under torchrun: the "
    "rank's GPU), auto (cuda when available).",
)


def split_option(help_text: str) -> Any:
    """``--split {train,val,test}`` (default test): which of the run's seeded splits to score."""
    return click.option(
        "--split",
        type=click.Choice(SPLITS),
        default="test",
        show_default=True,
        help=help_text,
    )


def log_every_option(default: int, unit: str) -> Any:
    """``--log-every N``: the interval of plain progress lines when stderr is not a terminal."""
    return click.option(
        "--log-every",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        help=f"When stderr is not a terminal: print a plain progress line every N {unit} "
        "(a terminal gets progress bars instead).",
    )


def emit_json(payload: Any) -> None:
    """Write ``payload`` as one JSON document on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")
    sys.stdout.flush()


def plain_line(text: str) -> None:
    """One unstyled, unwrapped line on stderr (progress lines of a log file)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: message`` on stderr as ONE line and exit with ``code`` (no traceback).

    The line is never wrapped, on a terminal or a pipe (``soft_wrap``), and newlines inside
    ``message`` are folded, so ``2>&1 | grep error:`` always sees the whole message.
    """
    line = " ".join(str(message).split())
    console.print(Text.assemble(("error:", "bold red"), " ", line), soft_wrap=True)
    raise SystemExit(code)


def os_error_message(err: OSError, path: object) -> str:
    """One line for an ``OSError``: the file involved (or ``path``) and the system's reason."""
    where = err.filename if err.filename is not None else path
    return f"{where}: {err.strerror or err}"
