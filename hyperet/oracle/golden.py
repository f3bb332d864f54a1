"""Golden vectors: export language-neutral safetensors files of inputs and float64 outputs.

``export_golden(directory)`` writes two tiers, one file per op of
:data:`hyperet.oracle.spec.GOLDEN_OPS` in each::

    DIR/float64/<op>.safetensors   float64 inputs (the whole float64 ball, families A-K)
    DIR/float32/<op>.safetensors   float32 inputs (every value exactly representable in
                                   float32, points valid after rounding), float64 outputs
    DIR/SHA256SUMS                 the manifest (``sha256sum -c`` reads it)

A float32 implementation must be fed the float32 tier: float64 inputs rounded to float32 move
near-boundary points by far more than any float32 result can be graded on (and some round onto
the boundary). What a file holds is :mod:`hyperet.oracle.files` (the format) and
:mod:`hyperet.oracle.spec` (each op's inputs, shapes and formula); this module chooses the cases
and computes ``expected`` and ``allowance``.

Invalid inputs (numerics family L) are excluded: their expected behaviour is an error, not a
value, and error conventions differ between languages.

Files are byte-identical across runs of the same version: cases come from seeded generators and
the files are written deterministically (:func:`hyperet.oracle.files.write_safetensors`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hyperet import __version__, _io, reference
from hyperet.oracle import contract, families
from hyperet.oracle.files import (
    FORMAT_NAME,
    FORMAT_VERSION,
    TIERS,
    GoldenFile,
    write_safetensors,
)
from hyperet.oracle.spec import BANDWIDTH, BLOCK, DIM, GOLDEN_OPS, SPECS, TO_DENSE, OpSpec

CURVATURE_CONVENTION = (
    "curvature -c with c > 0 (ball of radius 1/sqrt(c)); tensor 'c' holds c for each case"
)

# --------------------------------------------------------------------------- what is exported

#: Points per :class:`hyperet.oracle.families.Case` batch.
POINTS_PER_CASE = 4
#: Seeds of the random family (more draws across radii and curvatures than one batch gives).
RANDOM_SEEDS: tuple[int, ...] = (0, 1, 2, 3)
#: Seed of the adversarial families.
FAMILY_SEED = 0

#: Family ids (tensor ``family``) and their legend (metadata ``families``).
LEGEND: dict[int, str] = {
    i: (f"{key}: {text}" if key != "random" else f"random: {text}")
    for i, (key, text) in enumerate(
        [*families.FAMILIES.items(), ("hra-identity", "HRA at its initialisation W = I")]
    )
}
_FAMILY_ID = {text.split(":")[0]: i for i, text in LEGEND.items()}


#: Argument kinds of the families module that hold one value shared by a whole batch.
_SHARED_KINDS = {"B", "N"}


def _round(value: Any, tier: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(value, dtype=np.float64).astype(tier).astype(np.float64)


def _family_rows(spec: OpSpec, tier: str) -> list[tuple[dict[str, np.ndarray], float, int]]:
    """Per-point cases of the numerics families for a (non-HRA) op, rounded to ``tier``."""
    kinds = spec.kinds
    batches = [
        case
        for seed in RANDOM_SEEDS
        for case in families.cases(
            spec.op, seed=seed, n=POINTS_PER_CASE, d=DIM, families=("random",)
        )
    ]
    others = tuple(f for f in families.FAMILIES if f != "random")
    batches += families.cases(spec.op, seed=FAMILY_SEED, n=POINTS_PER_CASE, d=DIM, families=others)
    rows = []
    for case in batches:
        c = float(_round(np.float64(case.c), tier))
        args = [np.asarray(a, dtype=np.float64) for a in case.args]
        for j in range(POINTS_PER_CASE):
            values = {
                name: _round(a if kind in _SHARED_KINDS else a[j], tier)
                for name, kind, a in zip(spec.inputs, kinds, args, strict=False)
            }
            for key, value in case.kwargs.items():
                values[key] = _round(np.float64(value), tier)
            if any(values[name].shape != spec.shapes[name] for name in spec.inputs):
                continue  # a layout variant (other block size, bandwidth, n != d): left out
            rows.append((values, c, _FAMILY_ID[case.family]))
    return rows


def _hra_rows(spec: OpSpec, tier: str) -> list[tuple[dict[str, np.ndarray], float, int]]:
    """HRA cases: identity and random parameters, moderate tangent sizes, several curvatures."""
    name = spec.inputs[0]
    rng = np.random.default_rng([FAMILY_SEED, GOLDEN_OPS.index(spec.op)])
    identity = {
        "w": np.ones(DIM),
        "blocks": np.broadcast_to(np.eye(BLOCK), (DIM // BLOCK, BLOCK, BLOCK)).copy(),
        "bands": np.vstack(
            [np.zeros((BANDWIDTH, DIM)), np.ones((1, DIM)), np.zeros((BANDWIDTH, DIM))]
        ),
    }[name]
    rows = []
    for c in (1e-2, 1e-6, 0.37, 1.0, 1e3):
        sizes = 10.0 ** rng.uniform(-3.0, 0.5, 2 * POINTS_PER_CASE)  # sqrt(c)|u|
        u = families.unit_vectors(rng, sizes.size, DIM) * (sizes[:, None] / math.sqrt(c))
        for j, uj in enumerate(u):
            if j < POINTS_PER_CASE:
                params, family = identity, _FAMILY_ID["hra-identity"]
            else:
                params = identity + 0.3 * rng.standard_normal(identity.shape)
                family = _FAMILY_ID["random"]
            rows.append(({name: _round(params, tier), "u": _round(uj, tier)}, c, family))
        zero = {name: _round(identity + 0.3 * rng.standard_normal(identity.shape), tier)}
        rows.append(({**zero, "u": np.zeros(DIM)}, c, _FAMILY_ID["D"]))
    return [(v, float(_round(np.float64(c), tier)), f) for v, c, f in rows]


def _reference_value(spec: OpSpec, values: Mapping[str, np.ndarray], c: float) -> np.ndarray:
    return np.asarray(spec.reference(values, c), dtype=np.float64)


def _allowance(spec: OpSpec, values: Mapping[str, np.ndarray], c: float) -> float:
    """The contract's conditioning allowance of one case."""
    if spec.conditioned:
        first, second = spec.conditioned
        lam1 = reference.conformal_factor(values[first], c=c)
        lam2 = reference.conformal_factor(values[second], c=c)
        return float(contract.pair_allowance(lam1, lam2))
    if spec.op == "entailment_energy":
        xi = reference.entailment_angle(values["x"], values["y"], c=c)
        psi = reference.entailment_aperture(values["x"], c=c, K=float(values["K"]))
        energy = reference.entailment_energy(values["x"], values["y"], c=c, K=float(values["K"]))
        return float(contract.energy_allowance(xi, psi, energy))
    if spec.structure:
        name = spec.inputs[0]
        to_dense = TO_DENSE[name]
        p = reference.expmap0(values["u"], c=c)
        q = reference.mobius_matvec(to_dense(values[name]), p, c=c)
        lam_p = reference.conformal_factor(p, c=c)
        lam_q = reference.conformal_factor(q, c=c)
        return float(contract.chain_allowance(lam_p, lam_q))
    return 1.0


