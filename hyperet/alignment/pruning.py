"""Random Text Pruning (RTP): drop a random fraction of a caption's words during training.

Every ordinary token is dropped independently with probability ``rate``; special tokens
(``<bos>``, ``<eos>``, ...) and padding are never dropped. The surviving tokens keep their order
and move to the front, the freed positions become padding, so a pruned caption is a genuinely
shorter caption (positions shift), not a masked one:

.. math::

    \\text{kept}_i \\sim \\text{Bernoulli}(1 - \\text{rate}) \\text{ for ordinary tokens}, \\qquad
    \\mathbb E[\\#\\text{dropped}] = \\text{rate} \\cdot \\#\\text{ordinary}.

A caption may lose every ordinary token (probability ``rate ** n`` for ``n`` words); it then
keeps only its special tokens. That is accepted noise, not an error.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def random_text_pruning(
    ids: Tensor,
    *,
    rate: float,
    pad_id: int = 0,
    special_ids: Iterable[int] = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Drop each ordinary token of ``ids`` ``(B, L)`` with probability ``rate``.

    Parameters
    ----------
    ids : Tensor
        Integer token ids ``(B, L)``, padded with ``pad_id``.
    rate : float
        Drop probability in ``[0, 1]``.
    pad_id : int
        Padding id (never dropped; fills the freed positions).
    special_ids : iterable of int
        Ids that are never dropped.
    generator : torch.Generator, optional
        Source of randomness (reproducible pruning).

    Returns
    -------
    Tensor
        ``(B, L)`` ids with the surviving tokens first, in their original order, then padding.
    """
    if ids.ndim != 2 or ids.dtype.is_floating_point:
        raise ValueError(
            f"ids: expected integer ids of shape (B, L), got {ids.dtype} {tuple(ids.shape)}"
        )
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate: need 0 <= rate <= 1, got {rate}")
    protected = torch.tensor(sorted({pad_id, *special_ids}), dtype=ids.dtype, device=ids.device)
    ordinary = ~torch.isin(ids, protected)  # (B, L)
    drop = ordinary & (torch.rand(ids.shape, generator=generator, device=ids.device) < rate)
    keep = ~drop & (ids != pad_id)  # (B, L)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept first, order kept
    compact = ids.gather(1, order)  # (B, L)
    width = keep.sum(1, keepdim=True)  # (B, 1)
    position = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)  # (1, L)
    return torch.where(position < width, compact, torch.full_like(compact, pad_id))
