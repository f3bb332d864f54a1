"""Stability monitors for hyperbolic contrastive training.

What goes wrong with a distance-based hyperbolic loss is visible before it turns into a NaN:
embeddings drift to the boundary of the ball, where ``sqrt(c)|x|`` rounds to 1 in float32
(``tanh`` saturates once ``sqrt(c)|u| > 9.01``) and distances stop changing. The monitors
measure, per modality, in float64 from the stored points:

.. math::

    r = \\sqrt c\\,|x|, \\qquad
    \\operatorname{Rad}(x) = \\frac{2}{\\sqrt c} \\operatorname{artanh}(r),

- the radius range (over points strictly inside the ball),
- the fraction of embeddings within ``boundary_tol`` (default ``1e-3``) of the boundary,
  ``1 - r < boundary_tol``, in units of the ball radius (``r`` is ``sqrt(c)|x|``),
- ``on_boundary``: points stored with ``r >= 1`` (their radius is infinite in the stored
  precision; a fast-path policy may have clamped them, a careless one returns inf),
- clamp hits of the bounded scalars (curvature, scales, logit scale) and the gradient norm.

Non-finite losses stop the run in the training engine
(:class:`hyperet.train.engine.NonFiniteLossError`); the step that produced one is recorded here
first, so the summary shows what led there.

For Euclidean embeddings (``c=None``) the radius is the norm ``|x|`` and nothing is near a
boundary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

BOUNDARY_TOL = 1e-3


@dataclass(frozen=True)
class EmbeddingStats:
    """Radius statistics of one batch of embeddings (see the module docstring)."""

    count: int
    radius_min: float
    radius_max: float
    radius_mean: float
    boundary_fraction: float
    on_boundary: int
    nonfinite: int


def embedding_stats(
    x: Tensor, *, c: Tensor | float | None, boundary_tol: float = BOUNDARY_TOL
) -> EmbeddingStats:
    """Radius range, boundary proximity and non-finite count of embeddings ``(..., E)``."""
    if not 0 < boundary_tol < 1:
        raise ValueError(f"boundary_tol: need 0 < tol < 1, got {boundary_tol}")
    norms = torch.linalg.vector_norm(x.detach().to(torch.float64), dim=-1).reshape(-1)  # (n,)
    finite = torch.isfinite(norms)
    nonfinite = int((~finite).sum())
    norms = norms[finite]
    if c is None:
        radii, near, on = norms, torch.zeros_like(norms, dtype=torch.bool), 0
    else:
        sqrt_c = math.sqrt(c.item() if isinstance(c, Tensor) else float(c))
        r = sqrt_c * norms
        inside = r < 1
        on = int((~inside).sum())
        near = (1 - r) < boundary_tol
        radii = (2 / sqrt_c) * torch.atanh(r[inside])
    count = int(norms.numel()) + nonfinite
    has = radii.numel() > 0
    return EmbeddingStats(
        count=count,
        radius_min=float(radii.min()) if has else math.nan,
        radius_max=float(radii.max()) if has else math.nan,
        radius_mean=float(radii.mean()) if has else math.nan,
        boundary_fraction=float(near.sum()) / count if count else 0.0,
        on_boundary=on,
        nonfinite=nonfinite,
    )


def _nanmin(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else min(a, b)


def _nanmax(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)


class StabilityMonitor:
    """Accumulates the stability monitors over a training run.

    Parameters
    ----------
    boundary_tol : float
        Tolerance of the near-boundary fraction.
    """

    def __init__(self, *, boundary_tol: float = BOUNDARY_TOL) -> None:
        self.boundary_tol = boundary_tol
        self.steps = 0
        self.clamp_hits = 0
        self.grad_norm_max = math.nan
        self.last: dict[str, Any] = {}
        self._modalities: dict[str, dict[str, float]] = {}

    def record(
        self,
        *,
        step: int,
        embeddings: Mapping[str, Tensor],
        c: Tensor | float | None,
        grad_norm: float | None = None,
        clamp_hits: int = 0,
    ) -> dict[str, Any]:
        """Record one step: per-modality radius statistics, gradient norm and clamp hits."""
        self.steps += 1
        self.clamp_hits += clamp_hits
        entry: dict[str, Any] = {"step": step, "clamp_hits": clamp_hits}
        if grad_norm is not None:
            entry["grad_norm"] = grad_norm
            self.grad_norm_max = _nanmax(self.grad_norm_max, grad_norm)
        for name, x in embeddings.items():
            stats = embedding_stats(x, c=c, boundary_tol=self.boundary_tol)
            entry[name] = asdict(stats)
            run = self._modalities.setdefault(
                name,
                {
                    "radius_min": math.nan,
                    "radius_max": math.nan,
                    "boundary_fraction_max": 0.0,
                    "on_boundary_total": 0,
                    "nonfinite_total": 0,
                },
            )
            run["radius_min"] = _nanmin(run["radius_min"], stats.radius_min)
            run["radius_max"] = _nanmax(run["radius_max"], stats.radius_max)
            run["boundary_fraction_max"] = max(
                run["boundary_fraction_max"], stats.boundary_fraction
            )
            run["on_boundary_total"] += stats.on_boundary
            run["nonfinite_total"] += stats.nonfinite
        self.last = entry
        return entry

    def summary(self) -> dict[str, Any]:
        """Run totals and extremes, plus the last record (plain numbers; may hold nan/inf)."""
        return {
            "steps_recorded": self.steps,
            "clamp_hits": self.clamp_hits,
            "grad_norm_max": self.grad_norm_max,
            "boundary_tol": self.boundary_tol,
            "modalities": {name: dict(run) for name, run in self._modalities.items()},
            "last": dict(self.last),
        }
