"""Stability monitors: radius statistics by hand, the Poincaré loss's instability."""

from __future__ import annotations

import math

import pytest
import torch

from hyperet import ops
from hyperet.alignment.losses import ContrastiveLoss
from hyperet.alignment.monitors import StabilityMonitor, embedding_stats


def _points(norms: list[float], dim: int = 3, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    x = torch.zeros(len(norms), dim, dtype=dtype)
    x[:, 0] = torch.tensor(norms, dtype=dtype)
    return x


def test_embedding_stats_by_hand() -> None:
    c = 4.0  # ball radius 1/2; r = 2|x|
    x = _points([0.1, 0.25, 0.4999, 0.49996, 0.5, math.nan])
    s = embedding_stats(x, c=c, boundary_tol=1e-3)
    inside = [0.2, 0.5, 0.9998, 0.99992]  # r of the points strictly inside
    radii = [math.atanh(r) for r in inside]  # (2 / sqrt c) artanh(r) with sqrt c = 2
    assert s.count == 6 and s.nonfinite == 1 and s.on_boundary == 1
    assert s.radius_min == pytest.approx(radii[0], rel=1e-12)
    assert s.radius_max == pytest.approx(radii[-1], rel=1e-9)
    assert s.radius_mean == pytest.approx(sum(radii) / 4, rel=1e-9)
    assert s.boundary_fraction == pytest.approx(3 / 6)  # 1 - r < 1e-3: 0.9998, 0.99992, 1.0


def test_euclidean_embeddings_report_norms_and_no_boundary() -> None:
    s = embedding_stats(_points([1.0, 3.0, 50.0]), c=None)
    assert (s.radius_min, s.radius_max, s.radius_mean) == (1.0, 50.0, 18.0)
    assert s.boundary_fraction == 0.0 and s.on_boundary == 0


def test_monitor_accumulates_extremes_and_clamp_hits() -> None:
    mon = StabilityMonitor()
    mon.record(
        step=0, embeddings={"image": _points([0.1, 0.5])}, c=1.0, grad_norm=2.0, clamp_hits=1
    )
    mon.record(step=1, embeddings={"image": _points([0.9995])}, c=1.0, grad_norm=5.0, clamp_hits=2)
    s = mon.summary()
    img = s["modalities"]["image"]
    assert s["clamp_hits"] == 3 and s["grad_norm_max"] == 5.0 and s["steps_recorded"] == 2
    assert img["radius_min"] == pytest.approx(2 * math.atanh(0.1))
    assert img["radius_max"] == pytest.approx(2 * math.atanh(0.9995))
    assert img["boundary_fraction_max"] == 1.0


def test_poincare_itc_drives_embeddings_to_the_boundary_and_the_monitors_report_it() -> None:
    """The unstable ablation: plain SGD on the -Poincaré-distance ITC pushes every embedding
    within 1e-3 of the boundary; the run completes and the monitors show it."""
    gen = torch.Generator().manual_seed(0)
    u = (torch.randn(32, 16, generator=gen) * 0.1).requires_grad_()
    v = (torch.randn(32, 16, generator=gen) * 0.1).requires_grad_()
    loss_fn = ContrastiveLoss(similarity="poincare", label_smoothing=0.0).requires_grad_(False)
    opt = torch.optim.SGD([u, v], lr=10.0)
    mon = StabilityMonitor()
    for step in range(60):
        x, y = ops.expmap0(u, c=1.0), ops.expmap0(v, c=1.0)
        out = loss_fn(x, y, c=1.0)
        opt.zero_grad()
        finite = bool(torch.isfinite(out.loss))
        if finite:
            out.loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_([u, v], math.inf))  # the norm, unclipped
        mon.record(step=step, embeddings={"image": x, "text": y}, c=1.0, grad_norm=norm)
        if finite:
            opt.step()
    summary = mon.summary()
    assert summary["steps_recorded"] == 60
    for name in ("image", "text"):
        assert summary["modalities"][name]["radius_min"] < 2.0  # started well inside
        assert summary["last"][name]["boundary_fraction"] > 0.9
        assert summary["modalities"][name]["radius_max"] > 2 * math.atanh(1 - 1e-3)


def test_saturated_embeddings_are_reported_and_guarded_not_crashing() -> None:
    """Tangent norms of 20 round onto the float32 boundary. Whatever the fast-path policy does
    with them (clamp to the last interior float or return an infinite distance), the monitors
    flag every point and a non-finite loss is caught by the guard."""
    gen = torch.Generator().manual_seed(1)
    u = torch.randn(8, 16, generator=gen)
    u = 20 * u / u.norm(dim=-1, keepdim=True)
    x = ops.expmap0(u, c=1.0)
    r = x.double().norm(dim=-1)  # sqrt(c)|x| with c = 1
    assert bool((1 - r < 1e-6).all())
    stats = embedding_stats(x, c=1.0)
    assert stats.boundary_fraction == 1.0
    assert stats.on_boundary == int((r >= 1).sum())
    ContrastiveLoss(similarity="poincare")(x, x.flip(0), c=1.0)  # computes, does not crash
