"""Grading: our own outputs grade to zero, perturbations are caught, bad inputs are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from hyperet.oracle.files import OracleInputError, read_golden_file
from hyperet.oracle.golden import export_golden
from hyperet.oracle.grade import Result, grade_results, read_results
from hyperet.oracle.implementations import write_results

OPS = ("dist", "expmap0", "hra_diagonal")


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("golden")
    export_golden(root, ops=OPS)
    return root


@pytest.fixture(scope="module")
def ours(golden: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    path = tmp_path_factory.mktemp("results") / "reference.safetensors"
    assert write_results(golden, path, library="reference") == sorted(OPS)
    return read_results(path)


def _ulps(values: np.ndarray, k: int) -> np.ndarray:
    """``values`` moved by ``k`` float64 ulps away from zero (zeros by k subnormal steps)."""
    out = values.copy()
    for _ in range(k):
        out = np.nextafter(out, np.copysign(np.inf, out))
    return out


def test_reference_grades_zero_ulp(golden: Path, ours: dict[str, Result]) -> None:
    report = grade_results(golden, ours)
    assert report.passed and report.not_graded == []
    for g in report.grades:
        assert g.normwise_max_ulp == 0 and g.component_max_ulp == 0, g.op
        assert g.nonfinite == 0 and g.out_of_tolerance == 0


def test_a_perturbation_in_one_op_fails_only_that_op(golden: Path, ours: dict[str, Result]) -> None:
    results = dict(ours)
    results["dist"] = Result(_ulps(ours["dist"].values, 12), "float64")
    report = grade_results(golden, results)
    by_op = {g.op: g for g in report.grades}
    assert not report.passed
    assert not by_op["dist"].passed
    expected = read_golden_file(golden / "float64" / "dist.safetensors").expected
    assert by_op["dist"].out_of_tolerance >= int((expected != 0).sum()) > 0
    assert 11 <= by_op["dist"].normwise_max_ulp <= 12
    assert by_op["expmap0"].passed and by_op["hra_diagonal"].passed


def test_a_perturbation_within_the_bound_passes(golden: Path, ours: dict[str, Result]) -> None:
    results = {"dist": Result(_ulps(ours["dist"].values, 3), "float64")}
    report = grade_results(golden, results)
    assert report.passed
    assert 2 <= report.grades[0].normwise_max_ulp <= 3
    assert set(report.not_graded) == {"expmap0", "hra_diagonal"}


def test_one_nan_is_counted_and_fails(golden: Path, ours: dict[str, Result]) -> None:
    values = ours["expmap0"].values.copy()
    values[5, 2] = np.nan
    report = grade_results(golden, {"expmap0": Result(values, "float64")})
    grade = report.grades[0]
    assert grade.nonfinite == 1 and grade.out_of_tolerance == 1 and not report.passed


def test_float32_results_are_graded_in_float32_ulps(golden: Path, tmp_path: Path) -> None:
    """The reference rounded to float32 is the best float32 answer: <= 0.5 float32 ulp."""
    tier = golden / "float32"
    rounded = {
        op: read_golden_file(tier / f"{op}.safetensors").expected.astype(np.float32) for op in OPS
    }
    path = tmp_path / "f32.safetensors"
    save_file({op: torch.from_numpy(v) for op, v in rounded.items()}, str(path))
    report = grade_results(golden, path)  # the export root: float32 results pick float32/
    assert report.passed
    for g in report.grades:
        assert g.dtype == "float32" and g.threshold_ulp is not None
        assert g.normwise_max_ulp <= 0.5, g.op


def _rounded(values: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(values).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_formats_have_a_bound_a_half_kernel_can_fail(
    golden: Path, tmp_path: Path, dtype: torch.dtype
) -> None:
    """Correctly rounded half results pass (<= 0.5 ulp); a result 3 half ulps off fails."""
    expected = read_golden_file(golden / "float32" / "dist.safetensors").expected
    good = _rounded(expected, dtype)
    path = _save(tmp_path / "good.safetensors", dist=good)
    report = grade_results(golden, path)
    grade = report.grades[0]
    assert grade.threshold_ulp is not None and 1.0 <= grade.threshold_ulp < 1.001
    assert "measured" in report.to_json()["bounds"]["dist"]["basis"]
    assert grade.passed and grade.normwise_max_ulp <= 0.5
    worse = good.clone()
    for _ in range(3):  # three half ulps away from zero
        worse = torch.nextafter(worse, torch.full_like(worse, float("inf")) * worse.sign())
    path = _save(tmp_path / "bad.safetensors", dist=worse)
    grade = grade_results(golden, path).grades[0]
    assert not grade.passed and grade.out_of_tolerance >= int((expected != 0).sum()) > 0


def test_float16_cases_beyond_its_range_are_not_judged(tmp_path: Path) -> None:
    """conformal_factor near the boundary exceeds 65504: counted out of range, not failed."""
    export_golden(tmp_path / "g", ops=("conformal_factor",), tiers=("float32",))
    expected = read_golden_file(tmp_path / "g/float32/conformal_factor.safetensors").expected
    beyond = int((expected > 65504).sum())
    assert beyond > 0
    half = _rounded(expected, torch.float16)  # inf where beyond the range
    path = _save(tmp_path / "cf.safetensors", conformal_factor=half)
    grade = grade_results(tmp_path / "g", path).grades[0]
    assert grade.out_of_range == beyond and grade.nonfinite == 0 and grade.passed


def test_op_family_and_bound_filters(golden: Path, ours: dict[str, Result]) -> None:
    results = dict(ours)
    results["dist"] = Result(_ulps(ours["dist"].values, 12), "float64")
    only = grade_results(golden, results, ops=["expmap0"])
    assert [g.op for g in only.grades] == ["expmap0"] and only.passed
    # a custom bound above the perturbation passes it; the contract's (4) does not
    assert grade_results(golden, results, ops=["dist"], bound_ulp=13).passed
    assert not grade_results(golden, results, ops=["dist"], bound_ulp=4).passed
    family = read_golden_file(golden / "float64" / "dist.safetensors")
    grade = grade_results(golden, results, ops=["dist"], families=["A"]).grades[0]
    a_id = next(i for i, text in family.legend.items() if text.startswith("A:"))
    assert grade.cases == int((family.family == a_id).sum()) > 0
    assert set(grade.families) == {"A"}
    with pytest.raises(OracleInputError, match="no such input family"):
        grade_results(golden, results, families=["Q"])
    with pytest.raises(OracleInputError, match="hold no tensor"):
        grade_results(golden, {"dist": results["dist"]}, ops=["expmap0"])


def _save(path: Path, **tensors: torch.Tensor) -> Path:
    save_file(tensors, str(path))
    return path


def _junk(path: Path) -> Path:
    path.write_bytes(b"not a safetensors file")
    return path


MALFORMED = {
    "missing": (lambda p: p / "absent.safetensors", "does not exist"),
    "not-safetensors": (lambda p: _junk(p / "junk.safetensors"), "not a readable safetensors"),
    "unknown-key": (lambda p: _save(p / "k.safetensors", distt=torch.zeros(3)), "name no golden"),
    "wrong-shape": (lambda p: _save(p / "s.safetensors", dist=torch.zeros(3).double()), "shape"),
    "integer-dtype": (lambda p: _save(p / "i.safetensors", dist=torch.zeros(3).long()), "dtype"),
    "empty": (lambda p: _save(p / "e.safetensors"), "no tensors"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_results_are_refused(golden: Path, tmp_path: Path, case: str) -> None:
    make, message = MALFORMED[case]
    with pytest.raises(OracleInputError, match=message):
        grade_results(golden, make(tmp_path))


def test_missing_ops_fail_only_when_all_are_required(golden: Path, ours: dict[str, Result]) -> None:
    partial = {"dist": ours["dist"]}
    assert grade_results(golden, partial).passed
    with pytest.raises(OracleInputError, match="missing ops"):
        grade_results(golden, partial, require_all=True)


def test_bad_golden_directories_are_refused(tmp_path: Path, ours: dict[str, Result]) -> None:
    with pytest.raises(OracleInputError, match="does not exist"):
        grade_results(tmp_path / "nowhere", ours)
    with pytest.raises(OracleInputError, match="no golden"):
        grade_results(tmp_path, ours)
    (tmp_path / "dist.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(OracleInputError, match="not a readable safetensors"):
        grade_results(tmp_path, {"dist": ours["dist"]})


@pytest.mark.slow
def test_every_op_of_a_full_export_grades_zero_for_the_reference(tmp_path: Path) -> None:
    export_golden(tmp_path / "golden")
    for dtype in ("float64", "float32"):
        path = tmp_path / f"{dtype}.safetensors"
        write_results(tmp_path / "golden", path, library="reference", dtype=dtype)
        report = grade_results(tmp_path / "golden", path, require_all=True)
        assert report.passed
        bound = 0.0 if dtype == "float64" else 0.5  # rounding float64 to float32: <= 0.5 ulp
        assert all(g.normwise_max_ulp <= bound for g in report.grades), dtype
