"""Structured Möbius matrix-vector products: diagonal, block-diagonal, banded.

Each product computes :math:`Mx` from the parameters only - :math:`O(d)`, :math:`O(d b)` and
:math:`O(d (2k+1))` work and memory per vector, never a dense :math:`d \\times d` matrix - and
then applies the Möbius formula with the GLOBAL norms of :math:`x` and :math:`Mx`
(:func:`hyperet.ops.ball.matvec_core`):

.. math::

    M \\otimes x = T(\\sqrt c\\,|Mx|\\,R(z))\\,R(z)\\,Mx .

A block-diagonal Möbius product is therefore NOT the concatenation of per-block Möbius products.
Parameter layouts (docs/architecture.md):

- diagonal: ``w`` of shape ``(..., d)``, :math:`M = \\operatorname{diag}(w)`;
- block-diagonal: ``blocks`` of shape ``(d // b, b, b)``,
  :math:`(Mx)_{ib + r} = \\sum_s \\mathrm{blocks}[i, r, s]\\, x_{ib + s}`;
- banded, half-bandwidth ``k``: ``bands`` of shape ``(2k+1, d)`` with
  :math:`M_{i, i+j-k} = \\mathrm{bands}[j, i]`; entries whose column falls outside
  :math:`[0, d)` are ignored.

The ``*_to_dense`` helpers build :math:`M` for tests and merging (:math:`O(d^2)` memory).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperet.ops import _accurate, _fused, _native, backend
from hyperet.ops._numerics import DD, Curvature, Numerics, setup
from hyperet.ops._validate import check_args, check_tensors
from hyperet.ops.ball import matvec_core

# ----------------------------------------------------------------------------- plain products


def _native_apply(kind: str, param: Tensor, x: Tensor) -> Tensor | None:
    """The product on the native CPU backend when it serves the call (float32, unbatched
    parameters), else ``None``: one fused pass forward and one backward, instead of autograd's
    temporaries (``hyperet.ops.backend``)."""
    if backend.resolve(f"linear:{kind}", x, param) != "native":
        return None
    out: Tensor = _native.NativeLinear.apply(kind, param, x)
    return out


def diagonal_apply(w: Tensor, x: Tensor) -> Tensor:
    """:math:`\\operatorname{diag}(w)\\,x` (Euclidean), ``O(d)``."""
    fast = _native_apply("diagonal", w, x)
    return w * x if fast is None else fast


def block_diagonal_apply(blocks: Tensor, x: Tensor) -> Tensor:
    """:math:`\\operatorname{blockdiag}(\\mathrm{blocks})\\,x` (Euclidean), ``O(d b)``.

    ``x`` ``(..., d)`` is viewed as ``(N, d/b, b)`` and every block multiplies its slice of all
    N vectors in one batched matrix product ``(nb, b, b) @ (nb, b, N)`` (the wide N axis last is
    what the small-matrix kernels handle best).
    """
    fast = _native_apply("block", blocks, x)
    if fast is not None:
        return fast
    nb, b, _ = blocks.shape
    lead = x.shape[:-1]
    xb = x.reshape(-1, nb, b).permute(1, 2, 0)  # (nb, b, N)
    yb = torch.bmm(blocks, xb)  # (nb, b, N): y[i, r, n] = sum_s blocks[i, r, s] x[n, i, s]
    return yb.permute(2, 0, 1).reshape(*lead, nb * b).contiguous()  # row-major, like x @ M^T


def block_diagonal_apply_transposed(blocks: Tensor, x: Tensor) -> Tensor:
    """:math:`M^T x` for the block-diagonal ``M`` of ``blocks`` (``x @ M``): block-diagonal
    with the transposed blocks, :math:`\\operatorname{blockdiag}(B)^T =
    \\operatorname{blockdiag}(B^T)`, ``O(d b)``."""
    if backend.resolve("linear:block", x, blocks) == "native":
        out: Tensor = _native.NativeLinear.apply("block", blocks, x, True)
        return out
    return block_diagonal_apply(blocks.mT, x)


def banded_apply(bands: Tensor, x: Tensor) -> Tensor:
    """Banded :math:`Mx` (Euclidean), ``O(d (2k+1))``: a sum of ``2k+1`` shifted slices.

    .. math::

        (Mx)_i = \\sum_{j=0}^{2k} \\mathrm{bands}[j, i]\\; x_{i + j - k}
        \\quad (x \\text{ zero-padded by } k \\text{ on both sides})
    """
    fast = _native_apply("banded", bands, x)
    if fast is not None:
        return fast
    width, d = bands.shape
    k = (width - 1) // 2
    xp = F.pad(x, (k, k))  # (..., d + 2k): xp[i + j] = x[i + j - k]
    out = bands[0] * xp[..., 0:d]
    for j in range(1, width):
        out = torch.addcmul(out, bands[j], xp[..., j : j + d])  # fused multiply-add
    return out


def banded_apply_transposed(bands: Tensor, x: Tensor) -> Tensor:
    """:math:`M^T x` for the banded ``M`` of ``bands`` (``x @ M``), ``O(d (2k+1))``: banded
    too, :math:`M^T_{i, i+j-k} = M_{i+j-k, i}`, i.e. ``bands_T[j, i] = bands[2k-j, i+j-k]``
    (0 outside the matrix)."""
    if backend.resolve("linear:banded", x, bands) == "native":
        out: Tensor = _native.NativeLinear.apply("banded", bands, x, True)
        return out
    width, d = bands.shape
    k = (width - 1) // 2
    padded = F.pad(bands, (k, k))  # (2k+1, d + 2k): padded[j, i + k] = bands[j, i]
    return banded_apply(torch.stack([padded[2 * k - j, j : j + d] for j in range(width)]), x)


# ----------------------------------------------------------------------------- Möbius products


def _check_layout(name: str, param: Tensor, x: Tensor, kind: str) -> None:
    d = x.shape[-1]
    if kind == "diagonal" and param.shape[-1] != d:
        raise ValueError(f"{name}: last axis has size {param.shape[-1]}, expected {d}")
    if kind == "block":
        if (
            param.dim() != 3
            or param.shape[1] != param.shape[2]
            or param.shape[0] * param.shape[1] != d
        ):
            raise ValueError(
                f"{name}: expected shape (d // b, b, b) with d = {d}, got {tuple(param.shape)}"
            )
    if kind == "banded" and (param.dim() != 2 or param.shape[0] % 2 != 1 or param.shape[1] != d):
        raise ValueError(f"{name}: expected shape (2k + 1, {d}), got {tuple(param.shape)}")


def diagonal_matvec(w: Tensor, x: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """:math:`\\operatorname{diag}(w) \\otimes x`; ``w`` ``(..., d)`` broadcasts with ``x``."""
    check_args(c, x=x)
    check_tensors(w=w)
    _check_layout("w", w, x, "diagonal")
    num = setup(c, policy, w, x)
    if _fused.applies(num) and w.dim() == 1:  # casts itself (the Triton kernels read half types)
        return _fused.matvec(num, "diagonal", w, x)
    w, x = num.cast(w), num.cast(x)
    num.check_points(x=x)
    num.check_finite(w=w)
    z, cw, _, scale = num.point_factors(x)
    exact_mx = _exact_product(num, "diagonal", w, x)
    return matvec_core(num, diagonal_apply(w, x), z, cw, scale, x, exact_mx)


def block_diagonal_matvec(
    blocks: Tensor, x: Tensor, *, c: Curvature, policy: str | None = None
) -> Tensor:
    """:math:`\\operatorname{blockdiag}(\\mathrm{blocks}) \\otimes x` with global norms."""
    check_args(c, x=x)
    check_tensors(blocks=blocks)
    _check_layout("blocks", blocks, x, "block")
    num = setup(c, policy, blocks, x)
    if _fused.applies(num):  # casts itself (the Triton kernels read half types)
        return _fused.matvec(num, "block", blocks, x)
    blocks, x = num.cast(blocks), num.cast(x)
    num.check_points(x=x)
    num.check_finite(blocks=blocks)
    z, w, _, scale = num.point_factors(x)
    exact_mx = _exact_product(num, "block", blocks, x)
    return matvec_core(num, block_diagonal_apply(blocks, x), z, w, scale, x, exact_mx)


def banded_matvec(bands: Tensor, x: Tensor, *, c: Curvature, policy: str | None = None) -> Tensor:
    """Banded :math:`M \\otimes x`; ``bands`` ``(2k+1, d)``,
    :math:`M_{i,i+j-k} = \\mathrm{bands}[j,i]`."""
    check_args(c, x=x)
    check_tensors(bands=bands)
    _check_layout("bands", bands, x, "banded")
    num = setup(c, policy, bands, x)
    if _fused.applies(num):  # casts itself (the Triton kernels read half types)
        return _fused.matvec(num, "banded", bands, x)
    bands, x = num.cast(bands), num.cast(x)
    num.check_points(x=x)
    num.check_finite(bands=bands)
    z, w, _, scale = num.point_factors(x)
    exact_mx = _exact_product(num, "banded", bands, x)
    return matvec_core(num, banded_apply(bands, x), z, w, scale, x, exact_mx)


def _exact_product(num: Numerics, kind: str, param: Tensor, x: Tensor) -> DD | None:
    """Exact mode: the compensated product for the double-double value (no autograd)."""
    if not num.exact:
        return None
    return _accurate.structured_apply_dd(kind, param.detach(), x.detach())


# ----------------------------------------------------------------------------- dense helpers


def diagonal_to_dense(w: Tensor) -> Tensor:
    """:math:`\\operatorname{diag}(w)`, shape ``(..., d, d)``."""
    return torch.diag_embed(w)


def block_diagonal_to_dense(blocks: Tensor) -> Tensor:
    """The dense ``(d, d)`` block-diagonal matrix of ``blocks`` ``(d // b, b, b)``."""
    return torch.block_diag(*blocks.unbind(0))


def banded_to_dense(bands: Tensor) -> Tensor:
    """The dense ``(d, d)`` matrix with :math:`M_{i, i+j-k} = \\mathrm{bands}[j, i]` (in range)."""
    width, d = bands.shape
    k = (width - 1) // 2
    m = bands.new_zeros(d, d)
    rows = torch.arange(d, device=bands.device)
    for j in range(width):
        cols = rows + j - k
        ok = (cols >= 0) & (cols < d)
        m[rows[ok], cols[ok]] = bands[j, ok]
    return m
