"""torch float64 (exact mode) vs the float64 numpy reference, ulp-graded, on random inputs and
the families. Both are within 4 ulp of the exact value, so they agree within 8 ulp (normwise),
times the conditioning allowance ``max(1, lambda_x lambda_y / 4)`` for the pair ops."""

from __future__ import annotations

from typing import Any

import numpy as np
import ops_families as fam
import pytest
import torch

import hyperet.ops as ops
import hyperet.reference as ref

EPS = 2.0**-52
BOUND = 8.0


def _ulp(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    got, want = np.atleast_1d(got), np.atleast_1d(want)
    diff = np.linalg.norm(np.atleast_2d(got - want).reshape(len(want), -1), axis=-1)
    scale = np.linalg.norm(np.atleast_2d(want).reshape(len(want), -1), axis=-1)
    return diff / np.maximum(scale * EPS, 2.0**-1074)


def _pointset(rng: np.random.Generator, d: int, c: float) -> np.ndarray:
    pts = [
        *fam.boundary_points(rng, d, c, range(1, 17)),
        *(fam.random_point(rng, d, c, 0.999) for _ in range(40)),
        *fam.tiny_points(rng, d),
    ]
    return np.stack(pts)


def _lam(x: np.ndarray, c: float) -> np.ndarray:
    return np.asarray(ref.conformal_factor(x, c=c))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


CALLS: dict[str, Any] = {
    "conformal_factor": (lambda m, x, y, u, p, c: m.conformal_factor(x, c=c), False),
    "mobius_add": (lambda m, x, y, u, p, c: m.mobius_add(x, y, c=c), True),
    "mobius_scalar_mul": (lambda m, x, y, u, p, c: m.mobius_scalar_mul(-2.5, x, c=c), False),
    "mobius_matvec": (lambda m, x, y, u, p, c: m.mobius_matvec(p["dense"], x, c=c), False),
    "expmap0": (lambda m, x, y, u, p, c: m.expmap0(u, c=c), False),
    "logmap0": (lambda m, x, y, u, p, c: m.logmap0(x, c=c), False),
    "expmap": (lambda m, x, y, u, p, c: m.expmap(x, u, c=c), False),
    "logmap": (lambda m, x, y, u, p, c: m.logmap(x, y, c=c), False),
    "dist": (lambda m, x, y, u, p, c: m.dist(x, y, c=c), False),
    "dist0": (lambda m, x, y, u, p, c: m.dist0(x, c=c), False),
    "gyration": (lambda m, x, y, u, p, c: m.gyration(x, y, u, c=c), True),
    "transport": (lambda m, x, y, u, p, c: m.transport(x, y, u, c=c), True),
    "project": (lambda m, x, y, u, p, c: m.project(u, c=c, eps=1e-3), False),
    "diagonal_matvec": (lambda m, x, y, u, p, c: m.diagonal_matvec(p["w"], x, c=c), False),
    "block_diagonal_matvec": (
        lambda m, x, y, u, p, c: m.block_diagonal_matvec(p["blocks"], x, c=c),
        False,
    ),
    "banded_matvec": (lambda m, x, y, u, p, c: m.banded_matvec(p["bands"], x, c=c), False),
}


@pytest.mark.parametrize("c", [1e-6, 1.0, 37.5])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_exact_mode_agrees_with_the_reference(name: str, c: float) -> None:
    rng = np.random.default_rng(7)
    d = 8
    x = _pointset(rng, d, c)
    y = x[rng.permutation(len(x))]
    u = rng.standard_normal(x.shape) * np.exp(rng.uniform(-20, 5, (len(x), 1)))
    params = {
        "dense": rng.standard_normal((d, d)),
        "w": rng.standard_normal(d),
        "blocks": rng.standard_normal((d // 4, 4, 4)),
        "bands": rng.standard_normal((5, d)),
    }
    call, paired = CALLS[name]
    want = np.asarray(call(ref, x, y, u, params, c))
    got = call(ops, _t(x), _t(y), _t(u), {k: _t(v) for k, v in params.items()}, c).numpy()
    allowance = np.maximum(1.0, _lam(x, c) * _lam(y, c) / 4) if paired else 1.0
    err = _ulp(got, want)
    worst = int(np.argmax(err / allowance))
    assert np.all(err <= BOUND * allowance), (worst, float(err[worst]), x[worst].tolist())
