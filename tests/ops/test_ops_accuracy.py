"""hyperet.ops against 80-digit mpmath on the input families, graded in ulps (normwise).

Bounds: float64 (exact mode) 4 ulp; float32 (both modes) 8 float32 ulp - the published contract
of hyperet/oracle/contract.py. Möbius addition, gyration and transport get the conditioning
allowance ``max(1, lambda_x lambda_y / 4)`` in float32 (the rounding of their inputs' sum is
amplified by it whatever the algorithm); float64 exact mode, like the reference, needs none.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import mpmath as mp
import numpy as np
import ops_families as fam
import ops_truth as truth
import pytest
import torch

import hyperet.ops as ops

MODES = [
    pytest.param(torch.float64, "exact", 4.0, id="float64-exact"),
    pytest.param(torch.float32, "train", 8.0, id="float32-train"),
    pytest.param(torch.float32, "exact", 8.0, id="float32-exact"),
]
D = 4


def _rounded(a: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    with np.errstate(over="ignore"):
        return np.asarray(a).astype(np_dtype).astype(np.float64)


def _points(rng: np.random.Generator, c: float, dtype: torch.dtype) -> list[np.ndarray]:
    ks = range(1, 17) if dtype == torch.float64 else range(1, 8)
    raw = [
        *fam.boundary_points(rng, D, c, ks),
        *(fam.random_point(rng, D, c) for _ in range(3)),
        *fam.tiny_points(rng, D),
    ]
    pts = [_rounded(p, dtype) for p in raw]
    return [p for p in pts if np.sqrt(c) * np.linalg.norm(p) < 1]


def _lam(x: np.ndarray, c: float) -> float:
    return float(truth.lam(truth.vec(x), mp.mpf(c)))


Case = tuple[tuple[Any, ...], Callable[..., Any], float]  # (numpy args, exact fn, allowance)


def _cases(op: str, rng: np.random.Generator, c: float, dtype: torch.dtype) -> list[Case]:
    cm = mp.mpf(c)
    pts = _points(rng, c, dtype)
    out: list[Case] = []
    for i, x in enumerate(pts):
        y = pts[(7 * i + 3) % len(pts)]
        u = _rounded(rng.standard_normal(D), dtype)
        m = _rounded(rng.standard_normal((D, D)), dtype)
        near = _rounded(x + 10.0 ** -rng.integers(4, 16) * fam.unit(rng, D) / np.sqrt(c), dtype)
        if np.sqrt(c) * np.linalg.norm(near) >= 1:
            near = x
        X, Y, U = truth.vec(x), truth.vec(y), truth.vec(u)
        pair = max(1.0, _lam(x, c) * _lam(y, c) / 4)
        table: dict[str, list[Case]] = {
            "conformal_factor": [((x,), lambda X=X: truth.lam(X, cm), 1.0)],
            "logmap0": [((x,), lambda X=X: truth.logmap0(X, cm), 1.0)],
            "dist0": [((x,), lambda X=X: truth.dist0(X, cm), 1.0)],
            "mobius_scalar_mul": [
                ((r, x), lambda X=X, r=r: truth.scalar_mul(r, X, cm), 1.0)
                for r in (0.375, -2.5, 1e3)
            ],
            "mobius_matvec": [((m, x), lambda X=X, m=m: truth.matvec(m, X, cm), 1.0)],
            "mobius_add": [((x, y), lambda X=X, Y=Y: truth.add(X, Y, cm), pair)],
            "dist": [
                ((x, y), lambda X=X, Y=Y: truth.dist(X, Y, cm), 1.0),
                ((x, near), lambda X=X, n=near: truth.dist(X, truth.vec(n), cm), 1.0),
            ],
            "logmap": [
                ((x, y), lambda X=X, Y=Y: truth.logmap(X, Y, cm), 1.0),
                ((x, near), lambda X=X, n=near: truth.logmap(X, truth.vec(n), cm), 1.0),
            ],
            "expmap": [((x, u), lambda X=X, U=U: truth.expmap(X, U, cm), 1.0)],
            "gyration": [((x, y, u), lambda X=X, Y=Y, U=U: truth.gyration(X, Y, U, cm), pair)],
            "transport": [((x, y, u), lambda X=X, Y=Y, U=U: truth.transport(X, Y, U, cm), pair)],
        }
        out.extend(table.get(op, []))
    if op == "expmap0":
        for u in [*fam.huge_tangents(rng, D, c), *fam.tiny_points(rng, D)]:
            ur = _rounded(u, dtype)
            if np.all(np.isfinite(ur)):
                out.append(((ur,), lambda u=ur: truth.expmap0(truth.vec(u), cm), 1.0))
    return out


OPS = [
    "conformal_factor",
    "logmap0",
    "dist0",
    "mobius_scalar_mul",
    "mobius_matvec",
    "mobius_add",
    "dist",
    "logmap",
    "expmap",
    "expmap0",
    "gyration",
    "transport",
]


@pytest.mark.parametrize(("dtype", "policy", "bound"), MODES)
@pytest.mark.parametrize("op", OPS)
def test_op_within_ulp_bound_of_mpmath_on_families(
    op: str, dtype: torch.dtype, policy: str, bound: float
) -> None:
    rng = np.random.default_rng(zlib.crc32(op.encode()))
    eps = float(torch.finfo(dtype).eps)
    tiny = 2.0**-1074 if dtype == torch.float64 else 2.0**-149
    fn = getattr(ops, op)
    failures = []
    for c in (1.0, 1e-6, 37.5):
        c = float(_rounded(np.array(c), dtype))
        for args, exact, allowance in _cases(op, rng, c, dtype):
            targs = [a if isinstance(a, float) else torch.tensor(a, dtype=dtype) for a in args]
            got = fn(*targs, c=c, policy=policy)
            assert got.dtype == dtype
            err = truth.ulp_error(got.double().numpy(), exact(), eps, tiny)
            if dtype == torch.float64:  # double-double kernels: no conditioning allowance
                allowance = 1.0
            if not err <= bound * allowance:
                failures.append((c, [np.asarray(a).tolist() for a in args], err))
    assert not failures, failures[:3]
