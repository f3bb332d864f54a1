r"""The Hyperbolic Radius Adjustment (HRA) module of HyperET.

.. math::

    \mathrm{HRA}(u) = \log_0^c\big(W \otimes_c \exp_0^c(u)\big) = W u

along the last axis, with ``W`` a learnable structured matrix (diagonal, block-diagonal or
banded) initialised to the identity. The second equality is exact for every ``c > 0`` because
:math:`W \otimes_c x = \exp_0^c(W \log_0^c x)`; curvature only acts through clamps that cap
the radius. Three computation modes share one set of parameters:

- ``"fast"``: ``W u`` from the structured parameters (``O(d)``, ``O(d b)``, ``O(d (2k+1))`` per
  vector). With ``policy="train"`` it adds, in closed form, the radius saturation of the literal
  chain under the ops' train policy.
- ``"literal"``: the hyperbolic chain through :mod:`hyperet.ops` (``policy=None`` lets the ops
  choose by dtype: exact for float64).
- ``"official"``: the released code's chain with its clamps (``tanh`` argument within
  ``+-15``, ``artanh`` argument at most ``1 - 1e-5``, norms floored at ``1e-5``, Möbius product
  projected to norm ``(1 - 1e-3)/sqrt(c)``), for parity studies. It equals ``W u`` (to about
  ``1e-12`` relative) below the cap and saturates above it:

  .. math::

      \mathrm{official}(u) = \mathrm{clip}_{R_\mathrm{out}}\big(W \,
      \mathrm{clip}_{R_\mathrm{in}}(u)\big), \quad
      R_\mathrm{out} = \frac{\operatorname{artanh}(1 - 10^{-3})}{\sqrt c}, \quad
      R_\mathrm{in} = \frac{\operatorname{artanh}(1 - 10^{-5})}{\sqrt c}

  with :math:`\mathrm{clip}_R(v) = v \min(1, R / |v|)`: 38.0 and 61.0 at ``c = 0.01``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hyperet import ops as hops
from hyperet.choices import HRA_MODES, HRA_SIDES
from hyperet.choices import POLICIES as OPS_POLICIES
from hyperet.nn.structured import (
    BandedMatrix,
    BlockDiagonalMatrix,
    DiagonalMatrix,
    StructuredMatrix,
    make_structured,
)

MODES: tuple[str, ...] = HRA_MODES
#: where :meth:`HyperbolicRadiusAdjustment.adapt_projection` applies the map (``"auto"``: the
#: cheaper one for the shapes at hand)
SIDES: tuple[str, ...] = HRA_SIDES
POLICIES: tuple[str | None, ...] = (None, *OPS_POLICIES)

# The released code's clamps (hyptorch-style), reproduced by mode="official".
OFFICIAL_TANH_CLAMP = 15.0
OFFICIAL_ARTANH_MAX = 1.0 - 1e-5
OFFICIAL_MIN_NORM = 1e-5
OFFICIAL_BALL_EPS = 1e-3


def official_output_cap(c: float) -> float:
    r"""Largest output norm of ``mode="official"``.

    .. math:: R_\mathrm{out} = \operatorname{artanh}(1 - 10^{-3}) / \sqrt c

    >>> round(official_output_cap(0.01), 3)
    38.002
    """
    return math.atanh(1.0 - OFFICIAL_BALL_EPS) / math.sqrt(c)


def official_input_cap(c: float) -> float:
    r"""Input norm beyond which ``mode="official"`` no longer sees ``|u|`` grow.

    .. math:: R_\mathrm{in} = \operatorname{artanh}(1 - 10^{-5}) / \sqrt c

    >>> round(official_input_cap(0.01), 2)
    61.03
    """
    return math.atanh(OFFICIAL_ARTANH_MAX) / math.sqrt(c)


def clip_norm(v: Tensor, radius: Tensor | float) -> Tensor:
    r"""Scale each vector (last axis) down to norm at most ``radius``: :math:`v \min(1, R/|v|)`."""
    norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)  # (..., 1)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))  # double where: no 0/0 in backward
    return v * torch.clamp(radius / safe, max=1.0)


class HyperbolicRadiusAdjustment(nn.Module):
    r"""HRA: :math:`u \mapsto \log_0^c(W \otimes_c \exp_0^c(u))` along the last axis.

    Parameters
    ----------
    d : int
        Width of the vectors it acts on.
    structure : {"diagonal", "block", "banded"}
        Parametrisation of ``W`` (see :mod:`hyperet.nn.structured`).
    block_size : int
        Block size ``b`` for ``structure="block"`` (must divide ``d``).
    bandwidth : int
        Half-bandwidth ``k`` for ``structure="banded"``.
    c : float
        Curvature ``-c`` of the ball, ``c > 0`` (0.01 in the released code).
    learn_curvature : bool
        Learn ``c`` through ``log c`` (kept positive). In ``"fast"`` mode without a capping
        policy the output does not depend on ``c``, so ``c`` receives no gradient there.
    mode : {"fast", "literal", "official"}
        How the output is computed (module docstring).
    policy : {None, "exact", "train"}
        Numerical policy. ``"literal"`` forwards it to :mod:`hyperet.ops` (``None``: chosen by
        dtype there). ``"fast"`` caps the radius only when ``policy="train"``; ``None`` and
        ``"exact"`` give exactly ``W u``. Ignored by ``"official"`` (fixed clamps).
    device, dtype
        Where to create the parameters.
    """

    def __init__(
        self,
        d: int,
        *,
        structure: str = "diagonal",
        block_size: int = 4,
        bandwidth: int = 2,
        c: float = 0.01,
        learn_curvature: bool = False,
        mode: str = "fast",
        policy: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
            raise ValueError(f"c: curvature must be a positive finite number, got {c!r}")
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if policy not in POLICIES:
            raise ValueError(f"policy: expected one of {POLICIES}, got {policy!r}")
        self.d = d
        self.structure = structure
        self.mode = mode
        self.policy = policy
        self.learn_curvature = learn_curvature
        self.matrix: StructuredMatrix = make_structured(
            structure, d, block_size=block_size, bandwidth=bandwidth, device=device, dtype=dtype
        )
        self._c = float(c)
        if learn_curvature:
            self.log_c = nn.Parameter(torch.tensor(math.log(c), device=device, dtype=dtype))

    # ------------------------------------------------------------------ properties
    @property
    def c(self) -> Tensor | float:
        """Curvature ``c > 0``: a 0-d tensor when learned, else a float."""
        if self.learn_curvature:
            return self.log_c.exp()
        return self._c

    @property
    def c_value(self) -> float:
        """Curvature as a Python float (for metadata and reports)."""
        if self.learn_curvature:
            return float(self.log_c.detach().exp())
        return self._c

    @property
    def num_free_parameters(self) -> int:
        """Free entries of ``W`` plus one for a learned curvature."""
        return self.matrix.num_free_parameters + int(self.learn_curvature)

    @property
    def is_linear(self) -> bool:
        """True when the output is exactly ``W u`` (fast mode without a capping policy)."""
        return self.mode == "fast" and self.policy != "train"

    def extra_repr(self) -> str:
        return (
            f"d={self.d}, structure={self.structure!r}, c={self._c}, "
            f"learn_curvature={self.learn_curvature}, mode={self.mode!r}, policy={self.policy!r}"
        )

    # ------------------------------------------------------------------ forward
    def forward(self, u: Tensor) -> Tensor:
        """``HRA(u)`` for ``u`` of shape ``(..., d)``; returns ``(..., d)``."""
        if u.shape[-1] != self.d:
            raise ValueError(f"u: last axis has size {u.shape[-1]}, expected {self.d}")
        if self.mode == "fast":
            return self._fast(u)
        if self.mode == "literal":
            return self._literal(u)
        return self._official(u)

    def fold_columns(self, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        r"""Fold HRA applied after ``x -> weight x + bias`` into one affine map (fast mode only).

        .. math:: W (A x + b) = (W A) x + W b
        """
        if not self.is_linear:
            raise ValueError(
                f"mode: only mode='fast' without a capping policy is linear and can be folded, "
                f"got mode={self.mode!r}, policy={self.policy!r}"
            )
        folded_bias = None if bias is None else self.matrix(bias)
        return self.matrix.apply_to_columns(weight), folded_bias

    def cheaper_side(self, tokens: int, rows: int) -> str:
        r"""Where HRA on the rows of a projection weight costs less: ``"tokens"`` or ``"weight"``.

        With HRA on the rows of a frozen ``A`` (``rows x d``), the adapted projection of a
        token is :math:`A' x = (A M^T) x = A (M^T x)` (fast mode without a capping policy,
        :attr:`is_linear`). The same structured map then acts either on the ``rows`` weight
        rows (the weight side) or on the ``tokens`` token vectors (the token side), with the
        same kernels and the frozen product with ``A`` the same size on both sides, so the
        side with fewer vectors is cheaper:

        .. math:: \text{tokens if } T < \text{rows, else weight}

        (ties go to the weight side, whose result can be cached for inference). A non-linear
        adapter (``policy="train"``, ``"literal"``, ``"official"``) maps each weight row on its
        own and always uses the weight side.

        >>> hra = HyperbolicRadiusAdjustment(1024, structure="banded")
        >>> hra.cheaper_side(tokens=256, rows=1024), hra.cheaper_side(tokens=4096, rows=1024)
        ('tokens', 'weight')
        """
        return "tokens" if self.is_linear and tokens < rows else "weight"

    def adapt_projection(
        self, x: Tensor, weight: Tensor, side: str = "auto"
    ) -> tuple[Tensor, Tensor, str]:
        r"""The operands of the adapted projection, on the side :meth:`cheaper_side` picks.

        Returns ``(x', weight', side)`` with ``F.linear(x', weight') == F.linear(x, A')``, the
        projection of ``x`` ``(..., d)`` by the frozen ``weight`` ``A`` ``(rows, d)`` whose rows
        HRA maps (``A' = HRA(A)``, ``target="weight_rows"``):

        - ``"tokens"``: ``(M^T x, A)`` (:meth:`StructuredMatrix.apply_transposed`),
          ``O(T d)`` per structured diagonal;
        - ``"weight"``: ``(x, HRA(A))``, ``O(rows d)``.

        ``side="auto"`` (default) picks the cheaper one for ``T = x.numel() / d`` tokens;
        ``"tokens"`` needs a linear adapter (:attr:`is_linear`).
        """
        if side not in SIDES:
            raise ValueError(f"side: expected one of {SIDES}, got {side!r}")
        if weight.dim() != 2 or weight.shape[-1] != self.d or x.shape[-1] != self.d:
            raise ValueError(
                f"weight: expected shape (rows, {self.d}) and x (..., {self.d}), got "
                f"{tuple(weight.shape)} and {tuple(x.shape)}"
            )
        if side == "auto":
            side = self.cheaper_side(x.numel() // self.d, weight.shape[0])
        if side == "tokens":
            if not self.is_linear:
                raise ValueError(
                    f"side: 'tokens' needs a linear adapter (mode='fast' without a capping "
                    f"policy), got mode={self.mode!r}, policy={self.policy!r}"
                )
            return self.matrix.apply_transposed(x), weight, side
        return x, self(weight), side

    def _fast(self, u: Tensor) -> Tensor:
        v = self.matrix(u)  # (..., d) = W u
        if self.policy != "train":
            return v
        radius = self.train_radius_cap(u.dtype)
        return clip_norm(self.matrix(clip_norm(u, radius)), radius)

    def train_radius_cap(self, dtype: torch.dtype) -> Tensor | float:
        r"""Largest output norm under the ops' train policy for ``dtype``.

        The train policy returns points with :math:`\sqrt c |y| \le z_{out}`
        (:func:`hyperet.ops.policy.output_ceiling`), so ``expmap0`` saturates its input and
        ``logmap0`` its output at :math:`R = \operatorname{artanh}(z_{out}) / \sqrt c`, and

        .. math:: \mathrm{HRA}_\mathrm{train}(u) = \mathrm{clip}_R(W\,\mathrm{clip}_R(u)).
        """
        z_out = hops.policy.output_ceiling(dtype)
        c = self.c
        sqrt_c = c.sqrt() if isinstance(c, Tensor) else math.sqrt(c)
        return math.atanh(z_out) / sqrt_c

    def _literal(self, u: Tensor) -> Tensor:
        c, policy = self.c, self.policy
        x = hops.expmap0(u, c=c, policy=policy)  # (..., d) on the ball
        m = self.matrix
        if isinstance(m, DiagonalMatrix):
            y = hops.diagonal_matvec(m.w, x, c=c, policy=policy)
        elif isinstance(m, BlockDiagonalMatrix):
            y = hops.block_diagonal_matvec(m.blocks, x, c=c, policy=policy)
        elif isinstance(m, BandedMatrix):
            y = hops.banded_matvec(m.bands, x, c=c, policy=policy)
        else:  # pragma: no cover - make_structured only builds the three
            raise TypeError(f"unsupported structured matrix {type(m).__name__}")
        return hops.logmap0(y, c=c, policy=policy)

    def _official(self, u: Tensor) -> Tensor:
        c = self.c
        sqrt_c = c.sqrt() if isinstance(c, Tensor) else math.sqrt(c)

        def floored_norm(x: Tensor) -> Tensor:
            return torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(OFFICIAL_MIN_NORM)

        def tanh(z: Tensor) -> Tensor:
            return z.clamp(-OFFICIAL_TANH_CLAMP, OFFICIAL_TANH_CLAMP).tanh()

        def artanh(z: Tensor) -> Tensor:
            return z.clamp(-OFFICIAL_ARTANH_MAX, OFFICIAL_ARTANH_MAX).atanh()

        # expmap0
        u_norm = floored_norm(u)  # (..., 1)
        x = tanh(sqrt_c * u_norm) * u / (sqrt_c * u_norm)
        # Möbius matvec (W x computed from the structured parameters)
        x_norm = floored_norm(x)
        mx = self.matrix(x)
        mx_norm = torch.linalg.vector_norm(mx, dim=-1, keepdim=True)
        is_zero = (mx == 0).all(dim=-1, keepdim=True)
        safe_mx_norm = torch.where(is_zero, torch.ones_like(mx_norm), mx_norm)
        res = tanh(safe_mx_norm / x_norm * artanh(sqrt_c * x_norm)) * mx / (safe_mx_norm * sqrt_c)
        res = torch.where(is_zero, torch.zeros_like(res), res)
        # projection onto norm (1 - 1e-3) / sqrt(c)
        norm = floored_norm(res)
        max_norm = (1.0 - OFFICIAL_BALL_EPS) / sqrt_c
        res = torch.where(norm > max_norm, res / norm * max_norm, res)
        # logmap0
        y_norm = floored_norm(res)
        return res / y_norm / sqrt_c * artanh(sqrt_c * y_norm)
