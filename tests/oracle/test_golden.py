"""Golden vectors: deterministic bytes, a readable format, and values checked independently."""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from hyperet import reference
from hyperet.oracle import contract, exact
from hyperet.oracle.files import read_golden_file, write_safetensors
from hyperet.oracle.golden import LEGEND, export_golden
from hyperet.oracle.ulp import ulp_error

OPS = ("mobius_add", "banded_matvec", "hra_block")


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("golden")
    export_golden(root, ops=OPS)
    return root


def test_export_is_byte_identical(golden: Path, tmp_path: Path) -> None:
    export_golden(tmp_path, ops=OPS)
    for tier in ("float64", "float32"):
        for op in OPS:
            first = (golden / tier / f"{op}.safetensors").read_bytes()
            assert first == (tmp_path / tier / f"{op}.safetensors").read_bytes(), (tier, op)


def test_writer_is_read_back_by_the_safetensors_package(tmp_path: Path) -> None:
    tensors = {
        "b": np.arange(6, dtype=np.float64).reshape(2, 3),
        "a": np.array([1.5, -2.0], dtype=np.float32),
        "n": np.array([3, 4], dtype=np.int32),
    }
    path = tmp_path / "t.safetensors"
    write_safetensors(path, tensors, {"z": "last", "a": "first"})
    loaded = load_file(str(path))
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded[name], value)
    with safe_open(str(path), framework="numpy") as handle:
        assert handle.metadata() == {"z": "last", "a": "first"}


@pytest.mark.parametrize("tier", ["float64", "float32"])
def test_file_layout_and_metadata(golden: Path, tier: str) -> None:
    path = golden / tier / "banded_matvec.safetensors"
    raw = load_file(str(path))
    with safe_open(str(path), framework="numpy") as handle:
        meta = handle.metadata()
    n = raw["c"].shape[0]
    assert n > 100
    assert raw["bands"].shape == (n, 5, 8) and raw["x"].shape == (n, 8)
    assert raw["bands"].dtype == raw["x"].dtype == raw["c"].dtype == np.dtype(tier)
    assert raw["expected"].dtype == np.float64 and raw["expected"].shape == (n, 8)
    assert raw["family"].dtype == np.int32 and raw["allowance"].dtype == np.float64
    assert (raw["c"] > 0).all()
    assert meta["op"] == "banded_matvec" and meta["tier"] == tier
    assert json.loads(meta["inputs"]) == ["bands", "x", "c"]
    assert "M[i, i + j - k] = bands[j, i]" in meta["layout"]
    assert "curvature -c" in meta["curvature"]
    legend = json.loads(meta["families"])
    assert {int(k) for k in legend} == set(np.unique(raw["family"]).tolist())
    assert all(LEGEND[int(k)] == v for k, v in legend.items())
    assert meta["hyperet_version"] and meta["format_version"] == "1"


def test_structured_expected_equals_the_dense_product(golden: Path) -> None:
    """The banded layout in the file means what the docs say: dense matvec agrees."""
    g = read_golden_file(golden / "float64" / "banded_matvec.safetensors")
    for i in range(0, g.cases, 17):
        dense = np.zeros((8, 8))
        k = 2
        for j in range(5):
            for row in range(8):
                col = row + j - k
                if 0 <= col < 8:
                    dense[row, col] = g.inputs["bands"][i, j, row]
        c = float(g.inputs["c"][i])
        want = reference.mobius_matvec(dense, g.inputs["x"][i], c=c)
        err = ulp_error(g.expected[i], want).normwise
        assert err <= 8, (i, err)


@pytest.mark.parametrize("tier", ["float64", "float32"])
def test_expected_is_within_the_contract_of_mpmath(golden: Path, tier: str) -> None:
    g = read_golden_file(golden / tier / "mobius_add.safetensors")
    picks = np.linspace(0, g.cases - 1, 25).astype(int)
    for i in picks:
        x, y = (g.inputs[k][i].astype(np.float64) for k in ("x", "y"))
        truth = exact.mobius_add(x, y, c=float(g.inputs["c"][i]))
        err = float(ulp_error(g.expected[i], truth).normwise)
        assert err <= contract.REFERENCE_BOUND_ULP * g.allowance[i], (i, err)


def test_float32_tier_is_exact_in_float32_and_evaluated_there(golden: Path) -> None:
    g = read_golden_file(golden / "float32" / "mobius_add.safetensors")
    assert g.inputs["x"].dtype == np.float32
    for i in range(0, g.cases, 23):
        x, y = (g.inputs[k][i].astype(np.float64) for k in ("x", "y"))
        c = float(g.inputs["c"][i])
        np.testing.assert_array_equal(g.expected[i], reference.mobius_add(x, y, c=c))


def test_allowance_is_the_published_formula(golden: Path) -> None:
    g = read_golden_file(golden / "float64" / "mobius_add.safetensors")
    x, y, c = g.inputs["x"], g.inputs["y"], g.inputs["c"]
    with np.errstate(divide="ignore"):  # the naive co-norm rounds to 0 at the boundary
        lam_x = 2.0 / (1.0 - c * np.sum(x * x, axis=-1))
        lam_y = 2.0 / (1.0 - c * np.sum(y * y, axis=-1))
    moderate = (lam_x < 1e6) & (lam_y < 1e6)  # the naive co-norm is accurate there
    want = np.maximum(1.0, lam_x * lam_y / 4.0)
    np.testing.assert_allclose(g.allowance[moderate], want[moderate], rtol=1e-8)
    assert g.allowance.max() > 1e20  # near-boundary pairs are there


def test_hra_at_identity_returns_u(golden: Path) -> None:
    """logmap0(I (x) expmap0(u)) = u exactly; the golden chain is within its allowance."""
    g = read_golden_file(golden / "float64" / "hra_block.safetensors")
    ident = [i for i in range(g.cases) if g.legend[int(g.family[i])].startswith("hra-identity")]
    assert len(ident) >= 10
    for i in ident:
        np.testing.assert_array_equal(g.inputs["blocks"][i], np.broadcast_to(np.eye(4), (2, 4, 4)))
        err = float(ulp_error(g.expected[i], g.inputs["u"][i]).normwise)
        assert err <= contract.REFERENCE_BOUND_ULP * g.allowance[i], (i, err)


def test_contract_doctests_and_table() -> None:
    assert doctest.testmod(contract).failed == 0
    for dtype in ("float64", "float32", "float16", "bfloat16"):
        assert set(contract.CONTRACT[dtype]) == set(contract.OPS)
    assert contract.exact_threshold_ulp("dist", "float16") == 1.0
    assert math.isinf(contract.exact_threshold_ulp("dist", "float8"))
    # the float32 bound's basis is what docs/oracle.md states: measured in policy "exact"
    assert "policy='exact'" in contract.CONTRACT["float32"]["dist"].basis
