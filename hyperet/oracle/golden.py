"""Golden vectors: language-neutral safetensors files of inputs and float64 reference outputs.

``export_golden(directory)`` writes two tiers, one file per op in each::

    DIR/float64/<op>.safetensors   float64 inputs (the whole float64 ball, families A-K)
    DIR/float32/<op>.safetensors   float32 inputs (every value exactly representable in
                                   float32, points valid after rounding), float64 outputs

A float32 implementation must be fed the float32 tier: float64 inputs rounded to float32 move
near-boundary points by far more than any float32 result can be graded on (and some round onto
the boundary). The file format (tensor names, shapes, metadata keys) is documented in
docs/oracle.md; this module's :func:`read_golden_file` is one reader of it, not the definition.

Every file holds, for ``N`` cases:

- the op's inputs under the reference's argument names (``x``, ``y``, ``u``, ``r``, ``m``,
  ``w``, ``blocks``, ``bands``, ``a``, ``b``, ``z``, ``v``, ``eps``), leading axis ``N``;
- ``c`` of shape ``(N,)``: the curvature is ``-c`` with ``c > 0``, one value per case;
- ``expected``: the float64 reference's output, ``(N, n)`` for points and vectors, ``(N,)`` for
  scalars;
- ``family`` ``(N,)`` int32 and the JSON legend in metadata ``families``;
- ``allowance`` ``(N,)`` float64: the contract's per-case conditioning allowance
  (:mod:`hyperet.oracle.contract`).

Invalid inputs (numerics family L) are excluded: their expected behaviour is an error, not a
value, and error conventions differ between languages.

Files are byte-identical across runs of the same version: cases come from seeded generators and
the safetensors header is written with sorted keys by :func:`write_safetensors` (the
``safetensors`` package orders metadata keys randomly, so it is only used to read).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hyperet import __version__, _io, reference
from hyperet.oracle import contract, families

FORMAT_NAME = "hyperet-golden"
FORMAT_VERSION = "1"
TIERS: tuple[str, ...] = ("float64", "float32")
CURVATURE_CONVENTION = (
    "curvature -c with c > 0 (ball of radius 1/sqrt(c)); tensor 'c' holds c for each case"
)

_DTYPE_CODES: dict[str, str] = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
}


class OracleInputError(ValueError):
    """A golden directory or results file that cannot be used; the message says why."""


def write_safetensors(
    path: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]
) -> None:
    """Write a safetensors file deterministically (sorted keys, tensors in name order).

    The layout is the safetensors format: an unsigned little-endian 64-bit header length, a
    JSON header (padded with spaces to a multiple of 8 bytes) mapping each tensor name to its
    ``dtype``, ``shape`` and ``data_offsets`` plus ``__metadata__`` (string to string), then the
    little-endian, C-ordered tensor bytes back to back.
    """
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        code = _DTYPE_CODES.get(array.dtype.name)
        if code is None:
            raise ValueError(f"tensors: unsupported dtype {array.dtype} for {name!r}")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": code,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    _io.atomic_write_bytes(path, b"".join([struct.pack("<Q", len(text)), text, *chunks]))


@dataclass(frozen=True)
class GoldenFile:
    """One golden file, loaded.

    Attributes
    ----------
    op:
        The op's name (also the key of its output in a results file).
    tier:
        ``"float64"`` or ``"float32"``: the format the inputs are exact in.
    inputs:
        Input tensors by argument name, in call order, ``c`` last.
    expected:
        The float64 reference's outputs, leading axis the cases.
    family:
        ``(N,)`` family id of each case; :attr:`legend` names them.
    allowance:
        ``(N,)`` conditioning allowance (>= 1) of each case.
    metadata:
        The file's string metadata.
    """

    op: str
    tier: str
    inputs: dict[str, np.ndarray]
    expected: np.ndarray
    family: np.ndarray
    allowance: np.ndarray
    legend: dict[int, str]
    metadata: dict[str, str]

    @property
    def cases(self) -> int:
        """Number of cases ``N``."""
        return int(self.expected.shape[0])


def read_golden_file(path: Path) -> GoldenFile:
    """Load and check one golden file; :class:`OracleInputError` if it is not one."""
    tensors, metadata = _io.read_safetensors(
        Path(path),
        dtypes=frozenset(_DTYPE_CODES.values()),
        require_digest=False,
        framework="numpy",
        error=OracleInputError,
    )
    if metadata.get("format") != FORMAT_NAME:
        raise OracleInputError(f"{path}: not a hyperet golden file (metadata 'format' missing)")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise OracleInputError(
            f"{path}: golden format version {metadata.get('format_version')!r}, "
            f"this hyperet reads version {FORMAT_VERSION}"
        )
    try:
        names = json.loads(metadata["inputs"])
        legend = {int(k): v for k, v in json.loads(metadata["families"]).items()}
        golden = GoldenFile(
            op=metadata["op"],
            tier=metadata["tier"],
            inputs={name: tensors[name] for name in names},
            expected=tensors["expected"],
            family=tensors["family"],
            allowance=tensors["allowance"],
            legend=legend,
            metadata=metadata,
        )
    except (KeyError, ValueError) as error:
        raise OracleInputError(f"{path}: incomplete golden file (missing {error})") from None
    _check_golden(golden, path)
    return golden


def _check_golden(golden: GoldenFile, path: Path) -> None:
    """The graded tensors must be what the format says: float64 finite ``expected`` and
    ``allowance >= 1``, integer ``family`` ids, one entry per case."""
    n = golden.expected.shape[0] if golden.expected.ndim else -1
    checks = [
        ("expected", golden.expected.dtype == np.float64, "must be float64"),
        ("expected", bool(np.isfinite(golden.expected).all()), "holds NaN or inf"),
        ("allowance", golden.allowance.dtype == np.float64, "must be float64"),
        ("allowance", bool((golden.allowance >= 1).all()), "must be >= 1 (and finite)"),
        ("allowance", bool(np.isfinite(golden.allowance).all()), "holds NaN or inf"),
        ("family", golden.family.dtype.kind == "i", "must hold integers"),
        ("family", golden.family.shape == (n,), f"must have shape ({n},)"),
        ("allowance", golden.allowance.shape == (n,), f"must have shape ({n},)"),
    ]
    for name, ok, problem in checks:
        if not ok:
            raise OracleInputError(f"{path}: tensor {name!r} {problem}")


def find_golden_files(directory: Path, *, tier: str | None = None) -> dict[str, Path]:
    """Golden files of ``directory`` by op name.

    ``directory`` is either a tier directory (holding ``<op>.safetensors``) or an export root
    (holding ``float64/`` and ``float32/``), in which case ``tier`` picks the subdirectory.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise OracleInputError(f"{directory}: golden directory does not exist")
    if tier is not None and (directory / tier).is_dir():
        directory = directory / tier
    files = {path.stem: path for path in sorted(directory.glob("*.safetensors"))}
    if not files:
        tiers = [t for t in TIERS if (directory / t).is_dir()]
        hint = f" (it holds tiers {tiers}: pass one of them)" if tiers else ""
        raise OracleInputError(f"{directory}: no golden *.safetensors files{hint}")
    return files


