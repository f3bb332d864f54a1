"""Self-grading against arbitrary precision: ``hyperet oracle accuracy``.

A small battery of golden-style cases (per op and tier: ``cases`` random draws plus a few
points of every adversarial family, chosen deterministically) is evaluated exactly with
:mod:`hyperet.oracle.exact` (mpmath) and by each implementation; every result is graded with
:func:`hyperet.oracle.grade.grade_values` against the exact values, in ulps of the result's
format, with the contract's bound against the exact value (no reference term) times the
per-case allowance.

Implementations graded (one table, same columns as ``hyperet oracle grade``):

- ``reference`` float64;
- ``ops:exact`` float64 and float32 (float32 inputs evaluated in float64, rounded once);
- ``ops:train`` float32 (the training policy: float32 arithmetic, dtype-aware clamps);
- ``geoopt`` float64 and float32 when geoopt is importable (optional extra ``bench``).

The run fails (:attr:`AccuracyReport.passed` is false) only when an implementation that
claims the contract - the reference and hyperet.ops in exact mode - is out of tolerance;
``ops:train`` and geoopt are reported, not judged.

The exact HRA value is ``W u`` (``logmap0(W (x) expmap0(u)) = W u`` for every ``c``), formed
in mpmath from the dense matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from hyperet.oracle import contract, exact
from hyperet.oracle.files import GoldenFile
from hyperet.oracle.golden import LEGEND, candidate_rows, evaluate_rows, golden_file
from hyperet.oracle.grade import OpGrade, grade_values
from hyperet.oracle.implementations import library_available, op_table, run_cases
from hyperet.oracle.spec import DENSE_OPS, GOLDEN_OPS, SPECS

#: (label, library, dtype, policy, judged against the contract)
IMPLEMENTATIONS: tuple[tuple[str, str, str, str | None, bool], ...] = (
    ("reference", "reference", "float64", None, True),
    ("ops:exact", "ops", "float64", "exact", True),
    ("ops:exact", "ops", "float32", "exact", True),
    ("ops:train", "ops", "float32", "train", False),
    ("geoopt", "geoopt", "float64", None, False),
    ("geoopt", "geoopt", "float32", None, False),
)

#: Points taken from each adversarial family (per op and tier).
PER_FAMILY = 2


@dataclass(frozen=True)
class AccuracyReport:
    """Every (implementation, op) grade against mpmath, and notes for the reader."""

    grades: list[OpGrade]
    judged: frozenset[str]
    notes: list[str]

    @property
    def passed(self) -> bool:
        """Whether every implementation that claims the contract is within it."""
        return all(g.passed for g in self.grades if g.implementation in self.judged)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "passed": self.passed,
            "judged": sorted(self.judged),
            "grades": [g.to_json() for g in self.grades],
            "notes": self.notes,
        }


def battery(op: str, tier: str, *, cases: int, seed: int = 0) -> GoldenFile:
    """``cases`` random draws plus :data:`PER_FAMILY` points of each family, for one op/tier.

    Points are picked evenly spaced through each family's candidates (so e.g. family A spans
    its radii) and checked like golden cases.
    """
    rows = candidate_rows(op, tier)
    by_family: dict[int, list[int]] = {}
    for i, (_, _, family) in enumerate(rows):
        by_family.setdefault(family, []).append(i)
    rng = np.random.default_rng([seed, GOLDEN_OPS.index(op), tier == "float32"])
    picked: list[int] = []
    for family, members in sorted(by_family.items()):
        want = cases if LEGEND[family].startswith("random") else PER_FAMILY
        if len(members) <= want:
            picked.extend(members)
        elif LEGEND[family].startswith("random"):
            picked.extend(sorted(rng.choice(members, size=want, replace=False).tolist()))
        else:
            picked.extend(members[int(k)] for k in np.linspace(0, len(members) - 1, want))
    return golden_file(op, tier, evaluate_rows(op, tier, [rows[i] for i in picked]))


def exact_values(golden: GoldenFile, *, digits: int) -> np.ndarray:
    """mpmath values (object array shaped like ``golden.expected``) at the golden inputs."""
    names = [name for name in golden.inputs if name != "c"]
    out = np.empty(golden.expected.shape, dtype=object)
    for i in range(golden.cases):
        args = {name: golden.inputs[name][i].astype(np.float64) for name in names}
        c = float(golden.inputs["c"][i])
        value = np.asarray(_exact_case(golden.op, args, c, digits), dtype=object)
        out[i] = value.item() if value.ndim == 0 else value
    return out


def _exact_case(op: str, a: dict[str, np.ndarray], c: float, digits: int) -> Any:
    spec = SPECS[op]
    if spec.structure:
        name = spec.inputs[0]
        dense = getattr(exact, DENSE_OPS[name])(a[name])  # (d, d) of mpf, exact copies
        u = [mpmath.mpf(float(v)) for v in a["u"]]
        with mpmath.workdps(digits + exact.GUARD_DIGITS):
            row_sums = [mpmath.fsum(m * v for m, v in zip(row, u, strict=True)) for row in dense]
        with mpmath.workdps(digits):
            return np.array([+v for v in row_sums], dtype=object)
    return spec.call(getattr(exact, op), a, c, dps=digits)


def run_accuracy(
    *,
    cases: int = 12,
    digits: int = exact.DEFAULT_DPS,
    ops: Sequence[str] = GOLDEN_OPS,
    implementations: Sequence[str] | None = None,
) -> AccuracyReport:
    """Grade every implementation on the battery; see the module docstring."""
    chosen = [
        impl
        for impl in IMPLEMENTATIONS
        if implementations is None or impl[0] in implementations or impl[1] in implementations
    ]
    notes: list[str] = []
    if any(impl[1] == "geoopt" for impl in chosen) and not library_available("geoopt"):
        chosen = [impl for impl in chosen if impl[1] != "geoopt"]
        notes.append("geoopt is not installed (pip install hyperet[bench]): not graded")
    grades: list[OpGrade] = []
    for tier in ("float64", "float32"):
        tables = {
            (label, dtype): op_table(library, dtype, policy)
            for label, library, dtype, policy, _ in chosen
            if dtype == tier
        }
        for op in ops:
            golden = battery(op, tier, cases=cases)
            truth = exact_values(golden, digits=digits)
            inputs = {k: v for k, v in golden.inputs.items() if k != "c"}
            for (label, dtype), table in tables.items():
                if op not in table:
                    continue
                values = run_cases(table[op], inputs, golden.inputs["c"], golden.expected.shape[1:])
                grades.append(
                    grade_values(
                        golden,
                        values.astype(dtype).astype(np.float64),
                        dtype,
                        implementation=label,
                        reference=truth,
                        threshold_ulp=contract.exact_threshold_ulp(op, dtype),
                    )
                )
    grades.sort(key=lambda g: (g.op, g.dtype != "float64", g.implementation))
    judged = frozenset(label for label, *_, claims in chosen if claims)
    notes.append(
        f"battery: {cases} random cases + {PER_FAMILY} per family per op and format, "
        f"mpmath at {digits} digits; judged against the contract: {', '.join(sorted(judged))}"
    )
    return AccuracyReport(grades=grades, judged=judged, notes=notes)
