"""Euclidean baselines on q / v rows, graded against dense matrices built by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hyperet.nn import apply_baseline, apply_hyperet, baseline_parameter_count

E, HEADS = 12, 3


def attention_blocks(seed: int = 0, n: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    return nn.ModuleList(
        nn.MultiheadAttention(E, HEADS, batch_first=True, dtype=torch.float64) for _ in range(n)
    )


def perturb(params: list[nn.Parameter], seed: int = 1) -> None:
    """Move every adapter parameter off its identity initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def dense_expected(kind: str, base: torch.Tensor, maps: nn.ModuleDict, role: str) -> torch.Tensor:
    """The adapted block from dense matrices, element by element (no adapter code path)."""
    m = maps[role]
    if kind == "structured":
        dense = m.matrix.dense()  # (E, E) from its own loop-built layout
        out = torch.zeros_like(base)
        for i in range(E):
            for j in range(E):
                out[i, j] = sum(base[i, t] * dense[j, t] for t in range(E))  # (A M^T)_ij
        return out
    if kind == "ia3":
        return torch.stack([m.scale[i] * base[i] for i in range(E)])
    return base + torch.einsum("ir,rj->ij", m.up, m.down)  # A + B C (scale 1)


@pytest.mark.parametrize(
    ("kind", "structure"),
    [("structured", "diagonal"), ("structured", "block"), ("structured", "banded"),
     ("ia3", "diagonal"), ("lora", "diagonal")],
)  # fmt: skip
def test_adapted_weight_and_forward_match_dense(kind: str, structure: str) -> None:
    model = attention_blocks()
    originals = [m.in_proj_weight.detach().clone() for m in model]
    params = apply_baseline(model, kind, structure=structure, block_size=3, bandwidth=2, rank=2)
    perturb(params)
    x = torch.randn(2, 5, E, dtype=torch.float64)
    for module, original in zip(model, originals, strict=True):
        maps = module.parametrizations.in_proj_weight[0].maps
        q, k, v = original.split(E)
        want = torch.cat(
            [dense_expected(kind, q, maps, "q"), k, dense_expected(kind, v, maps, "v")]
        )
        torch.testing.assert_close(module.in_proj_weight, want, rtol=1e-12, atol=1e-12)
        out = module(x, x, x, need_weights=False)[0]
        ref = F.multi_head_attention_forward(
            x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), E, HEADS, want,
            module.in_proj_bias, None, None, False, 0.0, module.out_proj.weight,
            module.out_proj.bias, need_weights=False,
        )[0].transpose(0, 1)  # fmt: skip
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["structured", "ia3", "lora"])
def test_starts_at_identity_and_only_adapters_get_gradients(kind: str) -> None:
    model = attention_blocks()
    before = [m.in_proj_weight.detach().clone() for m in model]
    params = apply_baseline(model, kind, structure="banded")
    for m, w in zip(model, before, strict=True):
        assert torch.equal(m.in_proj_weight, w)  # identity at init, bitwise
    x = torch.randn(1, 4, E, dtype=torch.float64)
    loss = sum(m(x, x, x)[0].square().sum() for m in model)
    loss.backward()
    for m in model:
        assert m.parametrizations.in_proj_weight.original.grad is None  # frozen base
    assert all(p.grad is not None for p in params if p.requires_grad)
    # LoRA at init: B = 0, so only B gets a gradient (dL/dC = B^T dL/dW = 0)
    if kind == "lora":
        assert any(p.grad.abs().sum() > 0 for p in params)


def test_structured_equals_hra_literal_chain_in_float64() -> None:
    """The identity log0(M (x) exp0(a)) = M a: HRA through the hyperbolic chain on weight rows
    equals the Euclidean structured adapter with the same matrix."""
    euclid, hyper = attention_blocks(seed=3), attention_blocks(seed=3)
    p_e = apply_baseline(euclid, "structured", structure="block", block_size=4)
    p_h = apply_hyperet(hyper, structure="block", block_size=4, mode="literal", policy="exact")
    perturb(p_e, seed=5)
    perturb(p_h, seed=5)
    for a, b in zip(euclid, hyper, strict=True):
        torch.testing.assert_close(a.in_proj_weight, b.in_proj_weight, rtol=1e-12, atol=1e-12)


def test_lora_draws_from_its_own_generator() -> None:
    model = attention_blocks()
    state = torch.get_rng_state()
    a = apply_baseline(model, "lora", rank=3, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    b = apply_baseline(attention_blocks(), "lora", rank=3, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    downs = [p for p in a if p.shape == (3, E)]
    assert not torch.equal(downs[0], downs[1])  # each adapter its own draw
    assert max(float(d.detach().abs().max()) for d in downs) <= E**-0.5


def test_parameter_counts_match_the_modules() -> None:
    for kind, kwargs in [
        ("ia3", {}),
        ("lora", {"rank": 2}),
        ("structured", {"structure": "banded", "bandwidth": 2}),
        ("structured", {"structure": "block", "block_size": 4}),
    ]:
        model = attention_blocks(n=1)
        params = apply_baseline(model, kind, **kwargs)
        stored = sum(p.numel() for p in params)
        k = kwargs.get("bandwidth", 0) if kwargs.get("structure") == "banded" else 0
        assert baseline_parameter_count(kind, E, **kwargs) * 2 == stored - 2 * k * (k + 1)
    assert baseline_parameter_count("structured", 128, structure="banded") == 5 * 128 - 6


def test_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kind"):
        apply_baseline(attention_blocks(), "dora")
    with pytest.raises(ValueError, match="targets"):
        apply_baseline(attention_blocks(), "ia3", targets=("q", "q"))
    with pytest.raises(ValueError, match="packed"):
        apply_baseline(nn.Linear(3, 3), "ia3")
    model = attention_blocks()
    apply_baseline(model, "ia3")
    with pytest.raises(ValueError, match="already parametrized"):
        apply_baseline(model, "lora")
