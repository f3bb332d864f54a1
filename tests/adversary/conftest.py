"""Shared pieces of the adversary suite: finished and interrupted nano runs, CLI checks."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hyperet.cli.main import main
from safetensors import safe_open

from hyperet import _io
from hyperet.config import preset
from hyperet.train import StepDone, train

NANO = preset("nano")


def run_cli(*args: str) -> Result:
    """Invoke ``hyperet`` in-process; an escaping exception fails the test (a traceback)."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_refused(result: Result, *needles: str) -> str:
    """Exit 2, no traceback, exactly one ``error:`` line, last on stderr, holding ``needles``."""
    err = result.stderr
    assert result.exit_code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert err.rstrip().splitlines()[-1] == errors[0], err
    parts = errors[0].split(": ")
    assert all(a != b for a, b in itertools.pairwise(parts)), errors[0]  # no "P: P:"
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def snapshot(area: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of everything under ``area`` outside ``skip``."""
    out = {}
    for path in sorted(area.rglob("*")):
        if path == skip or skip in path.parents:
            continue
        info = path.lstat()
        out[str(path.relative_to(area))] = (info.st_size, info.st_mtime_ns)
    return out


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adversary") / "finished"
    train(NANO, out)
    return out


@pytest.fixture(scope="session")
def interrupted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A nano run stopped at instruct step 5: checkpoints/instruct is the step-4 one."""
    out = tmp_path_factory.mktemp("adversary") / "interrupted"

    def stop(event: object) -> None:
        if isinstance(event, StepDone) and event.stage == "instruct" and event.step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(NANO, out, on_event=stop)
    return out


@pytest.fixture
def area(tmp_path: Path) -> Path:
    """A folder with a sentinel file next to where the test's run directory goes."""
    (tmp_path / "sentinel.txt").write_text("keep me")
    return tmp_path


@pytest.fixture
def copy_of(area: Path) -> Callable[[Path], Path]:
    def copy(run: Path) -> Path:
        return Path(shutil.copytree(run, area / "run", symlinks=True))

    return copy


def read_tensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata() or {})


def resign(path: Path, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    """Rewrite a safetensors file with a valid digest: a well-formed file saying something bad
    (what only a deliberate edit can produce; it exercises the checks behind the digest)."""
    clean = {k: v for k, v in metadata.items() if k != _io.DIGEST_KEY}
    path.write_bytes(_io.encode_safetensors(tensors, clean))


def edit_meta(checkpoint: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the ``meta`` JSON of both files of a checkpoint, re-signed."""
    for name in ("model.safetensors", "state.safetensors"):
        tensors, metadata = read_tensors(checkpoint / name)
        meta = json.loads(metadata["meta"])
        change(meta)
        metadata["meta"] = json.dumps(meta, sort_keys=True)
        resign(checkpoint / name, tensors, metadata)
