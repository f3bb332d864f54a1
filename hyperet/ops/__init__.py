"""Fast, differentiable Poincaré-ball ops on torch tensors (CPU/GPU) with an explicit policy.

Same names and signatures as :mod:`hyperet.reference`, plus a keyword-only ``policy``
(``None``: ``"exact"`` for float64, ``"train"`` otherwise; docs/policy.md) and
:func:`pairwise_dist`. Curvature is :math:`-c`, ``c`` a float or a 0-d tensor.
"""

from __future__ import annotations

from hyperet.ops.ball import (
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
from hyperet.ops.cones import entailment_angle, entailment_aperture, entailment_energy
from hyperet.ops.lorentz import from_lorentz, lorentz_dist, to_lorentz
from hyperet.ops.pairwise import pairwise_dist
from hyperet.ops.policy import POLICIES, radius_ceiling, resolve_policy
from hyperet.ops.structured import (
    banded_matvec,
    banded_to_dense,
    block_diagonal_matvec,
    block_diagonal_to_dense,
    diagonal_matvec,
    diagonal_to_dense,
)

__all__ = [
    "POLICIES",
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
    "logmap",
    "logmap0",
    "lorentz_dist",
    "mobius_add",
    "mobius_matvec",
    "mobius_scalar_mul",
    "pairwise_dist",
    "project",
    "radius_ceiling",
    "resolve_policy",
    "to_lorentz",
    "transport",
]
