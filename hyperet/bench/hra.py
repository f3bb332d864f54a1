"""Benchmark suite ``hra``: HRA training step and merged inference, ratios measured in one run.

1. One training step (forward + backward) of HRA on the q and v weights of one attention block
   (two ``d x d`` weights, ``d = 1024``), for each structure:

   - *ours*: ``mode="fast"``: the adapted weight is ``A W^T`` computed from the structured
     parameters (``O(d^2)``, ``O(d^2 b)``, ``O(d^2 (2k+1))``);
   - *theirs*: the released code's approach: densify the structured matrix at every step
     (``torch.diag`` / ``torch.block_diag`` / sparse-to-dense), then the full clamped hyperbolic
     chain (``expmap0``, dense Möbius matvec, projection, ``logmap0``) on every row
     (``O(d^3)`` per weight).

   *ours, token side*: with ``W' = W M^T`` the projection is ``W' x = W (M^T x)``, so ``M^T``
   can act on the tokens (``O(T d)`` for ``T`` tokens) instead of the weight (``O(d^2)``); the
   rows time ``M^T x`` and its backward for T = 256 and 4096 tokens (the frozen projection's
   matrix product is the same size on both sides and is left out of both) and say which side
   is cheaper at each shape.

   *ours, default* (the rows with the target): what the adapter does by default,
   :meth:`~hyperet.nn.hra.HyperbolicRadiusAdjustment.adapt_projection` with ``side="auto"``
   (the token side when ``T < d``, else the weight side), timed on its own at each ``T``; the
   row names the side it took. The weight-side and token-side rows are there for transparency.

   The backward starts from a fixed cotangent of the adapted weights on both sides
   (``grad_tensors``), so only HRA is timed; ``passes`` is ours over a copy of the two weights
   (the memory roofline: a fused step reads ``W`` and writes ``A W^T``, then reads the
   cotangent and ``W``, about 2 copies).
2. Inference of a width-``d`` CLIP-style attention block: merged HRA vs the plain block (the
   ratio should be 1: merging adds no time), and unmerged fast HRA for reference.

Timing: the compared callables are interleaved within each repeat after a warm-up, and the
median of the repeats is reported. ``run(quick=True)`` uses ``d = 256`` and fewer repeats.
Rows are :class:`hyperet.bench.Row` (``ratio = theirs / ours``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor, nn

from hyperet.bench import Row, interleaved_medians
from hyperet.choices import STRUCTURES
from hyperet.nn import apply_hyperet, merge_hyperet
from hyperet.nn.hra import (
    OFFICIAL_ARTANH_MAX,
    OFFICIAL_BALL_EPS,
    OFFICIAL_MIN_NORM,
    OFFICIAL_TANH_CLAMP,
    HyperbolicRadiusAdjustment,
)
from hyperet.nn.structured import BandedMatrix, BlockDiagonalMatrix, DiagonalMatrix
from hyperet.ops.backend import resolve

STEP_TARGET = 50.0  # ours must be at least this many times faster
#: token counts of the token-side rows, as multiples of d: fewer than d (cheaper than the weight
#: side) and more (dearer), so the rows show where the choice flips (256 and 4096 at d = 1024)
TOKENS_PER_D = (0.25, 4.0)


# ---------------------------------------------------------------------------- released approach
def released_dense_matrix(adapter: HyperbolicRadiusAdjustment) -> Tensor:
    """Densify the structured matrix the way the released code does, at every step."""
    m = adapter.matrix
    if isinstance(m, DiagonalMatrix):
        return torch.diag(m.w)
    if isinstance(m, BlockDiagonalMatrix):
        return torch.block_diag(*m.blocks.unbind(0))
    assert isinstance(m, BandedMatrix)
    d, k = m.d, m.bandwidth
    rows, cols, values = [], [], []
    for j in range(2 * k + 1):
        offset = j - k
        r = torch.arange(max(0, -offset), min(d, d - offset))
        rows.append(r)
        cols.append(r + offset)
        values.append(m.bands[j, r])
    index = torch.stack([torch.cat(rows), torch.cat(cols)])
    sparse = torch.sparse_coo_tensor(index, torch.cat(values), (d, d), check_invariants=True)
    return sparse.to_dense()


def released_chain(m: Tensor, u: Tensor, c: float) -> Tensor:
    """The released code's clamped chain ``logmap0(project(M (x) expmap0(u)))`` on rows of ``u``."""
    sqrt_c = c**0.5

    def norm(x: Tensor) -> Tensor:
        return x.norm(dim=-1, p=2, keepdim=True).clamp_min(OFFICIAL_MIN_NORM)

    def tanh(z: Tensor) -> Tensor:
        return z.clamp(-OFFICIAL_TANH_CLAMP, OFFICIAL_TANH_CLAMP).tanh()

    def artanh(z: Tensor) -> Tensor:
        z = z.clamp(-OFFICIAL_ARTANH_MAX, OFFICIAL_ARTANH_MAX)
        return 0.5 * (torch.log1p(z) - torch.log1p(-z))

    u_norm = norm(u)
    x = tanh(sqrt_c * u_norm) * u / (sqrt_c * u_norm)  # expmap0
    x_norm = norm(x)
    mx = x @ m.transpose(-1, -2)  # dense Möbius matvec: O(d^3) for d rows
    mx_norm = mx.norm(dim=-1, p=2, keepdim=True)
    res = tanh(mx_norm / x_norm * artanh(sqrt_c * x_norm)) * mx / (mx_norm * sqrt_c)
    zero = (mx == 0).all(dim=-1, keepdim=True)
    res = torch.where(zero, torch.zeros_like(res), res)
    r_norm = norm(res)  # projection
    max_norm = (1 - OFFICIAL_BALL_EPS) / sqrt_c
    res = torch.where(r_norm > max_norm, res / r_norm * max_norm, res)
    y_norm = norm(res)  # logmap0
    return res / y_norm / sqrt_c * artanh(sqrt_c * y_norm)


