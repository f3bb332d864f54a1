"""A flipped bit in any file of a finished run is refused, or changes nothing that is used.

Each flip is judged by loading the run as ``hyperet eval`` does (:class:`LoadedRun`, which reads
and verifies every file: marker, config, tokenizer, metrics and all four files of every stage
checkpoint): it must raise :class:`CheckpointError`, or give bitwise the weights, tokenizer,
config and metrics of the intact run (a flip in a purely informational string such as the
package version in metrics.json).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from hyperet.checkpoint import CheckpointError
from hyperet.evaluate import LoadedRun

FILES = [
    "hyperet-run.json",
    "config.json",
    "tokenizer.json",
    "metrics.json",
    *(
        f"checkpoints/{stage}/{name}"
        for stage in ("vision", "lm", "align", "instruct")
        for name in ("config.json", "model.safetensors", "state.safetensors", "metrics.json")
    ),
]


def _outcome(run: Path) -> dict[str, Any]:
    loaded = LoadedRun(run)
    return {
        "model": loaded.model.state_dict(),
        "tokens": loaded.tokenizer.tokens,
        "config": loaded.config,
        "metrics": loaded.metrics,
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    same_model = a["model"].keys() == b["model"].keys() and all(
        torch.equal(a["model"][k], b["model"][k]) for k in a["model"]
    )
    return same_model and all(a[k] == b[k] for k in ("tokens", "config", "metrics"))


def _flip_and_judge(run: Path, path: Path, bit: int, baseline: dict[str, Any]) -> None:
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(damaged))
    try:
        outcome = _outcome(run)
    except CheckpointError as err:
        assert "\n" not in str(err)
    else:
        assert _same(outcome, baseline), f"bit {bit} of {path.name}: silently different"
    finally:
        path.write_bytes(original)


def _bits(size: int, count: int, seed: int) -> list[int]:
    """The first and last bit of the file, and ``count - 2`` random ones."""
    rng = random.Random(seed)
    return [0, 8 * size - 1, *(rng.randrange(8 * size) for _ in range(count - 2))]


@pytest.fixture(scope="module")
def run_copy(finished_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path_factory.mktemp("flips") / "run"))


@pytest.fixture(scope="module")
def baseline(run_copy: Path) -> dict[str, Any]:
    return _outcome(run_copy)


@pytest.mark.parametrize("name", FILES)
def test_a_flipped_bit_is_refused_or_harmless(
    name: str, run_copy: Path, baseline: dict[str, Any]
) -> None:
    path = run_copy / name
    for bit in _bits(path.stat().st_size, 3, seed=FILES.index(name)):
        _flip_and_judge(run_copy, path, bit, baseline)


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_many_flipped_bits_are_refused_or_harmless(
    name: str, run_copy: Path, baseline: dict[str, Any]
) -> None:
    path = run_copy / name
    for bit in _bits(path.stat().st_size, 64, seed=100 + FILES.index(name)):
        _flip_and_judge(run_copy, path, bit, baseline)


def test_a_flip_in_the_tensor_data_is_detected(run_copy: Path) -> None:
    """The silent case of issue 17: a flip deep in the weights (no structure changes)."""
    path = run_copy / "checkpoints" / "instruct" / "model.safetensors"
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[-100] ^= 0x40  # an exponent bit of a float32 weight: 1e38-scale values before
    path.write_bytes(bytes(damaged))
    try:
        with pytest.raises(CheckpointError, match="content digest mismatch"):
            LoadedRun(run_copy)
    finally:
        path.write_bytes(original)
