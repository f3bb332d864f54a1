"""Benchmarks that print ratios measured side by side in one run (``hyperet bench``).

A *suite* is a module under :mod:`hyperet.bench` exposing::

    def run(quick: bool = False) -> list[Row]: ...

Each row compares two implementations of the same work: ``name``, ``ours`` and ``theirs``
(median seconds), ``ratio`` (``theirs / ours``: > 1 means ours is faster), ``target`` (the
ratio the issue asks for, or ``None``) and ``note``; optionally ``passes`` (ours against a copy
of the same activations, the memory roofline: "ours costs this many copies") and
``passes_target`` (the most passes the issue allows), ``bandwidth`` and ``bandwidth_target``
(the fraction of a device copy's bandwidth the work reaches, GPU suites). ``quick=True`` runs a
smoke-sized version (seconds; used by the tests). A suite that runs on a CUDA device is listed
in :data:`GPU_SUITES` and takes ``device=``.

Suites are registered in :data:`SUITES` by module path and imported only when run, so an
optional dependency (geoopt) is needed only by the suite that uses it; a suite whose
dependency is missing raises :class:`SuiteUnavailable` and is reported as skipped.

Timing (:func:`interleaved_medians`): the compared callables run interleaved within every
repeat, after a warm-up, and the median of the repeats is reported. The repeats run them in
the orders of a carry-over balanced (Williams) Latin square (:func:`balanced_orders`): over
``n`` repeats of ``n`` callables every callable runs right after every other one exactly once.
A call right after a 20 ms dense GEMM finds its data, and the interpreter's, evicted from the
caches and costs up to 2x more; a fixed order charged that to the same callable in every
repeat, and a shuffle of 11 repeats to some callables four times and to others never. As in
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
    "kernels": ("hyperet.bench.kernels", "Triton kernels vs eager torch (--device cuda)"),
}
#: Suites that run on a CUDA device (``hyperet bench --device cuda``) and take ``device=``.
GPU_SUITES: tuple[str, ...] = ("kernels",)


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
    bandwidth: float | None = None
    bandwidth_target: float | None = None

    @property
    def met(self) -> bool | None:
        """Whether the targets are reached (ratio, and passes when it has a target; ``None``
        when there is no target)."""
        checks = []
        if self.target is not None:
            checks.append(self.ratio >= self.target)
        if self.passes_target is not None and self.passes is not None:
            checks.append(self.passes <= self.passes_target)
        if self.bandwidth_target is not None and self.bandwidth is not None:
            checks.append(self.bandwidth >= self.bandwidth_target)
        return all(checks) if checks else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def suite_devices(name: str) -> tuple[str, ...]:
    """The devices a suite runs on (:data:`GPU_SUITES`: ``("cuda",)``; others ``("cpu",)``)."""
    return ("cuda",) if name in GPU_SUITES else ("cpu",)


def run_suite(name: str, *, quick: bool = False, device: str = "cpu") -> list[Row]:
    """Import and run one registered suite on ``device`` (a suite that does not run there
    raises :class:`SuiteUnavailable`)."""
    if name not in SUITES:
        raise ValueError(f"suite: unknown suite {name!r}; choose from {sorted(SUITES)}")
    devices = suite_devices(name)
    if device not in devices:
        raise SuiteUnavailable(f"runs with --device {' or '.join(devices)} only")
    module = importlib.import_module(SUITES[name][0])
    rows: list[Row] = module.run(quick=quick, **({} if device == "cpu" else {"device": device}))
    return rows


def native_build_note() -> str:
    """How the CPU kernels' C library was obtained (compiled now, and in how long, or loaded
    from the build cache): benchmarks record it and build before timing anything."""
    from hyperet.ops import _native

    return _native.build_note()


def device_problem(device: str) -> str | None:
    """Why ``hyperet bench --device DEVICE`` cannot run here, or ``None``."""
    if device == "cpu":
        return None
    import torch

    if not torch.cuda.is_available():
        return "--device cuda: no CUDA device here (torch.cuda.is_available() is False)"
    from hyperet.ops import _triton

    if not _triton.available():
        return f"--device cuda: {_triton.status()}"
    return None


def balanced_orders(n: int, repeats: int) -> list[list[int]]:
    """``repeats`` orders of ``range(n)``, the rows of a Williams design: the first row is
    ``0, 1, n-1, 2, n-2, ...`` (its steps ``1, -2, 3, -4, ...`` are distinct modulo ``n``), row
    ``r`` adds ``r`` modulo ``n``, so over ``n`` rows every ordered pair of neighbours occurs
    exactly once; for odd ``n`` the next ``n`` rows are the reversed ones (balanced over
    ``2n``). Beyond that the rows repeat.

    >>> balanced_orders(4, 4)
    [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]
    """
    first = [0]
    low, high = 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    orders = []
    for r in range(repeats):
        row = [(i + r) % n for i in first]
        orders.append(row[::-1] if n % 2 and (r // n) % 2 else row)
    return orders


def interleaved_medians(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 2,
    clock: Callable[[], float] = time.thread_time,
) -> dict[str, float]:
    """Median time (s, ``clock``: thread CPU time by default) of each callable, the callables
    interleaved within every repeat in the orders of :func:`balanced_orders` (module
    docstring), with the garbage collector off while timing."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in fns}
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for order in balanced_orders(len(names), repeats):
            for name in (names[i] for i in order):
                start = clock()
                fns[name]()
                times[name].append(clock() - start)
    finally:
        if was_enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in times.items()}
