"""``hyperet oracle``: export -> results -> grade end to end, exit codes, JSON, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from hyperet.cli.main import main
from safetensors.torch import load_file, save_file

OPS = ("dist0", "mobius_scalar_mul")


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, ["oracle", *args])


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("golden")
    result = _run("export", str(root), *[f"--op={op}" for op in OPS])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def ours(golden: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("results") / "reference.safetensors"
    result = _run("results", str(golden), str(path), "--library", "reference")
    assert result.exit_code == 0, result.output
    return path


def test_our_reference_grades_zero_and_exits_0(golden: Path, ours: Path) -> None:
    result = _run("grade", str(golden), str(ours), "--json", "--require-all")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["not_graded"] == []
    assert {op["op"] for op in report["ops"]} == set(OPS)
    for op in report["ops"]:
        assert op["normwise_max_ulp"] == 0 and op["component_max_ulp"] == 0
        assert op["out_of_tolerance"] == 0 and op["nonfinite"] == 0
    assert "dist0" in result.stderr  # the rich table


def test_perturbing_one_op_exits_1_and_names_only_it(
    golden: Path, ours: Path, tmp_path: Path
) -> None:
    tensors = load_file(str(ours))
    values = tensors["dist0"].numpy()
    for _ in range(20):  # 20 ulps up, away from zero
        values = np.nextafter(values, np.inf)
    tensors["dist0"] = torch.from_numpy(values)
    path = tmp_path / "perturbed.safetensors"
    save_file(tensors, str(path))
    result = _run("grade", str(golden), str(path), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    passed = {op["op"]: op["passed"] for op in report["ops"]}
    assert passed == {"dist0": False, "mobius_scalar_mul": True}
    assert "out of tolerance: dist0" in result.stderr


def test_grade_filters_by_op_and_family_and_takes_a_bound(
    golden: Path, ours: Path, tmp_path: Path
) -> None:
    tensors = load_file(str(ours))
    values = tensors["dist0"].numpy()
    for _ in range(10):  # 10 ulps: out of the contract (4 + 4), within --bound 7 (+ 4)
        values = np.nextafter(values, np.inf)
    tensors["dist0"] = torch.from_numpy(values)
    path = tmp_path / "ten.safetensors"
    save_file(tensors, str(path))
    assert _run("grade", str(golden), str(path), "--op", "mobius_scalar_mul").exit_code == 0
    assert _run("grade", str(golden), str(path), "--op", "dist0").exit_code == 1
    assert _run("grade", str(golden), str(path), "--bound", "7").exit_code == 0
    result = _run("grade", str(golden), str(path), "--op", "dist0", "--family", "A", "--json")
    assert result.exit_code == 1
    (op,) = json.loads(result.stdout)["ops"]
    assert set(op["families"]) == {"A"} and op["cases"] == op["families"]["A"]["cases"]
    bounds = json.loads(_run("grade", str(golden), str(path), "--json").stdout)["bounds"]
    assert bounds["dist0"]["ulp"] == 4 and "reference's contract" in bounds["dist0"]["basis"]
    custom = _run("grade", str(golden), str(path), "--bound", "7", "--json").stdout
    expected = {"dtype": "float64", "ulp": 7, "basis": "--bound"}
    assert json.loads(custom)["bounds"]["dist0"] == expected
    result = _run("grade", str(golden), str(path), "--family", "nope")
    assert result.exit_code == 2 and "no such input family" in result.stderr


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_results_rounded_pass_and_native_ops_fail(
    golden: Path, tmp_path: Path, dtype: str
) -> None:
    """The reference rounded to a half format meets its 1-ulp bound; hyperet.ops computing
    natively in that format (inputs rounded to it) does not, near the boundary."""
    rounded, native = tmp_path / "rounded.safetensors", tmp_path / "native.safetensors"
    assert _run("results", str(golden), str(rounded), "--dtype", dtype).exit_code == 0
    made = _run("results", str(golden), str(native), "--library", "ops", "--dtype", dtype)
    assert made.exit_code == 0, made.output
    good = _run("grade", str(golden), str(rounded), "--json")
    assert good.exit_code == 0, good.stderr
    assert all(op["dtype"] == dtype for op in json.loads(good.stdout)["ops"])
    bad = _run("grade", str(golden), str(native), "--json")
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert not any(op["passed"] for op in report["ops"])  # dist0 and mobius_scalar_mul


@pytest.mark.parametrize("case", ["not-safetensors", "unknown-key", "wrong-shape", "wrong-dtype"])
def test_malformed_results_exit_2(golden: Path, tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.safetensors"
    if case == "not-safetensors":
        path.write_text("hello")
    else:
        tensor = {
            "unknown-key": {"dist_0": torch.zeros(3, dtype=torch.float64)},
            "wrong-shape": {"dist0": torch.zeros(3, dtype=torch.float64)},
            "wrong-dtype": {"dist0": torch.zeros(3, dtype=torch.int32)},
        }[case]
        save_file(tensor, str(path))
    result = _run("grade", str(golden), str(path))
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "error:" in result.stderr and "Traceback" not in result.output


def test_missing_dir_and_ops_exit_2(golden: Path, ours: Path, tmp_path: Path) -> None:
    result = _run("grade", str(tmp_path / "nowhere"), str(ours))
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    partial = tmp_path / "partial.safetensors"
    save_file({"dist0": load_file(str(ours))["dist0"]}, str(partial))
    assert _run("grade", str(golden), str(partial)).exit_code == 0
    result = _run("grade", str(golden), str(partial), "--require-all")
    assert result.exit_code == 2 and "missing ops" in result.stderr


def test_geoopt_results_are_graded_like_any_library(golden: Path, tmp_path: Path) -> None:
    pytest.importorskip("geoopt")
    path = tmp_path / "geoopt.safetensors"
    result = _run("results", str(golden), str(path), "--library", "geoopt", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    assert load_file(str(path))["dist0"].dtype == torch.float32
    result = _run("grade", str(golden), str(path), "--json")
    assert result.exit_code in (0, 1)  # geoopt's clamps decide; the grade itself must run
    assert {op["dtype"] for op in json.loads(result.stdout)["ops"]} == {"float32"}


def test_accuracy_json_on_a_small_battery() -> None:
    result = _run("accuracy", "--cases", "2", "--op", "dist0", "--op", "hra_diagonal", "--json")
    report = json.loads(result.stdout)
    rows = {(g["op"], g["implementation"], g["dtype"]): g for g in report["grades"]}
    for op in ("dist0", "hra_diagonal"):
        assert rows[(op, "reference", "float64")]["passed"]
        assert rows[(op, "ops:exact", "float32")]["passed"]
        assert (op, "ops:train", "float32") in rows
    assert rows[("dist0", "reference", "float64")]["normwise_max_ulp"] <= 4
    assert result.exit_code == (0 if report["passed"] else 1)
