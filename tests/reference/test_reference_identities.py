"""Hypothesis property tests: the exact identities of the numerics notes (section 4).

Identities evaluated entirely in float64 get tolerances that scale with conditioning,
``64 eps (1 + lambda_x lambda_y)``; scalars and matrix entries are dyadic where a sum or
product must be exact (``r1 + r2``, ``M @ N``).  Several identities hold bitwise.
"""

from __future__ import annotations

import math

import numpy as np
import strategies as sb
from hypothesis import assume, given
from hypothesis import strategies as st

from hyperet import reference as R
from hyperet.reference._careful import conorm, scaled

EPS = 2.0**-52


def norm(v: np.ndarray) -> float:
    """Euclidean norm without underflow or overflow (math.hypot rescales)."""
    return math.hypot(*np.ravel(v))


def lam(x: np.ndarray, c: float) -> float:
    return float(np.max(R.conformal_factor(x, c=c)))


def assert_close(a: np.ndarray, b: np.ndarray, *, cond: float, scale: float) -> None:
    """``|a - b|_inf <= 64 eps cond scale``."""
    err = float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0))
    assert err <= 64 * EPS * cond * scale, f"error {err:.3g} > {64 * EPS * cond * scale:.3g}"


def strictly_inside(z: np.ndarray, c: float) -> bool:
    return bool(np.all(conorm(scaled(np.atleast_2d(z)), c).hi > 0.0))


setup = st.tuples(sb.dims(1, 6), sb.curvatures)


# --------------------------------------------------------------------------- gyrogroup


@given(data=st.data(), dc=setup)
def test_zero_is_the_identity_bitwise(data: st.DataObject, dc: tuple[int, float]) -> None:
    d, c = dc
    x = data.draw(sb.points(d, c))
    zero = np.zeros(d)
    assert np.array_equal(R.mobius_add(zero, x, c=c), x)
    assert np.array_equal(R.mobius_add(x, zero, c=c), x)


@given(data=st.data(), dc=setup)
def test_inverse_gives_exact_zero(data: st.DataObject, dc: tuple[int, float]) -> None:
    d, c = dc
    x = data.draw(sb.points(d, c))
    assert np.array_equal(R.mobius_add(-x, x, c=c), np.zeros(d))
    assert np.array_equal(R.logmap(x, x, c=c), np.zeros(d))
    assert R.dist(x, x, c=c) == 0.0


@given(data=st.data(), dc=setup)
def test_negation_commutes_with_addition_bitwise(
    data: st.DataObject, dc: tuple[int, float]
) -> None:
    d, c = dc
    x, y = data.draw(sb.points(d, c)), data.draw(sb.points(d, c))
    assert np.array_equal(-R.mobius_add(x, y, c=c), R.mobius_add(-x, -y, c=c))


@given(data=st.data(), dc=setup)
def test_left_cancellation(data: st.DataObject, dc: tuple[int, float]) -> None:
    d, c = dc
    x, y = data.draw(sb.points(d, c, max_k=3)), data.draw(sb.points(d, c, max_k=3))
    got = R.mobius_add(-x, R.mobius_add(x, y, c=c), c=c)
    assert_close(got, y, cond=1 + lam(x, c) * lam(y, c), scale=1 / math.sqrt(c))


@given(data=st.data(), dc=setup)
def test_gyroassociativity_and_gyrocommutativity(
    data: st.DataObject, dc: tuple[int, float]
) -> None:
    d, c = dc
    x, y, z = (data.draw(sb.moderate_points(d, c)) for _ in range(3))
    cond = (1 + lam(x, c) * lam(y, c)) * (1 + lam(z, c))
    lhs = R.mobius_add(x, R.mobius_add(y, z, c=c), c=c)
    rhs = R.mobius_add(R.mobius_add(x, y, c=c), R.gyration(x, y, z, c=c), c=c)
    assert_close(lhs, rhs, cond=cond, scale=1 / math.sqrt(c))
    commuted = R.gyration(x, y, R.mobius_add(y, x, c=c), c=c)
    assert_close(R.mobius_add(x, y, c=c), commuted, cond=cond, scale=1 / math.sqrt(c))


