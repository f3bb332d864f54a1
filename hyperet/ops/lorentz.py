"""Ball <-> Lorentz (hyperboloid) conversions and the Lorentz distance as torch ops.

Same names and signatures as :mod:`hyperet.reference.lorentz` (time component first; a Lorentz
point is defined by its space part, :math:`v_0 = \\sqrt{1/c + |v_s|^2}`), plus ``policy``:

- ``"exact"``: values from the float64 reference (validation included), gradients of the
  formulas below in float64;
- ``"train"``: the formulas in the compute dtype, no validation:

.. math::

    \\text{to\\_lorentz}(x) = \\Big(\\frac{2 - w}{\\sqrt c\\,w}, \\frac{2x}{w}\\Big),\\quad
    \\text{from\\_lorentz}(v) = \\frac{v_s}{1 + \\sqrt{1 + c|v_s|^2}},\\quad
    d = \\frac{2}{\\sqrt c}\\operatorname{asinh}\\sqrt{t/2},\\;
    t = \\frac{c|\\delta|^2(1 + c|u_{s\\perp}|^2)}{1 + c(u_0 v_0 + \\langle u_s,v_s\\rangle)}

(:math:`\\operatorname{arcosh}(1 + t) = 2\\operatorname{asinh}\\sqrt{t/2}`; the square root of
``t`` comes from :math:`|\\delta|`, whose norm has gradient 0 at ``u = v``, so the distance's
gradient is finite there).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hyperet import reference
from hyperet.ops._numerics import Curvature, Numerics, setup
from hyperet.ops.ball import _squeeze, _value_with_grad_of
from hyperet.ops.cones import _c_float, _from_reference, _numpy


def _time(num: Numerics, s: Tensor) -> Tensor:
    """:math:`\\sqrt{1/c + |s|^2}`, shape (..., 1)."""
    return torch.sqrt(1.0 / num.c + (s * s).sum(dim=-1, keepdim=True))


def _to_formula(num: Numerics, x: Tensor) -> Tensor:
    x, _, w, _ = num.point(x)
    return torch.cat([(2.0 - w) / (num.sqrt_c * w), 2.0 * x / w], dim=-1)


def _from_formula(num: Numerics, v: Tensor) -> Tensor:
    s = v[..., 1:]
    return s / (1.0 + num.sqrt_c * _time(num, s))


def _dist_formula(num: Numerics, u: Tensor, v: Tensor) -> Tensor:
    us, vs = u[..., 1:], v[..., 1:]
    delta = us - vs
    nd = num.norm(delta)  # (..., 1)
    ok = nd > 0
    unit = delta / torch.where(ok, nd, torch.ones_like(nd))
    u_perp = us - (us * unit).sum(dim=-1, keepdim=True) * unit
    cross = _time(num, us) * _time(num, vs) + (us * vs).sum(dim=-1, keepdim=True)
    ratio = (1.0 + num.c * (u_perp * u_perp).sum(dim=-1, keepdim=True)) / (1.0 + num.c * cross)
    half_t_sqrt = num.sqrt_c * nd * torch.sqrt(ratio / 2.0)  # sqrt(t / 2)
    return 2.0 * torch.asinh(half_t_sqrt) / num.sqrt_c


def to_lorentz(x: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Ball points ``(..., d)`` -> hyperboloid points ``(..., d + 1)`` (time first)."""
    num = setup(c, policy, x)
    x = num.cast(x)
    shadow = _to_formula(num, x)
    if not num.exact:
        return num.finish_vector(shadow)
    value = reference.to_lorentz(_numpy(x), c=_c_float(num))
    return num.finish_vector(_value_with_grad_of(_from_reference(value, x), shadow))


def from_lorentz(v: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Hyperboloid points ``(..., d + 1)`` (time first) -> ball points ``(..., d)``."""
    num = setup(c, policy, v)
    v = num.cast(v)
    shadow = _from_formula(num, v)
    if not num.exact:
        return num.finish(shadow)
    value = reference.from_lorentz(_numpy(v), c=_c_float(num))
    return num.finish(_value_with_grad_of(_from_reference(value, v), shadow))


def lorentz_dist(u: Tensor, v: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Geodesic distance of hyperboloid points ``(..., d + 1)``, shape (...)."""
    num = setup(c, policy, u, v)
    u, v = num.cast(u), num.cast(v)
    shadow = _squeeze(_dist_formula(num, u, v))
    if not num.exact:
        return num.finish_vector(shadow)
    value = reference.lorentz_dist(_numpy(u), _numpy(v), c=_c_float(num))
    return num.finish_vector(_value_with_grad_of(_from_reference(value, u), shadow))
