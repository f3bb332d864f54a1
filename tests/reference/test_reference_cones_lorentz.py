"""Entailment cones and Lorentz conversions of the reference: exact values, identities, the
ground truth's own forms, and the cancellation the careful forms avoid.

The ulp contract over every input family (near the axis ``N``, near ``r_in`` ``R``, near the
apex ``H``, ...) is graded with the other ops in test_reference_ground_truth.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mpmath
import numpy as np
import pytest

from hyperet import reference as R
from hyperet.oracle import exact
from hyperet.oracle.ulp import ulp_error


def _mp(v: np.ndarray) -> list[mpmath.mpf]:
    return [mpmath.mpf(float(t)) for t in v]


def test_exact_atan2_form_equals_the_textbook_arccos_form() -> None:
    """exact.entailment_angle (atan2 with the wedge) is Ganea et al.'s arccos at 80 digits."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        c = float(10 ** rng.uniform(-2, 2))
        x, y = rng.standard_normal((2, 5))
        x *= rng.uniform(0.1, 0.99) / np.linalg.norm(x) / math.sqrt(c)
        y *= rng.uniform(0.0, 0.99) / np.linalg.norm(y) / math.sqrt(c)
        ours = exact.entailment_angle(x, y, c=c, dps=60)[()]
        with mpmath.workdps(120):
            textbook = exact.entailment_angle_by_arccos(_mp(x), _mp(y), mpmath.mpf(c))
            assert abs(ours - textbook) < mpmath.mpf(10) ** -55


def test_angle_on_the_axis_is_exactly_zero_or_pi() -> None:
    x = np.array([0.15, -0.2, 0.05])
    assert R.entailment_angle(x, 2.0 * x, c=1.0) == 0.0  # beyond x: inside every cone
    assert R.entailment_angle(x, 0.5 * x, c=1.0) == math.pi  # between 0 and x
    assert R.entailment_angle(x, np.zeros(3), c=1.0) == math.pi
    assert R.entailment_angle(x, -x, c=1.0) == math.pi


def test_aperture_is_pi_over_2_at_the_inner_radius_and_decreases_outward() -> None:
    for K in (0.1, 1.0, 10.0):
        r_in = R.inner_radius(K)
        assert K * (1 - r_in**2) / r_in == pytest.approx(1.0, rel=1e-15)
        radii = np.array([r_in * (1 + 1e-15), 0.5 * (r_in + 1), 1 - 1e-12])
        x = radii[:, None] * np.array([[0.6, 0.8]])
        psi = R.entailment_aperture(x, c=1.0, K=K)
        assert psi[0] == pytest.approx(math.pi / 2, abs=1e-6)  # pi/2 - O(sqrt(1e-15))
        assert np.all(np.diff(psi) < 0)


def test_near_r_in_the_atan2_form_keeps_the_digits_arcsin_loses() -> None:
    """arcsin of an argument 1 - 1e-14 loses half the digits; the reference is within 1 ulp."""
    K = 0.1
    x = np.array([R.inner_radius(K) * (1 + 1e-13), 0.0])
    got = R.entailment_aperture(x, c=1.0, K=K)
    truth = exact.entailment_aperture(x, c=1.0, K=K)
    assert float(ulp_error(got, truth, vector=False).normwise) <= 1.0
    naive = np.arcsin(K * (1 - x[0] ** 2) / x[0])
    assert float(ulp_error(naive, truth, vector=False).normwise) > 100  # what the form avoids


def test_near_the_axis_the_wedge_keeps_the_digits_arccos_loses() -> None:
    x = np.array([0.3, 0.4, 0.0])
    y = np.array([0.48, 0.64, 1e-12])
    got = R.entailment_angle(x, y, c=1.0)
    truth = exact.entailment_angle(x, y, c=1.0)
    assert float(ulp_error(got, truth, vector=False).normwise) <= 1.0
    xy, x2, y2 = x @ y, x @ x, y @ y
    cos = (xy * (1 + x2) - x2 * (1 + y2)) / (
        math.sqrt(x2) * np.linalg.norm(x - y) * math.sqrt(1 + x2 * y2 - 2 * xy)
    )
    naive = np.arccos(min(cos, 1.0))
    assert float(ulp_error(naive, truth, vector=False).normwise) > 1e3