@given(data=st.data(), dc=setup)
def test_gyration_is_an_invertible_linear_isometry(
    data: st.DataObject, dc: tuple[int, float]
) -> None:
    d, c = dc
    a, b = data.draw(sb.points(d, c, max_k=12)), data.draw(sb.points(d, c, max_k=12))
    u = data.draw(sb.tangent_vectors(d, c))
    v = data.draw(sb.tangent_vectors(d, c))
    gu, gv = R.gyration(a, b, u, c=c), R.gyration(a, b, v, c=c)
    n = norm(u) * norm(v)
    assert abs(gu @ gv - u @ v) <= 64 * EPS * n
    assert abs(norm(gu) - norm(u)) <= 16 * EPS * norm(u)
    # linear: gyr(2u + v) = 2 gyr(u) + gyr(v)
    assert_close(
        R.gyration(a, b, 2 * u + v, c=c),
        2 * gu + gv,
        cond=4,
        scale=np.abs(2 * u + v).max() + np.abs(v).max(),
    )
    assert_close(R.gyration(b, a, gu, c=c), u, cond=4, scale=np.abs(u).max())


@given(data=st.data(), dc=setup)
def test_gyration_of_opposite_points_is_the_identity(
    data: st.DataObject, dc: tuple[int, float]
) -> None:
    d, c = dc
    a = data.draw(sb.points(d, c))
    z = data.draw(sb.tangent_vectors(d, c))
    assert np.array_equal(R.gyration(a, -a, z, c=c), z)


@given(data=st.data(), dc=setup)
def test_doubling(data: st.DataObject, dc: tuple[int, float]) -> None:
    d, c = dc
    x = data.draw(sb.points(d, c, max_k=8))
    want = 2 * x / (1 + c * (x @ x))
    assert_close(R.mobius_add(x, x, c=c), want, cond=2, scale=1 / math.sqrt(c))


@given(data=st.data(), dc=setup)
def test_collinear_addition_adds_radii(data: st.DataObject, dc: tuple[int, float]) -> None:
    d, c = dc
    e = data.draw(sb.unit_vector(d))
    s, t = data.draw(st.floats(0.0, 0.9)), data.draw(st.floats(0.0, 0.9))
    x, y = e * (s / math.sqrt(c)), e * (t / math.sqrt(c))
    lhs = R.dist0(R.mobius_add(x, y, c=c), c=c)
    rhs = R.dist0(x, c=c) + R.dist0(y, c=c)
    assert abs(lhs - rhs) <= 64 * EPS * (1 + lam(x, c) * lam(y, c)) * max(rhs, 1e-300)


# --------------------------------------------------------------------------- scalar and matrix


@given(data=st.data(), dc=setup)
def test_scalar_distributivity_and_associativity(
    data: st.DataObject, dc: tuple[int, float]
) -> None:
    d, c = dc
    x = data.draw(sb.moderate_points(d, c))
    r1, r2 = data.draw(sb.dyadic(2**16)), data.draw(sb.dyadic(2**16))  # |r| <= 1: exact r1 + r2
    m = lambda r, p: R.mobius_scalar_mul(r, p, c=c)  # noqa: E731
    cond = 1 + lam(m(r1, x), c) * lam(m(r2, x), c)
    assert_close(
        m(r1 + r2, x), R.mobius_add(m(r1, x), m(r2, x), c=c), cond=cond, scale=1 / math.sqrt(c)
    )
    assert_close(m(r1 * r2, x), m(r1, m(r2, x)), cond=4 * lam(x, c), scale=1 / math.sqrt(c))


@given(data=st.data(), dc=setup, r=st.floats(-6.0, 6.0))
def test_theorem_1_radius_scales_by_abs_r(
    data: st.DataObject, dc: tuple[int, float], r: float
) -> None:
    d, c = dc
    x = data.draw(sb.points(d, c, max_k=4))
    rad = R.dist0(x, c=c)
    assume(abs(r) * rad * math.sqrt(c) <= 20.0)
    z = R.mobius_scalar_mul(r, x, c=c)
    assert (
        abs(R.dist0(z, c=c) - abs(r) * rad)
        <= 64 * EPS * lam(z, c) * max(abs(r) * rad, 1e-300) + 8 * EPS * abs(r) * rad
    )


