"""Pairwise geodesic distances for contrastive logits: an ``(..., N, M)`` matrix.

The fast path forms :math:`|x_n - y_m|^2 = |x_n|^2 + |y_m|^2 - 2\\langle x_n, y_m\\rangle` with one
matrix product (``O(N M D)`` flops in a GEMM, ``O(N M)`` memory) instead of an ``N x M x D``
broadcast, then

.. math::

    d_{nm} = \\frac{1}{\\sqrt c}
        \\operatorname{arcosh}\\Big(1 + \\frac{2c|x_n - y_m|^2}{w(x_n) w(y_m)}\\Big).

Accuracy of the fast path (stated and tested in ``tests/ops/test_pairwise.py``): the expansion
cancels, so the squared difference carries an ABSOLUTE error of about
:math:`\\gamma\\,\\epsilon\\,(|x|^2 + |y|^2)` with :math:`\\gamma` a small multiple of ``D``'s
accumulation depth (bounded by :math:`4 \\epsilon (|x|^2 + |y|^2)` times the GEMM's summation
error factor). The relative error of :math:`d` is therefore about

.. math::

    \\frac{\\delta d}{d} \\approx \\frac{\\gamma\\,\\epsilon\\,(|x|^2 + |y|^2)}{2\\,|x - y|^2},

tiny for well-separated points but useless once :math:`|x - y| \\lesssim \\sqrt{\\epsilon}\\,|x|`
(:math:`1.5 \\cdot 10^{-8}|x|` in float64, :math:`3.5 \\cdot 10^{-4}|x|` in float32), where the
result may even be exactly 0. ``accurate=True`` forms the differences :math:`x_n - y_m`
explicitly in row chunks (exact for nearby points by Sterbenz' lemma) and is as accurate as
:func:`hyperet.ops.dist`, at the broadcast's cost in flops but bounded memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hyperet.ops import _triton
from hyperet.ops._numerics import Curvature, setup
from hyperet.ops._validate import check_args, check_tensors
from hyperet.ops.ball import dist_core, triton_curvature

#: Elements of one ``(chunk, M, D)`` difference block in the accurate path.
_CHUNK_ELEMENTS = 1 << 22


def pairwise_dist(
    x: Tensor,
    y: Tensor,
    *,
    c: Curvature,
    policy: str | None = None,
    accurate: bool = False,
) -> Tensor:
    """All geodesic distances between the rows of ``x`` ``(..., N, D)`` and ``y`` ``(..., M, D)``.

    Returns ``(..., N, M)``. ``accurate=False`` (default): one matrix product (see the module
    docstring for its accuracy); ``accurate=True``: explicit differences in chunks.
    """
    check_args(c)
    check_tensors(x=x, y=y)
    if x.dim() < 2 or y.dim() < 2 or x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"x: expected (..., N, D) and y (..., M, D) with equal D, got {tuple(x.shape)}"
            f" and {tuple(y.shape)}"
        )
    num = setup(c, policy, x, y)
    x, y = num.cast(x), num.cast(y)
    num.check_points(x=x, y=y)
    if not accurate and (c_float := triton_curvature(num, "pairwise_dist", x, y)) is not None:
        return _triton.pairwise_dist(x, y, c_float, num.out_dtype)
    x, _, wx, _ = num.point(x)  # (..., N, 1)
    y, _, wy, _ = num.point(y)  # (..., M, 1)
    wy_t = wy.transpose(-1, -2)  # (..., 1, M)
    if accurate:
        rows = max(1, _CHUNK_ELEMENTS // max(1, y.shape[-2] * y.shape[-1]))
        parts = []
        for start in range(0, x.shape[-2], rows):
            xs = x[..., start : start + rows, :]
            diff = xs.unsqueeze(-2) - y.unsqueeze(-3)  # (..., n, M, D)
            nd = num.norm(diff).squeeze(-1)  # (..., n, M)
            parts.append(dist_core(num, nd, wx[..., start : start + rows, :], wy_t))
        return num.finish_vector(torch.cat(parts, dim=-2))
    xx = (x * x).sum(dim=-1, keepdim=True)  # (..., N, 1)
    yy = (y * y).sum(dim=-1, keepdim=True).transpose(-1, -2)  # (..., 1, M)
    sq = (xx + yy - 2.0 * (x @ y.transpose(-1, -2))).clamp_min(0.0)  # (..., N, M)
    # sqrt has an infinite slope at 0: take it of a sanitised input (double where)
    pos = sq > 0
    nd = torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), 0.0)
    return num.finish_vector(dist_core(num, nd, wx, wy_t))
