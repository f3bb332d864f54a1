"""The tutorial's figures: the generator runs, and every figure is committed and shown."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hyperet import reference as ref
from hyperet.figures import FIGURES, geodesic

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_geodesic_runs_at_constant_speed_between_its_ends() -> None:
    """``x (+) t (x) ((-x) (+) y)`` starts at x, ends at y, and d(x, g(t)) = t d(x, y)."""
    x, y = np.array([-0.6, 0.3]), np.array([0.5, 0.7])
    curve = geodesic(x, y, n=11)
    np.testing.assert_allclose(curve[0], x, rtol=0, atol=1e-15)
    np.testing.assert_allclose(curve[-1], y, rtol=1e-14)
    along = ref.dist(np.broadcast_to(x, curve.shape), curve, c=1.0)
    np.testing.assert_allclose(along, np.linspace(0, 1, 11) * ref.dist(x, y, c=1.0), rtol=1e-13)


def test_every_figure_is_committed_and_shown_in_the_tutorial() -> None:
    shown = set(re.findall(r"\(figures/(\w+)\.png\)", (ROOT / "docs" / "tutorial.md").read_text()))
    assert shown == set(FIGURES)
    for name in FIGURES:
        assert (ROOT / "docs" / "figures" / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE)


def test_the_generator_draws_every_figure(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from hyperet.figures import make_figures

    written = make_figures(tmp_path)
    assert [p.name for p in written] == [f"{name}.png" for name in FIGURES]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, path.name
