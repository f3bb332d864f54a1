"""The measured accuracy of :mod:`hyperet.reference`: max ulp error per operation and family.

Run ``python -m hyperet.oracle.report`` (options: ``--n``, ``--d``, ``--seed``, ``--dps``) to
print the markdown table that docs/accuracy.md reproduces.  Every case of
:func:`hyperet.oracle.families.cases` is evaluated by the reference and graded against
:mod:`hyperet.oracle.exact` with :func:`hyperet.oracle.ulp.ulp_error` (normwise for vectors).
For ``mobius_add``, ``gyration`` and ``transport`` a cell above 4 ulp also shows the error
divided by the contract's conditioning factor ``max(1, lambda_x lambda_y / 4)``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hyperet import reference
from hyperet.oracle import contract, exact
from hyperet.oracle.families import FAMILIES, OPS, Case, cases
from hyperet.oracle.spec import SPECS
from hyperet.oracle.ulp import ulp_error

__all__ = ["Row", "accuracy_rows", "conditioning", "format_markdown", "grade_case", "main"]

_SCALAR_OPS = {op for op in OPS if SPECS[op].scalar}
#: ops whose contract is conditioning-scaled -> positions of the two conditioning points
_CONDITIONED = {
    op: tuple(SPECS[op].inputs.index(name) for name in SPECS[op].conditioned)
    for op in OPS
    if SPECS[op].conditioned
}


@dataclass(frozen=True)
class Row:
    """Worst normwise error of one operation over one family."""

    op: str
    family: str
    cases: int
    points: int
    max_ulp: float
    max_scaled_ulp: float  # max_ulp / max(1, lambda_x lambda_y / 4) where the contract allows it
    worst_label: str


def conditioning(case: Case) -> np.ndarray:
    """Per point, ``max(1, lambda_x lambda_y / 4)`` for the two point arguments of the ops whose
    contract is conditioning-scaled (ones for every other op)."""
    if case.op == "entailment_energy":
        x, y = case.args
        K = case.kwargs["K"]
        return contract.energy_allowance(
            reference.entailment_angle(x, y, c=case.c),
            reference.entailment_aperture(x, c=case.c, K=K),
            reference.entailment_energy(x, y, c=case.c, K=K),
        )
    pair = _CONDITIONED.get(case.op)
    if pair is None:
        return np.ones(1)
    lam = [reference.conformal_factor(case.args[i], c=case.c) for i in pair]
    return np.maximum(1.0, lam[0] * lam[1] / 4.0)


def grade_case(case: Case, *, dps: int = exact.DEFAULT_DPS) -> tuple[np.ndarray, np.ndarray]:
    """Normwise ulp errors of one case, raw and divided by :func:`conditioning`."""
    got = getattr(reference, case.op)(*case.args, c=case.c, **case.kwargs)
    want = getattr(exact, case.op)(*case.args, c=case.c, dps=dps, **case.kwargs)
    err = ulp_error(got, want, vector=case.op not in _SCALAR_OPS).normwise
    return err, err / conditioning(case)


def _to_dense_rows(op: str, seed: int, n: int, d: int) -> list[Row]:
    rows = []
    for family in ("random", "D"):
        worst = 0.0
        cs = cases(op, seed=seed, n=n, d=d, families=(family,))
        for case in cs:
            got = getattr(reference, op)(*case.args)
            want = np.vectorize(float, otypes=[np.float64])(getattr(exact, op)(*case.args))
            worst = max(worst, float(np.max(np.abs(got - want))) if got.size else 0.0)
        rows.append(Row(op, family, len(cs), len(cs), worst, worst, "exact copy"))
    return rows


def accuracy_rows(
    ops: Sequence[str] = OPS, *, seed: int = 0, n: int = 4, d: int = 8, dps: int = 50
) -> list[Row]:
    """One :class:`Row` per (operation, family) that applies."""
    rows: list[Row] = []
    for op in ops:
        if op.endswith("_to_dense"):
            rows.extend(_to_dense_rows(op, seed, n, d))
            continue
        for family in FAMILIES:
            cs = cases(op, seed=seed, n=n, d=d, families=(family,))
            if not cs:
                continue
            worst, worst_scaled, label, points = 0.0, 0.0, "", 0
            for case in cs:
                err, scaled_err = grade_case(case, dps=dps)
                points += err.size
                if err.size and float(err.max()) >= worst:
                    worst, label = float(err.max()), case.label
                worst_scaled = max(worst_scaled, float(scaled_err.max()) if err.size else 0.0)
            rows.append(Row(op, family, len(cs), points, worst, worst_scaled, label))
    return rows


def format_markdown(rows: Sequence[Row]) -> str:
    """A markdown table: one line per operation, one column per family (max normwise ulp)."""
    families = [f for f in FAMILIES if any(r.family == f for r in rows)]
    by_key = {(r.op, r.family): r for r in rows}
    ops = list(dict.fromkeys(r.op for r in rows))
    head = "| op | " + " | ".join(families) + " | max |"
    sep = "|---|" + "---:|" * (len(families) + 1)
    lines = [head, sep]
    for op in ops:
        cells = []
        worst = 0.0
        for f in families:
            r = by_key.get((op, f))
            if r is None:
                cells.append("")
                continue
            value = r.max_ulp
            worst = max(worst, value)
            text = f"{value:.2f}"
            if op in _CONDITIONED and r.max_ulp > 4.0:
                text += f" ({r.max_scaled_ulp:.2f} scaled)"
            cells.append(text)
        lines.append(f"| {op} | " + " | ".join(cells) + f" | {worst:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the accuracy table (markdown) and the command's settings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=4, help="points per case")
    parser.add_argument("--d", type=int, default=8, help="vector dimension (multiple of 4)")
    parser.add_argument("--dps", type=int, default=50, help="digits of the mpmath ground truth")
    parser.add_argument("--ops", nargs="*", default=list(OPS))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = accuracy_rows(args.ops, seed=args.seed, n=args.n, d=args.d, dps=args.dps)
    print(format_markdown(rows))
    points = sum(r.points for r in rows)
    print(
        f"\n{points} points, seed={args.seed} n={args.n} d={args.d} dps={args.dps}, "
        f"{time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
