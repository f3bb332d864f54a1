"""The mpmath ground truth itself, the ulp grading and the input families."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from hyperet.oracle import exact
from hyperet.oracle.families import FAMILIES, OPS, cases, invalid_cases
from hyperet.oracle.report import Row, format_markdown
from hyperet.oracle.ulp import componentwise_ulp, ulp, ulp_error
from hyperet.reference._careful import conorm, scaled

RNG = np.random.default_rng(7)


def _near_boundary(n: int, d: int, k: float) -> np.ndarray:
    v = RNG.standard_normal((n, d))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    x = v * (1 - 10.0**-k)
    bad = conorm(scaled(x), 1.0).hi <= 0
    x[bad] *= 1 - 2.0**-52
    return x


def _mpvec(x: np.ndarray) -> list[mpmath.mpf]:
    return [mpmath.mpf(float(t)) for t in x]


@pytest.mark.parametrize("k", [1, 8, 15])
def test_gyration_closed_form_matches_its_definition(k: float) -> None:
    a, b = _near_boundary(2, 4, k)
    z = _near_boundary(1, 4, 1)[0] * 0.5
    closed = exact.gyration(a, b, z, c=1.0, dps=60)
    with mpmath.workdps(200):
        defined = exact.gyration_by_definition(_mpvec(a), _mpvec(b), _mpvec(z), mpmath.mpf(1))
        for got, want in zip(closed, defined, strict=True):
            assert abs(got - want) <= mpmath.mpf(10) ** -55


@pytest.mark.parametrize("k", [2, 15])
def test_mobius_distance_matches_the_arcosh_form(k: float) -> None:
    x, y = _near_boundary(2, 3, k)
    y = x + 1e-12 * y  # nearly equal points: the Möbius form cancels, the arcosh form does not
    if conorm(scaled(y), 1.0).hi <= 0:
        y = x * (1 - 1e-12)
    got = exact.dist(x, y, c=1.0, dps=60)
    with mpmath.workdps(200):
        xm, ym = _mpvec(x), _mpvec(y)
        t = (
            2
            * sum((p - q) ** 2 for p, q in zip(xm, ym, strict=True))
            / ((1 - sum(p * p for p in xm)) * (1 - sum(q * q for q in ym)))
        )
        want = 2 * mpmath.asinh(mpmath.sqrt(t / 2))  # arcosh(1 + t)
        assert abs(got[()] - want) <= mpmath.mpf(10) ** -55 * want


def test_fifty_and_eighty_digits_agree_at_the_boundary() -> None:
    x, y = _near_boundary(2, 8, 15)
    for op, args in (("mobius_add", (x, -y)), ("logmap", (x, y)), ("dist", (x, -x))):
        lo = getattr(exact, op)(*args, c=1.0, dps=50)
        hi = getattr(exact, op)(*args, c=1.0, dps=80)
        with mpmath.workdps(100):
            for p, q in zip(np.ravel(lo), np.ravel(hi), strict=True):
                assert abs(p - q) <= mpmath.mpf(10) ** -48 * max(abs(q), mpmath.mpf(1e-300))


def test_inputs_are_converted_exactly_not_through_decimal_strings() -> None:
    x = np.array([0.5, 0.25])
    got = exact.dist0(x, c=0.1, dps=40)[()]
    with mpmath.workdps(60):
        c = mpmath.mpf(0.1)  # the float 0.1000000000000000055...
        want = (
            2
            / mpmath.sqrt(c)
            * mpmath.atanh(mpmath.sqrt(c * (mpmath.mpf(0.5) ** 2 + mpmath.mpf(0.25) ** 2)))
        )
        decimal = mpmath.mpf("0.1")
        wrong = 2 / mpmath.sqrt(decimal) * mpmath.atanh(mpmath.sqrt(decimal * mpmath.mpf("0.3125")))
        assert abs(got - want) < mpmath.mpf(10) ** -38
        assert abs(got - wrong) > mpmath.mpf(10) ** -20  # 0.1 vs 0.1000000000000000055...


def test_exact_refuses_points_outside_the_ball() -> None:
    with pytest.raises(ValueError, match=r"^x: "):
        exact.logmap0(np.array([0.6, 0.8]), c=1.0)


def test_exact_zero_limits() -> None:
    zero = np.zeros(3)
    assert all(v == 0 for v in exact.expmap0(zero, c=1.0))
    assert all(v == 0 for v in exact.logmap0(zero, c=1.0))
    assert exact.dist(zero, zero, c=1.0)[()] == 0


# --------------------------------------------------------------------------- ulp grading


def test_ulp_definition() -> None:
    assert ulp(1.0) == mpmath.ldexp(1, -52)
    assert ulp(1.999) == mpmath.ldexp(1, -52)
    assert ulp(2.0) == mpmath.ldexp(1, -51)
    assert ulp(0) == mpmath.ldexp(1, -1074)
    assert ulp(2.0**-1030) == mpmath.ldexp(1, -1074)
    assert ulp(1.0, "float32") == mpmath.ldexp(1, -23)
    assert ulp(1.0, "bfloat16") == mpmath.ldexp(1, -7)
    assert ulp(0, "float16") == mpmath.ldexp(1, -24)


def test_ulp_error_componentwise_and_normwise() -> None:
    one_up = math.nextafter(1.0, 2.0)
    exact_vals = np.array([mpmath.mpf(1), mpmath.mpf("1e-20")], dtype=object)
    computed = np.array([one_up, 2e-20])
    err = ulp_error(computed, exact_vals)
    assert err.normwise[()] == pytest.approx(1.0)  # the 1e-20 error is tiny against ulp(1)
    comp = componentwise_ulp(computed, exact_vals)
    assert comp[0] == pytest.approx(1.0)
    assert comp[1] > 1e10
    assert err.component[()] == comp.max()
    # float64 "exact" values (golden files) take the fast path and agree
    fast = ulp_error(computed[None], np.array([[1.0, 1e-20]]))
    assert fast.normwise[0] == pytest.approx(1.0)
    # scalars
    s = ulp_error(np.array([one_up]), np.array([mpmath.mpf(1)], dtype=object), vector=False)
    assert s.normwise[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"^computed: shape"):
        ulp_error(np.zeros(2), np.zeros(3))


def test_ulp_error_in_float32_units() -> None:
    x32 = float(np.nextafter(np.float32(1.0), np.float32(2.0)))
    err = ulp_error(np.array([x32]), np.array([1.0]), vector=False, dtype="float32")
    assert err.normwise[0] == pytest.approx(1.0)


# --------------------------------------------------------------------------- families


@pytest.mark.parametrize("op", OPS)
def test_families_are_deterministic_and_valid(op: str) -> None:
    first = cases(op, seed=5, n=2, d=4)
    again = cases(op, seed=5, n=2, d=4)
    other = cases(op, seed=6, n=2, d=4)
    assert [c.label for c in first] == [c.label for c in again]
    for a, b in zip(first, again, strict=True):
        for p, q in zip(a.args, b.args, strict=True):
            assert np.array_equal(p, q)
    assert any(
        not np.array_equal(p, q)
        for a, b in zip(first, other, strict=False)
        for p, q in zip(a.args, b.args, strict=True)
    )
    assert invalid_cases(op)
    for case in first:
        assert case.family in FAMILIES


def test_every_family_is_used() -> None:
    used = {case.family for op in OPS for case in cases(op, n=1, d=4)}
    assert used == set(FAMILIES)


def test_boundary_family_reaches_the_float64_limit() -> None:
    (case,) = [c for c in cases("dist0", n=2, d=4, families=("A",)) if c.label == "k=16"]
    rad = exact.dist0(case.args[0], c=1.0)
    assert all(v > 36 for v in rad)  # Rad up to 37.4 at c = 1


def test_report_table_format() -> None:
    rows = [Row("dist", "A", 3, 12, 0.5, 0.5, "k=1"), Row("dist", "B", 1, 4, 1.25, 1.25, "x")]
    table = format_markdown(rows)
    assert "| dist | 0.50 | 1.25 | 1.25 |" in table
