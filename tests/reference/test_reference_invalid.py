"""Invalid input (family L): every op refuses it with a ValueError naming the argument."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hyperet import reference as R
from hyperet.oracle.families import OPS, invalid_cases


@pytest.mark.parametrize("op", OPS)
def test_family_l_raises_value_error_naming_the_argument(op: str) -> None:
    bad = invalid_cases(op)
    assert bad, op
    for case in bad:
        with pytest.raises(ValueError, match=rf"^{re.escape(case.argument)}: ") as info:
            getattr(R, op)(*case.args, **case.kwargs)
        assert info.value is not None, case.label


def test_dtype_rule_widens_float32_and_float16_exactly() -> None:
    x64 = np.array([0.25, -0.5, 0.125])
    for dtype in (np.float16, np.float32):
        got = R.dist0(x64.astype(dtype), c=1.0)
        assert got == R.dist0(x64, c=1.0)
    assert R.dist0([0.25, -0.5, 0.125], c=1.0) == R.dist0(x64, c=1.0)


@pytest.mark.parametrize(
    "value",
    [
        np.array([0, 0], dtype=np.int64),
        np.array([True, False]),
        np.array([0.1, 0.2], dtype=np.longdouble),
        np.array([0.1, 0.2], dtype=object),
        np.array([0.1, 0.2], dtype=np.complex128),
    ],
    ids=["int", "bool", "longdouble", "object", "complex"],
)
def test_dtype_rule_refuses(value: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"^x: dtype"):
        R.logmap0(value, c=1.0)


def test_scalar_r_accepts_exact_python_ints_only() -> None:
    x = np.array([0.1, 0.2])
    assert np.array_equal(R.mobius_scalar_mul(2, x, c=1.0), R.mobius_scalar_mul(2.0, x, c=1.0))
    with pytest.raises(ValueError, match=r"^r: "):
        R.mobius_scalar_mul(2**60 + 1, x, c=1.0)
    with pytest.raises(ValueError, match=r"^r: "):
        R.mobius_scalar_mul(True, x, c=1.0)


@pytest.mark.parametrize("c", [0.0, -1.0, float("nan"), float("inf"), True, "1.0", None])
def test_curvature_must_be_a_finite_positive_real(c: object) -> None:
    with pytest.raises(ValueError, match=r"^c: "):
        R.dist0(np.array([0.1]), c=c)  # type: ignore[arg-type]


def test_leading_shapes_must_broadcast_and_vectors_match() -> None:
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"^y: leading shape"):
        R.mobius_add(x, np.zeros((4, 2)), c=1.0)
    with pytest.raises(ValueError, match=r"^y: vector axis"):
        R.dist(x, np.zeros((3, 3)), c=1.0)
    with pytest.raises(ValueError, match=r"^x: expected an array of vectors"):
        R.dist0(0.5, c=1.0)
    with pytest.raises(ValueError, match=r"^x: the vector axis"):
        R.dist0(np.zeros((2, 0)), c=1.0)
    with pytest.raises(ValueError, match=r"^m: has 3 columns"):
        R.mobius_matvec(np.zeros((2, 3)), np.zeros(2), c=1.0)


def test_points_that_round_onto_the_boundary_are_rejected_not_clamped() -> None:
    # sqrt(c)|x| = 1 exactly in float64 for c = 0.25, x = (2, 0); and a point 1 ulp outside
    with pytest.raises(ValueError, match=r"^x: point lies on or outside"):
        R.logmap0(np.array([2.0, 0.0]), c=0.25)
    with pytest.raises(ValueError, match=r"^x: point lies on or outside"):
        R.logmap0(np.array([0.6, 0.8]), c=1.0)  # 0.6^2 + 0.8^2 = 1 + 4.4e-17 in exact arithmetic


def test_structured_layout_errors() -> None:
    x = np.zeros(6)
    with pytest.raises(ValueError, match=r"^blocks: .*not divisible"):
        R.block_diagonal_matvec(np.zeros((1, 4, 4)), x, c=1.0)
    with pytest.raises(ValueError, match=r"^blocks: expected shape"):
        R.block_diagonal_matvec(np.zeros((2, 3, 2)), x, c=1.0)
    with pytest.raises(ValueError, match=r"^bands: expected shape"):
        R.banded_matvec(np.zeros((2, 6)), x, c=1.0)
    with pytest.raises(ValueError, match=r"^bands: has d = 5"):
        R.banded_matvec(np.zeros((3, 5)), x, c=1.0)
    with pytest.raises(ValueError, match=r"^w: vector axis"):
        R.diagonal_matvec(np.zeros(5), x, c=1.0)
