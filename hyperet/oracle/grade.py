"""Grade another implementation's outputs against the golden vectors.

A *results file* is one safetensors file holding, for each op graded, one tensor named after the
op (the golden file's stem: ``mobius_add``, ``dist``, ``hra_banded``, ...) with exactly the shape
of that golden file's ``expected`` tensor and any float dtype (float64, float32, float16,
bfloat16). Ops absent from the results file are reported as not graded; a key that names no
golden op is an error (it is usually a typo).

Errors are measured in ulps of the RESULT's format (:mod:`hyperet.oracle.ulp`): normwise per
case, and per component. A case is out of tolerance when its result is not finite or its
normwise error exceeds ``grade_threshold_ulp(op, dtype) * allowance`` (:mod:`.contract`). A
case whose expected value lies beyond the largest finite number of the result's format (float16
``conformal_factor`` near the boundary) is counted as ``out_of_range`` and not judged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hyperet import _io
from hyperet.oracle import contract
from hyperet.oracle.files import (
    GoldenFile,
    OracleInputError,
    find_golden_files,
    read_golden_file,
)
from hyperet.oracle.ulp import ulp_error

#: safetensors dtype code -> format name, for the float formats a result may have.
RESULT_DTYPES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
}


@dataclass(frozen=True)
class Result:
    """One op's results: the values widened exactly to float64, and their original format."""

    values: np.ndarray
    dtype: str


@dataclass(frozen=True)
class FamilyGrade:
    """Errors of one op over the cases of one input family."""

    cases: int
    normwise_max_ulp: float
    out_of_tolerance: int


@dataclass(frozen=True)
class OpGrade:
    """One op's grade: the row of the table.

    Statistics are over the judged cases with finite results; non-finite results are counted
    in ``nonfinite`` (and out of tolerance); cases whose expected value the result's format
    cannot represent are counted in ``out_of_range`` and not judged. ``threshold_ulp`` is the
    base threshold before the per-case allowance; ``None`` when no bound applies.
    """

    op: str
    implementation: str
    dtype: str
    cases: int
    normwise_max_ulp: float
    normwise_median_ulp: float
    component_max_ulp: float
    component_median_ulp: float
    nonfinite: int
    out_of_tolerance: int
    threshold_ulp: float | None
    families: dict[str, FamilyGrade] = field(default_factory=dict)
    out_of_range: int = 0

    @property
    def passed(self) -> bool:
        """Whether every case is within the contract."""
        return self.out_of_tolerance == 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary (``inf`` errors are written as ``null``)."""
        data = asdict(self)
        data["passed"] = self.passed
        return _finite_or_none(data)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


def read_results(path: Path) -> dict[str, Result]:
    """Read a results file; :class:`OracleInputError` when it is not a usable one."""
    path = Path(path)
    if not path.is_file():  # checked before importing torch: a typo fails fast
        raise OracleInputError(f"{path}: results file does not exist")
    import torch

    tensors, _ = _io.read_safetensors(
        path, dtypes=frozenset(RESULT_DTYPES), require_digest=False, error=OracleInputError
    )
    names = {torch.float64: "float64", torch.float32: "float32", torch.float16: "float16"}
    names[torch.bfloat16] = "bfloat16"
    results: dict[str, Result] = {}
    for key, tensor in tensors.items():
        dtype = names.get(tensor.dtype)
        if dtype is None:
            raise OracleInputError(
                f"{path}: tensor {key!r} has dtype {tensor.dtype}; results must be float64, "
                "float32, float16 or bfloat16"
            )
        results[key] = Result(tensor.to(torch.float64).numpy(), dtype)
    if not results:
        raise OracleInputError(f"{path}: results file holds no tensors")
    return results


def grade_values(
    golden: GoldenFile,
    computed: np.ndarray,
    dtype: str,
    *,
    implementation: str = "results",
    reference: np.ndarray | None = None,
    threshold_ulp: float | None = None,
) -> OpGrade:
    """Grade ``computed`` (values of format ``dtype``, held in float64) for one golden file.

    ``reference`` replaces the golden ``expected`` tensor (``hyperet oracle accuracy`` passes
    mpmath's values); ``threshold_ulp`` replaces the contract's grading threshold.
    """
    expected = golden.expected if reference is None else reference
    if computed.shape != expected.shape:
        raise OracleInputError(
            f"{golden.op}: results have shape {tuple(computed.shape)}, "
            f"expected {tuple(expected.shape)}"
        )
    if threshold_ulp is None:
        has_contract = contract.bound(golden.op, dtype) is not None
        threshold_ulp = contract.grade_threshold_ulp(golden.op, dtype) if has_contract else None
    n = expected.shape[0]
    vectors = computed.reshape(n, -1)
    in_range = np.abs(expected.reshape(n, -1)).max(axis=1) <= contract.MAX_FINITE[dtype]  # (N,)
    finite = np.isfinite(vectors).all(axis=1) | ~in_range  # (N,)
    graded = np.where(np.isfinite(vectors), vectors, 0.0)  # (N, n); non-finite counted apart
    normwise, component = ulp_error(graded, expected.reshape(n, -1), dtype=dtype)
    normwise = np.where(finite, normwise, np.inf)  # (N,)
    component = np.where(finite, component, np.inf)  # (N,)
    limit = np.inf if threshold_ulp is None else threshold_ulp
    bad = in_range & (~finite | (normwise > limit * golden.allowance))  # (N,)
    normwise = np.where(in_range, normwise, 0.0)  # out-of-range cases are not judged
    component = np.where(in_range, component, 0.0)

    families: dict[str, FamilyGrade] = {}
    for family_id in np.unique(golden.family):
        mask = golden.family == family_id
        label = golden.legend.get(int(family_id), str(int(family_id))).split(":")[0]
        families[label] = FamilyGrade(
            cases=int(mask.sum()),
            normwise_max_ulp=float(normwise[mask].max()),
            out_of_tolerance=int(bad[mask].sum()),
        )
    ok = normwise[finite & in_range]
    comp = component[finite & in_range]
    return OpGrade(
        op=golden.op,
        implementation=implementation,
        dtype=dtype,
        cases=n,
        normwise_max_ulp=float(ok.max()) if ok.size else math.nan,
        normwise_median_ulp=float(np.median(ok)) if ok.size else math.nan,
        component_max_ulp=float(comp.max()) if comp.size else math.nan,
        component_median_ulp=float(np.median(comp)) if comp.size else math.nan,
        nonfinite=int((~finite).sum()),
        out_of_tolerance=int(bad.sum()),
        threshold_ulp=threshold_ulp,
        families=families,
        out_of_range=int((~in_range).sum()),
    )


@dataclass(frozen=True)
class GradeReport:
    """Every op's grade, plus the golden ops the results did not cover."""

    grades: list[OpGrade]
    not_graded: list[str]
    #: the ``--bound`` that replaced the contract's, if any
    bound_ulp: float | None = None

    @property
    def passed(self) -> bool:
        """Whether every graded op is within the contract."""
        return all(g.passed for g in self.grades)

    def bounds(self) -> dict[str, dict[str, Any]]:
        """Per graded op: the bound applied (ulps, before the allowance) and where it comes from."""
        out: dict[str, dict[str, Any]] = {}
        for g in self.grades:
            published = contract.bound(g.op, g.dtype)
            if self.bound_ulp is not None:
                out[g.op] = {"dtype": g.dtype, "ulp": self.bound_ulp, "basis": "--bound"}
            elif published is not None:
                out[g.op] = {"dtype": g.dtype, "ulp": published.ulp, "basis": published.basis}
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "passed": self.passed,
            "ops": [g.to_json() for g in self.grades],
            "not_graded": self.not_graded,
            "bounds": self.bounds(),
        }


