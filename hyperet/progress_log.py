"""Plain-text progress lines for logs: what ``hyperet train`` / ``hyperet eval`` print when stderr
is not a terminal (a file, a pipe, a batch system), where progress bars would be noise.

One line every ``every`` steps of a stage (and at its last step)::

    train vision 100/1500 loss 3.2104 | 4.87 steps/s | ETA 4m47s

``steps/s`` counts the steps done by this process in this stage (a resumed stage starts counting
at the step it resumed from); ``ETA`` is the stage's remaining steps at that rate.

>>> lines = []
>>> clock = iter([0.0, 2.0, 4.0]).__next__
>>> log = StepLog(lines.append, every=2, clock=clock, prefix="train")
>>> log.start("vision", total=4)
>>> log.step("vision", 2, loss=1.5)
>>> log.step("vision", 3, loss=1.25)  # not a multiple of 2 and not the last step: silent
>>> log.step("vision", 4, loss=1.0)
>>> print("\\n".join(lines))
train vision 2/4 loss 1.5000 | 1.00 steps/s | ETA 2s
train vision 4/4 loss 1.0000 | 1.00 steps/s | ETA 0s
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


def format_duration(seconds: float) -> str:
    """``"1h02m03s"``, ``"4m47s"`` or ``"12s"`` (rounded to whole seconds).

    >>> format_duration(3723.4), format_duration(287), format_duration(0.4)
    ('1h02m03s', '4m47s', '0s')
    """
    s = round(max(0.0, seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


@dataclass
class _Stage:
    total: int
    start_step: int
    t0: float


class StepLog:
    """Writes a progress line every ``every`` steps of each named stage (and at its last step).

    Parameters
    ----------
    write : callable
        Receives each line (without newline).
    every : int
        Steps between lines (>= 1).
    clock : callable
        Seconds (monotonic); ``time.perf_counter`` by default, injectable for tests.
    prefix : str
        First word of every line (``"train"`` or ``"eval"``).
    unit : str
        What a step is called in the rate (``"steps"``, ``"batches"``).
    """

    def __init__(
        self,
        write: Callable[[str], None],
        every: int,
        *,
        clock: Callable[[], float] = time.perf_counter,
        prefix: str = "train",
        unit: str = "steps",
    ) -> None:
        if every < 1:
            raise ValueError(f"every: must be >= 1, got {every}")
        self.write, self.every, self.clock = write, every, clock
        self.prefix, self.unit = prefix, unit
        self.stages: dict[str, _Stage] = {}

    def start(self, stage: str, total: int, start_step: int = 0, t0: float | None = None) -> None:
        """Begin timing ``stage`` of ``total`` steps, ``start_step`` of them already done, at
        time ``t0`` (default: now)."""
        self.stages[stage] = _Stage(total, start_step, self.clock() if t0 is None else t0)

    def step(self, stage: str, step: int, loss: float | None = None) -> None:
        """Report that ``step`` steps (1-based count) of ``stage`` are done."""
        if stage not in self.stages:
            self.start(stage, total=step)  # unannounced stage: count from here
        s = self.stages[stage]
        if step % self.every and step != s.total:
            return
        elapsed = self.clock() - s.t0
        done = step - s.start_step
        rate = done / elapsed if elapsed > 0 else float("inf")
        eta = (s.total - step) / rate if rate > 0 else float("inf")
        loss_text = "" if loss is None else f" loss {loss:.4f}"
        rate_text = f"{rate:.2f}" if rate != float("inf") else "-"
        eta_text = format_duration(eta) if eta != float("inf") else "-"
        self.write(
            f"{self.prefix} {stage} {step}/{s.total}{loss_text} | {rate_text} {self.unit}/s"
            f" | ETA {eta_text}"
        )


class TrainLog:
    """An ``on_event`` handler of :func:`hyperet.train.train` writing :class:`StepLog` lines."""

    def __init__(
        self,
        write: Callable[[str], None],
        every: int,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.log = StepLog(write, every, clock=clock, prefix="train")
        self.write = write

    def __call__(self, event: object) -> None:
        from hyperet.train import StageFinished, StageSkipped, StageStarted, StepDone

        if isinstance(event, StageStarted):
            self.log.start(event.stage, event.steps, event.start_step)
            extra = " +HRA" if event.hyperet_active else ""
            self.write(f"train {event.stage}{extra} started: {event.steps} steps")
        elif isinstance(event, StepDone):
            self.log.step(event.stage, event.step, event.loss)
        elif isinstance(event, StageSkipped):
            self.write(f"train {event.stage}: already complete (resumed)")
        elif isinstance(event, StageFinished):
            wall = event.metrics.get("wall_time_s")
            if wall is not None:
                self.write(f"train {event.stage} finished in {format_duration(wall)}")


class EvalLog:
    """A progress handler ``(task, done, total)`` for :func:`hyperet.evaluate.evaluate`.

    Evaluation reports items done per batch; a line is written every ``every`` batches of a task
    and when the task completes. Tasks run one after another, so a task's clock starts when the
    previous report arrived (or when the log was created).
    """

    def __init__(
        self,
        write: Callable[[str], None],
        every: int,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.log = StepLog(write, 1, clock=clock, prefix="eval", unit="items")
        self.every, self.clock = every, clock
        self.calls: dict[str, int] = {}
        self.last = clock()

    def __call__(self, task: str, done: int, total: int) -> None:
        if task not in self.calls:
            self.calls[task] = 0
            self.log.start(task, total=total, t0=self.last)
        self.calls[task] += 1
        if self.calls[task] % self.every == 0 or done >= total:
            self.log.step(task, done)
        self.last = self.clock()


__all__ = ["EvalLog", "StepLog", "TrainLog", "format_duration"]
