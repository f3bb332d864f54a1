"""HyperET on Hugging Face ``transformers`` models (tiny random configs, nothing downloaded).

CLIP's and SigLIP's vision towers (separate ``q_proj`` / ``v_proj`` Linear layers) and the vision
tower inside ``LlavaForConditionalGeneration``: the automatic matching rule, identity at
initialisation, a frozen base (trainable = the adapters), gradients, merge / unmerge bitwise and
the adapter directory round trip. Skipped without ``transformers`` (``pip install hyperet[hf]``;
``nox -s hf``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from hyperet.nn import (  # noqa: E402  (after the importorskip)
    HyperETConfig,
    adapted_module_names,
    adapter_sites,
    apply_hyperet,
    count_parameters,
    load_adapters,
    merge_hyperet,
    save_adapters,
    unmerge_hyperet,
)

WIDTH, LAYERS, IMAGE, PATCH = 64, 3, 32, 8


#: A tiny vision tower: the same sizes for CLIP and SigLIP.
TOWER = {
    "hidden_size": WIDTH,
    "intermediate_size": 2 * WIDTH,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": 4,
    "image_size": IMAGE,
    "patch_size": PATCH,
}


def _clip_vision_config() -> object:
    return transformers.CLIPVisionConfig(**TOWER)


def _clip() -> nn.Module:
    torch.manual_seed(0)
    return transformers.CLIPVisionModel(_clip_vision_config()).eval()


def _siglip() -> nn.Module:
    torch.manual_seed(0)
    return transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**TOWER)).eval()


IMAGE_TOKEN = 99
#: CLIP's default LLaVA feature selection drops the CLS token: one token per patch.
IMAGE_TOKENS = (IMAGE // PATCH) ** 2


def _llava() -> nn.Module:
    torch.manual_seed(0)
    text = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    config = transformers.LlavaConfig(
        vision_config=_clip_vision_config(),
        text_config=text,
        image_token_index=IMAGE_TOKEN,
        vision_feature_layer=-1,
    )
    return transformers.LlavaForConditionalGeneration(config).eval()


def _pixels() -> torch.Tensor:
    return torch.randn(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))


def _vision_out(model: nn.Module) -> torch.Tensor:
    out = model(pixel_values=_pixels())  # tokens (B, N, WIDTH), pooled (B, WIDTH)
    return torch.cat([out.last_hidden_state.flatten(1), out.pooler_output], dim=1)


def _llava_out(model: nn.Module) -> torch.Tensor:
    ids = torch.tensor([[1, *[IMAGE_TOKEN] * IMAGE_TOKENS, 5, 6, 7]] * 2)  # (B, T)
    return model(input_ids=ids, pixel_values=_pixels()).logits  # (B, T, vocab)


def _vision_tower_name(model: nn.Module) -> str:
    """Where the LLaVA class keeps its CLIP tower (``model.vision_tower`` in transformers 5)."""
    (name,) = [n for n, m in model.named_modules() if isinstance(m, transformers.CLIPVisionModel)]
    return name


CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module], torch.Tensor]]] = {
    "clip": (_clip, _vision_out),
    "siglip": (_siglip, _vision_out),
    "llava": (_llava, _llava_out),
}


def _apply(name: str, model: nn.Module, **kwargs: object) -> list[nn.Parameter]:
    if name == "llava":
        kwargs["within"] = _vision_tower_name(model)
    return apply_hyperet(model, **kwargs)  # type: ignore[arg-type]


def _expected_names(name: str, model: nn.Module) -> list[str]:
    """Every encoder layer's q_proj and v_proj (found by name, not by the matching rule)."""
    names = [
        n for n, _ in model.named_modules() if n.endswith(("self_attn.q_proj", "self_attn.v_proj"))
    ]
    if name == "llava":  # the language model's projections are not the vision tower's
        names = [n for n in names if n.startswith(_vision_tower_name(model) + ".")]
    assert len(names) == 2 * LAYERS
    if name == "siglip":  # the attention-pooling head is an nn.MultiheadAttention: matched too
        (head,) = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
        names.append(head)
    return sorted(names)


