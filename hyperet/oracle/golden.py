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

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        for data in chunks:
            handle.write(data)
    tmp.replace(path)


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
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise OracleInputError(f"{path}: not a readable safetensors file ({error})") from None
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
    return golden


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
