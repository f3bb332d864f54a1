"""Entailment terms of the hierarchy-aware objectives, and MERU's Lorentz embedding.

Two objectives put the radius into the loss (docs/alignment.md, "Entailment objectives"):

- ``hyperbolic-entail`` (ball points): contrastive term plus
  :math:`\\lambda\\,\\big(\\overline{E_c(t, x_k)} + \\overline{E_c(t_{coarse}, t_{fine})}\\big)`:
  every image query ``x_k`` inside the cone of each of its two captions, and the coarser
  caption of a scene entailing its finer one (the data's five levels are nested); optionally
  (:class:`~hyperet.alignment.aligner.AlignerConfig`) Ganea et al.'s negative term
  :math:`\\overline{\\max(0, m - E_c(t_i, y_j))}` over the batch's cross-scene pairs whose coarse
  caption does not describe the other scene (:func:`negative_entailment`), and a *part* term:
  one object of each scene, captioned on its own, entails the image and the scene's captions
  that name it (HyCoCLIP's box-entails-image with text parts; :func:`masked_entailment`);
- ``meru`` (MERU, Desai et al. 2023): embeddings on the hyperboloid (space components, time
  implied), logits :math:`-d_L`, and :math:`0.2\\,\\overline{E(t, x)}` (text entails image).

:math:`E_c(x, y) = \\max(0, \\Xi_c(x, y) - \\psi_c(x))` is :func:`hyperet.ops.entailment_energy`
in ``train`` policy. MERU writes its aperture and exterior angle in Lorentz coordinates; they are
the ball's through the isometry (``from_lorentz``): MERU's
:math:`\\arcsin(2K/(\\sqrt c|v_s|))` equals :math:`\\arcsin(K w/(\\sqrt c|x|))` because
:math:`|v_s| = 2|x|/w` (tests/alignment/test_entailment.py checks both against MERU's formulas).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from hyperet import ops

#: MERU clamps the exp map's hyperbolic length at asinh(2**15) (float32-safe sinh).
LORENTZ_MAX_LENGTH = math.asinh(2.0**15)


def lorentz_expmap0(u: Tensor, *, c: Tensor | float) -> Tensor:
    """MERU's exponential map at the hyperboloid's origin, space components only ``(..., E)``.

    .. math::

        \\exp_0(u)_s = \\frac{\\sinh(\\sqrt c|u|)}{\\sqrt c|u|}\\,u, \\qquad
        \\exp_0(u)_0 = \\sqrt{1/c + |\\exp_0(u)_s|^2},

    with :math:`\\sqrt c|u|` capped at :data:`LORENTZ_MAX_LENGTH` (MERU's clamp) and the ratio
    1 at ``u = 0`` (no NaN in the gradient).
    """
    sqrt_c = c**0.5
    s = sqrt_c * torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    small = s < 1e-4
    s_safe = torch.where(small, torch.ones_like(s), s)
    capped = torch.clamp_max(s_safe, LORENTZ_MAX_LENGTH)
    ratio = torch.where(small, 1.0 + s * s / 6.0, torch.sinh(capped) / s_safe)
    return ratio * u


def lorentz_time(space: Tensor, *, c: Tensor | float) -> Tensor:
    """The time component :math:`\\sqrt{1/c + |v_s|^2}`, shape ``(..., 1)``."""
    return torch.sqrt(1.0 / c + (space * space).sum(dim=-1, keepdim=True))


def lorentz_to_ball(space: Tensor, *, c: Tensor | float) -> Tensor:
    """Ball points of hyperboloid points given by their space components (train policy)."""
    full = torch.cat([lorentz_time(space, c=c), space], dim=-1)
    return ops.from_lorentz(full, c=c, policy="train")


def pairwise_lorentz_dist(image: Tensor, text: Tensor, *, c: Tensor | float) -> Tensor:
    """Lorentz distances of space components ``(B, [K,] E)`` x ``(N, E)`` -> ``(B, [K,] N)``.

    MERU's matrix form :math:`t = c(u_0 v_0 - \\langle u_s, v_s\\rangle) - 1 \\ge 0` (clamped at 0:
    it cancels for nearby points, as in MERU), and
    :math:`d = \\frac{2}{\\sqrt c}\\operatorname{asinh}\\sqrt{t/2}` with the square root taken of a
    sanitised input (gradient 0, not NaN, where ``t = 0``).
    """
    u0 = lorentz_time(image, c=c)  # (B, [K,] 1)
    v0 = lorentz_time(text, c=c).squeeze(-1)  # (N,)
    t = (c * (u0 * v0 - image @ text.T) - 1.0).clamp_min(0.0)  # (B, [K,] N)
    pos = t > 0
    root = torch.where(pos, torch.sqrt(torch.where(pos, t, torch.ones_like(t)) / 2.0), 0.0)
    return 2.0 * torch.asinh(root) / c**0.5


def image_entailment(text: Tensor, image: Tensor, *, c: Tensor | float, K: float) -> Tensor:
    """Mean cone violation of image queries ``(B, K, E)`` (or ``(B, E)``) in the cones of their
    captions ``(B, E)`` (ball points): :math:`\\overline{E_c(t_i, x_{ik})}`."""
    apex = text.unsqueeze(1) if image.dim() == 3 else text  # (B, 1, E) or (B, E)
    return ops.entailment_energy(apex, image, c=c, K=K, policy="train").mean()


def caption_entailment(coarse: Tensor, fine: Tensor, *, c: Tensor | float, K: float) -> Tensor:
    """Mean cone violation of finer captions ``(B, E)`` in the cones of coarser ones ``(B, E)``."""
    return ops.entailment_energy(coarse, fine, c=c, K=K, policy="train").mean()


class Hierarchy(NamedTuple):
    """The extra captions of a training batch of ``B`` images for ``hyperbolic-entail``.

    Token ids ``(B, L)``; ``negatives[i, j]`` is true where the coarse caption of image ``i``
    does not describe scene ``j`` (its caption at that level is another string), so neither
    scene ``j``'s fine caption nor its image belongs in that cone; ``parts`` holds one object of
    each scene as a caption of its own (``"a red circle."``) and ``part_in_fine[i]`` whether
    image ``i``'s fine caption names that object (level ``objects`` or finer).
    """

    coarse: Tensor
    fine: Tensor
    negatives: Tensor | None = None  # (B, B) bool
    parts: Tensor | None = None  # (B, L)
    part_in_fine: Tensor | None = None  # (B,) bool


def negative_entailment(
    apex: Tensor, points: Tensor, valid: Tensor, *, c: Tensor | float, K: float, margin: float
) -> Tensor:
    """Ganea et al.'s negative term over every pair of a batch: the mean over valid ``(i, j)``
    of :math:`\\max(0, m - E_c(a_i, p_j))` for apexes ``(B, E)`` and points ``(B, E)`` (or
    image queries ``(B, K, E)``, averaged over ``K``); ``valid`` ``(B, B)`` bool."""
    if points.dim() == 3:
        energy = ops.entailment_energy(
            apex[:, None, None, :], points[None], c=c, K=K, policy="train"
        ).mean(-1)  # (B, B)
    else:
        energy = ops.entailment_energy(apex[:, None, :], points[None], c=c, K=K, policy="train")
    hinge = (margin - energy).clamp_min(0.0) * valid
    return hinge.sum() / valid.sum().clamp_min(1)


def masked_entailment(
    apex: Tensor, points: Tensor, mask: Tensor, *, c: Tensor | float, K: float
) -> Tensor:
    """Mean cone violation of ``points`` in the cones of ``apex`` (both ``(B, E)``) over the
    rows where ``mask`` ``(B,)`` is true (0 when none is)."""
    energy = ops.entailment_energy(apex, points, c=c, K=K, policy="train") * mask
    return energy.sum() / mask.sum().clamp_min(1)
