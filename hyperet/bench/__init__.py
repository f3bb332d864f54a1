"""Benchmarks that print ratios measured side by side in one run (``hyperet bench``).

A *suite* is a module under :mod:`hyperet.bench` exposing::

    def run(quick: bool = False) -> list[Row]: ...

Each row compares two implementations of the same work: ``name``, ``ours`` and ``theirs``
(median seconds), ``ratio`` (``theirs / ours``: > 1 means ours is faster), ``target`` (the
ratio the issue asks for, or ``None``) and ``note``; optionally ``passes`` (ours against a copy
of the same activations, the memory roofline: "ours costs this many copies") and
``passes_target`` (the most passes the issue allows). ``quick=True`` runs a smoke-sized
version (seconds; used by the tests).

Suites are registered in :data:`SUITES` by module path and imported only when run, so an
optional dependency (geoopt) is needed only by the suite that uses it; a suite whose
dependency is missing raises :class:`SuiteUnavailable` and is reported as skipped.

Timing (:func:`interleaved_medians`): the compared callables run interleaved within every
repeat, after a warm-up, and the median of the repeats is reported. Each repeat runs them in
a new order (a seeded shuffle, the same in every run), so that none always runs right after
the same neighbour: a call right after a 20 ms dense GEMM finds its data, and the
interpreter's, evicted from the caches and costs up to 2x more, and a fixed order charged
that to the same callable in every repeat. As in
:mod:`timeit`, Python's garbage collector is off inside the timed calls (collected before the
repeats): a collection pause belongs to whichever call crosses the allocation threshold, not
to the code that made the garbage. The clock is the calling
thread's CPU time (:func:`time.thread_time`) and ``hyperet bench`` runs torch with one
intra-op thread (``--threads``), so the figure is the CPU work of each implementation: on a
shared machine wall time also counts the time a job waits for a core, which made wall-clock
ratios swing by 10x between runs. (CPU autograd runs the backward on the calling thread, so
with one intra-op thread the thread clock sees all the work.)
"""

from __future__ import annotations

import gc
import importlib
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

#: suite name -> (module, one-line description)
SUITES: dict[str, tuple[str, str]] = {
    "structured": ("hyperet.bench.ops_structured", "structured Möbius products vs dense matvec"),
    "geoopt": ("hyperet.bench.ops_geoopt", "hyperet.ops vs geoopt at equal dtype"),
    "pairwise": ("hyperet.bench.ops_pairwise", "pairwise_dist (matmul) vs broadcast"),
    "hra": ("hyperet.bench.hra", "HRA training step and merged inference"),
    "recipe": ("hyperet.bench.recipe_step", "where a training step of the compact MLLM goes"),
}


class SuiteUnavailable(RuntimeError):
    """A suite cannot run here (e.g. its optional dependency is not installed)."""


@dataclass(frozen=True)
class Row:
    """One side-by-side comparison."""

    suite: str
    name: str
    ours: float
    theirs: float
    ratio: float
    target: float | None
    note: str = ""
    passes: float | None = None
    passes_target: float | None = None

    @property
    def met(self) -> bool | None:
        """Whether the targets are reached (ratio, and passes when it has a target; ``None``
        when there is no target)."""
        checks = []
        if self.target is not None:
            checks.append(self.ratio >= self.target)
        if self.passes_target is not None and self.passes is not None:
            checks.append(self.passes <= self.passes_target)
        return all(checks) if checks else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def run_suite(name: str, *, quick: bool = False) -> list[Row]:
    """Import and run one registered suite."""
    if name not in SUITES:
        raise ValueError(f"suite: unknown suite {name!r}; choose from {sorted(SUITES)}")
    module = importlib.import_module(SUITES[name][0])
    rows: list[Row] = module.run(quick=quick)
    return rows


def interleaved_medians(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 2,
    clock: Callable[[], float] = time.thread_time,
) -> dict[str, float]:
    """Median time (s, ``clock``: thread CPU time by default) of each callable, the callables
    interleaved within every repeat, in a new (seeded) order per repeat (module docstring),
    with the garbage collector off while timing."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    names = list(fns)
    shuffler = random.Random(0)
    times: dict[str, list[float]] = {name: [] for name in fns}
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            shuffler.shuffle(names)
            for name in names:
                start = clock()
                fns[name]()
                times[name].append(clock() - start)
    finally:
        if was_enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in times.items()}
