"""Float64 reference Poincaré-ball math: the exact-semantics oracle (numpy only, never torch).

Every operation returns the exact value at its float64 inputs to within a few ulp over the
whole representable ball; see docs/math.md (derivations) and docs/accuracy.md (contract and
measured errors).  Curvature is ``-c`` with ``c > 0`` passed keyword-only; the vector axis is
last and leading axes broadcast.  Invalid input raises ``ValueError`` naming the argument.

>>> import numpy as np
>>> from hyperet.reference import dist0, expmap0, logmap0
>>> x = expmap0(np.array([3.0, 4.0]), c=1.0)
>>> round(float(dist0(x, c=1.0)), 10)  # Rad(expmap0(u)) = 2|u|, up to x's own rounding
10.0
>>> np.allclose(logmap0(x, c=1.0), [3.0, 4.0], rtol=1e-15)
True
"""

from __future__ import annotations

from ._saturation import track_saturation
from .ball import (
    conformal_factor,
    dist,
    dist0,
    expmap,
    expmap0,
    gyration,
    logmap,
    logmap0,
    mobius_add,
    mobius_matvec,
    mobius_scalar_mul,
    project,
    transport,
)
from .cones import entailment_angle, entailment_aperture, entailment_energy, inner_radius
from .lorentz import from_lorentz, lorentz_dist, to_lorentz
from .structured import (
    banded_matvec,
    banded_to_dense,
    block_diagonal_matvec,
    block_diagonal_to_dense,
    diagonal_matvec,
    diagonal_to_dense,
)

__all__ = [
    "banded_matvec",
    "banded_to_dense",
    "block_diagonal_matvec",
    "block_diagonal_to_dense",
    "conformal_factor",
    "diagonal_matvec",
    "diagonal_to_dense",
    "dist",
    "dist0",
    "entailment_angle",
    "entailment_aperture",
    "entailment_energy",
    "expmap",
    "expmap0",
    "from_lorentz",
    "gyration",
    "inner_radius",
    "logmap",
    "logmap0",
    "lorentz_dist",
    "mobius_add",
    "mobius_matvec",
    "mobius_scalar_mul",
    "project",
    "to_lorentz",
    "track_saturation",
    "transport",
]
