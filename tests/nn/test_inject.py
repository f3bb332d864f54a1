"""Injection of HRA into attention: which projections, frozen bases, gradients, merge/unmerge."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from hyperet.nn import (
    HRAMultiheadAttention,
    HyperbolicRadiusAdjustment,
    adapted_module_names,
    adapter_sites,
    apply_hyperet,
    count_parameters,
    merge_hyperet,
    unmerge_hyperet,
)

STRUCTURES = ("diagonal", "block", "banded")
TARGETS = ("weight_rows", "activations")


class ClipBlock(nn.Module):
    """A CLIP-style residual attention block: ln_1 -> attn -> residual, ln_2 -> MLP -> residual."""

    def __init__(self, width: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(width, 4 * width),
                gelu=nn.GELU(),
                c_proj=nn.Linear(4 * width, width),
            )
        )
        self.register_buffer("attn_mask", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=self.attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class SeparateProjections(nn.Module):
    """Attention with separate q/k/v nn.Linear layers named like HF models."""

    def __init__(self, width: int = 16, q_name: str = "q_proj", v_name: str = "v_proj") -> None:
        super().__init__()
        self.q_name, self.v_name = q_name, v_name
        setattr(self, q_name, nn.Linear(width, width))
        self.k_proj = nn.Linear(width, width)
        setattr(self, v_name, nn.Linear(width, width))
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k = getattr(self, self.q_name)(x), self.k_proj(x)
        v = getattr(self, self.v_name)(x)
        att = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1)
        return self.out(att @ v)


def _models(batch_first: bool = True) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    x_bf = torch.randn(2, 6, 16)
    return {
        "encoder_layer_bf": (
            nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True),
            x_bf,
        ),
        "encoder_layer_sf": (
            nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=False),
            x_bf.transpose(0, 1).contiguous(),
        ),
        "clip_block": (ClipBlock(), x_bf),
        "separate_linear": (SeparateProjections(), x_bf),
        "query_value_names": (SeparateProjections(q_name="query", v_name="value"), x_bf),
    }


MODEL_NAMES = tuple(_models())


def _perturb(params: list[nn.Parameter], scale: float = 0.2) -> None:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in params:
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_identity_at_init_then_gradients_reach_only_adapters(
    name: str, structure: str, target: str
) -> None:
    model, x = _models()[name]
    before = model(x)
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = apply_hyperet(model, structure=structure, target=target)
    assert len(params) == 2  # one HRA for q, one for v
    assert torch.equal(model(x), before)  # identity initialisation: bitwise here
    _perturb(params)
    model(x).square().sum().backward()
    for p in params:
        assert p.grad is not None and p.grad.abs().sum() > 0
    sites = adapter_sites(model)
    assert sorted(s.key.rsplit(".", 1)[-1] for s in sites) == ["q", "v"]
    adapter_ids = {id(p) for p in params}
    for n, p in model.named_parameters():
        if id(p) in adapter_ids:
            continue
        assert not p.requires_grad and p.grad is None, n  # the whole base is frozen
    # the frozen projection weights themselves are unchanged and frozen
    for n, p in frozen_before.items():
        if "proj" in n or "in_proj" in n:
            current = dict(model.named_parameters()).get(n)
            if current is not None:
                assert torch.equal(current, p)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_merge_matches_unmerged_and_unmerge_restores_bitwise(
    name: str, structure: str, target: str
) -> None:
    model, x = _models()[name]
    model = model.double()
    x = x.double()
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    params = apply_hyperet(model, structure=structure, target=target)
    _perturb(params)
    adapted = model(x)
    assert merge_hyperet(model) == 2
    assert not any(isinstance(m, HyperbolicRadiusAdjustment) for m in _live_modules(model))
    torch.testing.assert_close(model(x), adapted, rtol=1e-12, atol=1e-12)
    model.eval()
    with torch.no_grad():  # nn.TransformerEncoderLayer's fused inference path
        torch.testing.assert_close(model(x), adapted, rtol=1e-12, atol=1e-12)
    model.train()
    assert unmerge_hyperet(model) == 2
    assert torch.equal(model(x), adapted)
    # with the adapters reset to the identity, the model is bitwise the original
    for site in adapter_sites(model):
        site.adapter.load_state_dict(
            HyperbolicRadiusAdjustment(
                site.adapter.d, structure=structure, dtype=torch.float64
            ).state_dict()
        )
    merge_hyperet(model)
    unmerge_hyperet(model)
    merge_hyperet(model)
    for key, value in state_before.items():
        merged_value = model.state_dict()[key]
        assert torch.equal(merged_value, value), key


def _live_modules(model: nn.Module) -> list[nn.Module]:
    """Modules on the forward path (everything but the stash kept for unmerge)."""
    return [m for n, m in model.named_modules() if "hyperet_merged" not in n]


def test_encoder_layer_eval_fast_path_does_not_bypass_activation_hra() -> None:
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    params = apply_hyperet(layer, structure="diagonal", target="activations")
    assert isinstance(layer.self_attn, HRAMultiheadAttention)
    _perturb(params)
    with torch.no_grad():
        adapted = layer(x)
    layer.train()
    torch.testing.assert_close(adapted, layer(x))
    merge_hyperet(layer)
    torch.testing.assert_close(adapted, layer(x), rtol=1e-5, atol=1e-6)


def test_weight_rows_fast_mode_is_a_times_w_transpose() -> None:
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(8, 2, batch_first=True, dtype=torch.float64)
    original = attn.in_proj_weight.detach().clone()
    params = apply_hyperet(attn, structure="block", block_size=2)
    _perturb(params)
    sites = {s.key: s.adapter for s in adapter_sites(attn)}
    w_q, w_v = sites["q"].matrix.dense(), sites["v"].matrix.dense()
    expected = torch.cat([original[:8] @ w_q.T, original[8:16], original[16:] @ w_v.T])
    torch.testing.assert_close(attn.in_proj_weight, expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(
    ("structure", "kwargs", "expected"),
    [
        ("diagonal", {}, 49_152),
        ("block", {"block_size": 4}, 196_608),
        ("banded", {"bandwidth": 2}, 245_472),
    ],
)
def test_parameter_counts_at_clip_vit_l14_geometry(
    structure: str, kwargs: dict[str, int], expected: int
) -> None:
    # 24 attention blocks of width 1024 on the meta device: no memory, same shapes as CLIP ViT-L/14
    blocks = nn.ModuleList(nn.MultiheadAttention(1024, 16, device="meta") for _ in range(24))
    base = count_parameters(blocks)
    params = apply_hyperet(blocks, structure=structure, **kwargs)
    report = count_parameters(blocks)
    assert report.adapter == expected
    assert report.total == base.total + expected
    assert report.base == base.total
    # PEFT-style default: the whole base model is frozen, only the adapters train
    assert report.trainable == expected
    assert report.percent == pytest.approx(100 * expected / (base.total + expected))
    assert len(params) == 48

    # opt-out: only the q/v projections (packed in_proj weight and bias) are frozen
    opted_out = nn.ModuleList(nn.MultiheadAttention(1024, 16, device="meta") for _ in range(24))
    apply_hyperet(opted_out, structure=structure, freeze_base=False, **kwargs)
    frozen = 24 * (3 * 1024 * 1024 + 3 * 1024)
    assert count_parameters(opted_out).trainable == base.total - frozen + expected


def test_nothing_matched_raises() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"^model: no attention projection matched"):
        apply_hyperet(model, structure="diagonal")


def test_within_restricts_the_rule_and_still_freezes_everything() -> None:
    # a "vision tower" and a "language model" that both have q_proj / v_proj
    model = nn.ModuleDict({"tower": SeparateProjections(), "lm": SeparateProjections()})
    params = apply_hyperet(model, structure="diagonal", within="tower")
    assert adapted_module_names(model) == ["tower.q_proj", "tower.v_proj"]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(params) == 2 and all(n.startswith("tower.") for n in trainable)
    with pytest.raises(ValueError, match=r"^within: no submodule named 'vision'"):
        apply_hyperet(
            nn.ModuleDict({"lm": SeparateProjections()}), structure="diagonal", within="vision"
        )


def test_explicit_module_names() -> None:
    model = nn.Sequential(OrderedDict(a=nn.Linear(4, 4), act=nn.ReLU(), b=nn.Linear(4, 4)))
    params = apply_hyperet(model, structure="diagonal", modules=["b"])
    assert len(params) == 1
    assert [s.key for s in adapter_sites(model)] == ["b.proj"]
    with pytest.raises(ValueError, match=r"^modules: no submodule named 'nope'"):
        apply_hyperet(nn.Sequential(nn.Linear(4, 4)), structure="diagonal", modules=["nope"])
    with pytest.raises(ValueError, match=r"^modules: 'act' is a ReLU"):
        apply_hyperet(
            nn.Sequential(OrderedDict(act=nn.ReLU())), structure="diagonal", modules=["act"]
        )


def test_invalid_arguments_raise() -> None:
    def layer() -> nn.Module:
        return nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)

    with pytest.raises(ValueError, match=r"^targets:"):
        apply_hyperet(layer(), structure="diagonal", targets=("x",))
    with pytest.raises(ValueError, match=r"^target:"):
        apply_hyperet(layer(), structure="diagonal", target="tokens")
    with pytest.raises(ValueError, match=r"^structure:"):
        apply_hyperet(layer(), structure="dense")
    with pytest.raises(ValueError, match=r"^block_size:"):
        apply_hyperet(layer(), structure="block", block_size=3)
    twice = layer()
    apply_hyperet(twice, structure="diagonal")
    with pytest.raises(ValueError, match=r"^model: already carries HRA"):
        apply_hyperet(twice, structure="diagonal")


def test_activation_merge_refuses_nonlinear_modes() -> None:
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    apply_hyperet(layer, structure="diagonal", target="activations", mode="official")
    with pytest.raises(ValueError, match=r"^model: .* can only be merged in fast mode"):
        merge_hyperet(layer)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("structure", STRUCTURES)
def test_project_vit(structure: str, target: str) -> None:
    from hyperet.config import VisionConfig
    from hyperet.model.vision import VisionEncoder

    torch.manual_seed(0)
    config = VisionConfig(patch_size=4, width=32, layers=2, heads=4, mlp_ratio=2, embed_dim=16)
    vit = VisionEncoder(config, image_size=16).double()
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    before = vit(images)
    params = apply_hyperet(vit, structure=structure, target=target)
    assert len(params) == 2 * config.layers
    assert sorted(s.key for s in adapter_sites(vit)) == sorted(
        f"blocks.{i}.attn.{r}" for i in range(config.layers) for r in "qv"
    )
    torch.testing.assert_close(vit(images), before, rtol=1e-13, atol=1e-13)  # identity at init
    _perturb(params)
    adapted = vit(images)
    adapted.square().sum().backward()
    assert all(p.grad is not None for p in params)
    merge_hyperet(vit)
    torch.testing.assert_close(vit(images), adapted, rtol=1e-12, atol=1e-12)
    unmerge_hyperet(vit)
    assert torch.equal(vit(images), adapted)
    report = count_parameters(vit)
    assert (
        report.adapter
        == 2 * config.layers * {"diagonal": 32, "block": 128, "banded": 154}[structure]
    )
