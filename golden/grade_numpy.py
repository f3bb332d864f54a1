#!/usr/bin/env python3
"""Grade a results file against the hyperet golden vectors with numpy alone.

A complete, standalone grader: it needs Python 3.9+ and numpy, reads the safetensors files
itself (no ``safetensors`` package, no ``hyperet``, no torch) and applies the published rule of
docs/oracle.md. ``hyperet oracle grade`` gives the same verdicts (checked on the shipped files
by tests/oracle/test_shipped_golden.py)::

    python grade_numpy.py GOLDEN_DIR RESULTS [--op OP ...] [--bound ULP] [--json]

GOLDEN_DIR is this folder (``float64/`` and ``float32/`` below it) or one tier folder. RESULTS is
a safetensors file with one tensor per op, named after the op, shaped like the op's ``expected``,
dtype F64, F32, F16 or BF16. Exit status: 0 every graded case within the contract, 1 some case
out of tolerance, 2 bad input (one ``error:`` line on stderr).

The rule, per case, with ``y`` the result, ``e`` the golden ``expected`` (float64), F the result's
format with ``p`` significand bits and minimum normal exponent ``emin``:

- ``ulp_F(v) = 2 ** (max(floor(log2 |v|), emin) - p + 1)``; ``ulp_F(0) = 2 ** (emin - p + 1)``;
- normwise error ``err = max_i |y_i - e_i| / ulp_F(max_i |e_i|)``;
- threshold ``(bound[op][F] + 4 * 2 ** (p - 53)) * allowance``: the contract's bound (file
  metadata ``contract``, or ``--bound``) plus the float64 reference's own 4 ulps, times the
  per-case ``allowance`` tensor;
- out of tolerance: ``y`` not finite, or ``err`` above the threshold; a case whose ``e`` exceeds
  the largest finite number of F (``max_i |e_i| > MAX_FINITE[F]``) is out of range, not judged.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

#: format -> (significand bits p, minimum normal exponent emin, largest finite value)
FORMATS = {
    "float64": (53, -1022, float(np.finfo(np.float64).max)),
    "float32": (24, -126, float(np.finfo(np.float32).max)),
    "float16": (11, -14, 65504.0),
    "bfloat16": (8, -126, float.fromhex("0x1.fep127")),
}
#: safetensors dtype code -> (numpy little-endian dtype, format name)
CODES = {
    "F64": ("<f8", "float64"),
    "F32": ("<f4", "float32"),
    "F16": ("<f2", "float16"),
    "BF16": ("<u2", "bfloat16"),  # the top 16 bits of a float32
    "I32": ("<i4", None),
    "I64": ("<i8", None),
}
REFERENCE_BOUND_ULP = 4.0  # the float64 reference's own bound against the exact value


class BadInput(Exception):
    """A file that cannot be graded; the message says why."""


def read_safetensors(path):
    """``(tensors, metadata, formats)`` of a safetensors file: name -> float64/int array, ..."""
    try:
        raw = Path(path).read_bytes()
        (length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + length])
    except (OSError, struct.error, ValueError) as error:
        raise BadInput(f"{path}: not a readable safetensors file ({error})") from None
    metadata = header.pop("__metadata__", None) or {}
    body = raw[8 + length :]
    tensors, formats = {}, {}
    for name, info in header.items():
        if info["dtype"] not in CODES:
            raise BadInput(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
        numpy_dtype, fmt = CODES[info["dtype"]]
        start, end = info["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=numpy_dtype).reshape(info["shape"])
        if fmt == "bfloat16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array.astype(np.float64 if fmt else np.int64)
        formats[name] = fmt
    return tensors, metadata, formats


def ulp(values, fmt):
    """Spacing of ``fmt`` numbers in the binade of each (float64) value."""
    p, emin, _ = FORMATS[fmt]
    _, exponent = np.frexp(np.abs(values))  # |v| = m 2**exponent, 0.5 <= m < 1
    exponent = np.where(values == 0, emin + 1, exponent)
    return np.ldexp(1.0, np.maximum(exponent - 1, emin) - p + 1)


def grade_op(golden, result, fmt, bound=None):
    """Grade one op's ``result`` (float64 array holding ``fmt`` values) against its golden file."""
    tensors, metadata = golden
    expected = tensors["expected"]
    if result.shape != expected.shape:
        raise BadInput(
            f"{metadata['op']}: results have shape {result.shape}, expected {expected.shape}"
        )
    if bound is None:
        bound = json.loads(metadata["contract"])[fmt]
    p, _, max_finite = FORMATS[fmt]
    n = expected.shape[0]
    y, e = result.reshape(n, -1), expected.reshape(n, -1)
    in_range = np.abs(e).max(axis=1) <= max_finite
    finite = np.isfinite(y).all(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(np.where(np.isfinite(y), y, 0.0) - e).max(axis=1) / ulp(
            np.abs(e).max(axis=1), fmt
        )
    threshold = bound + REFERENCE_BOUND_ULP * 2.0 ** (p - 53)
    bad = in_range & (~finite | (err > threshold * tensors["allowance"]))
    judged = in_range & finite
    return {
        "op": metadata["op"],
        "dtype": fmt,
        "cases": int(n),
        "normwise_max_ulp": float(err[judged].max()) if judged.any() else None,
        "nonfinite": int((in_range & ~finite).sum()),
        "out_of_range": int((~in_range).sum()),
        "out_of_tolerance": int(bad.sum()),
        "threshold_ulp": threshold,
        "passed": not bad.any(),
    }


def grade(golden_dir, results_path, ops=None, bound=None):
    """Grade every op of the results file; the report as a dictionary."""
    results, _, formats = read_safetensors(results_path)
    if not results:
        raise BadInput(f"{results_path}: results file holds no tensors")
    for name, fmt in formats.items():
        if fmt is None:
            raise BadInput(f"{results_path}: tensor {name!r} is not a float tensor")
    tier = "float64" if set(formats.values()) == {"float64"} else "float32"
    folder = Path(golden_dir)
    if (folder / tier).is_dir():
        folder = folder / tier
    files = {path.stem: path for path in sorted(folder.glob("*.safetensors"))}
    if not files:
        raise BadInput(f"{folder}: no golden *.safetensors files")
    unknown = sorted(set(results) - set(files))
    if unknown:
        raise BadInput(f"results hold keys that name no golden op: {unknown}")
    selected = sorted(results) if not ops else sorted(set(ops))
    absent = sorted(set(selected) - set(results))
    if absent:
        raise BadInput(f"--op {absent[0]}: the results hold no tensor {absent[0]!r}")
    grades = []
    for op in selected:
        tensors, metadata, _ = read_safetensors(files[op])
        grades.append(grade_op((tensors, metadata), results[op], formats[op], bound))
    return {
        "passed": all(g["passed"] for g in grades),
        "ops": grades,
        "not_graded": sorted(set(files) - set(results)) if not ops else [],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("golden_dir")
    parser.add_argument("results")
    parser.add_argument("--op", action="append", help="grade only this op (repeatable)")
    parser.add_argument("--bound", type=float, help="replace the contract's bound (ulps)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = grade(args.golden_dir, args.results, args.op, args.bound)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for g in report["ops"]:
        verdict = "ok" if g["passed"] else "FAIL"
        worst = "-" if g["normwise_max_ulp"] is None else f"{g['normwise_max_ulp']:.3g}"
        print(
            f"{g['op']:24} {g['dtype']:8} {g['cases']:5} cases  max {worst:>9} ulp  "
            f"{g['out_of_tolerance']:4} out of tolerance  {verdict}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
