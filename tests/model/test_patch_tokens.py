"""``projector.patch_tokens``: the projector reads layer 0 beside ``feature_layer``."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hyperet.config import preset
from hyperet.model import MLLM

NANO = preset("nano")
VOCAB = 30


def _config(feature_layer: int, patch_tokens: bool = True):
    projector = dataclasses.replace(
        NANO.projector, feature_layer=feature_layer, patch_tokens=patch_tokens
    )
    return dataclasses.replace(NANO, projector=projector)


def _images(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    size = NANO.data.image_size
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def test_one_pass_gives_every_layer_of_forward() -> None:
    torch.manual_seed(0)
    vit = MLLM(NANO, vocab_size=VOCAB).eval().vision
    images = _images(3)
    every = (-1, *range(len(vit.blocks) + 1))
    got = vit.layers(images, every)
    for layer, tokens in zip(every, got, strict=True):
        assert torch.equal(tokens, vit(images, layer=layer))
    with pytest.raises(ValueError, match=r"^layer"):
        vit.layers(images, (0, len(vit.blocks) + 1))


@pytest.mark.parametrize("feature_layer", [-1, 0, 1])
def test_visual_features_are_feature_layer_then_patch_tokens(feature_layer: int) -> None:
    torch.manual_seed(0)
    model = MLLM(_config(feature_layer), vocab_size=VOCAB).eval()
    images = _images(2)
    features = model.visual_features(images)
    width = NANO.vision.width
    assert features.shape == (2, model.vision.num_tokens, 2 * width)
    assert torch.equal(features[..., :width], model.vision(images, layer=feature_layer))
    assert torch.equal(features[..., width:], model.vision(images, layer=0))
    # the projector reads both halves: changing the patch half changes its output
    other = features.clone()
    other[..., width:] += 1.0
    assert not torch.allclose(model.projector(features), model.projector(other))


def test_without_patch_tokens_the_features_are_one_layer() -> None:
    torch.manual_seed(0)
    model = MLLM(_config(1, patch_tokens=False), vocab_size=VOCAB).eval()
    images = _images(2)
    assert torch.equal(model.visual_features(images), model.vision(images, layer=1))


def test_itc_objectives_refuse_patch_tokens() -> None:
    with pytest.raises(ValueError, match=r"^projector\.patch_tokens"):
        dataclasses.replace(
            _config(-1), train=dataclasses.replace(NANO.train, objective="hyperbolic-itc")
        )
