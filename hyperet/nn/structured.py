"""Structured square matrices as parameter modules: diagonal, block-diagonal, banded.

Each module stores only the free entries of a ``d x d`` matrix ``M`` in the layout of
``docs/architecture.md`` and applies it along the last axis without ever forming ``M``:

==============  =======================  ===============  ==============================
structure       parameter (layout)       work per vector  free entries
==============  =======================  ===============  ==============================
diagonal        ``w`` ``(d,)``           ``O(d)``         ``d``
block-diagonal  ``blocks`` ``(d/b,b,b)`` ``O(d b)``       ``d b``
banded          ``bands`` ``(2k+1, d)``  ``O(d (2k+1))``  ``(2k+1) d - k (k+1)``
==============  =======================  ===============  ==============================

Every module starts at the identity. ``dense()`` builds ``M`` for tests and merging (through
:mod:`hyperet.ops`' ``*_to_dense``);
``num_free_parameters`` counts free entries (the banded layout stores ``k (k+1)`` structural
zeros: entries whose column falls outside ``[0, d)``; they are ignored, receive an exactly zero
gradient and so stay zero under SGD/Adam/AdamW).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from hyperet.choices import STRUCTURES
from hyperet.ops.structured import (
    banded_apply,
    banded_apply_transposed,
    banded_to_dense,
    block_diagonal_apply,
    block_diagonal_apply_transposed,
    block_diagonal_to_dense,
    diagonal_apply,
    diagonal_to_dense,
)

Structure = Literal["diagonal", "block", "banded"]


class StructuredMatrix(nn.Module):
    """A learnable ``d x d`` matrix ``M`` applied along the last axis: ``forward(x) = M x``."""

    d: int

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def dense(self) -> Tensor:  # pragma: no cover - abstract
        """The dense ``(d, d)`` matrix ``M`` (for tests and merging; ``O(d^2)`` memory)."""
        raise NotImplementedError

    @property
    def num_free_parameters(self) -> int:  # pragma: no cover - abstract
        """Number of free (learnable, used) entries of ``M``."""
        raise NotImplementedError

    @property
    def num_stored_parameters(self) -> int:
        """Number of stored scalars (``>= num_free_parameters``)."""
        return sum(p.numel() for p in self.parameters())

    def apply_transposed(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """``M^T x`` along the last axis (``x @ M``): HRA on weight rows, ``W' = W M^T``, gives
        ``W' x = W (M^T x)``, so tokens can take ``M^T`` instead of the weight (O(tokens d))."""
        raise NotImplementedError

    def apply_to_columns(self, weight: Tensor) -> Tensor:
        """``M @ weight`` for ``weight`` of shape ``(d, n)``: ``M`` acts on each column."""
        return self(weight.transpose(-1, -2)).transpose(-1, -2)

    def _check_width(self, x: Tensor) -> None:
        if x.shape[-1] != self.d:
            raise ValueError(f"x: last axis has size {x.shape[-1]}, expected {self.d}")


def _check_width_arg(d: int) -> None:
    if not isinstance(d, int) or d < 1:
        raise ValueError(f"d: width must be a positive integer, got {d!r}")


class DiagonalMatrix(StructuredMatrix):
    r"""Diagonal matrix ``M = diag(w)``: :math:`(M x)_i = w_i x_i`."""

    def __init__(
        self, d: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        _check_width_arg(d)
        self.d = d
        self.w = nn.Parameter(torch.ones(d, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        self._check_width(x)
        return diagonal_apply(self.w, x)  # (..., d)

    def apply_transposed(self, x: Tensor) -> Tensor:
        self._check_width(x)
        return diagonal_apply(self.w, x)  # symmetric

    def dense(self) -> Tensor:
        return diagonal_to_dense(self.w)

    @property
    def num_free_parameters(self) -> int:
        return self.d

    def extra_repr(self) -> str:
        return f"d={self.d}"


class BlockDiagonalMatrix(StructuredMatrix):
    r"""Block-diagonal matrix of ``d / b`` blocks of size ``b x b``.

    .. math:: (M x)_{i b + r} = \sum_{s} \mathrm{blocks}[i, r, s] \, x_{i b + s}
    """

    def __init__(
        self,
        d: int,
        block_size: int = 4,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_width_arg(d)
        if not isinstance(block_size, int) or block_size < 1 or d % block_size != 0:
            raise ValueError(
                f"block_size: must be a positive integer dividing d = {d}, got {block_size!r}"
            )
        self.d = d
        self.block_size = block_size
        eye = torch.eye(block_size, device=device, dtype=dtype)
        self.blocks = nn.Parameter(eye.repeat(d // block_size, 1, 1))  # (d/b, b, b)

    def forward(self, x: Tensor) -> Tensor:
        self._check_width(x)
        # one batched (d/b, b, b) @ (d/b, b, N) product, no d x d matrix
        return block_diagonal_apply(self.blocks, x)

    def apply_transposed(self, x: Tensor) -> Tensor:
        self._check_width(x)
        return block_diagonal_apply_transposed(self.blocks, x)  # blockdiag(B)^T = blockdiag(B^T)

    def dense(self) -> Tensor:
        return block_diagonal_to_dense(self.blocks)

    @property
    def num_free_parameters(self) -> int:
        return self.d * self.block_size

    def extra_repr(self) -> str:
        return f"d={self.d}, block_size={self.block_size}"


class BandedMatrix(StructuredMatrix):
    r"""Banded matrix of half-bandwidth ``k``: ``M[i, i + j - k] = bands[j, i]``.

    .. math:: (M x)_i = \sum_{j=0}^{2k} \mathrm{bands}[j, i] \, x_{i + j - k}

    with terms whose column ``i + j - k`` falls outside ``[0, d)`` dropped.
    """

    def __init__(
        self,
        d: int,
        bandwidth: int = 2,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_width_arg(d)
        if not isinstance(bandwidth, int) or bandwidth < 0 or bandwidth >= d:
            raise ValueError(
                f"bandwidth: must be an integer in [0, d) with d = {d}, got {bandwidth!r}"
            )
        self.d = d
        self.bandwidth = bandwidth
        bands = torch.zeros(2 * bandwidth + 1, d, device=device, dtype=dtype)  # (2k+1, d)
        bands[bandwidth] = 1.0
        self.bands = nn.Parameter(bands)

    def forward(self, x: Tensor) -> Tensor:
        self._check_width(x)
        return banded_apply(self.bands, x)  # (..., d): 2k + 1 fused multiply-adds

    def apply_transposed(self, x: Tensor) -> Tensor:
        self._check_width(x)
        return banded_apply_transposed(self.bands, x)  # M^T is banded too

    def dense(self) -> Tensor:
        return banded_to_dense(self.bands)

    @property
    def num_free_parameters(self) -> int:
        k = self.bandwidth
        return (2 * k + 1) * self.d - k * (k + 1)

    def extra_repr(self) -> str:
        return f"d={self.d}, bandwidth={self.bandwidth}"


def make_structured(
    structure: str,
    d: int,
    *,
    block_size: int = 4,
    bandwidth: int = 2,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> StructuredMatrix:
    """Build the identity-initialised structured matrix named by ``structure``."""
    if structure == "diagonal":
        return DiagonalMatrix(d, device=device, dtype=dtype)
    if structure == "block":
        return BlockDiagonalMatrix(d, block_size, device=device, dtype=dtype)
    if structure == "banded":
        return BandedMatrix(d, bandwidth, device=device, dtype=dtype)
    raise ValueError(f"structure: expected one of {STRUCTURES}, got {structure!r}")
