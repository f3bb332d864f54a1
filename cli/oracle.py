"""``hyperet oracle``: golden vectors, grading of other implementations, accuracy vs mpmath.

Exit codes: 0 all within the contract; 1 something is out of tolerance; 2 bad input (a missing
or malformed golden directory or results file, unknown keys, wrong shapes or dtypes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from hyperet.cli.console import (
    EXIT_CHECK_FAILED,
    console,
    emit_json,
    fail,
    json_option,
    os_error_message,
)
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from hyperet.choices import POLICIES
from hyperet.oracle.contract import PRECISION_BITS
from hyperet.oracle.implementations import LIBRARIES

if TYPE_CHECKING:
    from hyperet.oracle.grade import OpGrade


def _ulp(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}" if value < 1e4 else f"{value:.2e}"


def render_grades(title: str, grades: Sequence[OpGrade]) -> None:
    """Print one table row per (implementation, op) on stderr.

    Errors are in ulps of the result's format: ``normwise`` (max |error| over the vector in ulps
    of its largest component) and ``component`` (worst single component), max and median over
    the cases; ``fail`` counts the cases out of tolerance (non-finite included) against the
    base ``bound`` times each case's allowance.
    """
    several = len({g.implementation for g in grades}) > 1
    table = Table(title=title, title_justify="left", caption="errors in ulps of the result dtype")
    columns = ["op", *(["implementation"] if several else []), "dtype", "cases"]
    columns += ["normwise max", "median", "component max", "median", "NaN/inf", "fail", "bound"]
    for name in [*columns, "worst family"]:
        table.add_column(name, justify="left" if name in _LEFT else "right", no_wrap=True)
    for g in grades:
        worst = max(g.families.items(), key=lambda kv: kv[1].normwise_max_ulp, default=None)
        style = "green" if g.passed else "bold red"
        row = [g.op, *([g.implementation] if several else []), g.dtype, str(g.cases)]
        row += [_ulp(g.normwise_max_ulp), _ulp(g.normwise_median_ulp)]
        row += [_ulp(g.component_max_ulp), _ulp(g.component_median_ulp), str(g.nonfinite)]
        row += [f"[{style}]{g.out_of_tolerance}[/]", _ulp(g.threshold_ulp)]
        row.append("-" if worst is None or not worst[1].normwise_max_ulp else worst[0])
        table.add_row(*row)
    # on a pipe (rich assumes 80 columns there) the table keeps its natural width: no folding
    natural = Measurement.get(console, console.options.update_width(1000), table).maximum
    if console.is_terminal or natural <= console.width:
        console.print(table)
    else:
        Console(stderr=True, width=natural).print(table)


_LEFT = {"op", "implementation", "dtype", "worst family"}


@click.group("oracle")
def command() -> None:
    """Golden vectors, grading of other implementations, accuracy vs mpmath.

    The golden vectors are shipped in the repository under golden/ (docs/oracle.md); a
    numpy-only grader sits beside them (golden/grade_numpy.py).

    \b
    Examples:
      hyperet oracle grade golden mylib.safetensors --json
      hyperet oracle results golden ops32.safetensors --library ops --dtype float32
      hyperet oracle accuracy --op dist --op expmap
      hyperet oracle export golden

    \b
    Exit codes: 0 everything within the contract; 1 something out of tolerance;
    2 bad input (missing or malformed files, unknown keys, wrong shapes or dtypes).
    """


def _op_option(help_text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    from hyperet.oracle.contract import OPS

    return click.option(
        "--op",
        "ops",
        multiple=True,
        type=click.Choice(OPS),
        metavar="OP",
        help=help_text + " (repeatable). OP: a golden op, e.g. dist, mobius_add, hra_block"
        " (the list is in docs/oracle.md; a wrong name prints it).",
    )


@command.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_op_option("Export only this op")
def export(directory: Path, ops: tuple[str, ...]) -> None:
    """Write the golden vectors to DIRECTORY/float64/ and DIRECTORY/float32/.

    Also writes DIRECTORY/SHA256SUMS. The same hyperet version writes the same bytes; the
    repository's golden/ is regenerated with `hyperet oracle export golden` (about 20 s).

    \b
    Examples:
      hyperet oracle export golden                 # regenerate the shipped files
      hyperet oracle export /tmp/g --op dist --op mobius_add

    \b
    Exit codes: 0 written; 2 bad options.
    """
    from hyperet.oracle.contract import OPS
    from hyperet.oracle.golden import export_golden

    try:
        with console.status("computing golden vectors"):
            written = export_golden(directory, ops=ops or OPS)
    except OSError as error:
        fail(os_error_message(error, directory))
    console.print(f"wrote {len(written)} golden files under {directory}")


@command.command("grade")
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--require-all", is_flag=True, help="Fail (exit 2) when an op has no results.")
@_op_option("Grade only this op; the results must hold it")
@click.option(
    "--family",
    "families",
    multiple=True,
    metavar="F",
    help="Grade only the cases of this input family: A ... K, random, hra-identity (repeatable).",
)
@click.option(
    "--bound",
    "bound_ulp",
    type=click.FloatRange(min=0.0),
    metavar="ULP",
    help="Replace the contract's bound (ulps of the result's format, before the allowance).",
)
@json_option
def grade(
    directory: Path,
    results: Path,
    require_all: bool,
    ops: tuple[str, ...],
    families: tuple[str, ...],
    bound_ulp: float | None,
    as_json: bool,
) -> None:
    """Grade RESULTS (one tensor per op) against the golden vectors in DIRECTORY.

    RESULTS is a safetensors file holding, per op, a tensor named after the op with the shape
    of its `expected` (float64, float32, float16 or bfloat16). DIRECTORY is an export root
    (the tier is picked from the dtypes) or one tier. Errors are in ulps of the result's
    format; the bounds and the JSON schema are in docs/oracle.md.

    \b
    Examples:
      hyperet oracle grade golden mylib.safetensors
      hyperet oracle grade golden mylib.safetensors --require-all --json > grade.json
      hyperet oracle grade golden mylib.safetensors --op dist --family A --bound 2

    \b
    Exit codes: 0 every graded case within tolerance; 1 some case out of tolerance;
    2 bad input (missing or malformed files, unknown keys, wrong shapes or dtypes).
    """
    from hyperet.oracle.files import OracleInputError
    from hyperet.oracle.grade import grade_results

    try:
        report = grade_results(
            directory,
            results,
            require_all=require_all,
            ops=ops or None,
            families=families or None,
            bound_ulp=bound_ulp,
        )
    except OracleInputError as error:
        fail(str(error))
    except OSError as error:
        fail(os_error_message(error, directory))
    render_grades(f"{results} vs golden vectors in {directory}", report.grades)
    if report.not_graded:
        console.print(f"not graded (no results): {', '.join(report.not_graded)}")
    if as_json:
        emit_json(report.to_json())
    if not report.passed:
        failed = [g.op for g in report.grades if not g.passed]
        console.print(f"[bold red]out of tolerance:[/] {', '.join(failed)}")
        raise SystemExit(EXIT_CHECK_FAILED)


@command.command("results")
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--library",
    type=click.Choice(LIBRARIES),
    default="reference",
    show_default=True,
    help="Implementation to run: hyperet.reference, hyperet.ops (torch) or geoopt.",
)
@click.option(
    "--dtype",
    type=click.Choice(tuple(PRECISION_BITS)),
    default="float64",
    show_default=True,
    help="Compute dtype; the others run on the float32 tier's inputs (reference: rounded output).",
)
@click.option(
    "--policy",
    type=click.Choice(POLICIES),
    default=None,
    help="hyperet.ops policy (default: exact for float64, train for float32).",
)
def results(directory: Path, output: Path, library: str, dtype: str, policy: str | None) -> None:
    """Run LIBRARY on the golden inputs in DIRECTORY and write a results file to OUTPUT.

    The golden tier matching --dtype is used (DIRECTORY/float32 for float32, float16 and
    bfloat16). Grade the output with `hyperet oracle grade`.

    \b
    Examples:
      hyperet oracle results golden ref.safetensors
      hyperet oracle results golden ops32.safetensors --library ops --dtype float32 --policy exact
      hyperet oracle results golden geoopt.safetensors --library geoopt
      hyperet oracle results golden half.safetensors --library ops --dtype float16

    \b
    Exit codes: 0 written; 2 bad input (missing golden files, library not installed).
    """
    from hyperet.oracle.files import OracleInputError
    from hyperet.oracle.implementations import write_results

    try:
        ops = write_results(directory, output, library=library, dtype=dtype, policy=policy)
    except OracleInputError as error:
        fail(str(error))
    except OSError as error:
        fail(os_error_message(error, directory))
    console.print(f"wrote {library} {dtype} results for {len(ops)} ops to {output}")


@command.command("accuracy")
@click.option(
    "--cases",
    type=click.IntRange(1, 10_000),
    default=12,
    show_default=True,
    help="Random cases per op (the input families come on top).",
)
@click.option(
    "--digits",
    type=click.IntRange(30, 200),
    default=50,
    show_default=True,
    help="Decimal digits of the mpmath ground truth.",
)
@_op_option("Grade only this op")
@json_option
def accuracy(cases: int, digits: int, ops: tuple[str, ...], as_json: bool) -> None:
    """Grade hyperet.reference, hyperet.ops (float64, float32) and geoopt against mpmath.

    The battery is --cases random draws plus 2 points of every input family per op; only
    the implementations that claim the contract (reference, ops in policy exact) are judged.

    \b
    Examples:
      hyperet oracle accuracy                      # about 20 s
      hyperet oracle accuracy --op dist --cases 100 --json > dist.json

    \b
    Exit codes: 0 within the contract; 1 out of tolerance; 2 bad options.
    """
    from hyperet.oracle.accuracy import run_accuracy
    from hyperet.oracle.contract import OPS

    with console.status("evaluating the battery in mpmath"):
        report = run_accuracy(cases=cases, digits=digits, ops=ops or OPS)
    render_grades(f"accuracy against mpmath at {digits} digits", report.grades)
    for note in report.notes:
        console.print(note)
    if as_json:
        emit_json(report.to_json())
    if not report.passed:
        raise SystemExit(EXIT_CHECK_FAILED)