# --------------------------------------------------------------------------- what is exported

#: Vector dimension of every golden file.
DIM = 8
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


@dataclass(frozen=True)
class OpSpec:
    """How one op appears in the golden files.

    Attributes
    ----------
    op:
        File stem and results key.
    inputs:
        Input tensor names in call order (``c`` is keyword-only and always present).
    shapes:
        Per-case shape of each input and of ``expected`` (``"d"`` is :data:`DIM`).
    formula:
        What ``expected`` is, in words and symbols.
    layout:
        The parameter layout, for structured products and HRA.
    """

    op: str
    inputs: tuple[str, ...]
    shapes: Mapping[str, tuple[int, ...]]
    formula: str
    layout: str = ""

    @property
    def signature(self) -> str:
        """E.g. ``mobius_add(x, y, *, c) -> expected``."""
        return f"{self.op}({', '.join(self.inputs)}, *, c) -> expected"


_V = (DIM,)
_S: tuple[int, ...] = ()
_L = (DIM + 1,)  # a Lorentz point, time first
_BLOCK = 4
_BANDWIDTH = 2
DIAGONAL_LAYOUT = "w of shape (d,): M = diag(w)"
BLOCK_LAYOUT = (
    f"blocks of shape (d // b, b, b) with b = {_BLOCK}: block i acts on x[i*b:(i+1)*b], "
    "(M x)[i*b + r] = sum_s blocks[i, r, s] x[i*b + s]"
)
BANDED_LAYOUT = (
    f"bands of shape (2k + 1, d) with k = {_BANDWIDTH}: M[i, i + j - k] = bands[j, i]; "
    "entries whose column i + j - k falls outside [0, d) are ignored"
)
_BLOCKS = (DIM // _BLOCK, _BLOCK, _BLOCK)
_BANDS = (2 * _BANDWIDTH + 1, DIM)

SPECS: dict[str, OpSpec] = {
    spec.op: spec
    for spec in [
        OpSpec(
            "conformal_factor", ("x",), {"x": _V, "expected": _S}, "lambda_x = 2 / (1 - c|x|^2)"
        ),
        OpSpec(
            "mobius_add",
            ("x", "y"),
            {"x": _V, "y": _V, "expected": _V},
            "x (+) y = ((1 + 2c<x,y> + c|y|^2) x + (1 - c|x|^2) y) / (1 + 2c<x,y> + c^2|x|^2|y|^2)",
        ),
        OpSpec(
            "mobius_scalar_mul",
            ("r", "x"),
            {"r": _S, "x": _V, "expected": _V},
            "r (x) x = tanh(r artanh(sqrt(c)|x|)) x / (sqrt(c)|x|)",
        ),
        OpSpec(
            "mobius_matvec",
            ("m", "x"),
            {"m": (DIM, DIM), "x": _V, "expected": _V},
            "M (x) x = tanh(|Mx|/|x| artanh(sqrt(c)|x|)) Mx / (sqrt(c)|Mx|), m[i, j] = M_ij",
        ),
        OpSpec("expmap0", ("u",), {"u": _V, "expected": _V}, "tanh(sqrt(c)|u|) u / (sqrt(c)|u|)"),
        OpSpec("logmap0", ("x",), {"x": _V, "expected": _V}, "artanh(sqrt(c)|x|) x / (sqrt(c)|x|)"),
        OpSpec(
            "expmap",
            ("x", "u"),
            {"x": _V, "u": _V, "expected": _V},
            "x (+) tanh(sqrt(c) lambda_x |u| / 2) u / (sqrt(c)|u|)",
        ),
        OpSpec(
            "logmap",
            ("x", "y"),
            {"x": _V, "y": _V, "expected": _V},
            "(2 / (sqrt(c) lambda_x)) artanh(sqrt(c)|z|) z / |z|, z = (-x) (+) y",
        ),
        OpSpec(
            "dist",
            ("x", "y"),
            {"x": _V, "y": _V, "expected": _S},
            "(2 / sqrt(c)) artanh(sqrt(c)|(-x) (+) y|)",
        ),
        OpSpec("dist0", ("x",), {"x": _V, "expected": _S}, "(2 / sqrt(c)) artanh(sqrt(c)|x|)"),
        OpSpec(
            "gyration",
            ("a", "b", "z"),
            {"a": _V, "b": _V, "z": _V, "expected": _V},
            "gyr[a, b] z = (-(a (+) b)) (+) (a (+) (b (+) z))",
        ),
        OpSpec(
            "transport",
            ("x", "y", "v"),
            {"x": _V, "y": _V, "v": _V, "expected": _V},
            "parallel transport of v from T_x to T_y: (lambda_x / lambda_y) gyr[y, -x] v",
        ),
        OpSpec(
            "project",
            ("x", "eps"),
            {"x": _V, "eps": _S, "expected": _V},
            "x if sqrt(c)|x| <= 1 - eps, else (1 - eps) x / (sqrt(c)|x|)",
        ),
        OpSpec(
            "diagonal_matvec",
            ("w", "x"),
            {"w": _V, "x": _V, "expected": _V},
            "diag(w) (x) x",
            DIAGONAL_LAYOUT,
        ),
        OpSpec(
            "block_diagonal_matvec",
            ("blocks", "x"),
            {"blocks": _BLOCKS, "x": _V, "expected": _V},
            "blockdiag(blocks) (x) x (norms are global, not per block)",
            BLOCK_LAYOUT,
        ),
        OpSpec(
            "banded_matvec",
            ("bands", "x"),
            {"bands": _BANDS, "x": _V, "expected": _V},
            "banded(bands) (x) x",
            BANDED_LAYOUT,
        ),
        OpSpec(
            "hra_diagonal",
            ("w", "u"),
            {"w": _V, "u": _V, "expected": _V},
            "HRA(u) = logmap0(diag(w) (x) expmap0(u)) (= W u in exact arithmetic)",
            DIAGONAL_LAYOUT,
        ),
        OpSpec(
            "hra_block",
            ("blocks", "u"),
            {"blocks": _BLOCKS, "u": _V, "expected": _V},
            "HRA(u) = logmap0(blockdiag(blocks) (x) expmap0(u)) (= W u in exact arithmetic)",
            BLOCK_LAYOUT,
        ),
        OpSpec(
            "hra_banded",
            ("bands", "u"),
            {"bands": _BANDS, "u": _V, "expected": _V},
            "HRA(u) = logmap0(banded(bands) (x) expmap0(u)) (= W u in exact arithmetic)",
            BANDED_LAYOUT,
        ),
        OpSpec(
            "entailment_aperture",
            ("x", "K"),
            {"x": _V, "K": _S, "expected": _S},
            "psi = arcsin(K (1 - c|x|^2) / (sqrt(c)|x|)), sqrt(c)|x| >= r_in(K)",
        ),
        OpSpec(
            "entailment_angle",
            ("x", "y"),
            {"x": _V, "y": _V, "expected": _S},
            "Xi = arccos((<x,y>(1+c|x|^2) - |x|^2(1+c|y|^2)) / "
            "(|x| |x-y| sqrt(1 + c^2|x|^2|y|^2 - 2c<x,y>)))",
        ),
        OpSpec(
            "entailment_energy",
            ("x", "y", "K"),
            {"x": _V, "y": _V, "K": _S, "expected": _S},
            "max(0, Xi(x, y) - psi(x))",
        ),
        OpSpec(
            "to_lorentz",
            ("x",),
            {"x": _V, "expected": _L},
            "((1 + c|x|^2) / (sqrt(c)(1 - c|x|^2)), 2x / (1 - c|x|^2)), time first",
        ),
        OpSpec(
            "from_lorentz",
            ("v",),
            {"v": _L, "expected": _V},
            "v_s / (1 + sqrt(1 + c|v_s|^2)) (v = (v_0, v_s), time first)",
        ),
        OpSpec(
            "lorentz_dist",
            ("u", "v"),
            {"u": _L, "v": _L, "expected": _S},
            "arcosh(c (u_0 v_0 - <u_s, v_s>)) / sqrt(c), u_0 = sqrt(1/c + |u_s|^2)",
        ),
    ]
}
assert tuple(SPECS) == contract.OPS

#: Argument kinds of the families module that hold one value shared by a whole batch.
_SHARED_KINDS = {"B", "N"}


@dataclass
class _Rows:
    """Golden cases being collected for one op and tier."""

    inputs: dict[str, list[np.ndarray]]
    c: list[float]
    family: list[int]

    def add(self, values: Mapping[str, np.ndarray], c: float, family: int) -> None:
        for name, value in values.items():
            self.inputs[name].append(value)
        self.c.append(c)
        self.family.append(family)


def _round(value: Any, tier: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(value, dtype=np.float64).astype(tier).astype(np.float64)


def _family_rows(spec: OpSpec, tier: str) -> list[tuple[dict[str, np.ndarray], float, int]]:
    """Per-point cases of the numerics families for a (non-HRA) op, rounded to ``tier``."""
    kinds = families.SIGNATURES[spec.op]
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
    rng = np.random.default_rng([FAMILY_SEED, contract.OPS.index(spec.op)])
    identity = {
        "w": np.ones(DIM),
        "blocks": np.broadcast_to(np.eye(_BLOCK), _BLOCKS).copy(),
        "bands": np.vstack(
            [np.zeros((_BANDWIDTH, DIM)), np.ones((1, DIM)), np.zeros((_BANDWIDTH, DIM))]
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
    from hyperet.oracle.implementations import op_table

    return np.asarray(op_table("reference", "float64")[spec.op](values, c), dtype=np.float64)


def _allowance(spec: OpSpec, values: Mapping[str, np.ndarray], c: float) -> float:
    """The contract's conditioning allowance of one case."""
    if spec.op in contract.CONDITIONED_OPS:
        first, second = contract.CONDITIONED_OPS[spec.op]
        lam1 = reference.conformal_factor(values[first], c=c)
        lam2 = reference.conformal_factor(values[second], c=c)
        return float(contract.pair_allowance(lam1, lam2))
    if spec.op == "entailment_energy":
        xi = reference.entailment_angle(values["x"], values["y"], c=c)
        psi = reference.entailment_aperture(values["x"], c=c, K=float(values["K"]))
        energy = reference.entailment_energy(values["x"], values["y"], c=c, K=float(values["K"]))
        return float(contract.energy_allowance(xi, psi, energy))
    if spec.op.startswith("hra_"):
        from hyperet.oracle.implementations import TO_DENSE

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
    return _hra_rows(spec, tier) if op.startswith("hra_") else _family_rows(spec, tier)


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
            + _ALLOWANCE_RULE.get("hra" if op.startswith("hra_") else op, "a = 1")
        ),
        "contract": json.dumps(
            {dt: contract.CONTRACT[dt][op].ulp for dt in sorted(contract.CONTRACT)},
            sort_keys=True,
        ),
    }
    return tensors, metadata


_ALLOWANCE_RULE = {
    "mobius_add": "a = max(1, lambda_x lambda_y / 4)",
    "transport": "a = max(1, lambda_x lambda_y / 4)",
    "gyration": "a = max(1, lambda_a lambda_b / 4)",
    "hra": "a = max(1, (lambda_p + lambda_q) / 4), p = expmap0(u), q = M (x) p",
}


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
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(directory).as_posix()}")
    return lines


def write_manifest(directory: Path) -> Path:
    """Write :data:`MANIFEST` for the golden files under ``directory`` (atomically)."""
    path = Path(directory) / MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in manifest_lines(directory)))
    tmp.replace(path)
    return path


def export_golden(
    directory: Path, *, ops: Sequence[str] = contract.OPS, tiers: Sequence[str] = TIERS
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
