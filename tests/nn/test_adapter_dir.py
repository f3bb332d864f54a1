"""The adapter directory (PEFT's layout): round trip, the config, the frozen base, every error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import hyperet
from hyperet.nn import (
    AdapterCheckpointError,
    HyperETConfig,
    adapted_module_names,
    adapter_sites,
    apply_hyperet,
    count_parameters,
    load_adapters,
    save_adapters,
)
from hyperet.nn.adapter_config import CONFIG_NAME, WEIGHTS_NAME


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True),
        num_layers=2,
        enable_nested_tensor=False,
    )


def _trained(config: HyperETConfig) -> nn.Module:
    model = _model()
    params = config.apply(model)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in params:
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize(
    "config",
    [
        HyperETConfig(structure="diagonal"),
        HyperETConfig(structure="block", block_size=2, target="activations"),
        HyperETConfig(structure="banded", bandwidth=1, targets=("q", "k", "v"), c=0.1),
        HyperETConfig(structure="diagonal", learn_curvature=True, mode="literal"),
    ],
    ids=["diagonal", "block-activations", "banded-qkv", "learned-c"],
)
def test_directory_round_trip_from_the_config_alone(tmp_path: Path, config: HyperETConfig) -> None:
    source = _trained(config)
    x = torch.randn(2, 5, 16)
    expected = source(x)
    out = save_adapters(source, tmp_path / "adapter")
    assert out == tmp_path / "adapter"
    assert sorted(p.name for p in out.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]  # no temp left

    stored = json.loads((out / CONFIG_NAME).read_text())
    assert stored["method"] == "hyperet" and stored["format_version"] == "2"
    assert stored["package_version"] == hyperet.__version__
    assert stored["structure"] == config.structure and stored["target"] == config.target
    assert stored["targets"] == list(config.targets)
    assert stored["modules"] == adapted_module_names(source)
    assert sorted(stored["adapters"]) == sorted(s.key for s in adapter_sites(source))

    # a new user: the directory alone rebuilds the adapters, then loads them bitwise
    fresh = _model()
    params = HyperETConfig.from_pretrained(out).apply(fresh)
    assert not torch.equal(fresh(x), expected)
    metadata = load_adapters(fresh, out)
    assert metadata["structure"] == config.structure
    assert torch.equal(fresh(x), expected)
    report = count_parameters(fresh)  # PEFT-style: only the adapters train
    assert report.trainable == report.adapter > 0
    assert {id(p) for p in fresh.parameters() if p.requires_grad} == {id(p) for p in params}


def test_matched_module_names_are_the_matching_rule() -> None:
    model = _model()
    apply_hyperet(model, structure="diagonal")
    assert adapted_module_names(model) == ["layers.0.self_attn", "layers.1.self_attn"]
    assert HyperETConfig.from_model(model).modules == ("layers.0.self_attn", "layers.1.self_attn")


def test_config_dict_round_trip_and_unknown_fields() -> None:
    config = HyperETConfig(structure="block", targets=("v",), modules=("a.b",), policy="train")
    assert HyperETConfig.from_dict(config.to_dict()) == config
    assert HyperETConfig.from_dict({**config.to_dict(), "format": "x"}) == config
    with pytest.raises(ValueError, match="structure"):
        HyperETConfig.from_dict({"c": 0.1})


def test_mismatches_and_damaged_directories_raise_clear_errors(tmp_path: Path) -> None:
    out = save_adapters(_trained(HyperETConfig(structure="block")), tmp_path / "a")

    target = _model()
    apply_hyperet(target, structure="block")
    config = json.loads((out / CONFIG_NAME).read_text())
    (out / CONFIG_NAME).write_text(json.dumps({**config, "method": "hra"}))
    with pytest.raises(AdapterCheckpointError, match=r"not a HyperET adapter config.*'hra'"):
        load_adapters(target, out)
    with pytest.raises(ValueError, match="not a HyperET adapter config"):
        HyperETConfig.from_pretrained(out)
    (out / CONFIG_NAME).write_text(json.dumps({"peft_type": "HRA", "r": 8}))
    with pytest.raises(
        AdapterCheckpointError, match=r"is a PEFT adapter config \(peft_type 'HRA'\)"
    ):
        load_adapters(target, out)
    (out / CONFIG_NAME).write_text(json.dumps({**config, "format_version": "9"}))
    with pytest.raises(AdapterCheckpointError, match=r"format version '9' is not supported"):
        load_adapters(target, out)
    (out / CONFIG_NAME).write_text("{not json")
    with pytest.raises(AdapterCheckpointError, match="is not valid JSON"):
        load_adapters(target, out)
    (out / CONFIG_NAME).write_text(json.dumps(config))
    (out / WEIGHTS_NAME).write_bytes(b"garbage")
    with pytest.raises(AdapterCheckpointError, match="not a readable safetensors file"):
        load_adapters(target, out)
    (out / WEIGHTS_NAME).unlink()
    with pytest.raises(AdapterCheckpointError, match=f"has no {WEIGHTS_NAME}"):
        load_adapters(target, out)
    with pytest.raises(ValueError, match=f"no {CONFIG_NAME}"):
        HyperETConfig.from_pretrained(tmp_path)

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(AdapterCheckpointError, match="exists and is not a directory"):
        save_adapters(target, a_file)
    with pytest.raises(AdapterCheckpointError, match="carries no HRA adapters"):
        save_adapters(_model(), tmp_path / "none")


def test_single_file_format_is_still_written_and_read(tmp_path: Path) -> None:
    source = _trained(HyperETConfig(structure="banded"))
    path = save_adapters(source, tmp_path / "legacy.safetensors")
    assert path.is_file()
    fresh = _model()
    apply_hyperet(fresh, structure="banded")
    assert load_adapters(fresh, path)["format_version"] == "1"
    x = torch.randn(1, 3, 16)
    assert torch.equal(fresh(x), source(x))


def test_directory_weights_are_digested_and_configs_read_strictly(tmp_path: Path) -> None:
    """The weights file carries a content digest (a flipped bit is caught); a damaged or
    duplicated-key config is refused by from_pretrained with the file named, not a traceback."""
    out = save_adapters(_trained(HyperETConfig(structure="diagonal")), tmp_path / "a")
    target = _model()
    apply_hyperet(target, structure="diagonal")
    data = bytearray((out / WEIGHTS_NAME).read_bytes())
    data[-3] ^= 0x10
    (out / WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(AdapterCheckpointError, match="content digest mismatch"):
        load_adapters(target, out)
    (out / CONFIG_NAME).write_text('{"method": "hyperet", "method": "hyperet"}')
    with pytest.raises(AdapterCheckpointError, match=f"{CONFIG_NAME}' is not valid JSON.*dupl"):
        HyperETConfig.from_pretrained(out)
    (out / CONFIG_NAME).write_text("{not json")
    with pytest.raises(AdapterCheckpointError, match="is not valid JSON"):
        HyperETConfig.from_pretrained(out)
