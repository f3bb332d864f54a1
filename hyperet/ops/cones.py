"""Entailment cones on the Poincaré ball as differentiable torch ops (see docs/math.md).

Same names and signatures as :mod:`hyperet.reference.cones`, plus the keyword-only ``policy``.
With :math:`w = 1 - c|x|^2`, :math:`\\hat x = x/|x|`, ``d = y - x``, :math:`\\hat d = d/|d|`,
:math:`p = \\langle \\hat x, \\hat d\\rangle` and :math:`\\hat d_\\perp = \\hat d - p\\hat x`,

.. math::

    \\psi_c(x) = \\arcsin\\frac{K w}{\\sqrt c|x|}, \\qquad
    \\Xi_c(x, y) = \\operatorname{atan2}\\big(w|\\hat d_\\perp|,\\; w p - c|x||d|\\big),
    \\qquad E_c = \\max(0, \\Xi_c - \\psi_c),

the reference's cancellation-free form divided by :math:`|x||d|` (atan2 does not see a common
positive factor), so both arguments are O(1) and nothing underflows near the apex.

Policies:

- ``"exact"``: values from :mod:`hyperet.reference` (float64, double-double; domain errors -
  ``x = 0``, ``y = x``, :math:`\\sqrt c|x| < r_{in}` - raise ``ValueError`` naming the argument),
  gradients of the formulas above in float64.
- ``"train"``: the formulas in the compute dtype, no validation, finite values and gradients
  everywhere: the aperture's argument is capped at ``1 - eps`` (so :math:`\\psi = \\arcsin(1 -
  \\epsilon)`, gradient 0, inside :math:`r_{in}` and at the origin, as Ganea et al. and MERU
  clip it), and the degenerate angle at ``y = x`` or ``x = 0`` is 0 with gradient 0 (a point
  entails itself). The norm of :math:`\\hat d_\\perp` has gradient 0 on the axis.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from hyperet import reference
from hyperet.ops._numerics import Curvature, Numerics, setup
from hyperet.ops.ball import _squeeze, _value_with_grad_of


def _c_float(num: Numerics) -> float:
    return float(num.c.detach()) if isinstance(num.c, Tensor) else float(num.c)


def _numpy(t: Tensor) -> np.ndarray:
    """A float64 numpy copy for the reference."""
    return t.detach().to(torch.float64).cpu().numpy()


def _from_reference(value: np.ndarray, like: Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float64, device=like.device)


def _aperture_formula(num: Numerics, x: Tensor, K: float) -> Tensor:
    """:math:`\\arcsin(K w / \\sqrt c|x|)`, shape (..., 1); train mode caps the argument."""
    _, z, w, _ = num.point(x)
    if num.exact:
        return torch.asin(K * w / z)
    a_max = 1.0 - torch.finfo(num.out_dtype).eps
    # K w / max(z, K w / a_max): the argument never exceeds a_max and the floor of the
    # denominator takes the gradient where the cap is active (then the aperture is constant)
    return torch.asin(K * w / torch.maximum(z, K * w / a_max))


def _angle_formula(num: Numerics, x: Tensor, y: Tensor) -> Tensor:
    """The exterior angle by the normalised atan2 form, shape (..., 1)."""
    x, _, w, nx = num.point(x)
    d = y - x
    nd = num.norm(d)
    ok = (nx > 0) & (nd > 0)
    x_hat = x / torch.where(ok, nx, torch.ones_like(nx))
    d_hat = d / torch.where(ok, nd, torch.ones_like(nd))
    p = (x_hat * d_hat).sum(dim=-1, keepdim=True)
    perp = torch.linalg.vector_norm(d_hat - p * x_hat, dim=-1, keepdim=True)
    cos_part = w * p - num.c * nx * nd
    sin_part = w * perp
    # degenerate rows (apex at 0, y = x) give atan2(0, 1) = 0 with zero gradient
    return torch.atan2(torch.where(ok, sin_part, 0.0), torch.where(ok, cos_part, 1.0))


def _check_K(K: float) -> float:
    value = float(K)
    if not value > 0.0 or value != value or value == float("inf"):
        raise ValueError(f"K: the aperture scale must be finite and > 0, got {K}")
    return value


def entailment_aperture(x: Tensor, *, c: Curvature, K: float, policy: str | None = None) -> Tensor:
    """Half-aperture :math:`\\psi_c(x) = \\arcsin(K(1 - c|x|^2)/(\\sqrt c|x|))`, shape (...)."""
    K = _check_K(K)
    num = setup(c, policy, x)
    x = num.cast(x)
    shadow = _squeeze(_aperture_formula(num, x, K))
    if not num.exact:
        return num.finish_vector(shadow)
    value = reference.entailment_aperture(_numpy(x), c=_c_float(num), K=K)
    return num.finish_vector(_value_with_grad_of(_from_reference(value, x), shadow))


def entailment_angle(x: Tensor, y: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Exterior angle :math:`\\Xi_c(x, y)` at ``x`` (module docstring), shape (...)."""
    num = setup(c, policy, x, y)
    x, y = num.cast(x), num.cast(y)
    if not num.exact:
        return num.finish_vector(_squeeze(_angle_formula(num, x, y)))
    value = reference.entailment_angle(_numpy(x), _numpy(y), c=_c_float(num))
    shadow = _squeeze(_angle_formula(num, x, y))
    return num.finish_vector(_value_with_grad_of(_from_reference(value, x), shadow))


def entailment_energy(
    x: Tensor, y: Tensor, *, c: Curvature, K: float, policy: str | None = None
) -> Tensor:
    """Cone violation :math:`E_c(x, y) = \\max(0, \\Xi_c(x, y) - \\psi_c(x))`, shape (...)."""
    K = _check_K(K)
    num = setup(c, policy, x, y)
    x, y = num.cast(x), num.cast(y)
    if not num.exact:
        psi = _aperture_formula(num, x, K)
        return num.finish_vector(_squeeze(torch.relu(_angle_formula(num, x, y) - psi)))
    value = reference.entailment_energy(_numpy(x), _numpy(y), c=_c_float(num), K=K)
    shadow = torch.relu(_angle_formula(num, x, y) - _aperture_formula(num, x, K))
    return num.finish_vector(_value_with_grad_of(_from_reference(value, x), _squeeze(shadow)))
