"""The one-way doors of docs/architecture.md, checked on the source (AST) and at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hyperet"

# room -> rooms it must never import (by the first component after ``hyperet.``)
FORBIDDEN: dict[str, set[str]] = {
    "reference": {
        "ops",
        "nn",
        "data",
        "model",
        "train",
        "evaluate",
        "alignment",
        "oracle",
        "bench",
        "cli",
        "checkpoint",
        "config",
    },
    "ops": {
        "nn",
        "data",
        "model",
        "train",
        "evaluate",
        "alignment",
        "oracle",
        "bench",
        "cli",
        "checkpoint",
        "config",
    },
    "nn": {"data", "model", "train", "evaluate", "alignment", "oracle", "bench", "cli"},
    "data": {"nn", "model", "train", "evaluate", "alignment", "oracle", "bench", "cli"},
    "model": {"train", "evaluate", "alignment", "oracle", "bench", "cli"},
    # where and on how many processes a run computes: plumbing of train / evaluate only
    "distributed": {"model", "data", "nn", "alignment", "train", "evaluate", "checkpoint", "cli"},
    "device": {"model", "data", "nn", "alignment", "train", "evaluate", "checkpoint", "cli"},
}
for _room_name in FORBIDDEN:  # the evidence study sits on top of train and evaluate
    FORBIDDEN[_room_name] |= {"study"}
for _room_name in ("reference", "ops", "nn", "data", "model"):  # the math never launches runs
    FORBIDDEN[_room_name] |= {"distributed", "device"}
THIRD_PARTY_FORBIDDEN = {"reference": {"torch"}, "data": set()}


def _imports(path: Path) -> set[str]:
    """Every module name imported by ``path`` (absolute, with relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _room(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    return rel[0]


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_imports_follow_the_one_way_doors(path: Path) -> None:
    room = _room(path)
    imported = _imports(path)
    bad = {
        name
        for name in imported
        if name.startswith("hyperet.") and name.split(".")[1] in FORBIDDEN.get(room, set())
    }
    bad |= {
        name for name in imported if name.split(".")[0] in THIRD_PARTY_FORBIDDEN.get(room, set())
    }
    bad |= {name for name in imported if name.startswith("hyperet.cli")}
    assert not bad, f"{path.relative_to(ROOT)} (room {room!r}) imports {sorted(bad)}"


def test_importing_the_reference_does_not_import_torch(tmp_path: Path) -> None:
    code = "import hyperet.reference, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
