"""The one-way doors of docs/architecture.md, checked on the source (AST) and at import time.

Every module of the package (``hyperet/`` and ``cli/``, installed as ``hyperet.cli``) belongs to a
room: its package under ``hyperet`` (``ops``, ``train``, ...) or its top-level module
(``config``, ``checkpoint``, ...). :data:`LAYERS` orders the rooms from the bottom up; a room
may import only rooms of lower layers (never a peer of its own layer, never a higher one), at
module level or inside a function. Separately, no two modules may import each other in a
cycle at module level.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hyperet"
CLI = ROOT / "cli"

#: The house, bottom up: each room imports only rooms of the layers before its own.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("hyperet",),  # the package root: __version__
    ("choices",),  # named choices (policies, HRA modes, devices, splits): imports nothing
    ("_io",),  # atomic writes, guarded readers
    ("reference",),  # numpy float64 ground truth
    ("ops", "figures"),  # torch fast paths; the tutorial's figures drawn from the reference
    ("nn",),  # HRA: the adapter, injection, merge, adapter files
    ("data", "oracle"),  # procedural data (numpy); golden vectors and grading
    ("config", "batching"),  # the run's config; examples as tensors
    ("alignment", "checkpoint", "overrides", "bucketing"),  # ITC parts; run files; --set
    ("model",),  # the compact MLLM, its aligner included
    ("curves", "device", "distributed"),  # validation curves; where / on how many processes
    ("train",),  # the engine, the recipe, the run directory
    ("evaluate", "branch", "progress_log"),  # measuring a run; starting one from another
    ("probe", "bench", "study"),  # linear probes of a run's features; benchmarks; evidence grids
    ("cli",),  # the click commands
)
#: Rooms that import no other room: plumbing that knows nothing of the recipe.
LEAVES: frozenset[str] = frozenset({"choices", "_io", "bucketing", "device", "distributed"})
#: what a leaf may still import: the import-free list of named choices
LEAF_MAY_IMPORT: frozenset[str] = frozenset({"choices"})
LAYER_OF: dict[str, int] = {room: i for i, layer in enumerate(LAYERS) for room in layer}
THIRD_PARTY_FORBIDDEN = {"reference": {"torch"}}


def _module_files() -> dict[str, Path]:
    """Every module of the installed package by dotted name (``hyperet.cli.*`` from ``cli/``)."""
    out: dict[str, Path] = {}
    for base, prefix in ((PACKAGE, ("hyperet",)), (CLI, ("hyperet", "cli"))):
        for path in sorted(base.rglob("*.py")):
            parts = (*prefix, *path.relative_to(base).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _module_files()


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "hyperet"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name of a ``from ... import`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if MODULES[module].name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Modules an import statement names (``from a import b``: ``a.b`` when it is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = _resolve(module, node)
    return [base] + [
        f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES
    ]


def _all_imports(module: str) -> set[str]:
    """Every module name imported anywhere in ``module`` (module level or in a function)."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update(_targets(module, node))
    return names


def _module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements executed when the module is imported (``TYPE_CHECKING`` blocks not)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
            if name != "TYPE_CHECKING":
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level.

    Importing ``a.b.c`` also runs the packages ``a`` and ``a.b`` (their ``__init__``), so they
    are edges too, except the importer's own enclosing packages (already being imported).
    """
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for node in _module_level(ast.parse(path.read_text()).body):
            for target in _targets(module, node):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    name = ".".join(parts[:i])
                    inside = f"{module}.".startswith(f"{name}.")
                    if name in MODULES and name != module and not inside:
                        graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_room_has_a_layer() -> None:
    rooms = {_room(m) for m in MODULES}
    assert rooms - set(LAYER_OF) == set(), "add the new room to LAYERS (and docs/architecture.md)"
    assert set(LAYER_OF) - rooms == set(), "LAYERS names a room that does not exist"
    assert len(LAYER_OF) == sum(len(layer) for layer in LAYERS), "a room is in two layers"


@pytest.mark.parametrize("module", sorted(MODULES), ids=lambda m: str(MODULES[m].relative_to(ROOT)))
def test_imports_follow_the_one_way_doors(module: str) -> None:
    room = _room(module)
    imported = _all_imports(module)
    rooms = {_room(n) for n in imported if n == "hyperet" or n.startswith("hyperet.")} - {room}
    if room in LEAVES:
        assert not rooms - LEAF_MAY_IMPORT, f"{module} (a leaf) imports the rooms {sorted(rooms)}"
    upward = sorted(r for r in rooms if LAYER_OF[r] >= LAYER_OF[room])
    assert not upward, f"{module} (layer {LAYER_OF[room]}) imports {upward}, not below it"
    banned = {n for n in imported if n.split(".")[0] in THIRD_PARTY_FORBIDDEN.get(room, set())}
    assert not banned, f"{module} imports {sorted(banned)}"


def test_no_module_level_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "f": {"d"}}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_parent_packages_and_skips_type_checking() -> None:
    graph = import_graph()
    assert "hyperet.alignment" in graph["hyperet.model.mllm"]  # its __init__ runs first
    assert "hyperet.train" not in graph["hyperet.train.run"]  # its own package: being imported
    assert "hyperet.train.stages" in graph["hyperet.train.run"]


def test_importing_the_reference_does_not_import_torch(tmp_path: Path) -> None:
    code = "import hyperet.reference, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
