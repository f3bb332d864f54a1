"""Shared hypothesis strategies for Poincaré-ball tests (numpy float64).

Import as ``import strategies as st_ball`` (``tests/`` is on ``sys.path`` through its
conftest).  Every point strategy yields points strictly inside the ball at their float64
values, drawn at controlled distances to the boundary.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from numpy.typing import NDArray

from hyperet.oracle.families import ball_points

Array = NDArray[np.float64]

#: curvature magnitudes from nearly flat to strongly curved
curvatures = st.sampled_from([1e-6, 1e-3, 0.1, 0.37, 1.0, 2.0, 10.0, 1e3])


def dims(min_d: int = 1, max_d: int = 8) -> st.SearchStrategy[int]:
    """Vector dimensions."""
    return st.integers(min_value=min_d, max_value=max_d)


def unit_vector(d: int) -> st.SearchStrategy[Array]:
    """A unit vector in R^d (from a bounded Gaussian-like draw; never zero)."""
    comps = st.lists(
        st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False), min_size=d, max_size=d
    )
    return (
        comps.map(np.array)
        .filter(lambda v: np.linalg.norm(v) > 1e-3)
        .map(lambda v: v / np.linalg.norm(v))
    )


def one_minus_radius(max_k: float = 15.0) -> st.SearchStrategy[float]:
    """``1 - sqrt(c)|x|`` as ``10**-k`` with ``k`` uniform in ``[0.05, max_k]``
    (radii from 0.1 to 1 - 1e-15; Rad up to about 35 / sqrt(c))."""
    return st.floats(0.05, max_k).map(lambda k: 10.0**-k)


@st.composite
def points(draw: st.DrawFn, d: int, c: float, max_k: float = 15.0) -> Array:
    """A point strictly inside the ball with ``1 - sqrt(c)|x| = 10**-k``, k <= ``max_k``."""
    direction = draw(unit_vector(d))
    return ball_points(direction[None, :], draw(one_minus_radius(max_k)), c)[0]


@st.composite
def moderate_points(draw: st.DrawFn, d: int, c: float) -> Array:
    """A point with ``sqrt(c)|x| <= 0.9`` (well-conditioned identities)."""
    direction = draw(unit_vector(d))
    r = draw(st.floats(0.0, 0.9))
    return ball_points(direction[None, :], 1.0 - r, c)[0]


@st.composite
def tangent_vectors(draw: st.DrawFn, d: int, c: float, max_log10: float = 1.5) -> Array:
    """A tangent vector with ``sqrt(c)|u| = 10**e``, ``e`` in ``[-8, max_log10]``."""
    direction = draw(unit_vector(d))
    size = 10.0 ** draw(st.floats(-8.0, max_log10))
    return direction * (size / math.sqrt(c))


def dyadic(max_abs: int = 4 * 2**16, denominator: int = 2**16) -> st.SearchStrategy[float]:
    """Dyadic rationals ``i / denominator``: sums and products of a few stay exact."""
    return st.integers(-max_abs, max_abs).map(lambda i: i / denominator)


def dyadic_matrix(n: int, d: int, denominator: int = 2**8) -> st.SearchStrategy[Array]:
    """An ``(n, d)`` matrix of small dyadic entries (products of two stay exact)."""
    return st.lists(
        st.integers(-4 * denominator, 4 * denominator), min_size=n * d, max_size=n * d
    ).map(lambda v: np.array(v, dtype=np.float64).reshape(n, d) / denominator)
