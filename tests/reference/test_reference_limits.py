"""Exact limits, the c -> 0 limit, saturation at the boundary, and the torch-free import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hyperet import reference as R
from hyperet.oracle import exact
from hyperet.oracle.ulp import ulp_error
from hyperet.reference._careful import conorm, scaled

EPS = 2.0**-52


def test_importing_the_reference_does_not_import_torch(tmp_path: Path) -> None:
    code = "import hyperet.reference, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


@pytest.mark.parametrize("c", [1e-6, 1.0, 1e3])
def test_exact_limits_at_zero(c: float) -> None:
    zero = np.zeros(3)
    x = np.array([0.1, -0.2, 0.05]) / np.sqrt(c)
    assert np.array_equal(R.expmap0(zero, c=c), zero)
    assert np.array_equal(R.logmap0(zero, c=c), zero)
    assert R.dist0(zero, c=c) == 0.0
    assert R.conformal_factor(zero, c=c) == 2.0
    assert np.array_equal(R.mobius_add(zero, x, c=c), x)
    assert np.array_equal(R.expmap(x, zero, c=c), x)
    assert np.array_equal(R.mobius_scalar_mul(1.0, x, c=c), x)
    assert np.array_equal(R.mobius_scalar_mul(-1.0, x, c=c), -x)
    assert np.array_equal(R.mobius_scalar_mul(0.0, x, c=c), zero)
    assert np.array_equal(R.mobius_matvec(np.zeros((2, 3)), x, c=c), np.zeros(2))
    assert np.array_equal(R.project(x, c=c, eps=0.1), x)


@pytest.mark.parametrize("e", [8, 100, 200, 300])
def test_tiny_vectors_keep_their_digits(e: int) -> None:
    u = np.array([3.0, -4.0]) * 10.0**-e
    for c in (1e-6, 1.0, 1e3):
        np.testing.assert_array_equal(
            R.expmap0(u, c=c), u * (1 - (c * 25e0 * 10.0 ** (-2 * e)) / 3)
        )
        np.testing.assert_array_equal(
            R.logmap0(u, c=c), u * (1 + (c * 25e0 * 10.0 ** (-2 * e)) / 3)
        )
        assert R.dist0(u, c=c) == 2 * 5.0 * 10.0**-e or e == 8


def test_subnormal_components() -> None:
    u = np.array([5e-324, -1e-320, 0.0])
    assert np.array_equal(R.expmap0(u, c=1.0), u)
    assert np.array_equal(R.logmap0(u, c=1.0), u)
    assert R.dist0(u, c=1.0) > 0.0
    got, want = R.dist0(u, c=1.0), exact.dist0(u, c=1.0)
    assert ulp_error(got, want, vector=False).max_normwise <= 1.0


@pytest.mark.parametrize("op", ["dist0", "logmap0", "expmap0", "mobius_scalar_mul"])
def test_series_switch_is_continuous(op: str) -> None:
    """Across sqrt(c)|x| = 2**-26 (the series switch) the error stays within 2 ulp."""
    direction = np.array([0.6, 0.8])
    for c in (1e-12, 1.0):
        for t in (2.0**-26 * (1 - 1e-6), 2.0**-26, 2.0**-26 * (1 + 1e-6), 2.0**-25):
            x = direction * (t / np.sqrt(c))
            args = (0.75, x) if op == "mobius_scalar_mul" else (x,)
            err = ulp_error(
                getattr(R, op)(*args, c=c), getattr(exact, op)(*args, c=c), vector=op != "dist0"
            )
            assert err.max_normwise <= 2.0, (op, c, t)


@pytest.mark.parametrize("c", [1e-40, 1e-30])
def test_flat_limit(c: float) -> None:
    rng = np.random.default_rng(3)
    x, y, v = rng.standard_normal((3, 6))
    m = rng.standard_normal((4, 6))
    close = {"rtol": 4 * EPS, "atol": 0}
    np.testing.assert_allclose(R.mobius_add(x, y, c=c), x + y, **close)
    np.testing.assert_allclose(R.mobius_scalar_mul(2.5, x, c=c), 2.5 * x, **close)
    np.testing.assert_allclose(R.mobius_matvec(m, x, c=c), m @ x, rtol=1e-14)
    np.testing.assert_allclose(R.expmap0(v, c=c), v, **close)
    np.testing.assert_allclose(R.logmap0(x, c=c), x, **close)
    np.testing.assert_allclose(R.expmap(x, v, c=c), x + v, **close)
    np.testing.assert_allclose(R.logmap(x, y, c=c), y - x, **close)
    np.testing.assert_allclose(R.dist(x, y, c=c), 2 * np.linalg.norm(x - y), **close)
    np.testing.assert_allclose(R.dist0(x, c=c), 2 * np.linalg.norm(x), **close)
    np.testing.assert_allclose(R.gyration(x, y, v, c=c), v, **close)
    np.testing.assert_allclose(R.transport(x, y, v, c=c), v, **close)
    assert R.conformal_factor(x, c=c) == 2.0


@pytest.mark.parametrize("s", [19.1, 25.0, 1e10, 1e154, 1e300])
@pytest.mark.parametrize("c", [1e-6, 1.0, 1e3])
def test_huge_tangent_vectors_saturate_visibly_without_overflow(s: float, c: float) -> None:
    u = np.array([3.0, -4.0, 12.0]) / 13.0 * (s / np.sqrt(c))
    with R.track_saturation() as events:
        y = R.expmap0(u, c=c)
    assert np.all(np.isfinite(y))
    assert conorm(scaled(y), c).hi > 0.0
    # beyond sqrt(c)|u| = 19.06 the exact value is within an ulp of the boundary: it rounds
    # onto it (then it is nudged and counted) or just inside, depending on the direction
    assert events["expmap0"] in (0, 1)
    assert ulp_error(y, exact.expmap0(u, c=c)).max_normwise <= 2.0


def test_saturation_events_are_counted_per_op_and_only_when_it_happens() -> None:
    x = np.array([0.3, 0.4])
    with R.track_saturation() as events:
        R.expmap0(x, c=1.0)
        R.mobius_add(x, x, c=1.0)
    assert sum(events.values()) == 0
    with R.track_saturation() as outer:
        with R.track_saturation() as inner:
            R.project(np.array([3.0, 4.0]), c=1.0, eps=0.0)
        R.expmap0(np.array([30.0, 0.0]), c=1.0)
    assert inner == {"project": 1}
    assert outer == {"project": 1, "expmap0": 1}


def test_project_is_explicit_and_strictly_inside() -> None:
    x = np.array([[3.0, 4.0], [0.1, 0.2], [0.6, 0.8]])
    out = R.project(x, c=1.0, eps=1e-3)
    np.testing.assert_allclose(np.linalg.norm(out[0]), 1 - 1e-3, rtol=2 * EPS)
    assert np.array_equal(out[1], x[1])
    edge = R.project(x, c=1.0, eps=0.0)
    assert np.all(conorm(scaled(edge), 1.0).hi > 0.0)
    assert np.array_equal(edge[1], x[1])


def test_transport_refuses_an_overflowing_result() -> None:
    x = np.array([0.999999, 0.0])
    with pytest.raises(OverflowError, match=r"^transport: "):
        R.transport(x, np.zeros(2), np.array([1e308, 0.0]), c=1.0)


def test_docstring_examples_run() -> None:
    import doctest

    import hyperet.reference

    result = doctest.testmod(hyperet.reference, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