# ---------------------------------------------------------------------------- suite
def _training_step_rows(d: int, repeats: int) -> list[Row]:
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(d, d, generator=gen) * d**-0.5 for _ in range(2)]  # frozen q, v
    cotangents = [torch.randn(d, d, generator=gen) for _ in range(2)]
    counts = [int(f * d) for f in TOKENS_PER_D]
    tokens = {
        t: (torch.randn(t, d, generator=gen), torch.randn(t, d, generator=gen)) for t in counts
    }
    rows: list[Row] = []
    for structure in STRUCTURES:
        adapters = [HyperbolicRadiusAdjustment(d, structure=structure) for _ in range(2)]
        param = next(adapters[0].matrix.parameters())
        backend_name = resolve(f"linear:{structure}", weights[0], param)
        with torch.no_grad():
            for a in adapters:
                for p in a.parameters():
                    p.add_(0.01 * torch.randn(p.shape, generator=gen))

        def ours(adapters: list[HyperbolicRadiusAdjustment] = adapters) -> None:
            outs = [a(w) for a, w in zip(adapters, weights, strict=True)]
            torch.autograd.backward(outs, cotangents)

        def theirs(adapters: list[HyperbolicRadiusAdjustment] = adapters) -> None:
            outs = [
                released_chain(released_dense_matrix(a), w, a._c)
                for a, w in zip(adapters, weights, strict=True)
            ]
            torch.autograd.backward(outs, cotangents)

        def copies() -> None:
            for w in weights:
                w.clone()

        fns: dict[str, Callable[[], object]] = {"ours": ours, "theirs": theirs, "copies": copies}
        sides = {}
        for t in counts:  # M^T on the tokens instead of M on the weight rows
            x, g_x = tokens[t]

            def token_side(
                adapters: list[HyperbolicRadiusAdjustment] = adapters,
                x: Tensor = x,
                g: Tensor = g_x,
            ) -> None:
                outs = [a.matrix.apply_transposed(x) for a in adapters]
                torch.autograd.backward(outs, [g, g])

            def default_side(
                adapters: list[HyperbolicRadiusAdjustment] = adapters,
                x: Tensor = x,
                g: Tensor = g_x,
            ) -> None:
                outs, cots = [], []
                for a, w, w_cot in zip(adapters, weights, cotangents, strict=True):
                    x_side, w_side, side = a.adapt_projection(x, w)  # side="auto"
                    outs.append(x_side if side == "tokens" else w_side)
                    cots.append(g if side == "tokens" else w_cot)
                torch.autograd.backward(outs, cots)

            fns[f"tokens {t}"] = token_side
            fns[f"default {t}"] = default_side
            sides[t] = adapters[0].cheaper_side(t, d)
        times = interleaved_medians(fns, repeats=repeats)
        for t in counts:
            default_time = times[f"default {t}"]
            rows.append(
                Row(
                    suite="hra",
                    name=f"hra train step {structure} d={d} (q+v), {t} tokens, default: "
                    f"{sides[t]} side",
                    ours=default_time,
                    theirs=times["theirs"],
                    ratio=times["theirs"] / default_time,
                    target=STEP_TARGET,
                    note=f"adapt_projection(side='auto') took the {sides[t]} side ({backend_name})"
                    " vs densify + clamped chain every step",
                )
            )
        rows.append(
            Row(
                suite="hra",
                name=f"hra train step {structure} d={d} (q+v), weight side",
                ours=times["ours"],
                theirs=times["theirs"],
                ratio=times["theirs"] / times["ours"],
                target=None,
                note=f"A W^T from the structured parameters ({backend_name}) vs densify + "
                "clamped chain every step",
                passes=times["ours"] / times["copies"],
            )
        )
        for t in counts:
            token_time = times[f"tokens {t}"]
            picked = "tokens" if token_time < times["ours"] else "weight"
            rows.append(
                Row(
                    suite="hra",
                    name=f"hra train step {structure} d={d} (q+v), {t} tokens, M^T on the tokens",
                    ours=token_time,
                    theirs=times["theirs"],
                    ratio=times["theirs"] / token_time,
                    target=None,
                    note=f"W (M^T x) instead of (W M^T) x; {times['ours'] / token_time:.2f}x "
                    f"the weight side: the {picked} side is cheaper at this shape "
                    f"(the adapter picks the {sides[t]} side)",
                )
            )
    return rows


