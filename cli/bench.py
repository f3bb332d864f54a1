"""``hyperet bench [SUITE ...] [--quick] [--device cpu|cuda] [--json]``: ratios measured side
by side in one run.

Suites (default: all): see :data:`hyperet.bench.SUITES`. A rich table goes to stderr; ``--json``
writes the rows to stdout. Exit code 0 even when a target is missed (benchmarks report, they do
not gate); 2 for an unknown suite or a device that is not here.
"""

from __future__ import annotations

import click
from hyperet.cli.console import console, emit_json, fail, json_option


@click.command(name="bench")
@click.argument("suites", nargs=-1)
@click.option("--quick", is_flag=True, help="Smoke-sized runs (seconds), e.g. for tests.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="torch intra-op threads (timings are CPU time of the calling thread).",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="cuda: the Triton kernels vs eager torch on the GPU (suite kernels, CUDA-event time).",
)
@json_option
def command(suites: tuple[str, ...], quick: bool, threads: int, device: str, as_json: bool) -> None:
    """Benchmark torch ops, structured products and HRA (ratios measured in one run).

    SUITES: any of structured, geoopt, pairwise, hra, recipe, kernels (default: all that run
    on the device). Ratios are theirs / ours, measured side by side in one process (geoopt
    needs the `bench` extra; kernels needs --device cuda and the `gpu` extra).

    \b
    Examples:
      hyperet bench                                # every suite (minutes)
      hyperet bench structured hra --quick         # smoke-sized (seconds)
      hyperet bench --threads 2 --json > bench.json
      hyperet bench --device cuda --json > gpu.json   # Triton kernels vs eager, one GPU

    \b
    Exit codes: 0 done (a missed target is reported, not an error); 2 unknown suite or no
    CUDA device / triton for --device cuda; 130 interrupted.
    """
    from rich.table import Table

    from hyperet.bench import SUITES, SuiteUnavailable, device_problem, run_suite, suite_devices

    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        fail(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(sorted(SUITES))}")
    problem = device_problem(device)
    if problem:
        fail(problem)
    if device != "cpu":
        suites = suites or tuple(s for s in SUITES if device in suite_devices(s))
    import torch

    torch.set_num_threads(threads)
    from hyperet.bench import native_build_note
    from hyperet.ops.backend import get_backend

    payload: dict[str, object] = {
        "quick": quick,
        "backend": get_backend(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "native": native_build_note(),  # builds the C library now if needed, never in a timing
        "device": device if device == "cpu" else torch.cuda.get_device_name(),
        "rows": [],
        "skipped": {},
    }
    clock = "CPU time" if device == "cpu" else "CUDA-event time"
    table = Table(title=f"hyperet bench ({clock}; ratio = theirs / ours; > 1: ours faster)")
    columns = ("suite", "comparison", "ours", "theirs", "ratio", "target", "passes", "met", "note")
    for col in columns:
        table.add_column(col, overflow="fold")
    for name in suites or tuple(SUITES):
        console.print(f"running suite [bold]{name}[/] ...", highlight=False)
        try:
            rows = run_suite(name, quick=quick, device=device)
        except SuiteUnavailable as exc:
            payload["skipped"][name] = str(exc)  # type: ignore[index]
            console.print(f"[yellow]skipped {name}:[/] {exc}", highlight=False)
            continue
        for r in rows:
            payload["rows"].append(r.to_json())  # type: ignore[attr-defined]
            met = "" if r.met is None else ("yes" if r.met else "NO")
            table.add_row(
                r.suite,
                r.name,
                f"{r.ours * 1e3:.3f} ms",
                f"{r.theirs * 1e3:.3f} ms",
                f"{r.ratio:.2f}x",
                "" if r.target is None else f">= {r.target:g}x",
                ""
                if r.passes is None
                else f"{r.passes:.1f}"
                + ("" if r.passes_target is None else f" (<= {r.passes_target:g})"),
                met,
                r.note,
            )
    console.print(table)
    if as_json:
        emit_json(payload)
