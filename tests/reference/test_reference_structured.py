"""Structured Möbius products equal the dense product with the same matrix."""

from __future__ import annotations

import numpy as np
import strategies as sb
from hypothesis import given
from hypothesis import strategies as st

from hyperet import reference as R

EPS = 2.0**-52


def _assert_equal_or_ulp(a: np.ndarray, b: np.ndarray) -> None:
    scale = np.max(np.abs(b), axis=-1, keepdims=True)
    err = np.abs(a - b)
    assert np.all(err <= 2 * EPS * scale), f"structured vs dense differ by {err.max():.3g}"


@given(data=st.data(), c=sb.curvatures, d=st.sampled_from([1, 2, 4, 8, 12]))
def test_diagonal_equals_dense(data: st.DataObject, c: float, d: int) -> None:
    x = data.draw(sb.points(d, c, max_k=16))
    w = data.draw(sb.dyadic_matrix(1, d))[0] * data.draw(st.sampled_from([1.0, 1e-8, 1e8]))
    dense = R.diagonal_to_dense(w)
    assert np.array_equal(dense, np.diag(w))
    _assert_equal_or_ulp(R.diagonal_matvec(w, x, c=c), R.mobius_matvec(dense, x, c=c))


@given(
    data=st.data(),
    c=sb.curvatures,
    layout=st.sampled_from([(1, 1), (4, 1), (2, 2), (3, 4), (1, 8)]),
)
def test_block_diagonal_equals_dense(
    data: st.DataObject, c: float, layout: tuple[int, int]
) -> None:
    nb, b = layout
    x = data.draw(sb.points(nb * b, c, max_k=16))
    blocks = data.draw(sb.dyadic_matrix(nb * b, b)).reshape(nb, b, b)
    dense = R.block_diagonal_to_dense(blocks)
    for i in range(nb):  # the layout of docs/architecture.md
        assert np.array_equal(dense[i * b : (i + 1) * b, i * b : (i + 1) * b], blocks[i])
    assert np.count_nonzero(dense) == np.count_nonzero(blocks)
    _assert_equal_or_ulp(R.block_diagonal_matvec(blocks, x, c=c), R.mobius_matvec(dense, x, c=c))


@given(data=st.data(), c=sb.curvatures, d=st.sampled_from([1, 3, 5, 8]), k=st.integers(0, 4))
def test_banded_equals_dense(data: st.DataObject, c: float, d: int, k: int) -> None:
    x = data.draw(sb.points(d, c, max_k=16))
    bands = data.draw(sb.dyadic_matrix(2 * k + 1, d))
    dense = R.banded_to_dense(bands)
    for j in range(2 * k + 1):  # M[i, i + j - k] = bands[j, i], out-of-matrix entries ignored
        for i in range(d):
            if 0 <= i + j - k < d:
                assert dense[i, i + j - k] == bands[j, i]
    assert np.count_nonzero(dense) <= np.count_nonzero(bands)
    _assert_equal_or_ulp(R.banded_matvec(bands, x, c=c), R.mobius_matvec(dense, x, c=c))


def test_structured_products_broadcast_over_points() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 8)) * 0.05
    w = rng.standard_normal(8)
    out = R.diagonal_matvec(w, x, c=1.0)
    assert out.shape == (5, 8)
    for i in range(5):
        assert np.array_equal(out[i], R.diagonal_matvec(w, x[i], c=1.0))


def test_block_product_is_not_blockwise() -> None:
    """blockdiag(M1, M2) (x) (x1, x2) != (M1 (x) x1, M2 (x) x2): the norms are global."""
    x = np.array([0.3, 0.1, -0.2, 0.4])
    blocks = np.array([[[2.0, 0.0], [0.0, 2.0]], [[0.5, 0.0], [0.0, 0.5]]])
    whole = R.block_diagonal_matvec(blocks, x, c=1.0)
    piecewise = np.concatenate(
        [R.mobius_matvec(blocks[0], x[:2], c=1.0), R.mobius_matvec(blocks[1], x[2:], c=1.0)]
    )
    assert np.max(np.abs(whole - piecewise)) > 1e-3
