"""Bad inputs to the library entry points of issue 17: the oracle's golden and results files,
adapter files, and the eval split that ``--limit`` generates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hyperet.data import build_split
from hyperet.nn import AdapterCheckpointError, apply_hyperet, load_adapters, save_adapters
from hyperet.oracle.files import read_golden_file, write_safetensors
from hyperet.oracle.golden import export_golden

from .conftest import assert_refused, read_tensors, resign, run_cli

OPS = ("dist0",)


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("golden")
    export_golden(root, ops=OPS)
    return root / "float64"


def _results(golden: Path, tmp: Path) -> Path:
    out = tmp / "results.safetensors"
    assert run_cli("oracle", "results", golden, out).exit_code == 0
    return out


def _tamper(golden: Path, tmp: Path, name: str, value: np.ndarray) -> Path:
    damaged = tmp / "damaged"
    shutil.copytree(golden, damaged)
    path = damaged / "dist0.safetensors"
    g = read_golden_file(path)
    tensors = {**g.inputs, "expected": g.expected, "family": g.family, "allowance": g.allowance}
    tensors[name] = value
    write_safetensors(path, tensors, g.metadata)
    return damaged


@pytest.mark.parametrize(
    ("name", "make", "needle"),
    [
        ("expected", lambda g: g.expected.astype(np.int32), "must be float64"),
        (
            "expected",
            lambda g: np.where(np.arange(g.expected.size) == 0, np.nan, g.expected.ravel()).reshape(
                g.expected.shape
            ),
            "NaN or inf",
        ),
        ("allowance", lambda g: np.zeros_like(g.allowance), ">= 1"),
    ],
)
def test_a_golden_file_with_bad_expected_values_is_refused(
    name: str, make, needle: str, golden: Path, tmp_path: Path
) -> None:
    results = _results(golden, tmp_path)
    damaged = _tamper(golden, tmp_path, name, make(read_golden_file(golden / "dist0.safetensors")))
    assert_refused(run_cli("oracle", "grade", damaged, results), f"'{name}'", needle)


def test_oracle_results_into_a_missing_directory_is_refused(golden: Path, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.safetensors"
    assert_refused(run_cli("oracle", "results", golden, target), "does not exist")
    assert not (tmp_path / "missing").exists()


def test_oracle_results_of_an_integer_dtype_are_refused(golden: Path, tmp_path: Path) -> None:
    path = _results(golden, tmp_path)
    tensors, metadata = read_tensors(path)
    resign(path, {k: v.to(torch.int64) for k, v in tensors.items()}, metadata)
    assert_refused(run_cli("oracle", "grade", golden, path), "dtype I64")


# ----------------------------------------------------------------------------- adapters
def _model() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.Module()
    layer.q = nn.Linear(8, 8)
    layer.v = nn.Linear(8, 8)
    root = nn.Module()
    root.layers = nn.ModuleList([layer])
    return root


def _adapted() -> nn.Module:
    model = _model()
    apply_hyperet(model, structure="diagonal", targets=("q", "v"))
    return model


def test_adapter_metadata_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = save_adapters(_adapted(), tmp_path / "a.safetensors")
    tensors, metadata = read_tensors(path)
    resign(path, tensors, {**metadata, "adapters": json.dumps([])})
    with pytest.raises(AdapterCheckpointError, match="must map adapter keys"):
        load_adapters(_adapted(), path)


def test_an_adapter_of_another_dtype_is_refused_not_cast(tmp_path: Path) -> None:
    path = save_adapters(_adapted(), tmp_path / "a.safetensors")
    tensors, metadata = read_tensors(path)
    resign(path, {k: v.half() for k, v in tensors.items()}, metadata)
    with pytest.raises(AdapterCheckpointError, match=r"dtype torch\.float16 in the file"):
        load_adapters(_adapted(), path)


def test_a_flipped_bit_in_an_adapter_file_is_detected(tmp_path: Path) -> None:
    path = save_adapters(_adapted(), tmp_path / "a.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(AdapterCheckpointError, match="content digest mismatch"):
        load_adapters(_adapted(), path)


# ----------------------------------------------------------------------------- eval --limit
def test_the_first_scenes_of_a_split_do_not_depend_on_its_size() -> None:
    """Why ``eval --limit k`` may generate only k scenes (a huge test_scenes no longer hangs)."""
    small, large = (build_split("test", n_scenes=n, seed=3, image_size=16) for n in (5, 12))
    assert np.array_equal(small.images, large.images[:5])
    assert small.captions == {k: v[:5] for k, v in large.captions.items()}
    assert small.qa == [(i, qa) for i, qa in large.qa if i < 5]
    assert small.mc == [(i, mc) for i, mc in large.mc if i < 5]
