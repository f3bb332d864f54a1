"""Every bad input of issue 17 through the CLI: exit 2, one line, no traceback, nothing touched
outside the run directory (and nothing foreign inside it)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from hyperet import _io
from hyperet.checkpoint import LOCK_FILE, run_lock

from .conftest import (
    assert_refused,
    edit_meta,
    read_tensors,
    resign,
    run_cli,
    snapshot,
)

CopyOf = Callable[[Path], Path]
TRAIN = ("train", "--preset", "nano", "--out")


# ----------------------------------------------------------------------------- --force
def test_force_refuses_a_directory_that_is_not_a_run(area: Path) -> None:
    thesis = area / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("\\documentclass{article}")
    before = snapshot(area, area / "nothing")
    assert_refused(run_cli(*TRAIN, thesis, "--force"), "not a hyperet run directory", "thesis.tex")
    assert snapshot(area, area / "nothing") == before


def test_force_refuses_a_run_holding_a_foreign_file(finished_run: Path, copy_of: CopyOf) -> None:
    run = copy_of(finished_run)
    (run / "checkpoints" / "lm" / "notes.txt").write_text("mine")
    before = snapshot(run.parent, run.parent / "nothing")
    assert_refused(run_cli(*TRAIN, run, "--force"), "checkpoints/lm/notes.txt")
    assert snapshot(run.parent, run.parent / "nothing") == before


def test_force_replaces_a_run_directory(finished_run: Path, copy_of: CopyOf, area: Path) -> None:
    run = copy_of(finished_run)
    before = snapshot(area, run)
    result = run_cli(*TRAIN, run, "--force", "--seed", "1")
    assert result.exit_code == 0, result.stderr
    assert json.loads((run / "config.json").read_text())["seed"] == 1
    assert snapshot(area, run) == before


# ----------------------------------------------------------------------------- the lock
def test_a_second_writer_is_refused_while_the_first_holds_the_lock(
    finished_run: Path, copy_of: CopyOf
) -> None:
    run = copy_of(finished_run)
    with run_lock(run):
        assert_refused(run_cli(*TRAIN, run, "--force", "--seed", "1"), "in use", str(os.getpid()))
        assert_refused(run_cli("train", "--out", run, "--resume"), "in use")
    assert json.loads((run / "config.json").read_text())["seed"] == 0  # the first run's


def test_a_stale_lock_is_recognised_and_taken_over(finished_run: Path, copy_of: CopyOf) -> None:
    run = copy_of(finished_run)
    (run / LOCK_FILE).write_text("999999999\n")  # a killed owner: no flock is held
    result = run_cli("train", "--out", run, "--resume")
    assert result.exit_code == 0, result.stderr
    assert not (run / LOCK_FILE).exists()


# ----------------------------------------------------------------------------- resumability
def test_resume_of_a_finished_run_rewrites_only_metrics(
    finished_run: Path, copy_of: CopyOf
) -> None:
    run = copy_of(finished_run)
    before = snapshot(run, run / "metrics.json")
    metrics = (run / "metrics.json").read_text()
    result = run_cli("train", "--out", run, "--resume")
    assert result.exit_code == 0, result.stderr
    assert snapshot(run, run / "metrics.json") == before  # tokenizer.json untouched
    assert json.loads((run / "metrics.json").read_text()) == json.loads(metrics)


def test_lost_metrics_are_rebuilt_from_the_checkpoints(finished_run: Path, copy_of: CopyOf) -> None:
    run = copy_of(finished_run)
    expected = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()  # a kill between the last checkpoint and metrics.json
    assert run_cli("train", "--out", run, "--resume").exit_code == 0
    assert json.loads((run / "metrics.json").read_text()) == expected


def test_leftover_temporaries_are_removed_on_the_next_start(
    finished_run: Path, copy_of: CopyOf
) -> None:
    run = copy_of(finished_run)
    (run / ".tokenizer.json.x1y2.hyperet-tmp").write_text("")
    (run / "checkpoints" / ".lm.a7b8.hyperet-tmp").mkdir()
    assert run_cli("train", "--out", run, "--resume").exit_code == 0
    assert [p for p in run.rglob("*") if _io.is_temporary(p.name)] == []


def test_a_checkpoint_moved_aside_by_a_kill_is_put_back(
    finished_run: Path, copy_of: CopyOf
) -> None:
    run = copy_of(finished_run)
    os.replace(run / "checkpoints" / "instruct", run / "checkpoints" / ".instruct.hyperet-old")
    assert run_cli("eval", run, "--limit", "2").exit_code == 2  # not finished as it stands
    assert run_cli("train", "--out", run, "--resume").exit_code == 0
    assert "already complete" in run_cli("train", "--out", run, "--resume").stderr


# ----------------------------------------------------------------------------- run files
def _resume_and_eval_refused(run: Path, *needles: str) -> None:
    outside = snapshot(run.parent, run)
    assert_refused(run_cli("train", "--out", run, "--resume"), *needles)
    assert_refused(run_cli("eval", run, "--limit", "2"), *needles)
    assert snapshot(run.parent, run) == outside


@pytest.mark.parametrize("content", ["", '{"format": "hyperet-word-tokenizer/1", "tokens": []}'])
def test_a_damaged_tokenizer_is_refused(content: str, finished_run: Path, copy_of: CopyOf) -> None:
    run = copy_of(finished_run)
    (run / "tokenizer.json").write_text(content)
    _resume_and_eval_refused(run, "tokenizer.json")


@pytest.mark.parametrize("payload", ["[]", '{"stages": []}', '{"stages": {"lm": 3}}'])
def test_malformed_metrics_are_refused(payload: str, finished_run: Path, copy_of: CopyOf) -> None:
    run = copy_of(finished_run)
    (run / "metrics.json").write_text(payload)
    _resume_and_eval_refused(run, "metrics.json")


def test_metrics_that_disagree_with_the_checkpoints_are_refused(
    finished_run: Path, copy_of: CopyOf
) -> None:
    run = copy_of(finished_run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["stages"]["lm"]["losses"][0] += 1.0
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert_refused(run_cli("eval", run, "--limit", "2"), "metrics.json", "does not match")


def _config_edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for part in parents:
            config = config[part]
        config[last] = value

    return change


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_config_edit("seed", 1.5), "seed"),
        (_config_edit("vision.width", 10**12), "vision.width"),
        (_config_edit("train.stages.lm.lr", float("inf")), "not a finite number"),
        pytest.param(
            _config_edit("hyperet.c", float("inf")), "not a finite number", marks=pytest.mark.slow
        ),
        (_config_edit("data.test_scenes", 10**9), "data.test_scenes"),
        pytest.param(_config_edit("preset", ["nano"]), "preset", marks=pytest.mark.slow),
    ],
)
def test_bad_config_values_are_refused(
    edit: Callable[[dict[str, Any]], None], needle: str, finished_run: Path, copy_of: CopyOf
) -> None:
    run = copy_of(finished_run)
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (run / "config.json").write_text(json.dumps(config))  # Infinity for inf: not JSON
    _resume_and_eval_refused(run, "config.json", needle)


def test_a_deeply_nested_config_is_refused(finished_run: Path, copy_of: CopyOf) -> None:
    run = copy_of(finished_run)
    (run / "config.json").write_text("[" * 5000 + "]" * 5000)
    _resume_and_eval_refused(run, "config.json", "nested too deeply")


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_a_tokenizer_that_is_not_a_regular_file_is_refused(
    target: str, finished_run: Path, copy_of: CopyOf
) -> None:
    run = copy_of(finished_run)
    (run / "tokenizer.json").unlink()
    if target == "fifo":
        os.mkfifo(run / "tokenizer.json")  # reading it would block forever
    else:
        (run / "tokenizer.json").symlink_to(target)
    _resume_and_eval_refused(run, "tokenizer.json")


def test_a_checkpoint_directory_symlinked_out_of_the_run_is_refused(
    finished_run: Path, copy_of: CopyOf, area: Path
) -> None:
    run = copy_of(finished_run)
    shutil.move(run / "checkpoints" / "lm", area / "elsewhere")
    (run / "checkpoints" / "lm").symlink_to(area / "elsewhere")
    _resume_and_eval_refused(run, "checkpoints/lm", "outside")


# ----------------------------------------------------------------------------- checkpoints
def test_a_stage_checkpoint_copied_over_the_final_one_is_refused(
    finished_run: Path, copy_of: CopyOf
) -> None:
    run = copy_of(finished_run)
    shutil.rmtree(run / "checkpoints" / "instruct")
    shutil.copytree(run / "checkpoints" / "lm", run / "checkpoints" / "instruct")
    _resume_and_eval_refused(run, "holds stage 'lm', expected 'instruct'")


@pytest.mark.parametrize("dtype", [torch.float16, torch.int64])
def test_a_weight_of_another_dtype_is_refused_not_cast(
    dtype: torch.dtype, finished_run: Path, copy_of: CopyOf
) -> None:
    run = copy_of(finished_run)
    path = run / "checkpoints" / "instruct" / "model.safetensors"
    tensors, metadata = read_tensors(path)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].to(dtype)
    resign(path, tensors, metadata)
    _resume_and_eval_refused(run, "dtype")


def test_non_finite_weights_are_refused(finished_run: Path, copy_of: CopyOf) -> None:
    run = copy_of(finished_run)
    path = run / "checkpoints" / "instruct" / "model.safetensors"
    tensors, metadata = read_tensors(path)
    name = sorted(tensors)[-1]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("inf")
    resign(path, tensors, metadata)
    _resume_and_eval_refused(run, "NaN or inf")


@pytest.mark.parametrize(
    "step",
    [-4, pytest.param(10**9, marks=pytest.mark.slow), pytest.param("6", marks=pytest.mark.slow)],
)
def test_a_step_out_of_range_is_refused(step: Any, finished_run: Path, copy_of: CopyOf) -> None:
    run = copy_of(finished_run)
    edit_meta(run / "checkpoints" / "instruct", lambda meta: meta.update(step=step))
    _resume_and_eval_refused(run, "step")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(meta: Any) -> None:
        *parents, last = path.split(".")
        for part in parents:
            meta = meta[int(part)] if isinstance(meta, list) else meta[part]
        meta[int(last) if isinstance(meta, list) else last] = value

    return change


MALFORMED_META = {
    "step-string": _set("step", "4"),
    "step-past-losses": _set("step", 5),
    "complete-string": _set("complete", "no"),
    "stage-number": _set("stage", 3),
    "wall-string": _set("wall_time_s", "x"),
    "wall-negative": _set("wall_time_s", -1.0),
    "scheduler": _set("scheduler.step", 2),
    "samplers-list": _set("samplers", []),
    "sampler-missing": _set("samplers", {}),
    "sampler-pos": _set("samplers.vqa.pos", -1),
    "sampler-rng": _set("samplers.vqa.rng", {"bit_generator": "PCG64", "state": 7}),
    "optimizer-list": _set("optimizer", []),
    "param-groups": _set("optimizer.param_groups", []),
    "weight-decay": _set("optimizer.param_groups.0.weight_decay", 0.5),
    "scalars": _set("optimizer.scalars", []),
    "meta-list": lambda meta: meta.clear(),
}


#: run in the default suite; the others are ``slow`` (each case costs a resume)
QUICK = {
    "step-past-losses",
    "sampler-rng",
    "weight-decay",
    "wall-negative",
    "losses-short",
    "unexpected",
}


def _cases(table: dict[str, Any]) -> list[Any]:
    return [c if c in QUICK else pytest.param(c, marks=pytest.mark.slow) for c in sorted(table)]


@pytest.mark.parametrize("case", _cases(MALFORMED_META))
def test_malformed_state_fields_are_refused_on_resume(
    case: str, interrupted_run: Path, copy_of: CopyOf
) -> None:
    run = copy_of(interrupted_run)
    edit_meta(run / "checkpoints" / "instruct", MALFORMED_META[case])
    outside = snapshot(run.parent, run)
    assert_refused(run_cli("train", "--out", run, "--resume"), "instruct")
    assert snapshot(run.parent, run) == outside


MALFORMED_STATE = {
    "losses-int": lambda t: t.update(losses=t["losses"].long()),
    "losses-short": lambda t: t.update(losses=t["losses"][:2]),
    "rng-short": lambda t: t.update(torch_rng_state=t["torch_rng_state"][:3]),
    "order-not-permutation": lambda t: t.update(
        {"sampler.vqa.order": torch.zeros_like(t["sampler.vqa.order"])}
    ),
    "moment-shape": lambda t: t.update({"optimizer.0.exp_avg": torch.zeros(2)}),
    "unexpected": lambda t: t.update(extra=torch.zeros(1)),
}


@pytest.mark.parametrize("case", _cases(MALFORMED_STATE))
def test_malformed_state_tensors_are_refused_on_resume(
    case: str, interrupted_run: Path, copy_of: CopyOf
) -> None:
    run = copy_of(interrupted_run)
    path = run / "checkpoints" / "instruct" / "state.safetensors"
    tensors, metadata = read_tensors(path)
    MALFORMED_STATE[case](tensors)
    resign(path, tensors, metadata)
    assert_refused(run_cli("train", "--out", run, "--resume"), "instruct")


# ----------------------------------------------------------------------------- the output path
def test_out_under_a_file_or_proc_is_refused(area: Path) -> None:
    (area / "file").write_text("x")
    before = snapshot(area, area / "nothing")
    assert_refused(run_cli(*TRAIN, area / "file" / "run"))
    assert_refused(run_cli(*TRAIN, "/proc/hyperet-run"))
    assert snapshot(area, area / "nothing") == before


@pytest.mark.parametrize(
    ("error", "needle"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "No space left"),
        (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
    ],
)
def test_a_full_disk_or_unwritable_directory_is_one_line(
    error: OSError, needle: str, area: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(path: Path, phase: str) -> None:
        error.filename = str(path)
        raise error

    monkeypatch.setattr(_io, "commit_hook", fail)
    assert_refused(run_cli(*TRAIN, area / "run"), needle, "hyperet-run.json")
    assert sorted(p.name for p in area.iterdir()) == ["run", "sentinel.txt"]
    assert sorted(p.name for p in (area / "run").iterdir()) == []  # no temporary left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_refused(area: Path) -> None:
    locked = area / "locked"
    locked.mkdir(mode=0o500)
    assert_refused(run_cli(*TRAIN, locked / "run"), "Permission denied")


def test_an_infinite_curvature_option_is_refused(area: Path) -> None:
    assert_refused(run_cli(*TRAIN, area / "run", "--curvature", "inf"), "hyperet.c")
    assert not (area / "run").exists()