def candidate_rows(op: str, tier: str) -> list[tuple[dict[str, np.ndarray], float, int]]:
    """Every candidate case of ``op`` in ``tier`` as ``(inputs, c, family id)``, not yet checked.

    Inputs are rounded to the tier's format; :func:`evaluate_rows` drops those that became
    invalid.
    """
    if tier not in TIERS:
        raise ValueError(f"tier: expected one of {TIERS}, got {tier!r}")
    spec = SPECS[op]
    return _hra_rows(spec, tier) if spec.structure else _family_rows(spec, tier)


def evaluate_rows(
    op: str, tier: str, rows: Sequence[tuple[Mapping[str, np.ndarray], float, int]]
) -> dict[str, np.ndarray]:
    """Golden tensors of the valid ``rows``: inputs, ``c``, ``expected``, ``family``, ``allowance``.

    Rows whose inputs are not finite or not strictly inside the ball after rounding to the
    tier's format are left out (e.g. ``1 - 10**-12`` or ``1e300`` in float32).
    """
    spec = SPECS[op]
    columns: dict[str, list[np.ndarray]] = {name: [] for name in (*spec.inputs, "expected")}
    cs: list[float] = []
    ids: list[int] = []
    allowance: list[float] = []
    for values, c, family in rows:
        if not all(np.isfinite(v).all() for v in values.values()):
            continue
        try:
            with np.errstate(all="ignore"):
                expected = _reference_value(spec, values, c)
        except ValueError:  # a point that rounded onto or outside the ball
            continue
        if not np.isfinite(expected).all():
            raise RuntimeError(f"{op}: the reference returned a non-finite value")
        for name in spec.inputs:
            columns[name].append(values[name])
        columns["expected"].append(expected.reshape(spec.shapes["expected"]))
        cs.append(c)
        ids.append(family)
        allowance.append(_allowance(spec, values, c))
    dtype = np.dtype(tier)
    tensors = {name: np.stack(columns[name]).astype(dtype) for name in spec.inputs}
    tensors["c"] = np.asarray(cs, dtype=dtype)
    tensors["expected"] = np.stack(columns["expected"]).astype(np.float64)
    tensors["family"] = np.asarray(ids, dtype=np.int32)
    tensors["allowance"] = np.asarray(allowance, dtype=np.float64)
    return tensors


