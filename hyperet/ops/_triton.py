"""The ``"triton"`` backend: autograd functions over the kernels of
:mod:`hyperet.ops._triton_kernels` (optional extra ``hyperet[gpu]``).

Covered (train policy, fixed float curvature, forward and backward): ``expmap0``, ``logmap0``,
``mobius_add`` and ``dist`` (float32, bfloat16, float16: half types read and written as they
are, arithmetic in float32), ``pairwise_dist``'s fast path (float32; the Gram matrix is a
cuBLAS product), the three structured Möbius matvecs (float32 or one half type) and the dense
one (float32; the product itself is a cuBLAS matrix product). Everything else - and widths
beyond :data:`MAX_D` - runs on eager torch. On CPU tensors the kernels run only under Triton's
interpreter (``TRITON_INTERPRET=1``), which is how the tests check them without a GPU.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import Tensor

from hyperet.ops.policy import input_conorm_floor, output_ceiling

#: Widest row a kernel holds in registers (structured kinds tile (2k+1 or b, d)).
MAX_D = {"structured": 4096, "row": 16384}
KIND_CODES: dict[str, int] = {"dense": 0, "diagonal": 1, "block": 2, "banded": 3}
#: Ops over the last axis, one program per row (half types are read and written as they are and
#: computed in float32, as the train policy asks).
ROW_OPS = ("expmap0", "logmap0", "mobius_add", "dist")
ROW_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@functools.cache
def _kernels() -> tuple[Any, str]:
    try:
        from hyperet.ops import _triton_kernels
    except ImportError as exc:  # triton missing or broken
        return None, f"triton is not importable ({exc}); install hyperet[gpu]"
    return _triton_kernels, "loaded"


def available() -> bool:
    """Whether triton imports here (it runs on CUDA tensors, or on CPU under the interpreter)."""
    return _kernels()[0] is not None


def status() -> str:
    """``"loaded"`` or why the backend is unavailable."""
    return _kernels()[1]


def serves(op: str, *tensors: Tensor) -> bool:
    """Whether a kernel covers ``op`` on these tensors, all on one device: ``"matvec:<kind>"``
    with ``(x, param)``, ``x`` ``(N, d)``, both float32 (structured kinds: or both one half
    type); a row op (:data:`ROW_OPS`) with its operands ``(..., d)`` of one float dtype
    (:data:`ROW_DTYPES`); ``"pairwise_dist"`` with float32 ``(N, D)`` and ``(M, D)``; widths
    the kernels hold (:data:`MAX_D`)."""
    x = tensors[0]
    if any(t.device != x.device for t in tensors):
        return False
    if op in ROW_OPS:
        return (
            x.dtype in ROW_DTYPES
            and all(t.dtype == x.dtype and t.shape[-1] == x.shape[-1] for t in tensors)
            and 0 < x.shape[-1] <= MAX_D["row"]
        )
    if op == "pairwise_dist":
        return (
            len(tensors) == 2
            and all(t.dim() == 2 and t.dtype == torch.float32 for t in tensors)
            and 0 < x.shape[-1] <= MAX_D["row"]
        )
    family, _, kind = op.partition(":")
    if family != "matvec" or kind not in KIND_CODES or len(tensors) != 2:
        return False
    param = tensors[1]
    if x.dim() != 2 or x.dtype not in ROW_DTYPES or param.dtype != x.dtype:
        return False
    d = x.shape[-1]
    if kind == "dense":  # a cuBLAS product in float32, square: one row width
        return x.dtype == torch.float32 and param.shape == (d, d) and 0 < d <= MAX_D["row"]
    shape_ok = {
        "diagonal": param.dim() == 1 and param.shape[0] == d,
        "block": param.dim() == 3 and param.shape[0] * param.shape[1] == d,
        "banded": param.dim() == 2 and param.shape[1] == d,
    }[kind]
    return shape_ok and 0 < d <= MAX_D["structured"]


@functools.lru_cache(maxsize=64)
def _scalars(device: torch.device, *values: float) -> Tensor:
    """The float64 scalars of a launch as a small device tensor (kernels load them: Triton
    would pass Python floats as float32), made once per device and values."""
    return torch.tensor(values, dtype=torch.float64, device=device)


def _width(kind: str, param: Tensor) -> int:
    return {"dense": 1, "diagonal": 1, "block": int(param.shape[-1])}.get(kind, int(param.shape[0]))


def _launch_options(tile: int) -> dict[str, int]:
    """Warps of a program holding ``tile`` elements: about 4 to 8 per thread up to 8 warps
    (fewer registers per thread, more programs resident), 16 for the widest rows."""
    return {"num_warps": 16 if tile > 8192 else min(8, max(4, tile // 128))}


def _programs(rows: int, device: torch.device) -> int:
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return max(1, min(rows, 4 * sms))
    return max(1, min(rows, 4))


class TritonMatvec(torch.autograd.Function):
    """Train-policy :math:`M \\otimes x` for ``x`` ``(N, d)`` float32 (module docstring)."""

    @staticmethod
    def forward(
        ctx: Any, kind: str, param: Tensor, x: Tensor, c: float, w_min: float, t_max: float
    ) -> Tensor:
        kern = _kernels()[0]
        param, x = param.detach().contiguous(), x.detach().contiguous()
        rows, d = x.shape
        y = x @ param.mT if kind == "dense" else torch.empty_like(x)  # dense: scaled in place
        n = torch.empty(rows, dtype=torch.float64, device=x.device)
        m = torch.empty(rows, dtype=torch.float64, device=x.device)
        width = _width(kind, param)
        wp2 = 1 if kind in ("dense", "diagonal") else kern.triton.next_power_of_2(width)
        block = kern.block_d(d)
        if rows:
            kern.matvec_forward_kernel[(rows,)](
                x, param, y, n, m, d, _scalars(x.device, c, w_min, t_max),
                KIND=KIND_CODES[kind], WIDTH=width, WP2=wp2, BLOCK_D=block,
                **_launch_options(block * wp2),
            )  # fmt: skip
        ctx.kind, ctx.c, ctx.w_min, ctx.t_max = kind, c, w_min, t_max
        ctx.save_for_backward(param, x, y, n, m)
        return y

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        kern = _kernels()[0]
        param, x, y, n, m = ctx.saved_tensors
        kind = ctx.kind
        g = g.contiguous()
        rows, d = y.shape
        width = _width(kind, param)
        wp2 = 1 if kind in ("dense", "diagonal") else kern.triton.next_power_of_2(width)
        block = kern.block_d(d)
        programs = _programs(rows, x.device)
        if kind == "dense":
            gm, beta = torch.empty_like(y), torch.empty(rows, dtype=x.dtype, device=x.device)
            grad_x, partial = x, x  # not written by the dense kernel
        else:
            gm = beta = x  # not written
            grad_x = torch.empty_like(x)
            partial = torch.zeros(programs, param.numel(), dtype=torch.float32, device=x.device)
        if rows:
            kern.matvec_backward_kernel[(programs,)](
                g, y, x, param, n, m, grad_x, gm, beta, partial, rows, d,
                _scalars(x.device, ctx.c, ctx.w_min, ctx.t_max),
                KIND=KIND_CODES[kind], WIDTH=width, WP2=wp2, BLOCK_D=block,
                **_launch_options(block * wp2),
            )  # fmt: skip
        if kind == "dense":
            grad_p = gm.mT @ x
            grad_x = torch.addcmul(gm @ param, x, beta[:, None])
        else:
            grad_p = partial.sum(0).view(param.shape).to(param.dtype)
        need_p, need_x = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        return None, grad_p if need_p else None, grad_x if need_x else None, None, None, None


def _flat(v: Tensor) -> Tensor:
    return v.detach().reshape(-1, v.shape[-1]).contiguous()


def _launch(kernel_name: str, rows: int, d: int, tensors: list[Tensor], *scalars: float) -> None:
    """Launch a one-program-per-row kernel ``(*tensors, d[, sc_ptr])`` over ``rows`` rows of
    width ``d`` (inputs and outputs contiguous); ``scalars`` travel as one float64 tensor."""
    kern = _kernels()[0]
    block = kern.block_d(d)
    extra = [_scalars(tensors[0].device, *scalars)] if scalars else []
    if rows:
        getattr(kern, kernel_name)[(rows,)](
            *tensors, d, *extra, BLOCK_D=block, **_launch_options(block)
        )


def _per_row(kernel_name: str, inputs: list[Tensor], *scalars: float) -> Tensor:
    """A one-program-per-row kernel ``(*inputs, out, d, *scalars)``; ``out`` is like the last
    input, all ``(N, d)`` contiguous."""
    out = torch.empty_like(inputs[-1])
    _launch(kernel_name, out.shape[0], out.shape[1], [*inputs, out], *scalars)
    return out


class TritonExpmap0(torch.autograd.Function):
    """Train-policy :math:`\\exp_0` along the last axis (float32 arithmetic, result in
    ``u``'s dtype, whose output ceiling applies)."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, c: float) -> Tensor:
        flat = _flat(u)
        s_max = math.atanh(output_ceiling(u.dtype))
        ctx.c, ctx.s_max = c, s_max
        ctx.save_for_backward(flat)
        return _per_row("expmap0_forward_kernel", [flat], c, s_max).view(u.shape)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        (flat,) = ctx.saved_tensors
        gu = _per_row("expmap0_backward_kernel", [_flat(g), flat], ctx.c, ctx.s_max)
        return gu.view(g.shape), None


class TritonLogmap0(torch.autograd.Function):
    """Train-policy :math:`\\log_0` along the last axis (float32 arithmetic, result in ``x``'s
    dtype, whose input co-norm floor applies)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, c: float) -> Tensor:
        flat = _flat(x)
        w_min = input_conorm_floor(x.dtype)
        ctx.c, ctx.w_min = c, w_min
        ctx.save_for_backward(flat)
        return _per_row("logmap0_forward_kernel", [flat], c, w_min).view(x.shape)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        (flat,) = ctx.saved_tensors
        gx = _per_row("logmap0_backward_kernel", [_flat(g), flat], ctx.c, ctx.w_min)
        return gx.view(g.shape), None


class TritonMobiusAdd(torch.autograd.Function):
    """Train-policy :math:`x \\oplus y` of two ``(..., d)`` tensors of one shape and dtype
    (:func:`hyperet.ops.ball.mobius_add`'s train formula, its zero limits bitwise)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, c: float) -> Tensor:
        fx, fy = _flat(x), _flat(y)
        ctx.c, ctx.w_min, ctx.z_out = c, input_conorm_floor(x.dtype), output_ceiling(x.dtype)
        ctx.save_for_backward(fx, fy)
        out = torch.empty_like(fx)
        _launch(
            "mobius_add_forward_kernel",
            fx.shape[0],
            fx.shape[1],
            [fx, fy, out],
            c,
            ctx.w_min,
            ctx.z_out,
        )
        return out.view(x.shape)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        fx, fy = ctx.saved_tensors
        gx, gy = torch.empty_like(fx), torch.empty_like(fy)
        _launch(
            "mobius_add_backward_kernel", fx.shape[0], fx.shape[1], [_flat(g), fx, fy, gx, gy],
            ctx.c, ctx.w_min, ctx.z_out,
        )  # fmt: skip
        return gx.view(g.shape), gy.view(g.shape), None


class TritonDist(torch.autograd.Function):
    """Train-policy geodesic distance of two ``(..., d)`` tensors of one shape and dtype,
    shape ``(...)`` (:func:`hyperet.ops.ball.dist_core`'s train formula)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, c: float) -> Tensor:
        fx, fy = _flat(x), _flat(y)
        ctx.c, ctx.w_min = c, input_conorm_floor(x.dtype)
        ctx.save_for_backward(fx, fy)
        out = torch.empty(fx.shape[0], dtype=x.dtype, device=x.device)
        _launch("dist_forward_kernel", fx.shape[0], fx.shape[1], [fx, fy, out], c, ctx.w_min)
        return out.view(x.shape[:-1])

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        fx, fy = ctx.saved_tensors
        gx, gy = torch.empty_like(fx), torch.empty_like(fy)
        g_rows = g.detach().reshape(-1).contiguous()
        _launch(
            "dist_backward_kernel",
            fx.shape[0],
            fx.shape[1],
            [g_rows, fx, fy, gx, gy],
            ctx.c,
            ctx.w_min,
        )
        shape = (*g.shape, fx.shape[1])
        return gx.view(shape), gy.view(shape), None


def row_op(op: str, c: float, *tensors: Tensor) -> Tensor:
    """Run the row op ``op`` (:data:`ROW_OPS`) on operands that :func:`serves` accepted (binary
    ops broadcast their leading axes first; autograd sums the gradients back)."""
    if len(tensors) == 2:
        tensors = tuple(torch.broadcast_tensors(*tensors))
    fn: Any = {
        "expmap0": TritonExpmap0,
        "logmap0": TritonLogmap0,
        "mobius_add": TritonMobiusAdd,
        "dist": TritonDist,
    }[op]
    out: Tensor = fn.apply(*tensors, c)
    return out


#: Tile of the pairwise-distance kernels (rows of x, rows of y).
PAIR_TILE = 32


class TritonPairwiseDist(torch.autograd.Function):
    """Train-policy pairwise distances of float32 ``x`` ``(N, D)`` and ``y`` ``(M, D)``, as
    :func:`hyperet.ops.pairwise_dist`'s fast path: the Gram matrix ``x y^T`` is a matrix
    product (cuBLAS); one kernel turns it into distances (forward), one into the coefficient
    matrix of the gradient and its row and column sums (backward), whose Gram products are
    again matrix products."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, c: float, out_dtype: torch.dtype) -> Tensor:
        x, y = x.detach().contiguous(), y.detach().contiguous()
        w_min = input_conorm_floor(out_dtype)
        px, py = _point_rows(x, c, w_min), _point_rows(y, c, w_min)
        gram = x @ y.mT  # (N, M)
        out = torch.empty(gram.shape, dtype=out_dtype, device=x.device)
        _launch_tiles("pairwise_forward_kernel", gram, [gram, out, *px, *py], c)
        ctx.c = c
        ctx.save_for_backward(x, y, gram, *px, *py)
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        x, y, gram, *scalars = ctx.saved_tensors
        px, py = scalars[:3], scalars[3:]
        (n, m), tile = gram.shape, PAIR_TILE
        coef = torch.empty_like(gram)
        row_part = torch.empty(-(-m // tile), n, dtype=torch.float64, device=x.device)
        col_part = torch.empty(-(-n // tile), m, dtype=torch.float64, device=x.device)
        _launch_tiles(
            "pairwise_backward_kernel",
            gram,
            [g.detach().contiguous(), gram, coef, row_part, col_part, *px, *py],
            ctx.c,
        )
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.empty_like(x)
            _launch("pairwise_grad_rows_kernel", n, x.shape[1],
                    [x, coef @ y, row_part.sum(0), px[0], px[2], grad_x])  # fmt: skip
        if ctx.needs_input_grad[1]:
            grad_y = torch.empty_like(y)
            _launch("pairwise_grad_rows_kernel", m, y.shape[1],
                    [y, coef.mT @ x, col_part.sum(0), py[0], py[2], grad_y])  # fmt: skip
        return grad_x, grad_y, None, None


def _point_rows(x: Tensor, c: float, w_min: float) -> list[Tensor]:
    """Per row (float64): the train policy's projection factor, floored co-norm, raw |x|^2."""
    out = [torch.empty(x.shape[0], dtype=torch.float64, device=x.device) for _ in range(3)]
    _launch("point_rows_kernel", x.shape[0], x.shape[1], [x, *out], c, w_min)
    return out


def _launch_tiles(kernel_name: str, gram: Tensor, tensors: list[Tensor], c: float) -> None:
    n, m = gram.shape
    if n and m:
        grid = (-(-n // PAIR_TILE), -(-m // PAIR_TILE))
        getattr(_kernels()[0], kernel_name)[grid](
            *tensors, n, m, _scalars(gram.device, c), BLOCK_N=PAIR_TILE, BLOCK_M=PAIR_TILE
        )


def pairwise_dist(x: Tensor, y: Tensor, c: float, out_dtype: torch.dtype) -> Tensor:
    """:class:`TritonPairwiseDist` on operands that :func:`serves` accepted."""
    out: Tensor = TritonPairwiseDist.apply(x, y, c, out_dtype)
    return out
