"""The projector's input layer (``projector.feature_layer``) and visual positions
(``projector.position``), against hand-run encoder blocks and the plain MLP."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hyperet.config import RunConfig, preset
from hyperet.model import MLLM, pixel_shuffle

NANO = preset("nano")


def _config(**projector: object) -> RunConfig:
    return dataclasses.replace(NANO, projector=dataclasses.replace(NANO.projector, **projector))


def _images(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    size = NANO.data.image_size
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _by_hand(model: MLLM, images: torch.Tensor) -> list[torch.Tensor]:
    """Residual stream after 0, 1, ..., L blocks, computed outside ``VisionEncoder.forward``."""
    v = model.vision
    x = v.conv1(images.float() / 127.5 - 1.0).flatten(2).transpose(1, 2)
    out = [v.ln_pre(x + v.positional_embedding)]
    for block in v.blocks:
        out.append(block(out[-1]))
    return out


@torch.no_grad()
def test_feature_layer_reads_the_residual_stream_after_k_blocks() -> None:
    torch.manual_seed(0)
    model = MLLM(NANO, vocab_size=30).eval()
    images = _images(3)
    stream = _by_hand(model, images)
    for k, want in enumerate(stream):
        torch.testing.assert_close(model.vision(images, layer=k), want)
    torch.testing.assert_close(model.vision(images), model.vision.ln_post(stream[-1]))
    for bad in (-2, len(stream)):
        with pytest.raises(ValueError, match="layer"):
            model.vision(images, layer=bad)


@torch.no_grad()
@pytest.mark.parametrize("layer", [-1, 0, 1])
def test_the_projector_reads_the_configured_layer(layer: int) -> None:
    torch.manual_seed(0)
    model = MLLM(_config(feature_layer=layer), vocab_size=30).eval()
    images = _images(2)
    stream = _by_hand(model, images)
    tokens = model.vision.ln_post(stream[-1]) if layer == -1 else stream[layer]
    want = model.projector.mlp(pixel_shuffle(tokens, NANO.projector.shuffle))
    torch.testing.assert_close(model.visual_prefix(images, None), want)


@torch.no_grad()
def test_visual_positions_start_at_zero_and_add_one_vector_per_token() -> None:
    torch.manual_seed(0)
    plain = MLLM(NANO, vocab_size=30).eval()
    torch.manual_seed(0)
    positioned = MLLM(_config(position=True), vocab_size=30).eval()
    pe = positioned.projector.position_embedding
    assert pe is not None and pe.shape == (NANO.num_visual_tokens, NANO.language.width)
    # the embedding is created after the MLP: every other weight is drawn identically
    plain_state = plain.state_dict()
    for name, value in positioned.state_dict().items():
        if name != "projector.position_embedding":
            assert torch.equal(value, plain_state[name]), name
    features = torch.randn(4, plain.vision.num_tokens, NANO.vision.width)
    torch.testing.assert_close(
        positioned.visual_prefix(None, features), plain.visual_prefix(None, features)
    )
    pe.copy_(torch.randn_like(pe))
    got = positioned.visual_prefix(None, features) - plain.visual_prefix(None, features)
    torch.testing.assert_close(got, pe.expand(4, -1, -1))


def test_visual_positions_get_no_weight_decay() -> None:
    from hyperet.train.engine import no_decay

    model = MLLM(_config(position=True), vocab_size=30)
    assert id(model.projector.position_embedding) in no_decay(model, [])


@pytest.mark.parametrize("layer", [-2, NANO.vision.layers + 1])
def test_config_rejects_a_feature_layer_outside_the_encoder(layer: int) -> None:
    with pytest.raises(ValueError, match=r"projector\.feature_layer"):
        _config(feature_layer=layer).validate()
