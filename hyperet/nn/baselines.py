r"""Euclidean baselines of HyperET on the q and v rows of attention: structured, (IA)^3, LoRA.

The evidence study (docs/evidence.md) compares HRA with adapters that touch the same weights
with the same or a similar number of trainable parameters. Each adapter maps the ``E x E`` row
block ``A`` of a frozen projection weight (the q or v rows of a packed ``in_proj_weight``, one
row per output feature) to an adapted block, recomputed at every forward pass through
:func:`torch.nn.utils.parametrize.register_parametrization`:

==============  ================================  ==========================================
kind            adapted block                     trainable entries per block, at init
==============  ================================  ==========================================
``structured``  :math:`A M^T` (M diagonal,        those of ``M`` (:mod:`hyperet.nn.structured`),
                block-diagonal or banded)         ``M = I``
``ia3``         :math:`\mathrm{diag}(l) A`        ``E`` (``l = 1``)
``lora``        :math:`A + \frac{\alpha}{r} B C`  ``2 E r`` (``B = 0``; ``C`` Kaiming-uniform)
==============  ================================  ==========================================

- ``structured`` is the exact Euclidean twin of HRA on weight rows: in exact arithmetic
  :math:`\log_0^c(M \otimes_c \exp_0^c(a)) = M a` for every row ``a``, so HRA computes
  :math:`A M^T` through the hyperbolic chain; here it is applied linearly, no chain, no cap.
- ``ia3`` scales the *output* features of the projection (rows of ``A``), where a diagonal HRA
  scales its *input* features (columns): :math:`\mathrm{diag}(l) A` versus
  :math:`A\,\mathrm{diag}(w)`. The bias is not scaled ((IA)^3 proper scales the activation
  ``A x + b``; here only the weight is adapted, like HRA).
- ``lora`` (Hu et al. 2021): ``B`` ``(E, r)`` starts at zero, ``C`` ``(r, E)`` at PEFT's
  ``kaiming_uniform_(a=sqrt(5))``, drawn from a dedicated generator (``seed``) so that applying
  it never consumes the global torch RNG; ``alpha = r`` (scale 1).

Every adapter starts at the identity map of the weight. Only ``nn.MultiheadAttention`` with a
packed ``in_proj_weight`` is supported (q = rows ``[0, E)``, v = ``[2E, 3E)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from hyperet.nn.structured import StructuredMatrix, make_structured

#: Kinds of Euclidean baseline adapters.
KINDS: tuple[str, ...] = ("structured", "ia3", "lora")
_ROLES: tuple[str, ...] = ("q", "k", "v")


class StructuredRows(nn.Module):
    r"""Row block ``A (n, E)`` -> :math:`A M^T` for a structured ``E x E`` matrix ``M``."""

    def __init__(self, matrix: StructuredMatrix) -> None:
        super().__init__()
        self.matrix = matrix

    def forward(self, rows: Tensor) -> Tensor:  # (n, E) -> (n, E)
        return self.matrix(rows)  # M acts on each row: (M a_i)^T = a_i^T M^T


class IA3Rows(nn.Module):
    r"""Row block ``A (E, n)`` -> :math:`\mathrm{diag}(l) A` (one scale per output feature)."""

    def __init__(self, rows: int, *, like: Tensor) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(rows, device=like.device, dtype=like.dtype))

    def forward(self, rows: Tensor) -> Tensor:  # (E, n) -> (E, n)
        return self.scale[:, None] * rows


class LoRARows(nn.Module):
    r"""Row block ``A (E_out, E_in)`` -> :math:`A + \frac{\alpha}{r} B C`, ``B = 0`` at init."""

    def __init__(
        self, out_features: int, in_features: int, rank: int, *, like: Tensor, seed: int
    ) -> None:
        super().__init__()
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank: must be a positive integer, got {rank!r}")
        self.rank = rank
        self.scaling = 1.0  # alpha / r with alpha = r
        down = torch.empty(rank, in_features, dtype=torch.float64)
        bound = 1.0 / math.sqrt(in_features)  # kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(n), ..)
        generator = torch.Generator().manual_seed(seed)
        down.uniform_(-bound, bound, generator=generator)
        self.down = nn.Parameter(down.to(device=like.device, dtype=like.dtype))  # C (r, E_in)
        self.up = nn.Parameter(
            torch.zeros(out_features, rank, device=like.device, dtype=like.dtype)
        )  # B (E_out, r)

    def forward(self, rows: Tensor) -> Tensor:  # (E_out, E_in) -> (E_out, E_in)
        return rows + self.scaling * (self.up @ self.down)


class PackedRowAdapter(nn.Module):
    """Parametrization of a packed ``(3E, E)`` weight: the q / k / v blocks named in ``maps``
    are replaced by ``maps[role](block)``, the others pass through."""

    def __init__(self, maps: dict[str, nn.Module], embed_dim: int) -> None:
        super().__init__()
        self.maps = nn.ModuleDict(maps)
        self.embed_dim = embed_dim

    def forward(self, weight: Tensor) -> Tensor:  # (3E, E) -> (3E, E)
        blocks = weight.split(self.embed_dim, dim=0)  # q, k, v: (E, E) each
        return torch.cat(
            [self.maps[r](b) if r in self.maps else b for r, b in zip(_ROLES, blocks, strict=True)]
        )


def _make_map(
    kind: str, e: int, like: Tensor, *, structure: str, block_size: int, bandwidth: int,
    rank: int, seed: int,
) -> nn.Module:  # fmt: skip
    if kind == "structured":
        matrix = make_structured(
            structure, e, block_size=block_size, bandwidth=bandwidth,
            device=like.device, dtype=like.dtype,
        )  # fmt: skip
        return StructuredRows(matrix)
    if kind == "ia3":
        return IA3Rows(e, like=like)
    return LoRARows(e, e, rank, like=like, seed=seed)


def apply_baseline(
    model: nn.Module,
    kind: str,
    *,
    targets: Sequence[str] = ("q", "v"),
    structure: str = "diagonal",
    block_size: int = 4,
    bandwidth: int = 2,
    rank: int = 2,
    seed: int = 0,
) -> list[nn.Parameter]:
    """Adapt the ``targets`` rows of every packed ``nn.MultiheadAttention`` in ``model``.

    Parameters
    ----------
    model : nn.Module
        Modified in place; the adapted ``in_proj_weight`` tensors are frozen (the rest of the
        model keeps its ``requires_grad`` flags: a staged recipe decides what trains).
    kind : {"structured", "ia3", "lora"}
        The adapter (module docstring).
    targets : sequence of {"q", "k", "v"}
        Row blocks to adapt (one adapter each).
    structure, block_size, bandwidth
        The structured matrix of ``kind="structured"`` (:func:`~hyperet.nn.make_structured`).
    rank : int
        LoRA rank ``r``.
    seed : int
        LoRA: the ``k``-th adapter draws its down-projection from generator seed ``seed + k``.

    Returns
    -------
    list of nn.Parameter
        The new trainable parameters, in module order.

    Raises
    ------
    ValueError
        Unknown kind or target, a weight already parametrized, or no packed attention found.
    """
    targets = tuple(targets)
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    if not targets or any(t not in _ROLES for t in targets) or len(set(targets)) != len(targets):
        raise ValueError(f"targets: expected distinct roles among {_ROLES}, got {targets!r}")
    attention = [
        m for m in model.modules() if isinstance(m, nn.MultiheadAttention) and m._qkv_same_embed_dim
    ]
    if not attention:
        raise ValueError("model: no nn.MultiheadAttention with a packed in_proj_weight")
    params: list[nn.Parameter] = []
    count = 0
    for module in attention:
        if parametrize.is_parametrized(module, "in_proj_weight"):
            raise ValueError("model: in_proj_weight is already parametrized (adapter applied?)")
        weight = module.in_proj_weight  # (3E, E)
        weight.requires_grad_(False)
        maps: dict[str, nn.Module] = {}
        for role in targets:
            maps[role] = _make_map(
                kind, module.embed_dim, weight, structure=structure, block_size=block_size,
                bandwidth=bandwidth, rank=rank, seed=seed + count,
            )  # fmt: skip
            count += 1
            params.extend(maps[role].parameters())
        parametrize.register_parametrization(
            module, "in_proj_weight", PackedRowAdapter(maps, module.embed_dim)
        )
    return params


def baseline_parameter_count(
    kind: str, embed_dim: int, *, structure: str = "diagonal", block_size: int = 4,
    bandwidth: int = 2, rank: int = 2,
) -> int:  # fmt: skip
    """Trainable entries of one adapted ``E x E`` block (banded: structural zeros excluded).

    >>> baseline_parameter_count("lora", 128, rank=2), baseline_parameter_count("ia3", 128)
    (512, 128)
    """
    if kind == "ia3":
        return embed_dim
    if kind == "lora":
        return 2 * embed_dim * rank
    matrix = make_structured(structure, embed_dim, block_size=block_size, bandwidth=bandwidth)
    return matrix.num_free_parameters


__all__ = [
    "KINDS",
    "IA3Rows",
    "LoRARows",
    "PackedRowAdapter",
    "StructuredRows",
    "apply_baseline",
    "baseline_parameter_count",
]
