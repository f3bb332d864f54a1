"""Argument checks of every ``hyperet.ops`` function, in both policies (issue 17).

Each refusal is a ``TypeError`` or ``ValueError`` whose message starts with the argument's name;
the train policy refuses exactly what the exact policy refuses (only the data's values - NaN,
points outside the ball - are left to the exact policy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from hyperet import ops

POLICIES = ("exact", "train")


def _x(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.full(shape, 0.1, dtype=dtype)


#: op name -> (call with keyword overrides, the names of its tensor operands)
CALLS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "conformal_factor": (ops.conformal_factor, {"x": _x(2, 3)}),
    "mobius_add": (ops.mobius_add, {"x": _x(2, 3), "y": _x(2, 3)}),
    "mobius_scalar_mul": (ops.mobius_scalar_mul, {"r": 0.5, "x": _x(2, 3)}),
    "mobius_matvec": (ops.mobius_matvec, {"m": _x(4, 3), "x": _x(2, 3)}),
    "expmap0": (ops.expmap0, {"u": _x(2, 3)}),
    "logmap0": (ops.logmap0, {"x": _x(2, 3)}),
    "expmap": (ops.expmap, {"x": _x(2, 3), "u": _x(2, 3)}),
    "logmap": (ops.logmap, {"x": _x(2, 3), "y": _x(2, 3)}),
    "dist": (ops.dist, {"x": _x(2, 3), "y": _x(2, 3)}),
    "dist0": (ops.dist0, {"x": _x(2, 3)}),
    "gyration": (ops.gyration, {"a": _x(2, 3), "b": _x(2, 3), "z": _x(2, 3)}),
    "transport": (ops.transport, {"x": _x(2, 3), "y": _x(2, 3), "v": _x(2, 3)}),
    "project": (ops.project, {"x": _x(2, 3), "eps": 1e-3}),
    "pairwise_dist": (ops.pairwise_dist, {"x": _x(2, 3), "y": _x(4, 3)}),
    "diagonal_matvec": (ops.diagonal_matvec, {"w": _x(3), "x": _x(2, 3)}),
    "block_diagonal_matvec": (ops.block_diagonal_matvec, {"blocks": _x(1, 3, 3), "x": _x(2, 3)}),
    "banded_matvec": (ops.banded_matvec, {"bands": _x(3, 3), "x": _x(2, 3)}),
}
OPERANDS = {
    name: [k for k, v in kw.items() if isinstance(v, torch.Tensor)]
    for name, (_, kw) in CALLS.items()
}


def _call(name: str, policy: str, c: Any = 1.0, **changes: Any) -> Any:
    fn, kwargs = CALLS[name]
    return fn(**{**kwargs, **changes}, c=c, policy=policy)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_valid_calls_pass(name: str, policy: str) -> None:
    assert torch.isfinite(_call(name, policy)).all()


BAD_CURVATURES = [
    (-1.0, ValueError),
    (0.0, ValueError),
    (float("inf"), ValueError),
    (float("nan"), ValueError),
    (torch.tensor(-1.0), ValueError),
    (torch.tensor(0.0), ValueError),
    (torch.tensor(float("nan")), ValueError),
    (torch.tensor(float("inf")), ValueError),
    (torch.tensor([1.0]), ValueError),
    (True, TypeError),
    ("1", TypeError),
    (None, TypeError),
    (1 + 0j, TypeError),
    (torch.tensor(1), TypeError),
    (torch.tensor(1 + 0j), TypeError),
]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_bad_curvature_is_refused_in_every_policy(name: str, policy: str) -> None:
    for c, error in BAD_CURVATURES:
        with pytest.raises(error, match=r"^c: "):
            _call(name, policy, c=c)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_complex_and_integer_operands_are_refused(name: str, policy: str) -> None:
    for dtype in (torch.complex64, torch.int64, torch.int32, torch.bool):
        for operand in OPERANDS[name]:
            bad = CALLS[name][1][operand].to(dtype)
            with pytest.raises(TypeError, match=rf"^{operand}: expected a real floating-point"):
                _call(name, policy, **{operand: bad})


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_0d_and_empty_vector_operands_are_refused(name: str, policy: str) -> None:
    for operand in OPERANDS[name]:
        with pytest.raises(ValueError, match=rf"^{operand}: "):
            _call(name, policy, **{operand: torch.tensor(0.1)})
        shape = (*CALLS[name][1][operand].shape[:-1], 0)
        with pytest.raises(ValueError, match=rf"^{operand}: "):
            _call(name, policy, **{operand: torch.zeros(shape)})


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", sorted(n for n in CALLS if len(OPERANDS[n]) > 1))
def test_mismatched_vector_axes_are_refused(name: str, policy: str) -> None:
    last = OPERANDS[name][-1]
    wrong = torch.full((*CALLS[name][1][last].shape[:-1], 5), 0.1)
    with pytest.raises(ValueError, match=r"^\w+: "):
        _call(name, policy, **{last: wrong})


@pytest.mark.parametrize("policy", POLICIES)
def test_leading_axes_that_do_not_broadcast_are_refused(policy: str) -> None:
    with pytest.raises(ValueError, match=r"^y: leading axes do not broadcast"):
        ops.mobius_add(_x(2, 3), _x(4, 3), c=1.0, policy=policy)
    with pytest.raises(ValueError, match=r"^r: shape"):
        ops.mobius_scalar_mul(_x(4), _x(2, 3), c=1.0, policy=policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_one_dimensional_matrix_is_refused(policy: str) -> None:
    """It used to return shape (1, 1)."""
    with pytest.raises(ValueError, match=r"^m: expected a matrix"):
        ops.mobius_matvec(_x(3), _x(2, 3), c=1.0, policy=policy)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("r", [True, "2", None])
def test_a_non_numeric_scalar_is_refused(policy: str, r: Any) -> None:
    with pytest.raises(TypeError, match=r"^r: "):
        ops.mobius_scalar_mul(r, _x(2, 3), c=1.0, policy=policy)


def test_an_integer_point_no_longer_falls_through_to_the_train_policy() -> None:
    """``logmap0`` of an integer point on the boundary used to return 15.25."""
    with pytest.raises(TypeError, match=r"^x: "):
        ops.logmap0(torch.tensor([1, 0]), c=1.0)


def test_a_learnable_curvature_keeps_its_gradient() -> None:
    c = torch.tensor(0.5, requires_grad=True)
    ops.dist0(_x(2, 3), c=c, policy="train").sum().backward()
    assert c.grad is not None and torch.isfinite(c.grad)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_curvature_is_checked_by_a_device_assert() -> None:
    x = _x(2, 3).cuda()
    ops.dist0(x, c=torch.tensor(0.5, device="cuda"), policy="train")  # no error, no sync
    with pytest.raises(RuntimeError, match="c: curvature must be positive and finite"):
        ops.dist0(x, c=torch.tensor(-1.0, device="cuda"), policy="train")
        torch.cuda.synchronize()