@given(data=st.data(), dc=setup, r=sb.dyadic())
def test_scalar_mul_is_expmap0_of_scaled_logmap0(
    data: st.DataObject, dc: tuple[int, float], r: float
) -> None:
    d, c = dc
    x = data.draw(sb.moderate_points(d, c))
    want = R.expmap0(r * R.logmap0(x, c=c), c=c)
    assert_close(R.mobius_scalar_mul(r, x, c=c), want, cond=8, scale=1 / math.sqrt(c))


@given(data=st.data(), dc=setup)
def test_matvec_identities(data: st.DataObject, dc: tuple[int, float]) -> None:
    d, c = dc
    x = data.draw(sb.moderate_points(d, c))
    m = data.draw(sb.dyadic_matrix(d, d))
    n = data.draw(sb.dyadic_matrix(d, d))
    scale = 1 / math.sqrt(c)
    mx = R.mobius_matvec(m, x, c=c)
    assert_close(mx, R.expmap0(m @ R.logmap0(x, c=c), c=c), cond=16, scale=scale)
    assume(norm(n @ x) > 1e-3 * norm(x))
    nx = R.mobius_matvec(n, x, c=c)
    assume(lam(nx, c) < 1e4)
    assert_close(
        R.mobius_matvec(m @ n, x, c=c),
        R.mobius_matvec(m, nx, c=c),
        cond=16 * lam(nx, c),
        scale=scale,
    )


@given(data=st.data(), dc=setup, r=sb.dyadic())
def test_scalar_matrix_equals_scalar_mul(
    data: st.DataObject, dc: tuple[int, float], r: float
) -> None:
    d, c = dc
    x = data.draw(sb.points(d, c, max_k=12))
    np.testing.assert_allclose(
        R.mobius_matvec(r * np.eye(d), x, c=c), R.mobius_scalar_mul(r, x, c=c), rtol=8 * EPS, atol=0
    )


@given(data=st.data(), dc=setup)
def test_kernel_and_orthogonal_matrices(data: st.DataObject, dc: tuple[int, float]) -> None:
    d, c = dc
    x = data.draw(sb.points(d, c, max_k=12))
    # a dyadic matrix whose rows are orthogonal to x: M = e (x_perp)^T has Mx = 0 only if
    # exact; use the exactly-representable kernel vector instead
    k = np.zeros(d)
    k[0] = x[0]
    m = np.zeros((2, d))
    m[:, 1:] = 1.0
    assert np.array_equal(R.mobius_matvec(m, k, c=c), np.zeros(2))
    perm = np.eye(d)[data.draw(st.permutations(list(range(d))))]
    signs = np.array(data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=d, max_size=d)))
    q = signs[:, None] * perm
    np.testing.assert_allclose(R.mobius_matvec(q, x, c=c), q @ x, rtol=8 * EPS, atol=0)


# --------------------------------------------------------------------------- maps and distance


@given(data=st.data(), dc=setup)
def test_expmap_inverts_logmap(data: st.DataObject, dc: tuple[int, float]) -> None:
    d, c = dc
    x, y = data.draw(sb.points(d, c, max_k=3)), data.draw(sb.points(d, c, max_k=3))
    u = R.logmap(x, y, c=c)
    assert_close(R.expmap(x, u, c=c), y, cond=1 + lam(x, c) * lam(y, c), scale=1 / math.sqrt(c))
    riem = lam(x, c) * norm(u)
    assert abs(riem - R.dist(x, y, c=c)) <= 64 * EPS * (1 + lam(x, c)) * max(riem, 1e-300)


@given(data=st.data(), dc=setup)
def test_distance_symmetry_triangle_and_antipodes(
    data: st.DataObject, dc: tuple[int, float]
) -> None:
    d, c = dc
    x, y, z = (data.draw(sb.points(d, c)) for _ in range(3))
    assert R.dist(x, y, c=c) == R.dist(y, x, c=c)
    assert R.dist(x, z, c=c) <= (R.dist(x, y, c=c) + R.dist(y, z, c=c)) * (1 + 8 * EPS)
    assert abs(R.dist(x, -x, c=c) - 2 * R.dist0(x, c=c)) <= 8 * EPS * 2 * R.dist0(x, c=c)
    rad = R.dist0(x, c=c)
    want = 1 + math.cosh(math.sqrt(c) * rad)
    assert abs(R.conformal_factor(x, c=c) - want) <= 8 * EPS * (1 + math.sqrt(c) * rad) * want