def golden_file(op: str, tier: str, tensors: Mapping[str, np.ndarray]) -> GoldenFile:
    """A :class:`GoldenFile` held in memory (what :func:`read_golden_file` would return)."""
    spec = SPECS[op]
    return GoldenFile(
        op=op,
        tier=tier,
        inputs={name: tensors[name] for name in (*spec.inputs, "c")},
        expected=tensors["expected"],
        family=tensors["family"],
        allowance=tensors["allowance"],
        legend=LEGEND,
        metadata={},
    )


def build_golden(op: str, tier: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of one golden file (deterministic)."""
    spec = SPECS[op]
    tensors = evaluate_rows(op, tier, candidate_rows(op, tier))
    used = sorted({int(i) for i in tensors["family"]})
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "hyperet_version": __version__,
        "op": op,
        "tier": tier,
        "signature": spec.signature,
        "formula": spec.formula,
        "inputs": json.dumps([*spec.inputs, "c"]),
        "shapes": json.dumps(
            {name: ["N", *tensors[name].shape[1:]] for name in sorted(tensors)}, sort_keys=True
        ),
        "curvature": CURVATURE_CONVENTION,
        "layout": spec.layout,
        "families": json.dumps({str(i): LEGEND[i] for i in used}),
        "cases": str(tensors["c"].shape[0]),
        "allowance": (
            "per-case factor a >= 1: the contract's bound is bound[op][dtype] * a ulps; "
            + spec.allowance
        ),
        "contract": json.dumps(
            {dt: contract.CONTRACT[dt][op].ulp for dt in sorted(contract.CONTRACT)},
            sort_keys=True,
        ),
    }
    return tensors, metadata


#: Name of the SHA-256 manifest at the root of an export (``sha256sum -c`` reads it).
MANIFEST = "SHA256SUMS"


def manifest_lines(directory: Path) -> list[str]:
    """``"<sha256>  <tier>/<op>.safetensors"`` for every golden file under ``directory``, sorted.

    The format of GNU ``sha256sum``: ``cd DIR && sha256sum -c SHA256SUMS`` checks a copy
    without Python.
    """
    directory = Path(directory)
    lines = []
    for path in sorted(directory.glob("*/*.safetensors")):
        data = _io.read_bytes(path, max_bytes=_io.MAX_SAFETENSORS_BYTES, root=directory)
        lines.append(f"{_io.sha256_bytes(data)}  {path.relative_to(directory).as_posix()}")
    return lines


def write_manifest(directory: Path) -> Path:
    """Write :data:`MANIFEST` for the golden files under ``directory`` (atomically)."""
    path = Path(directory) / MANIFEST
    text = "".join(line + "\n" for line in manifest_lines(directory))
    _io.atomic_write_bytes(path, text.encode("utf-8"))
    return path


def export_golden(
    directory: Path, *, ops: Sequence[str] = GOLDEN_OPS, tiers: Sequence[str] = TIERS
) -> list[Path]:
    """Write ``directory/<tier>/<op>.safetensors`` for every op and tier; the paths written.

    Also (re)writes ``directory/SHA256SUMS`` over every golden file the directory then holds.
    """
    written = []
    for tier in tiers:
        folder = Path(directory) / tier
        folder.mkdir(parents=True, exist_ok=True)
        for op in ops:
            tensors, metadata = build_golden(op, tier)
            path = folder / f"{op}.safetensors"
            write_safetensors(path, tensors, metadata)
            written.append(path)
    write_manifest(directory)
    return written
