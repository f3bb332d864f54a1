"""Input families of the numerics notes (section 6) as small float64 arrays, for the op tests."""

from __future__ import annotations

import numpy as np


def unit(rng: np.random.Generator, d: int) -> np.ndarray:
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v)


def boundary_points(rng: np.random.Generator, d: int, c: float, ks: range) -> list[np.ndarray]:
    """Family A: sqrt(c)|x| = 1 - 10^-k (as nearly as the format allows)."""
    return [unit(rng, d) * (1 - 10.0**-k) / np.sqrt(c) for k in ks]


def random_point(rng: np.random.Generator, d: int, c: float, r_max: float = 0.95) -> np.ndarray:
    return unit(rng, d) * rng.uniform(0, r_max) / np.sqrt(c)


def tiny_points(rng: np.random.Generator, d: int) -> list[np.ndarray]:
    """Families B, C, D: tiny norms, subnormal components, the zero vector."""
    pts = [unit(rng, d) * s for s in (1e-8, 1e-30, 1e-160, 1e-300)]
    sub = np.zeros(d)
    sub[0] = 5e-324
    return [*pts, sub, np.zeros(d)]


def huge_tangents(rng: np.random.Generator, d: int, c: float) -> list[np.ndarray]:
    """Family E: sqrt(c)|u| = 5, 19.1, 25, 1e10, 1e154, 1e300."""
    return [unit(rng, d) * s / np.sqrt(c) for s in (5.0, 19.1, 25.0, 1e10, 1e154, 1e300)]


CURVATURES = (1e-12, 1e-6, 1e-3, 0.1, 1.0, 37.5, 1e3)  # family F
