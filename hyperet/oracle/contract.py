"""The published tolerance contract of the oracle, as data.

An implementation of an op *meets the contract* in a floating-point format when, on every
valid golden case, its normwise forward error against the exact value at the stored inputs is
at most

.. math::

    \\mathrm{bound}_{op,\\,dtype} \\cdot a_i \\quad \\text{ulps of } dtype,

where :math:`a_i \\ge 1` is the per-case *conditioning allowance* stored beside the inputs in
every golden file (tensor ``allowance``). It is 1 except for the ops whose conditioning blows up
near the boundary of the ball:

- ``mobius_add(x, y)``, ``transport(x, y, v)``: :math:`a = \\max(1, \\lambda_x \\lambda_y / 4)`;
- ``gyration(a, b, z)``: :math:`a = \\max(1, \\lambda_a \\lambda_b / 4)`;
- ``hra_*(u, params)`` (the literal chain ``logmap0(M (x) expmap0(u))``):
  :math:`a = \\max(1, (\\lambda_p + \\lambda_q) / 4)` with ``p = expmap0(u)`` and ``q = M (x) p``,
  the intermediate points whose rounding the literal chain cannot avoid;
- ``entailment_energy(x, y)`` :math:`= \\max(0, \\Xi - \\psi)`:
  :math:`a = \\max(1, \\mathrm{ulp}(\\max(\\Xi, \\psi)) / \\mathrm{ulp}(E))` (a difference of two
  angles, accurate in ulps of the larger one: :func:`energy_allowance`);

with :math:`\\lambda_x = 2 / (1 - c|x|^2)` the conformal factor, evaluated in float64 at the
stored inputs. The normwise error in ulps is the one of :mod:`hyperet.oracle.ulp`, in ulps of the
RESULT's format.

``hyperet oracle grade`` compares a result with the golden ``expected`` tensor (the float64
reference's output), not with the exact value, so its threshold adds the reference's own bound
(:data:`REFERENCE_BOUND_ULP` float64 ulps, converted to ulps of the result's format):
:func:`grade_threshold_ulp`. ``hyperet oracle accuracy`` compares with mpmath and uses
:func:`exact_threshold_ulp`, the bound itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hyperet.oracle.spec import GOLDEN_OPS, SPECS

#: Significand precision (bits, implicit bit included) of the formats a result may have.
PRECISION_BITS: dict[str, int] = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}

#: The float64 reference's own accuracy bound against the exact value (docs/accuracy.md).
REFERENCE_BOUND_ULP = 4.0

#: Ops whose golden files carry a conditioning allowance > 1 near the boundary, with the
#: names of the golden tensors whose conformal factors enter it.
CONDITIONED_OPS: dict[str, tuple[str, ...]] = {
    op: spec.conditioned for op, spec in SPECS.items() if spec.conditioned
}


@dataclass(frozen=True)
class Bound:
    """The contract for one op in one format.

    Attributes
    ----------
    ulp:
        Bound on the normwise forward error against the exact value, in ulps of the format,
        before the per-case conditioning allowance multiplies it.
    basis:
        Where the number comes from (docs/oracle.md; ``grade --json`` key ``bounds``).
    """

    ulp: float
    basis: str


_F64 = "the float64 reference's contract (docs/accuracy.md)"
_F32 = (
    "measured: hyperet.ops float32 policy='exact' reaches 2.04 ulp (HRA chain 5.05 within its "
    "allowance) in `hyperet oracle accuracy`; 8 = that with a margin for float32 libm last steps"
)
_HALF = (
    "measured: hyperet.ops float32 policy='exact' on the float32 tier, rounded to {fmt}, reaches "
    "{worst} {fmt} ulp times the allowance (correct rounding is 0.5); 1 = that with a 2x margin. "
    "Inputs are the float32 tier's float32 values: compute in float32 or wider, round the result"
)

#: Every op with golden vectors (:data:`hyperet.oracle.spec.GOLDEN_OPS`).
OPS: tuple[str, ...] = GOLDEN_OPS

#: The published contract: format -> op -> bound against the exact value.
CONTRACT: dict[str, dict[str, Bound]] = {
    "float64": {op: Bound(4.0, _F64) for op in OPS},
    "float32": {op: Bound(8.0, _F32) for op in OPS},
    "float16": {op: Bound(1.0, _HALF.format(fmt="float16", worst="0.50003")) for op in OPS},
    "bfloat16": {op: Bound(1.0, _HALF.format(fmt="bfloat16", worst="0.49980")) for op in OPS},
}

#: Largest finite value of each result format. A case whose expected value lies beyond it
#: (``conformal_factor`` near the boundary in float16: up to ~1e7 > 65504) cannot be
#: represented in that format; it is counted as out of range and not judged.
MAX_FINITE: dict[str, float] = {
    "float64": float(np.finfo(np.float64).max),
    "float32": float(np.finfo(np.float32).max),
    "float16": float(np.finfo(np.float16).max),
    "bfloat16": math.ldexp(2.0 - math.ldexp(1.0, -7), 127),
}


def unit_roundoff_ratio(from_dtype: str, to_dtype: str) -> float:
    """How many ulps of ``to_dtype`` one ulp of ``from_dtype`` is (at the same binade).

    >>> unit_roundoff_ratio("float64", "float32")
    1.862645149230957e-09
    """
    return math.ldexp(1.0, PRECISION_BITS[to_dtype] - PRECISION_BITS[from_dtype])


def bound(op: str, dtype: str) -> Bound | None:
    """The contract's bound for ``op`` in ``dtype``, or ``None`` when none is published.

    Every result format (float64, float32, float16, bfloat16) has one for every golden op.
    """
    return CONTRACT.get(dtype, {}).get(op)


def exact_threshold_ulp(op: str, dtype: str) -> float:
    """Base threshold (before the allowance) of ``op`` in ``dtype`` against the exact value.

    ``inf`` when the contract publishes no bound for this format.
    """
    b = bound(op, dtype)
    return math.inf if b is None else b.ulp


def grade_threshold_ulp(op: str, dtype: str) -> float:
    """Base threshold (before the allowance) of ``op`` in ``dtype`` against the golden output.

    The golden output is the float64 reference's, itself within :data:`REFERENCE_BOUND_ULP`
    float64 ulps of the exact value, so the two bounds add:

    >>> grade_threshold_ulp("mobius_add", "float64")
    8.0
    """
    return exact_threshold_ulp(op, dtype) + REFERENCE_BOUND_ULP * unit_roundoff_ratio(
        "float64", dtype
    )


def pair_allowance(lambda_1: np.ndarray, lambda_2: np.ndarray) -> np.ndarray:
    """Per-case allowance of Möbius addition, gyration and transport: ``max(1, l1 l2 / 4)``.

    >>> pair_allowance(np.array([2.0, 20.0]), np.array([2.0, 20.0]))
    array([  1., 100.])
    """
    return np.maximum(1.0, np.asarray(lambda_1, np.float64) * np.asarray(lambda_2, np.float64) / 4)


def energy_allowance(angle: np.ndarray, aperture: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Per-case allowance of ``entailment_energy = max(0, Xi - psi)``: the ulp of the larger
    angle over the ulp of the energy, ``max(1, ulp(max(Xi, psi)) / ulp(E))`` - the energy is
    a difference of two angles, each accurate to its own ulps, so its error is bounded in ulps of
    the larger one (an exact energy of 0 allows an error of a few ulp of the angles).

    >>> float(energy_allowance(np.array(1.0), np.array(0.5), np.array(0.5))[()])
    2.0
    """
    big = np.maximum(np.asarray(angle, np.float64), np.asarray(aperture, np.float64))
    ratio = np.spacing(big) / np.spacing(np.asarray(energy, np.float64))
    # at E = 0 the ratio reaches ~1e308: capped at 2**1020 so that bound * allowance stays finite
    return np.clip(ratio, 1.0, 2.0**1020)


def chain_allowance(lambda_p: np.ndarray, lambda_q: np.ndarray) -> np.ndarray:
    """Per-case allowance of the HRA chain: ``max(1, (l_p + l_q) / 4)``.

    >>> chain_allowance(np.array([2.0, 200.0]), np.array([2.0, 2.0]))
    array([ 1. , 50.5])
    """
    return np.maximum(
        1.0, (np.asarray(lambda_p, np.float64) + np.asarray(lambda_q, np.float64)) / 4
    )
