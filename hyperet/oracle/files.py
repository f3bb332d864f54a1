"""The golden file format: reading, checking and writing one file, finding a directory's files.

Every file holds, for ``N`` cases of one op (:mod:`hyperet.oracle.spec`):

- the op's inputs under the reference's argument names (``x``, ``y``, ``u``, ``r``, ``m``,
  ``w``, ``blocks``, ``bands``, ``a``, ``b``, ``z``, ``v``, ``eps``, ``K``), leading axis ``N``;
- ``c`` of shape ``(N,)``: the curvature is ``-c`` with ``c > 0``, one value per case;
- ``expected``: the float64 reference's output, ``(N, n)`` for points and vectors, ``(N,)`` for
  scalars;
- ``family`` ``(N,)`` int32 and the JSON legend in metadata ``families``;
- ``allowance`` ``(N,)`` float64: the contract's per-case conditioning allowance
  (:mod:`hyperet.oracle.contract`).

The format (tensor names, shapes, metadata keys) is documented in docs/oracle.md;
:func:`read_golden_file` is one reader of it, not the definition. Files are written by
:func:`write_safetensors`, deterministically (sorted keys: the ``safetensors`` package orders
metadata keys randomly, so it is only used to read), and read through :mod:`hyperet._io`; every
problem raises :class:`OracleInputError` naming the file.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hyperet import _io

FORMAT_NAME = "hyperet-golden"
FORMAT_VERSION = "1"
#: The tiers of an export: the format the inputs are exact in (one subdirectory each).
TIERS: tuple[str, ...] = ("float64", "float32")

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
    little-endian, C-ordered tensor bytes back to back. Written atomically
    (:func:`hyperet._io.atomic_write_bytes`).
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


def _metadata_json(metadata: Mapping[str, str], key: str, path: Path) -> Any:
    """A JSON-valued metadata entry, parsed strictly (:func:`hyperet._io.parse_json`)."""
    return _io.parse_json(
        metadata[key].encode("utf-8"), f"{path}: metadata {key!r}", error=OracleInputError
    )


def read_golden_file(path: Path) -> GoldenFile:
    """Load and check one golden file; :class:`OracleInputError` if it is not one."""
    path = Path(path)
    tensors, metadata = _io.read_safetensors(
        path,
        dtypes=frozenset(_DTYPE_CODES.values()),
        require_digest=False,
        framework="numpy",
        error=OracleInputError,
    )
    if metadata.get("format") != FORMAT_NAME:
        raise OracleInputError(f"{path}: not a hyperet golden file (metadata 'format' missing)")
    _io.check_version(metadata.get("format_version"), FORMAT_VERSION, str(path), OracleInputError)
    try:
        names = _metadata_json(metadata, "inputs", path)
        legend = {int(k): v for k, v in _metadata_json(metadata, "families", path).items()}
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
    except OracleInputError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError) as error:
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


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "TIERS",
    "GoldenFile",
    "OracleInputError",
    "find_golden_files",
    "read_golden_file",
    "write_safetensors",
]
