"""The golden vectors shipped in golden/: manifest, byte-for-byte regeneration, numpy grader.

The shipped files are what an implementer in another language downloads; they must be exactly
what ``hyperet oracle export golden`` writes on this platform, and the standalone numpy grader
next to them (golden/grade_numpy.py) must give the verdicts of ``hyperet oracle grade``.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import load_file, save_file

from hyperet.oracle import contract
from hyperet.oracle.files import TIERS, read_golden_file
from hyperet.oracle.golden import MANIFEST, export_golden, manifest_lines
from hyperet.oracle.grade import grade_results
from hyperet.oracle.implementations import op_table, run_cases
from hyperet.oracle.spec import SPECS

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "golden"
GRADER = SHIPPED / "grade_numpy.py"
#: A few ops covering scalars, vectors, allowances and HRA (the whole set runs in the slow test).
SAMPLE_OPS = ("conformal_factor", "hra_block", "dist", "transport")


def _load_grader() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grade_numpy", GRADER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_manifest_matches_the_shipped_files() -> None:
    listed = (SHIPPED / MANIFEST).read_text().splitlines()
    files = sorted(p.relative_to(SHIPPED).as_posix() for p in SHIPPED.glob("*/*.safetensors"))
    assert [line.split("  ", 1)[1] for line in listed] == files
    assert len(files) == len(TIERS) * len(contract.OPS)
    for line in listed:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((SHIPPED / name).read_bytes()).hexdigest() == digest, name


def test_a_sample_regenerates_byte_for_byte(tmp_path: Path) -> None:
    export_golden(tmp_path, ops=SAMPLE_OPS[:2])
    for tier in TIERS:
        for op in SAMPLE_OPS[:2]:
            name = f"{tier}/{op}.safetensors"
            assert (tmp_path / name).read_bytes() == (SHIPPED / name).read_bytes(), name


@pytest.mark.slow
def test_the_whole_export_regenerates_byte_for_byte(tmp_path: Path) -> None:
    """``hyperet oracle export golden`` (about 20 s) reproduces every shipped byte."""
    export_golden(tmp_path)
    assert (tmp_path / MANIFEST).read_bytes() == (SHIPPED / MANIFEST).read_bytes()
    assert manifest_lines(tmp_path) == manifest_lines(SHIPPED)


def test_the_grader_imports_nothing_but_numpy_and_the_standard_library() -> None:
    tree = ast.parse(GRADER.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"__future__", "argparse", "json", "struct", "sys", "pathlib", "numpy"}


@pytest.fixture(scope="module")
def ops_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """hyperet.ops results on the shipped files in float64 and float32, plus a float16 copy."""
    folder = tmp_path_factory.mktemp("results")
    paths = {}
    for dtype in ("float64", "float32"):
        table = op_table("ops", dtype, "exact")
        tensors = {}
        for op in SAMPLE_OPS:
            golden = read_golden_file(SHIPPED / dtype / f"{op}.safetensors")
            inputs = {k: v for k, v in golden.inputs.items() if k != "c"}
            values = run_cases(table[op], inputs, golden.inputs["c"], golden.expected.shape[1:])
            tensors[op] = torch.from_numpy(values).to(getattr(torch, dtype))
        paths[dtype] = folder / f"{dtype}.safetensors"
        save_file(tensors, str(paths[dtype]))
    half = load_file(str(paths["float32"]))
    paths["float16"] = folder / "float16.safetensors"
    save_file({op: t.to(torch.float16) for op, t in half.items()}, str(paths["float16"]))
    return paths


def _perturbed(path: Path, op: str, ulps: int, tmp_path: Path) -> Path:
    tensors = load_file(str(path))
    values = tensors[op]
    for _ in range(ulps):
        values = torch.nextafter(values, torch.full_like(values, float("inf")))
    tensors[op] = values
    out = tmp_path / f"perturbed-{path.name}"
    save_file(tensors, str(out))
    return out


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_numpy_grader_agrees_with_hyperet(
    ops_results: dict[str, Path], dtype: str, tmp_path: Path
) -> None:
    grader = _load_grader()
    paths = {"as computed": ops_results[dtype]}
    paths["perturbed"] = _perturbed(ops_results[dtype], "dist", 40, tmp_path)
    for label, path in paths.items():
        ours = grade_results(SHIPPED, path)
        theirs = grader.grade(SHIPPED, path)
        assert theirs["passed"] == ours.passed, label
        assert theirs["not_graded"] == ours.not_graded
        by_op = {g["op"]: g for g in theirs["ops"]}
        for g in ours.grades:
            t = by_op[g.op]
            assert t["passed"] == g.passed, (label, g.op)
            assert t["out_of_tolerance"] == g.out_of_tolerance, (label, g.op)
            assert t["nonfinite"] == g.nonfinite and t["out_of_range"] == g.out_of_range
            assert t["threshold_ulp"] == g.threshold_ulp
            assert t["normwise_max_ulp"] == pytest.approx(g.normwise_max_ulp, rel=1e-12)
    assert not grade_results(SHIPPED, paths["perturbed"]).passed


def test_numpy_grader_command_line_exit_codes(ops_results: dict[str, Path], tmp_path: Path) -> None:
    """Run as a script in a fresh interpreter: 0 passing, 1 perturbed, 2 bad input."""

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(GRADER), *map(str, args)], capture_output=True, text=True
        )

    good = ops_results["float64"]
    passing = run(SHIPPED, good, "--json")
    assert passing.returncode == 0, passing.stderr
    assert '"passed": true' in passing.stdout
    bad = _perturbed(good, "transport", 1000, tmp_path)
    failing = run(SHIPPED, bad, "--op", "transport")
    assert failing.returncode == 1 and "FAIL" in failing.stderr
    assert run(SHIPPED, bad, "--op", "transport", "--bound", "1e300").returncode == 0
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"junk")
    broken = run(SHIPPED, junk)
    assert broken.returncode == 2 and broken.stderr.startswith("error:")
    assert "Traceback" not in broken.stderr


def test_the_per_op_input_table_of_docs_oracle_matches_the_files() -> None:
    """docs/oracle.md's table: every op, its inputs in call order, their per-case shapes."""
    rows = {}
    for line in (ROOT / "docs" / "oracle.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        if len(cells) == 4 and cells[0].strip("`") in SPECS:
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    assert set(rows) == set(contract.OPS)
    for op in contract.OPS:
        spec = SPECS[op]
        shapes = {name: str(shape) if shape else "()" for name, shape in spec.shapes.items()}
        inputs = ", ".join(f"`{name}` {shapes[name]}" for name in spec.inputs)
        assert rows[op] == (inputs, f"`{shapes['expected']}`"), op