class _ClipBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, max(1, width // 64), batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(width, 4 * width), gelu=nn.GELU(), c_proj=nn.Linear(4 * width, width)
            )
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


def _inference_rows(d: int, repeats: int) -> list[Row]:
    torch.manual_seed(0)
    plain = _ClipBlock(d).eval()
    adapted = _ClipBlock(d).eval()
    adapted.load_state_dict(plain.state_dict())
    apply_hyperet(adapted, structure="banded")
    merged = _ClipBlock(d).eval()
    merged.load_state_dict(plain.state_dict())
    apply_hyperet(merged, structure="banded")
    merge_hyperet(merged)
    x = torch.randn(8, 64, d)

    def run(model: nn.Module) -> Callable[[], object]:
        def call() -> object:
            with torch.no_grad():
                return model(x)

        return call

    times = interleaved_medians(
        {"plain": run(plain), "merged": run(merged), "unmerged": run(adapted)}, repeats=repeats
    )
    return [
        Row(
            suite="hra",
            name=f"block inference d={d}: merged HRA vs plain",
            ours=times["merged"],
            theirs=times["plain"],
            ratio=times["plain"] / times["merged"],
            target=None,
            note="expected ~1 (merging adds zero time); 8 x 64 tokens, banded k=2",
        ),
        Row(
            suite="hra",
            name=f"block inference d={d}: unmerged fast HRA vs plain",
            ours=times["unmerged"],
            theirs=times["plain"],
            ratio=times["plain"] / times["unmerged"],
            target=None,
            note="info: adapted weight recomputed every forward (training-time cost)",
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    """Run the suite; ``quick`` uses d = 256 and 3 repeats (smoke test), else d = 1024 and 28
    repeats of the training steps: the seven callables of a structure need a multiple of
    2 x 7 repeats for the balanced orders to put each right after every other equally often
    (:func:`hyperet.bench.balanced_orders`). Fewer repeats let the same work read very
    differently in two rows of one run: 1.6x at load 5 with 7 repeats; on the idle machine
    37x vs 85x with 11 and 44x vs 71x with 14, because a fifth to a third of the ~2 ms calls
    take 3-11 ms (page faults for memory the call before gave back to the OS, and slow calls
    without a fault), so a median of 14 still lands in that tail now and then."""
    d, repeats = (256, 3) if quick else (1024, 28)
    return _training_step_rows(d, repeats) + _inference_rows(d, 9 if quick else 21)