@given(data=st.data(), dc=setup)
def test_distance_is_invariant_under_isometries(data: st.DataObject, dc: tuple[int, float]) -> None:
    d, c = dc
    a, x, y = (data.draw(sb.moderate_points(d, c)) for _ in range(3))
    dxy = R.dist(x, y, c=c)
    ax, ay = R.mobius_add(a, x, c=c), R.mobius_add(a, y, c=c)
    moved = R.dist(ax, ay, c=c)
    # rounding a translated point p moves it by ~eps |p|, the distance by ~lambda_p eps |p|
    tol = (1 + lam(a, c) * lam(x, c) * lam(y, c)) * dxy
    tol += lam(ax, c) * norm(ax) + lam(ay, c) * norm(ay)
    assert abs(moved - dxy) <= 64 * EPS * tol + 1e-300
    perm = np.eye(d)[data.draw(st.permutations(list(range(d))))]
    assert abs(R.dist(perm @ x, -(perm @ y), c=c) - R.dist(x, -y, c=c)) <= 8 * EPS * R.dist(
        x, -y, c=c
    )


# --------------------------------------------------------------------------- transport


@given(data=st.data(), dc=setup)
def test_transport_preserves_the_metric_and_maps_logs(
    data: st.DataObject, dc: tuple[int, float]
) -> None:
    d, c = dc
    x, y = data.draw(sb.points(d, c, max_k=3)), data.draw(sb.points(d, c, max_k=3))
    u, v = data.draw(sb.tangent_vectors(d, c)), data.draw(sb.tangent_vectors(d, c))
    pu, pv = R.transport(x, y, u, c=c), R.transport(x, y, v, c=c)
    lx, ly = lam(x, c), lam(y, c)
    lhs, rhs = ly**2 * (pu @ pv), lx**2 * (u @ v)
    assert abs(lhs - rhs) <= 64 * EPS * lx**2 * norm(u) * norm(v)
    got = R.transport(x, y, R.logmap(x, y, c=c), c=c)
    assert_close(got, -R.logmap(y, x, c=c), cond=1 + lx * ly, scale=R.dist(x, y, c=c) / ly + 1e-300)


@given(data=st.data(), dc=setup)
def test_transport_from_the_origin_scales_by_the_conorm(
    data: st.DataObject, dc: tuple[int, float]
) -> None:
    from fractions import Fraction

    d, c = dc
    y = data.draw(sb.points(d, c))
    v = data.draw(sb.tangent_vectors(d, c))
    w = float(1 - Fraction(c) * sum(Fraction(float(t)) ** 2 for t in y))
    got = R.transport(np.zeros(d), y, v, c=c)
    assert np.max(np.abs(got - w * v)) <= 4 * EPS * np.max(np.abs(w * v))


# --------------------------------------------------------------------------- outputs inside


@given(data=st.data(), dc=setup, r=st.floats(-1e6, 1e6))
def test_every_point_valued_output_is_strictly_inside(
    data: st.DataObject, dc: tuple[int, float], r: float
) -> None:
    d, c = dc
    x, y = data.draw(sb.points(d, c, max_k=16)), data.draw(sb.points(d, c, max_k=16))
    u = data.draw(sb.tangent_vectors(d, c, max_log10=300))
    m = data.draw(sb.dyadic_matrix(d, d)) * 2.0**20
    outs = [
        R.mobius_add(x, y, c=c),
        R.mobius_scalar_mul(r, x, c=c),
        R.mobius_matvec(m, x, c=c),
        R.expmap0(u, c=c),
        R.expmap(x, u, c=c),
        R.project(u, c=c, eps=0.0),
        R.diagonal_matvec(np.diag(m), x, c=c),
    ]
    for out in outs:
        assert strictly_inside(out, c)
