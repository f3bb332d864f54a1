"""Suite ``geoopt``: :mod:`hyperet.ops` vs geoopt (optional ``bench`` extra) at equal dtype.

Forward + backward of ``mobius_add``, ``expmap0``, ``logmap0``, ``dist``, ``mobius_matvec`` on a
batch of points (geoopt's ``PoincareBall`` methods, which project their results like ours keep
them inside). Ours runs its default policy for the dtype (float32: ``train``; float64:
``exact``, which validates with a host sync and uses compensated co-norms), plus float64
``train`` to show what exact mode costs. Each float64 row's note gives both libraries' worst
relative error against the float64 reference on points up to ``1 - 1e-12`` from the boundary.
Target (issue 3): ratio >= 1 (no slower than geoopt).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

import hyperet.ops as ops
from hyperet.bench import Row, SuiteUnavailable, interleaved_medians

TARGET = 1.0
OPS = ("mobius_add", "expmap0", "logmap0", "dist", "mobius_matvec")


def _calls(ball: Any, policy: str | None) -> dict[str, tuple[Callable[..., Tensor], ...]]:
    return {
        "mobius_add": (
            lambda x, y, m: ops.mobius_add(x, y, c=1.0, policy=policy),
            lambda x, y, m: ball.mobius_add(x, y),
        ),
        "expmap0": (
            lambda x, y, m: ops.expmap0(3 * y, c=1.0, policy=policy),
            lambda x, y, m: ball.expmap0(3 * y),
        ),
        "logmap0": (
            lambda x, y, m: ops.logmap0(x, c=1.0, policy=policy),
            lambda x, y, m: ball.logmap0(x),
        ),
        "dist": (
            lambda x, y, m: ops.dist(x, y, c=1.0, policy=policy),
            lambda x, y, m: ball.dist(x, y),
        ),
        "mobius_matvec": (
            lambda x, y, m: ops.mobius_matvec(m, x, c=1.0, policy=policy),
            lambda x, y, m: ball.mobius_matvec(m, x),
        ),
    }


def _points(n: int, d: int, dtype: torch.dtype, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g, dtype=torch.float64)
    r = torch.rand(n, 1, generator=g, dtype=torch.float64) * 0.95
    return (v / v.norm(dim=-1, keepdim=True) * r).to(dtype)


def _worst_rel_error(name: str, calls: tuple[Callable[..., Tensor], ...]) -> tuple[float, float]:
    """Worst normwise relative error of (ours, geoopt) vs the float64 reference."""
    import hyperet.reference as ref

    g = torch.Generator().manual_seed(1)
    d = 16
    unit = torch.randn(13, d, generator=g, dtype=torch.float64)
    unit = unit / unit.norm(dim=-1, keepdim=True)
    radii = torch.tensor([1 - 10.0**-k for k in range(1, 13)] + [1e-12], dtype=torch.float64)
    x = unit * radii[:, None]
    y = x.flip(0) * 0.999
    m = torch.eye(d, dtype=torch.float64) * 0.5 + 0.01
    ref_calls = {
        "mobius_add": lambda: ref.mobius_add(x.numpy(), y.numpy(), c=1.0),
        "expmap0": lambda: ref.expmap0(3 * y.numpy(), c=1.0),
        "logmap0": lambda: ref.logmap0(x.numpy(), c=1.0),
        "dist": lambda: ref.dist(x.numpy(), y.numpy(), c=1.0),
        "mobius_matvec": lambda: ref.mobius_matvec(m.numpy(), x.numpy(), c=1.0),
    }
    want = np.atleast_2d(np.asarray(ref_calls[name]()).T).T
    errs = []
    for fn in calls:
        got = np.atleast_2d(fn(x, y, m).detach().numpy().T).T
        rel = np.linalg.norm(got - want, axis=-1) / np.linalg.norm(want, axis=-1)
        errs.append(float(np.max(rel)))
    return errs[0], errs[1]


def _step(fn: Callable[..., Tensor], x: Tensor, y: Tensor, m: Tensor) -> None:
    torch.autograd.grad(fn(x, y, m).sum(), (x, y, m), allow_unused=True)


def run(quick: bool = False) -> list[Row]:
    try:
        with warnings.catch_warnings():  # geoopt 0.5 uses the deprecated torch.jit.script
            warnings.simplefilter("ignore", DeprecationWarning)
            import geoopt
    except ImportError as exc:  # the optional `bench` extra
        raise SuiteUnavailable("geoopt is not installed (pip install 'hyperet[bench]')") from exc
    n, d, repeats = (256, 16, 3) if quick else (4096, 64, 9)
    ball = geoopt.PoincareBall(c=1.0)
    rows: list[Row] = []
    for dtype, policy in ((torch.float32, None), (torch.float64, None), (torch.float64, "train")):
        mode = policy or ("exact" if dtype == torch.float64 else "train")
        x = _points(n, d, dtype, seed=2).requires_grad_()
        y = _points(n, d, dtype, seed=3).requires_grad_()
        m = (torch.eye(d, dtype=dtype) + 0.1 * torch.randn(d, d, dtype=dtype)).requires_grad_()
        calls = _calls(ball, policy)
        for name in OPS:
            ours_fn, theirs_fn = calls[name]

            step = functools.partial(_step, ours_fn, x, y, m)
            step_theirs = functools.partial(_step, theirs_fn, x, y, m)
            med = interleaved_medians({"ours": step, "theirs": step_theirs}, repeats=repeats)
            note = ""
            if dtype == torch.float64 and policy is None and not quick:
                e_ours, e_geo = _worst_rel_error(name, calls[name])
                note = f"worst rel. error vs reference: ours {e_ours:.1e}, geoopt {e_geo:.1e}"
            rows.append(
                Row(
                    suite="geoopt",
                    name=f"{name} {str(dtype).removeprefix('torch.')} ({mode}), B={n}, d={d}",
                    ours=med["ours"],
                    theirs=med["theirs"],
                    ratio=med["theirs"] / med["ours"],
                    target=TARGET,
                    note=note,
                )
            )
    return rows
