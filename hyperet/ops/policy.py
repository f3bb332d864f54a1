"""The numerical policy of :mod:`hyperet.ops`: exact mode and train mode (see docs/policy.md).

Two modes, chosen per call with the keyword-only ``policy`` argument:

``"exact"`` (the default for float64 tensors)
    Reference semantics. Computed in float64 whatever the input dtype (float32/float16/bfloat16
    results are rounded once at the end), with the compensated co-norm
    :math:`w(x) = 1 - c|x|^2` (double-double sum of squares) and overflow-free norms. No
    value-changing clamp. Invalid input is refused with a :class:`ValueError` whose message
    starts with the argument's name, exactly like :mod:`hyperet.reference`; this costs one host
    synchronisation per call. A result that is inside the ball in exact arithmetic but rounds
    onto or outside its boundary is moved to the nearest interior point in the same direction
    (the reference's only deliberate deviation from correct rounding).

``"train"`` (the default for float32, float16 and bfloat16)
    No validation and no host synchronisation. float16/bfloat16 are computed in float32 and cast
    back. Squared norms of float32 points are accumulated in float64 (one reduction), so
    :math:`w(x) = 1 - c|x|^2` is formed in float64. Dtype-aware limits, derived from
    :func:`torch.finfo`, keep values and gradients finite: an input's co-norm is floored at
    :func:`input_conorm_floor` (points below it - on or outside the boundary up to the rounding
    of ``w`` - are projected radially onto it; valid points are untouched) and every point a
    function returns has :math:`\\sqrt{c}|y| \\le z_{out} = 1 - 2\\epsilon` (``eps`` of the
    result dtype), so the radius ceiling of results is

    .. math::

        \\mathrm{Rad}_{max} = \\frac{1}{\\sqrt{c}} \\ln\\frac{1 + z_{out}}{1 - z_{out}}
                           = \\frac{1}{\\sqrt{c}} \\ln\\left(\\frac{1}{\\epsilon} - 1\\right).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from hyperet.choices import POLICIES

PolicyName = Literal["exact", "train"]

#: Input dtypes computed in float32 (and cast back) in train mode.
HALF_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16)


def resolve_policy(policy: str | None, dtype: torch.dtype) -> PolicyName:
    """The policy a call uses: ``policy`` itself, or the default for ``dtype`` when ``None``.

    >>> resolve_policy(None, torch.float64), resolve_policy(None, torch.float32)
    ('exact', 'train')
    """
    if policy is None:
        return "exact" if dtype == torch.float64 else "train"
    if policy not in POLICIES:
        raise ValueError(f"policy: expected one of {POLICIES} or None, got {policy!r}")
    return "exact" if policy == "exact" else "train"


def compute_dtype(policy: PolicyName, dtype: torch.dtype) -> torch.dtype:
    """The dtype the arithmetic runs in: float64 (exact mode); float32 for half types (train mode).

    >>> compute_dtype("exact", torch.float32), compute_dtype("train", torch.bfloat16)
    (torch.float64, torch.float32)
    """
    if policy == "exact":
        return torch.float64
    return torch.float32 if dtype in HALF_DTYPES else dtype


def input_conorm_floor(dtype: torch.dtype) -> float:
    """Train mode: the smallest co-norm :math:`w(x) = 1 - c|x|^2` an input is treated as having.

    .. math::

        w_{in} = \\epsilon_{64} = 2^{-52} \\quad \\text{(float64 and float32)}

    ``w`` is formed in float64 (squares of float32 points accumulated in float64), so a
    co-norm below :math:`\\epsilon_{64}` is not resolved: only points on or outside the boundary
    (up to that rounding) are below the floor, and they are projected radially onto it. A vector
    of float32 numbers can lie far closer to the boundary than ``1 - eps32``; every valid float32
    point with :math:`w \\ge 2^{-52}` plus the rounding of ``w`` keeps its value (Rad up to
    :math:`37.4/\\sqrt c`). Gradients stay finite at the floor because the ops whose backward
    forms powers of :math:`1/w` beyond the square (quotients by
    :math:`D = w(x)w(y) + c|x + y|^2`) keep their per-vector scalars in float64.
    float16 and bfloat16 (computed in float32, rounded to 11 or 8 bits) keep
    :math:`w_{in} = \\epsilon` of their own format: their results carry no information closer
    to the boundary, and float16's range (65504) cannot hold :math:`\\lambda_x = 2/w` much
    beyond it.

    >>> input_conorm_floor(torch.float64) == input_conorm_floor(torch.float32) == 2.0**-52
    True
    >>> input_conorm_floor(torch.float16) == 2.0**-10
    True
    """
    if dtype in HALF_DTYPES:
        # half results carry no information below their own eps, and float16's range (65504)
        # cannot hold lambda = 2/w much beyond it: keep the floor at eps of the result
        return torch.finfo(dtype).eps
    return torch.finfo(torch.float64).eps


def input_radius_ceiling(dtype: torch.dtype, c: float = 1.0) -> float:
    """Train mode: the largest hyperbolic radius an input point is treated as having,
    :math:`\\frac{2}{\\sqrt c}\\operatorname{artanh}\\sqrt{1 - w_{in}}`.

    >>> [round(input_radius_ceiling(t), 2) for t in (torch.float64, torch.float32, torch.float16)]
    [37.43, 37.43, 8.32]
    """
    z = math.sqrt(1.0 - input_conorm_floor(dtype))
    return (math.log1p(z) - math.log1p(-z)) / math.sqrt(c)


def output_ceiling(dtype: torch.dtype) -> float:
    """Train mode: the largest :math:`\\sqrt{c}|y|` of a returned point, ``1 - 2 eps``.

    The margin of ``2 eps`` below 1 absorbs the rounding of the final rescaling and of the cast
    back to ``dtype``.

    >>> output_ceiling(torch.float64) == 1 - 2.0**-51
    True
    """
    return 1.0 - 2 * torch.finfo(dtype).eps


def radius_ceiling(dtype: torch.dtype, c: float = 1.0) -> float:
    """Train mode: the largest hyperbolic radius :math:`\\mathrm{Rad}(y)` of a returned point.

    .. math::

        \\mathrm{Rad}_{max} = \\frac{2}{\\sqrt{c}} \\operatorname{artanh}(1 - 2\\epsilon)
                           = \\frac{1}{\\sqrt{c}} \\ln\\left(\\frac{1}{\\epsilon} - 1\\right)

    >>> [round(radius_ceiling(t), 2) for t in (torch.float64, torch.float32, torch.float16)]
    [36.04, 15.94, 6.93]
    """
    z = output_ceiling(dtype)
    return (math.log1p(z) - math.log1p(-z)) / math.sqrt(c)
