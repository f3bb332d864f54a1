"""Guarded file I/O shared by every package: one atomic writer, one JSON and one safetensors reader.

Nothing lost:

- :func:`atomic_write_bytes` (and :func:`write_json`) writes a temporary file in the target's
  directory, ``fsync`` s it, moves it into place with ``os.replace`` and ``fsync`` s the
  directory: a reader sees the old file or the new one, never a half-written one, even across a
  power cut.
- :func:`atomic_directory` does the same for a directory of files (a checkpoint): the new one
  is built in a temporary sibling; an existing one is moved aside to ``.<name>.hyperet-old``
  only for the instant of the swap.
- Temporaries are named ``.<name>.<random>.hyperet-tmp`` so that :func:`clean_temporaries` can
  recognise and remove what a killed process left behind (and put a moved-aside directory back
  when the kill fell inside a swap).

Nothing silent:

- :func:`read_bytes` opens regular files only (a FIFO, device or socket is refused without
  blocking), refuses symlinks that resolve outside ``root`` and files larger than a limit.
- :func:`read_json` adds strict UTF-8, a nesting-depth limit, no duplicate keys and no
  ``NaN`` / ``Infinity``.
- :func:`encode_safetensors` records a SHA-256 of the file's content (header without the digest
  itself, then the tensor bytes) in the metadata key ``sha256``; :func:`read_safetensors`
  verifies it, accepts only the dtypes it is told to (nothing is cast) and can refuse
  non-finite values.

Every failure raises ``error`` (a :class:`ValueError` subclass chosen by the caller, default
:class:`FileCheckError`) with a one-line message that starts with the file's path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import stat
import struct
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

#: Suffix of every temporary this module creates (recognised by :func:`clean_temporaries`).
TEMP_SUFFIX = ".hyperet-tmp"
#: Suffix of a directory moved aside during :func:`atomic_directory`'s swap.
OLD_SUFFIX = ".hyperet-old"
#: Default size limits (bytes): JSON documents and safetensors files.
MAX_JSON_BYTES = 64 * 2**20
MAX_SAFETENSORS_BYTES = 4 * 2**30
#: Largest safetensors header (bytes) and deepest JSON nesting accepted.
MAX_HEADER_BYTES = 16 * 2**20
MAX_JSON_DEPTH = 64
#: Metadata key holding the content digest of a safetensors file.
DIGEST_KEY = "sha256"
#: safetensors dtype codes of floating-point tensors (checked for finiteness on request).
FLOAT_CODES = frozenset({"F64", "F32", "F16", "BF16"})

#: Test seam: called as ``hook(path, phase)`` at each commit point of every atomic write
#: (``"written"``: the temporary is complete, not yet in place; ``"swapped"``: a directory's old
#: version is moved aside, the new one not yet in place). Tests raise from it to simulate a kill.
commit_hook: Callable[[Path, str], None] | None = None


class FileCheckError(ValueError):
    """A file that cannot be read safely (missing, not regular, too large, corrupt, tampered)."""


# ----------------------------------------------------------------------------- writing


def _hook(path: Path, phase: str) -> None:
    if commit_hook is not None:
        commit_hook(path, phase)


def fsync_directory(path: Path) -> None:
    """Flush a directory entry to disk (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``: temporary sibling, ``fsync``, ``os.replace``, directory fsync.

    On an ordinary exception the temporary is removed; after a kill it stays behind, recognisable
    by its name, until :func:`clean_temporaries` runs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _hook(path, "written")
        os.replace(tmp, path)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def json_text(payload: Any, *, sort_keys: bool = False) -> str:
    """The JSON text :func:`write_json` writes (indented, no NaN/inf, trailing newline)."""
    return json.dumps(payload, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"


def write_json(path: Path, payload: Any, *, sort_keys: bool = False) -> None:
    """Atomically write ``payload`` as indented JSON (``NaN`` / ``inf`` are refused)."""
    atomic_write_bytes(path, json_text(payload, sort_keys=sort_keys).encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Build a directory in a temporary sibling (yielded), then move it into place as a whole.

    Files written into the yielded directory should be flushed (:func:`write_file_synced`). An
    existing ``path`` is moved to ``.<name>.hyperet-old`` just before the new one takes its place
    and deleted afterwards; :func:`clean_temporaries` puts it back if a kill falls in between.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX))
    try:
        yield tmp
        fsync_directory(tmp)
        _hook(path, "written")
        old = path.parent / f".{path.name}{OLD_SUFFIX}"
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
            _hook(path, "swapped")
        os.replace(tmp, path)
        fsync_directory(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_file_synced(path: Path, data: bytes) -> None:
    """Write and ``fsync`` a file inside a directory that :func:`atomic_directory` will commit."""
    _write_file(path, data)


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary or moved-aside entry written by this module."""
    return name.startswith(".") and (name.endswith(TEMP_SUFFIX) or name.endswith(OLD_SUFFIX))


def clean_temporaries(directory: Path) -> list[str]:
    """Remove the temporaries a killed writer left in ``directory``; returns their names.

    A moved-aside ``.<name>.hyperet-old`` whose ``<name>`` is missing (a kill inside a swap) is
    moved back instead: it is the last complete version.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in sorted(directory.iterdir()):
        if not is_temporary(entry.name):
            continue
        if entry.name.endswith(OLD_SUFFIX):
            original = directory / entry.name[1 : -len(OLD_SUFFIX)]
            if not original.exists() and not original.is_symlink():
                os.replace(entry, original)
                removed.append(entry.name)
                continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    if removed:
        fsync_directory(directory)
    return removed


# ----------------------------------------------------------------------------- reading


def _inside(path: Path, root: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def check_inside(
    path: Path, root: Path | None, *, error: type[ValueError] = FileCheckError
) -> None:
    """Refuse ``path`` when it (through any symlink) resolves outside ``root``."""
    if root is not None and not _inside(path, root):
        raise error(f"{path}: resolves outside {root} (symlink to {os.path.realpath(path)})")


def read_bytes(
    path: Path,
    *,
    max_bytes: int,
    root: Path | None = None,
    error: type[ValueError] = FileCheckError,
) -> bytes:
    """The content of a regular file of at most ``max_bytes`` bytes.

    Refused, with ``error`` naming the path: a missing file, anything that is not a regular file
    (a FIFO is opened non-blocking, so it cannot hang), a path that resolves outside ``root``,
    a file larger than ``max_bytes``.
    """
    path = Path(path)
    check_inside(path, root, error=error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except OSError as err:
        raise error(f"{path}: cannot open ({err.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: not a regular file")
        if info.st_size > max_bytes:
            raise error(f"{path}: {info.st_size} bytes, more than the limit of {max_bytes}")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"{path}: more than the limit of {max_bytes} bytes")
    return data


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def parse_json(
    data: bytes,
    where: str,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    error: type[ValueError] = FileCheckError,
) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, finite numbers only, nesting at most ``max_depth``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{where}: not UTF-8 text") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply (limit {max_depth})") from None
    except ValueError as err:  # JSONDecodeError, duplicates, NaN/Infinity
        raise error(f"{where}: invalid JSON ({_one_line(err)})") from None
    if _depth(value) > max_depth:
        raise error(f"{where}: JSON nested too deeply (limit {max_depth})")
    for item in _walk(value):
        if isinstance(item, float) and not math.isfinite(item):  # e.g. 1e999
            raise error(f"{where}: JSON holds a non-finite number ({item})")
    return value


def _walk(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def read_json(
    path: Path,
    *,
    root: Path | None = None,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    error: type[ValueError] = FileCheckError,
) -> Any:
    """Read a JSON file through :func:`read_bytes` and :func:`parse_json`."""
    data = read_bytes(path, max_bytes=max_bytes, root=root, error=error)
    return parse_json(data, str(path), max_depth=max_depth, error=error)


def expect(value: Any, kind: type | tuple[type, ...], where: str, error: type[ValueError]) -> Any:
    """``value`` when it is an instance of ``kind`` (``bool`` is never an int), else ``error``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise error(f"{where}: expected {names}, got {type(value).__name__} {_short(value)}")
    return value


def check_version(
    found: Any, supported: str, where: str, error: type[ValueError] = FileCheckError
) -> None:
    """Refuse a file whose ``format_version`` ``found`` is not the ``supported`` one."""
    if found != supported:
        raise error(
            f"{where}: format version {found!r} is not supported (this hyperet reads {supported!r})"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ----------------------------------------------------------------------------- safetensors


def _canonical_header(header: Mapping[str, Any]) -> bytes:
    """The header as hashed: sorted keys, no whitespace, without the digest itself."""
    meta = {k: v for k, v in header.get("__metadata__", {}).items() if k != DIGEST_KEY}
    body = {k: v for k, v in header.items() if k != "__metadata__"}
    body["__metadata__"] = meta
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def content_digest(header: Mapping[str, Any], data: bytes | memoryview) -> str:
    """SHA-256 (hex) of a safetensors file's canonical header and tensor bytes."""
    h = hashlib.sha256(_canonical_header(header))
    h.update(data)
    return h.hexdigest()


def _split_file(blob: bytes, where: str, error: type[ValueError]) -> tuple[dict[str, Any], int]:
    def bad(reason: str) -> ValueError:
        return error(f"{where}: not a readable safetensors file ({reason})")

    if len(blob) < 8:
        raise bad("shorter than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > min(MAX_HEADER_BYTES, len(blob) - 8):
        raise bad(f"header length {n} is out of range")
    try:
        header = parse_json(blob[8 : 8 + n], "header", max_depth=4)
    except FileCheckError as err:
        raise bad(str(err)) from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise bad("metadata must map strings to strings")
    return header, 8 + n


def encode_safetensors(tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> bytes:
    """The bytes of a safetensors file of torch ``tensors`` with ``metadata`` and its digest."""
    from safetensors.torch import save

    blob = save(dict(tensors), metadata=dict(metadata))
    header, start = _split_file(blob, "tensors", FileCheckError)
    signed = {**metadata, DIGEST_KEY: content_digest(header, memoryview(blob)[start:])}
    return save(dict(tensors), metadata=signed)


def read_safetensors(
    path: Path,
    *,
    dtypes: frozenset[str] | set[str],
    root: Path | None = None,
    max_bytes: int = MAX_SAFETENSORS_BYTES,
    require_digest: bool = True,
    finite: bool = False,
    framework: str = "pt",
    error: type[ValueError] = FileCheckError,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Read a safetensors file: ``(tensors, metadata)``, every check of the module docstring.

    ``dtypes`` are safetensors codes (``"F32"``, ``"I64"``, ...): any other dtype is refused,
    nothing is cast. The digest is verified when present and required unless
    ``require_digest=False`` (files written by other tools). ``finite=True`` refuses NaN/inf in
    floating tensors. ``framework``: ``"pt"`` (torch tensors) or ``"numpy"``.
    """
    blob = read_bytes(path, max_bytes=max_bytes, root=root, error=error)
    header, start = _split_file(blob, str(path), error)
    meta: dict[str, str] = header.get("__metadata__", {})
    for name, info in header.items():
        if name == "__metadata__":
            continue
        code = info.get("dtype") if isinstance(info, dict) else None
        if code not in dtypes:
            raise error(
                f"{path}: tensor {name!r} has dtype {code}, expected one of {sorted(dtypes)}"
            )
    stored = meta.get(DIGEST_KEY)
    if stored is None and require_digest:
        raise error(f"{path}: no content digest ('{DIGEST_KEY}' metadata); not written by hyperet")
    if stored is not None and stored != content_digest(header, memoryview(blob)[start:]):
        raise error(f"{path}: content digest mismatch (the file was modified or is corrupt)")
    try:
        if framework == "pt":
            from safetensors.torch import load as load_pt

            tensors: dict[str, Any] = dict(load_pt(blob))
        else:
            from safetensors.numpy import load as load_np

            tensors = dict(load_np(blob))
    except Exception as err:  # safetensors raises several types for damaged files
        raise error(f"{path}: not a readable safetensors file ({_one_line(err)})") from None
    if finite:
        for name in sorted(tensors):
            if header[name]["dtype"] in FLOAT_CODES and not _all_finite(tensors[name]):
                raise error(f"{path}: tensor {name!r} holds NaN or inf")
    return tensors, meta


def _all_finite(t: Any) -> bool:
    if hasattr(t, "isfinite"):  # torch
        return bool(t.isfinite().all())
    import numpy as np

    return bool(np.isfinite(t).all())


def sha256_bytes(data: bytes) -> str:
    """SHA-256 (hex) of ``data``."""
    return hashlib.sha256(data).hexdigest()


__all__ = [
    "DIGEST_KEY",
    "TEMP_SUFFIX",
    "FileCheckError",
    "atomic_directory",
    "atomic_write_bytes",
    "check_inside",
    "check_version",
    "clean_temporaries",
    "content_digest",
    "encode_safetensors",
    "expect",
    "json_text",
    "parse_json",
    "read_bytes",
    "read_json",
    "read_safetensors",
    "sha256_bytes",
    "write_file_synced",
    "write_json",
]