def select_cases(golden: GoldenFile, families: Sequence[str]) -> np.ndarray:
    """Boolean mask ``(N,)`` of the cases of ``golden`` in the named input families.

    Families are named by their key (``A`` ... ``K``, ``random``, ``hra-identity``): the part of
    the metadata legend before the colon.
    """
    keys = {i: text.split(":")[0] for i, text in golden.legend.items()}
    return np.isin(golden.family, [i for i, key in keys.items() if key in set(families)])


def _family_keys(golden: GoldenFile) -> set[str]:
    return {text.split(":")[0] for text in golden.legend.values()}


def grade_results(
    golden_dir: Path,
    results: Mapping[str, Result] | Path,
    *,
    implementation: str = "results",
    require_all: bool = False,
    ops: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
    bound_ulp: float | None = None,
) -> GradeReport:
    """Grade a results file (or already-read results) against a golden directory.

    ``golden_dir`` is a tier directory or an export root; for an export root the tier is
    ``float64`` when every result is float64 and ``float32`` otherwise.

    ``ops`` grades only these ops (each must be in the results); ``families`` only the cases of
    these input families (ops without such cases are skipped); ``bound_ulp`` replaces the
    contract's bound against the exact value (the reference's own bound is still added, as for
    the contract's: :func:`hyperet.oracle.contract.grade_threshold_ulp`).
    """
    if not isinstance(results, Mapping):
        results = read_results(Path(results))
    tier = "float64" if all(r.dtype == "float64" for r in results.values()) else "float32"
    files = find_golden_files(Path(golden_dir), tier=tier)
    unknown = sorted(set(results) - set(files))
    if unknown:
        raise OracleInputError(
            f"results hold keys that name no golden op: {unknown}; known ops: {sorted(files)}"
        )
    selected = sorted(results) if ops is None else sorted(set(ops))
    absent = sorted(set(selected) - set(results))
    if absent:
        raise OracleInputError(f"--op {absent[0]}: the results hold no tensor {absent[0]!r}")
    missing = sorted(set(files) - set(results)) if ops is None else []
    if require_all and missing:
        raise OracleInputError(f"results are missing ops: {missing}")
    grades = []
    known_families: set[str] = set()
    for op in selected:
        golden = read_golden_file(files[op])
        result = results[op]
        values = result.values
        if families is not None:
            known_families |= _family_keys(golden)
            mask = select_cases(golden, families)
            if not mask.any():
                continue
            if values.shape[:1] != golden.expected.shape[:1]:
                raise OracleInputError(
                    f"{op}: results have shape {tuple(values.shape)}, "
                    f"expected {tuple(golden.expected.shape)}"
                )
            values = values[mask]
            golden = dataclasses.replace(
                golden,
                inputs={k: v[mask] for k, v in golden.inputs.items()},
                expected=golden.expected[mask],
                family=golden.family[mask],
                allowance=golden.allowance[mask],
            )
        threshold = None
        if bound_ulp is not None:
            ratio = contract.unit_roundoff_ratio("float64", result.dtype)
            threshold = bound_ulp + contract.REFERENCE_BOUND_ULP * ratio
        grades.append(
            grade_values(
                golden, values, result.dtype, implementation=implementation, threshold_ulp=threshold
            )
        )
    if families is not None:
        unknown_families = sorted(set(families) - known_families)
        if unknown_families:
            raise OracleInputError(
                f"--family {unknown_families[0]}: no such input family in the graded ops; "
                f"known: {', '.join(sorted(known_families))}"
            )
    return GradeReport(grades=grades, not_graded=missing, bound_ulp=bound_ulp)
