"""Making boundary saturation visible.

A result that lies strictly inside the ball in exact arithmetic can round onto (or just past)
the boundary ``sqrt(c)|z| = 1`` in float64: ``expmap0`` once ``sqrt(c)|u| > 19.06``, sums of
near-boundary points, Möbius products with a large gain.  The reference then returns the
nearest interior float point in the same direction (see :func:`nudge_inside`) - its only
deliberate deviation from correct rounding - and records the event here.

Use :func:`track_saturation` to see how many points were nudged inside a block::

    with track_saturation() as events:
        z = expmap0(u, c=1.0)
    events["expmap0"]  # number of points of z that were nudged
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from numpy.typing import NDArray

from ._careful import conorm, scaled

Array = NDArray[np.float64]

_active: list[Counter[str]] = []


@contextmanager
def track_saturation() -> Iterator[Counter[str]]:
    """Count, per operation name, the points nudged back inside the ball within the block.

    Nested blocks each see the events of their own extent.  Not thread-safe.
    """
    events: Counter[str] = Counter()
    _active.append(events)
    try:
        yield events
    finally:  # by identity: two Counters with the same counts compare equal
        del _active[next(i for i, e in enumerate(_active) if e is events)]


def _record(op: str, count: int) -> None:
    for events in _active:
        events[op] += count


_MAX_STEPS = 4096


def nudge_inside(z: Array, c: float, op: str) -> Array:
    """Replace every vector of ``z`` that is on or outside the ball by the nearest interior
    float point in the same direction; vectors already inside are returned bitwise.

    The replacement is ``fl(f * z)`` for the largest float64 ``f <= 1`` of the form
    ``1 - j * 2**-53`` for which ``fl(f * z)`` is strictly inside (checked with the
    compensated co-norm).  Used only on results whose exact value is inside the ball, so ``z``
    is at most a few ulp outside and ``j`` is small.
    """
    outside = conorm(scaled(z), c).hi <= 0.0
    count = int(np.count_nonzero(outside))
    if count == 0:
        return z
    z = z.copy()
    bad = z[outside]  # (m, d)
    factor = np.ones(bad.shape[0])
    todo = np.ones(bad.shape[0], dtype=bool)
    for _ in range(_MAX_STEPS):
        factor[todo] = np.nextafter(factor[todo], 0.0)
        trial = bad[todo] * factor[todo, None]
        inside = conorm(scaled(trial), c).hi > 0.0
        idx = np.flatnonzero(todo)
        bad[idx[inside]] = trial[inside]
        todo[idx[inside]] = False
        if not todo.any():
            break
    else:  # pragma: no cover - would mean the caller passed a point far outside
        raise RuntimeError(f"{op}: result could not be nudged inside the ball")
    z[outside] = bad
    _record(op, count)
    return z
