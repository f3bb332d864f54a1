"""Adapter checkpoints: round trip, metadata, atomic writes and every error path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import hyperet
from hyperet.nn import (
    AdapterCheckpointError,
    adapter_sites,
    apply_hyperet,
    load_adapters,
    merge_hyperet,
    save_adapters,
    unmerge_hyperet,
)


def _model(width: int = 16) -> nn.Module:
    torch.manual_seed(0)
    return nn.TransformerEncoder(
        nn.TransformerEncoderLayer(width, 4, 32, dropout=0.0, batch_first=True),
        num_layers=2,
        enable_nested_tensor=False,
    )


def _adapted(structure: str = "block", **kwargs: object) -> nn.Module:
    model = _model()
    params = apply_hyperet(model, structure=structure, **kwargs)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in params:
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize("structure", ["diagonal", "block", "banded"])
@pytest.mark.parametrize("target", ["weight_rows", "activations"])
def test_round_trip_restores_outputs_and_metadata(
    tmp_path: Path, structure: str, target: str
) -> None:
    source = _adapted(structure, target=target, learn_curvature=True)
    x = torch.randn(2, 5, 16)
    expected = source(x)
    path = save_adapters(source, tmp_path / "sub" / "adapters.safetensors")
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["adapters.safetensors"]  # no temp left

    fresh = _model()
    apply_hyperet(fresh, structure=structure, target=target, learn_curvature=True)
    assert not torch.equal(fresh(x), expected)
    metadata = load_adapters(fresh, path)
    assert torch.equal(fresh(x), expected)
    assert metadata["format"] == "hyperet-adapters"
    assert metadata["format_version"] == "1"
    assert metadata["package_version"] == hyperet.__version__
    assert metadata["structure"] == structure
    assert metadata["size"] == {"diagonal": "", "block": "4", "banded": "2"}[structure]
    assert metadata["target"] == target
    assert metadata["targets"] == "q,v"
    assert metadata["mode"] == "fast"
    assert metadata["c"] == "mixed"  # each adapter learned its own c
    described = json.loads(metadata["adapters"])
    sites = adapter_sites(fresh)
    assert sorted(described) == sorted(s.key for s in sites)
    for site in sites:
        assert described[site.key]["c"] == site.adapter.c_value != 0.01


def test_keys_are_stable_across_merge(tmp_path: Path) -> None:
    model = _adapted()
    unmerged_keys = [s.key for s in adapter_sites(model)]
    merge_hyperet(model)
    assert [s.key for s in adapter_sites(model)] == unmerged_keys
    path = save_adapters(model, tmp_path / "merged.safetensors")  # a merged model saves too
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata()["c"] == "0.01"
    fresh = _model()
    apply_hyperet(fresh, structure="block")
    load_adapters(fresh, tmp_path / "merged.safetensors")
    unmerge_hyperet(model)
    x = torch.randn(1, 3, 16)
    assert torch.equal(fresh(x), model(x))
    merge_hyperet(fresh)
    with pytest.raises(AdapterCheckpointError, match=r"^model: adapters are merged"):
        load_adapters(fresh, tmp_path / "merged.safetensors")


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path: Path) -> None:
    path = save_adapters(_adapted(), tmp_path / "a.safetensors")
    one_layer = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 1, enable_nested_tensor=False
    )
    apply_hyperet(one_layer, structure="block")
    with pytest.raises(AdapterCheckpointError, match=r"unexpected keys: layers\.1\.self_attn\.q"):
        load_adapters(one_layer, path)

    only_q = _model()
    apply_hyperet(only_q, structure="block", targets=("q", "k", "v"))
    with pytest.raises(AdapterCheckpointError, match=r"missing keys: layers\.0\.self_attn\.k"):
        load_adapters(only_q, path)

    tensors = {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        for key in handle.keys():
            tensors[key] = handle.get_tensor(key)
    key = "layers.0.self_attn.q.matrix.blocks"
    tensors[key] = tensors[key][:2]
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=metadata)
    target = _model()
    apply_hyperet(target, structure="block")
    with pytest.raises(AdapterCheckpointError, match=r"q\.matrix\.blocks: shape \(2, 4, 4\)"):
        load_adapters(target, tmp_path / "bad.safetensors")


@pytest.mark.parametrize("name", ["a.safetensors", "adapter_dir"])
def test_structure_and_curvature_mismatch_are_named(tmp_path: Path, name: str) -> None:
    path = save_adapters(_adapted("block"), tmp_path / name)  # single file, directory
    diagonal = _model()
    apply_hyperet(diagonal, structure="diagonal")
    with pytest.raises(AdapterCheckpointError, match=r"structure is 'block' in the file"):
        load_adapters(diagonal, path)
    other_c = _model()
    apply_hyperet(other_c, structure="block", c=0.1)
    with pytest.raises(AdapterCheckpointError, match=r"c is 0\.01 in the file, 0\.1 in the model"):
        load_adapters(other_c, path)


def test_corrupt_missing_and_foreign_files(tmp_path: Path) -> None:
    model = _model()
    apply_hyperet(model, structure="diagonal")
    with pytest.raises(AdapterCheckpointError, match=r"^path: no adapter file"):
        load_adapters(model, tmp_path / "absent.safetensors")

    good = save_adapters(_adapted("diagonal"), tmp_path / "good.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(AdapterCheckpointError, match=r"^path: .* is not a readable safetensors"):
        load_adapters(model, corrupt)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(AdapterCheckpointError, match=r"^path: .* is not a readable safetensors"):
        load_adapters(model, garbage)

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(3)}, str(foreign), metadata={"format": "other"})
    with pytest.raises(AdapterCheckpointError, match=r"is not a hyperet adapter file"):
        load_adapters(model, foreign)
    future = tmp_path / "future.safetensors"
    save_file(
        {"w": torch.ones(3)},
        str(future),
        metadata={"format": "hyperet-adapters", "format_version": "99"},
    )
    with pytest.raises(AdapterCheckpointError, match=r"format version '99' is not supported"):
        load_adapters(model, future)
    assert issubclass(AdapterCheckpointError, ValueError)


def test_no_adapters_and_non_finite_values(tmp_path: Path) -> None:
    with pytest.raises(AdapterCheckpointError, match=r"^model: carries no HRA adapters"):
        save_adapters(_model(), tmp_path / "x.safetensors")
    path = save_adapters(_adapted("diagonal"), tmp_path / "a.safetensors")
    with pytest.raises(AdapterCheckpointError, match=r"^model: carries no HRA adapters"):
        load_adapters(_model(), path)
    broken = _adapted("diagonal")
    with torch.no_grad():
        adapter_sites(broken)[0].adapter.matrix.w[0] = float("nan")
    with pytest.raises(AdapterCheckpointError, match=r"is not finite"):
        save_adapters(broken, tmp_path / "nan.safetensors")
    assert not (tmp_path / "nan.safetensors").exists()


def test_failed_write_leaves_previous_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_adapters(_adapted("diagonal"), tmp_path / "a.safetensors")
    before = path.read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("hyperet.nn.adapter_io.save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        save_adapters(_adapted("banded"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]
