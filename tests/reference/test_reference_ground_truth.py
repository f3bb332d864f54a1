"""The reference against mpmath ground truth, graded in ulps (docs/accuracy.md).

Every op, every input family of the numerics notes (section 6) plus random draws across radii
and curvatures.  The truth is computed at 50 digits and double-checked at 80.  Bound: 4 ulp
normwise, times ``max(1, lambda_x lambda_y / 4)`` for mobius_add, gyration and transport.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from hyperet import reference
from hyperet.oracle import exact
from hyperet.oracle.families import OPS, Case, cases
from hyperet.oracle.report import conditioning
from hyperet.oracle.ulp import ulp_error

BOUND_ULP = 4.0
SCALAR_OPS = {"conformal_factor", "dist", "dist0"}
GRADED = [op for op in OPS if not op.endswith("_to_dense")]


def _check_case(case: Case, *, double_check: bool) -> None:
    got = getattr(reference, case.op)(*case.args, c=case.c, **case.kwargs)
    truth = getattr(exact, case.op)(*case.args, c=case.c, dps=50, **case.kwargs)
    if double_check:
        finer = getattr(exact, case.op)(*case.args, c=case.c, dps=80, **case.kwargs)
        with mpmath.workdps(100):
            for a, b in zip(truth.ravel(), finer.ravel(), strict=True):
                assert abs(a - b) <= mpmath.mpf(10) ** -45 * max(abs(b), mpmath.mpf(10) ** -300)
    assert got.shape == truth.shape
    assert np.all(np.isfinite(got))
    err = ulp_error(got, truth, vector=case.op not in SCALAR_OPS).normwise
    bound = BOUND_ULP * conditioning(case)
    bad = err > bound
    assert not bad.any(), (
        f"{case.op} family {case.family} [{case.label}] c={case.c}: "
        f"{err[bad].max():.3g} ulp > bound {np.broadcast_to(bound, err.shape)[bad].max():.3g}"
    )


@pytest.mark.parametrize("op", GRADED)
def test_every_family_within_contract(op: str) -> None:
    for case in cases(op, seed=11, n=3, d=8):
        _check_case(case, double_check=True)


@pytest.mark.parametrize("op", GRADED)
def test_random_draws_within_contract(op: str) -> None:
    for case in cases(op, seed=12, n=24, d=4, families=("random",)):
        _check_case(case, double_check=False)


@pytest.mark.parametrize("op", ["diagonal_to_dense", "block_diagonal_to_dense", "banded_to_dense"])
def test_to_dense_is_an_exact_copy(op: str) -> None:
    for case in cases(op, seed=13, n=3, d=8):
        got = getattr(reference, op)(*case.args)
        want = np.vectorize(float, otypes=[np.float64])(getattr(exact, op)(*case.args))
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("op", GRADED)
@pytest.mark.parametrize("seed", [101, 102, 103])
def test_big_battery_within_contract(op: str, seed: int) -> None:
    for d in (4, 64):
        for case in cases(op, seed=seed, n=16, d=d):
            _check_case(case, double_check=seed == 101)