def test_energy_is_zero_inside_and_the_excess_angle_outside() -> None:
    x = np.array([0.5, 0.0])
    inside = np.array([0.8, 0.01])
    outside = np.array([0.1, 0.5])
    e = R.entailment_energy(np.stack([x, x]), np.stack([inside, outside]), c=1.0, K=0.1)
    assert e[0] == 0.0
    want = R.entailment_angle(x, outside, c=1.0) - R.entailment_aperture(x, c=1.0, K=0.1)
    assert e[1] == want > 0


def test_curvature_is_the_conformal_isometry() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4)) * 0.2
    y = rng.standard_normal((6, 4)) * 0.2
    c = 4.0  # sqrt(c) = 2 scales exactly
    np.testing.assert_array_equal(
        R.entailment_angle(x / 2, y / 2, c=c), R.entailment_angle(x, y, c=1.0)
    )
    np.testing.assert_array_equal(
        R.entailment_aperture(x / 2, c=c, K=0.1), R.entailment_aperture(x, c=1.0, K=0.1)
    )


def test_lorentz_points_are_on_the_hyperboloid_and_convert_back() -> None:
    rng = np.random.default_rng(4)
    for c in (1e-3, 1.0, 7.5):
        x = rng.standard_normal((5, 3))
        x *= (1 - 10.0 ** -rng.uniform(1, 12, (5, 1))) / np.linalg.norm(x, axis=-1)[:, None]
        x /= math.sqrt(c)
        v = R.to_lorentz(x, c=c)
        with mpmath.workdps(80):
            for row in v:
                t, *s = _mp(row)
                assert abs(-(t**2) + mpmath.fsum(a * a for a in s) + 1 / mpmath.mpf(c)) <= (
                    mpmath.mpf(2) ** -50 * t**2
                )
        back = R.from_lorentz(v, c=c)
        assert np.all(ulp_error(back, exact.from_lorentz(v, c=c)).normwise <= 1)
        np.testing.assert_allclose(back, x, rtol=0, atol=1e-15 / math.sqrt(c))


def test_lorentz_distance_equals_the_ball_distance() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 4)) * 0.3
    y = rng.standard_normal((8, 4)) * 0.3
    got = R.lorentz_dist(R.to_lorentz(x, c=1.0), R.to_lorentz(y, c=1.0), c=1.0)
    np.testing.assert_allclose(got, R.dist(x, y, c=1.0), rtol=1e-14)
    u = R.to_lorentz(x, c=1.0)
    assert np.all(R.lorentz_dist(u, u, c=1.0) == 0.0)


def test_far_antipodal_lorentz_points_keep_their_digits() -> None:
    """c(u0 v0 - <u_s, v_s>) cancels for nearly antipodal points far out; the reference does not."""
    s = np.array([3e12, 4e12, 0.0])
    u = np.concatenate([[np.sqrt(1 + s @ s)], s])
    v = np.concatenate([[np.sqrt(1 + s @ s)], -s * (1 - 2.0**-40)])
    got = R.lorentz_dist(u, v, c=1.0)
    truth = exact.lorentz_dist(u, v, c=1.0)
    assert float(ulp_error(got, truth, vector=False).normwise) <= 2.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: R.entailment_angle([0.0, 0.0], [0.1, 0.2], c=1.0), "x: the apex x = 0"),
        (lambda: R.entailment_angle([0.1, 0.2], [0.1, 0.2], c=1.0), "y: equals x"),
        (lambda: R.entailment_aperture([0.05, 0.0], c=1.0, K=0.1), "x: lies inside"),
        (lambda: R.entailment_energy([0.5, 0.0], [0.1, 0.0], c=1.0, K=0.0), "K: "),
        (lambda: R.from_lorentz([-1.0, 0.0, 0.0], c=1.0), "v: time component must be > 0"),
        (lambda: R.from_lorentz([0.5, 0.3, 0.0], c=1.0), "v: not on the hyperboloid"),
        (lambda: R.lorentz_dist([1.0, 0.0], [1.0], c=1.0), "v: a Lorentz point needs"),
    ],
)
def test_domain_errors_name_the_argument(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        call()