def _perturb(params: list[nn.Parameter]) -> None:
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in params:
            p.add_(0.1 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("target", ["weight_rows", "activations"])
@pytest.mark.parametrize("name", list(CASES))
def test_matching_identity_frozen_base_and_gradients(name: str, target: str) -> None:
    build, forward = CASES[name]
    model = build()
    before, expected_names = forward(model), _expected_names(name, model)
    params = _apply(name, model, structure="diagonal", target=target)
    assert adapted_module_names(model) == expected_names
    assert torch.equal(forward(model), before)  # identity at initialisation, bitwise

    report = count_parameters(model)
    assert report.trainable == report.adapter == sum(p.numel() for p in params)
    if name == "clip":  # the figure of the issue: 3 layers x (q, v) x width 64
        assert report.adapter == LAYERS * 2 * WIDTH == 384
    _perturb(params)
    forward(model).square().mean().backward()
    adapter_ids = {id(p) for p in params}
    for n, p in model.named_parameters():
        if id(p) in adapter_ids:
            assert p.grad is not None and bool(p.grad.abs().sum() > 0), n
        else:
            assert not p.requires_grad and p.grad is None, n


@pytest.mark.parametrize("target", ["weight_rows", "activations"])
@pytest.mark.parametrize("name", list(CASES))
def test_merge_matches_and_unmerge_restores_bitwise(name: str, target: str) -> None:
    build, forward = CASES[name]
    model = build()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = _apply(name, model, structure="block", target=target, block_size=4)
    _perturb(params)
    with torch.no_grad():
        adapted = forward(model)
        merged_count = merge_hyperet(model)
        assert merged_count == len(adapter_sites(model))
        merged = forward(model)
        torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-5)
        assert not torch.equal(merged, forward(build()))  # the adapters do change the model
        assert unmerge_hyperet(model) == merged_count
        merge_hyperet(model)
        unmerge_hyperet(model)  # twice: no drift
        assert torch.equal(forward(model), adapted)
        merge_hyperet(model)
    # merged: the plain module tree with the original state keys (no parametrization left)
    merged_state = {k: v for k, v in model.state_dict().items() if "hyperet_merged" not in k}
    assert sorted(merged_state) == sorted(state)
    unmerge_hyperet(model)
    restored = {_base_key(k): v for k, v in model.state_dict().items()}
    for key, value in state.items():  # every original weight restored bitwise
        assert torch.equal(restored[key], value), key


def _base_key(key: str) -> str:
    """The key a tensor had before adaptation (weight rows: parametrizations; activations: base)."""
    key = key.replace(".parametrizations.", ".").replace(".base.", ".")
    return key.removesuffix(".original")


@pytest.mark.parametrize("name", list(CASES))
def test_adapter_directory_round_trip(tmp_path: Path, name: str) -> None:
    build, forward = CASES[name]
    source = build()
    _perturb(_apply(name, source, structure="banded", bandwidth=1))
    expected = forward(source)
    out = save_adapters(source, tmp_path / "adapter")

    fresh = build()
    config = HyperETConfig.from_pretrained(out)
    assert config.modules == tuple(_expected_names(name, source))
    params = config.apply(fresh)
    load_adapters(fresh, out)
    assert torch.equal(forward(fresh), expected)
    # banded, k = 1: (2k + 1) n - k (k + 1) free entries per adapter (structural zeros stored)
    report = count_parameters(fresh)
    assert report.trainable == report.adapter == len(adapter_sites(fresh)) * (3 * WIDTH - 2)
    assert {id(p) for p in fresh.parameters() if p.requires_grad} == {id(p) for p in params}

    wrong = build()
    _apply(name, wrong, structure="diagonal")
    with pytest.raises(ValueError, match="structure is 'banded' in the file"):
        load_adapters(wrong, out)
