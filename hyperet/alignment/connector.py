"""Q-Former-lite connector, text encoder and the map of both into the Poincaré ball.

The image side is BLIP-2's querying transformer reduced to its core: ``K`` learnable query
vectors that self-attend and cross-attend to the frozen vision encoder's tokens. The text side
is the project's pre-norm transformer (:mod:`hyperet.alignment.transformer`), bidirectional, over
token ids with a learned ``[CLS]`` vector (the tokenizer has no CLS token; the vector is
prepended after embedding). Both end in a linear
projection to the contrastive width ``E``, a learnable bounded scale and, for the hyperbolic
objectives, the exponential map at the origin:

.. math::

    x = \\exp_0^c(\\alpha\\, W h), \\qquad
    \\exp_0^c(u) = \\tanh(\\sqrt c\\,|u|)\\, \\frac{u}{\\sqrt c\\,|u|}.

``alpha`` and ``c`` are log-parametrised scalars clamped to documented ranges (MERU's recipe):
:class:`BoundedLogScalar` keeps the value used in the forward pass inside its range and
:meth:`BoundedLogScalar.clamp_` moves the stored parameter back after an optimizer step (and
counts that as a clamp hit). None of these scalars should get weight decay.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from hyperet import ops
from hyperet.alignment.entailment import lorentz_expmap0
from hyperet.alignment.transformer import TextTransformer, TransformerBlock

Pooling = Literal["cls", "mean"]

#: Curvature range of learnable curvature (MERU's [0.1, 10]).
CURVATURE_BOUNDS = (0.1, 10.0)
#: Range of the pre-expmap0 scale alpha (upper bound 1 as in MERU; lower bound our choice).
SCALE_BOUNDS = (1e-3, 1.0)
#: MLP width ratio of the connector's and the text encoder's blocks (BLIP-2's 4).
MLP_RATIO = 4


class BoundedLogScalar(nn.Module):
    """A positive scalar stored as its logarithm and clamped to ``[low, high]``.

    .. math::

        v = \\exp(\\operatorname{clamp}(\\theta, \\log \\mathrm{low}, \\log \\mathrm{high}))

    Parameters
    ----------
    value : float
        Initial value, inside ``[low, high]``.
    low, high : float
        Bounds, ``0 < low <= high``.
    learnable : bool
        A trainable ``nn.Parameter`` if true, else a buffer (saved, never trained).
    """

    log_value: Tensor

    def __init__(self, value: float, *, low: float, high: float, learnable: bool) -> None:
        super().__init__()
        if not 0 < low <= high:
            raise ValueError(f"low, high: need 0 < low <= high, got ({low}, {high})")
        if not low <= value <= high:
            raise ValueError(f"value: {value} lies outside [{low}, {high}]")
        self.low, self.high = float(low), float(high)
        self.log_low, self.log_high = math.log(low), math.log(high)
        log_value = torch.tensor(math.log(value), dtype=torch.float32)
        if learnable:
            self.log_value = nn.Parameter(log_value)
        else:
            self.register_buffer("log_value", log_value)

    @property
    def learnable(self) -> bool:
        return isinstance(self.log_value, nn.Parameter)

    def forward(self) -> Tensor:
        """The clamped value as a 0-d tensor (differentiable inside the range)."""
        return self.log_value.clamp(self.log_low, self.log_high).exp()

    @torch.no_grad()
    def clamp_(self) -> int:
        """Move the stored log-value back into range; return 1 if it was outside, else 0.

        The bounds are compared in the parameter's own dtype (a float32 ``log(100)`` rounds
        above the float64 one and must count as inside).
        """
        clamped = self.log_value.clamp(self.log_low, self.log_high)
        if torch.equal(clamped, self.log_value):
            return 0
        self.log_value.copy_(clamped)
        return 1

    def extra_repr(self) -> str:
        return f"range=[{self.low:g}, {self.high:g}], learnable={self.learnable}"


class QueryConnector(nn.Module):
    """K learnable queries that read the vision tokens (Q-Former-lite).

    Each layer is a :class:`~hyperet.alignment.transformer.TransformerBlock` with cross-attention:
    queries self-attend, cross-attend to the (projected, normalised) vision tokens, then pass an
    MLP; every sub-layer is pre-norm with a residual connection.

    Parameters
    ----------
    vision_dim : int
        Width ``Dv`` of the vision tokens.
    width : int
        Width ``D`` of the queries.
    num_queries : int
        Number of queries ``K``.
    depth, heads : int
        Number of layers and attention heads.
    """

    def __init__(
        self, vision_dim: int, width: int, *, num_queries: int, depth: int, heads: int
    ) -> None:
        super().__init__()
        if num_queries < 1:
            raise ValueError(f"num_queries: need at least 1, got {num_queries}")
        self.queries = nn.Parameter(torch.randn(num_queries, width) * 0.02)
        self.vision_in = nn.Sequential(nn.Linear(vision_dim, width), nn.LayerNorm(width))
        self.blocks = nn.ModuleList(
            TransformerBlock(width, heads, MLP_RATIO, causal=False, cross=True)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)

    @property
    def num_queries(self) -> int:
        return int(self.queries.shape[0])

    def forward(self, vision_tokens: Tensor) -> Tensor:
        """Map vision tokens ``(B, T, Dv)`` to query features ``(B, K, D)``."""
        context = self.vision_in(vision_tokens)  # (B, T, D)
        q = self.queries.expand(vision_tokens.shape[0], -1, -1)  # (B, K, D)
        for block in self.blocks:
            q = block(q, context)
        return self.norm(q)  # (B, K, D)


class TextEncoder(nn.Module):
    """A small bidirectional transformer over token ids with CLS or mean pooling.

    The transformer is :class:`~hyperet.alignment.transformer.TextTransformer` with
    ``causal=False`` (the decoder LM's and CLIP tower's transformer, read both ways); the learned
    ``[CLS]`` vector is its prefix (no position embedding: it is itself learned).

    ``pooling="cls"`` (default, BLIP-2's choice) returns the output at a learned vector
    prepended to the sequence; ``pooling="mean"`` averages the outputs at non-padding tokens.
    Padding (``pad_id``) is masked out of attention, so trailing padding never changes the result.

    Parameters
    ----------
    vocab_size, width : int
        Vocabulary size and model width ``D``.
    max_len : int
        Longest accepted sequence ``L`` (without the CLS vector).
    depth, heads : int
        Number of layers and attention heads.
    pad_id : int
        Padding token id.
    pooling : {"cls", "mean"}
    """

    def __init__(
        self,
        vocab_size: int,
        width: int,
        *,
        max_len: int,
        depth: int,
        heads: int,
        pad_id: int = 0,
        pooling: Pooling = "cls",
    ) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling: expected 'cls' or 'mean', got {pooling!r}")
        self.pad_id, self.pooling, self.max_len = pad_id, pooling, max_len
        self.cls = nn.Parameter(torch.randn(width) * 0.02)
        self.transformer = TextTransformer(
            vocab_size, width, depth, heads, MLP_RATIO, max_len, causal=False, embedding_std=1.0
        )

    def forward(self, ids: Tensor) -> Tensor:
        """Map token ids ``(B, L)`` to one feature per text ``(B, D)``."""
        if ids.ndim != 2 or ids.shape[1] > self.max_len:
            raise ValueError(
                f"ids: expected shape (B, L <= {self.max_len}), got {tuple(ids.shape)}"
            )
        pad = ids == self.pad_id  # (B, L)
        cls = self.cls.expand(ids.shape[0], 1, -1)  # (B, 1, D)
        h = self.transformer(ids, cls, padding=pad, keep_prefix=True)  # (B, 1 + L, D)
        if self.pooling == "cls":
            return h[:, 0]  # (B, D)
        keep = (~pad).unsqueeze(-1).to(h.dtype)  # (B, L, 1)
        return (h[:, 1:] * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (B, D)


class BallProjection(nn.Module):
    """Linear projection, bounded learnable scale and (optionally) expmap0 into the ball.

    .. math::

        u = \\alpha\\, W h, \\qquad
        x = \\exp_0^c(u) \\text{ (hyperbolic) or } x = u \\text{ (Euclidean)}

    Parameters
    ----------
    in_dim, embed_dim : int
        Input width ``D`` and embedding width ``E``.
    scale : float or None
        Initial ``alpha``; ``None`` uses ``1/sqrt(E)`` (MERU's initialisation).
    scale_bounds : tuple of float
        Range of ``alpha`` (:data:`SCALE_BOUNDS`).
    to_ball : bool
        Apply ``expmap0`` (hyperbolic objectives) or not (the Euclidean baseline).
    to_lorentz : bool
        Instead apply MERU's exponential map onto the hyperboloid (space components).
    """

    def __init__(
        self,
        in_dim: int,
        embed_dim: int,
        *,
        scale: float | None = None,
        scale_bounds: tuple[float, float] = SCALE_BOUNDS,
        to_ball: bool = True,
        to_lorentz: bool = False,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, embed_dim, bias=False)
        init = 1.0 / math.sqrt(embed_dim) if scale is None else scale
        self.scale = BoundedLogScalar(
            init, low=scale_bounds[0], high=scale_bounds[1], learnable=True
        )
        self.to_ball, self.to_lorentz = to_ball, to_lorentz

    def tangent(self, h: Tensor) -> Tensor:
        """The scaled tangent vector ``u = alpha W h`` of shape ``(..., E)``."""
        return self.scale() * self.linear(h)

    def forward(self, h: Tensor, *, c: Tensor) -> Tensor:
        """Embed features ``(..., D)`` as points ``(..., E)`` of the ball of curvature ``-c``."""
        u = self.tangent(h)
        if self.to_lorentz:
            return lorentz_expmap0(u, c=c)
        return ops.expmap0(u, c=c) if self.to_ball else u
