"""Data-parallel training: 2 gloo processes x batch B/2 give the losses of 1 process x batch B.

One spawn of two processes runs, in one process group: an uninterrupted nano run (the LM
objective, HyperET trained in both stages), the same run interrupted mid-stage and resumed, and a
short hyperbolic-ITC run. The one-process runs are the same calls in the test process itself.
Rank 1 must never write: its file-writing functions are replaced by ones that fail.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from hyperet.config import RunConfig, preset, with_overrides
from hyperet.train import StepDone, train

STAGE_STEPS = {"vision": 6, "lm": 6, "align": 6, "instruct": 6}


def _lm_config() -> RunConfig:
    return with_overrides(preset("nano"), hyperet="diagonal", hyperet_stage="both")


def _itc_config() -> RunConfig:
    steps = {"vision": 2, "itc": 4, "lm": 1, "align": 1, "instruct": 1}
    return with_overrides(preset("nano"), objective="hyperbolic-itc", steps=steps)


class _Interrupt(Exception):
    pass


def _interrupt_at(stage: str, step: int) -> Any:
    def handler(event: object) -> None:
        if isinstance(event, StepDone) and event.stage == stage and event.step == step:
            raise _Interrupt

    return handler


def _forbid_writes_off_main() -> None:
    import hyperet.train.engine as engine
    import hyperet.train.run as run

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"rank {dist.get_rank()} tried to write {args[:1]}")

    engine.save_checkpoint = refuse  # type: ignore[assignment]
    for name in ("write_json", "prepare_run_directory"):
        setattr(run, name, refuse)


def _worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    timeout = datetime.timedelta(seconds=120)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timeout)
    try:
        if rank != 0:
            _forbid_writes_off_main()
        base = Path(root)
        train(_lm_config(), base / "ddp")
        try:  # the first checkpoint of instruct is at step 4 (checkpoint_every=4)
            train(_lm_config(), base / "resumed", on_event=_interrupt_at("instruct", 5))
        except _Interrupt:
            pass
        train(_lm_config(), base / "resumed", resume=True)
        train(_itc_config(), base / "itc")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _losses(run: Path) -> dict[str, list[float]]:
    stages = json.loads((run / "metrics.json").read_text())["stages"]
    return {name: s["losses"] for name, s in stages.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    mp.start_processes(
        _worker, args=(2, _free_port(), str(root)), nprocs=2, join=True, start_method="spawn"
    )
    train(_lm_config(), root / "single")
    train(_itc_config(), root / "single-itc")
    return root


def test_two_processes_match_one_process(runs: Path) -> None:
    single, ddp = _losses(runs / "single"), _losses(runs / "ddp")
    assert list(ddp) == ["vision", "lm", "align", "instruct"]
    for name, losses in single.items():
        assert len(ddp[name]) == STAGE_STEPS[name]
        np.testing.assert_allclose(ddp[name], losses, rtol=2e-5, err_msg=name)
    one = load_file(runs / "single" / "checkpoints" / "instruct" / "model.safetensors")
    two = load_file(runs / "ddp" / "checkpoints" / "instruct" / "model.safetensors")
    assert sorted(one) == sorted(two)
    assert any("adapters.q" in key for key in one)  # HyperET trained too
    for key in one:
        a, b = one[key], two[key]
        if key.endswith(("in_proj_bias", "qkv.bias")):
            # the key bias has an exactly zero gradient (softmax ignores a shift per query), so
            # Adam turns rounding noise into full steps there: compare the q and v thirds only
            n = a.shape[0] // 3
            a, b = torch.cat([a[:n], a[2 * n :]]), torch.cat([b[:n], b[2 * n :]])
        torch.testing.assert_close(b, a, rtol=1e-4, atol=5e-5, msg=key)


def test_resume_under_ddp_reaches_the_uninterrupted_run(runs: Path) -> None:
    assert _losses(runs / "resumed") == _losses(runs / "ddp")  # bitwise
    resumed = load_file(runs / "resumed" / "checkpoints" / "instruct" / "model.safetensors")
    ddp = load_file(runs / "ddp" / "checkpoints" / "instruct" / "model.safetensors")
    assert all(torch.equal(resumed[k], ddp[k]) for k in ddp)


def test_itc_gathers_the_global_batch(runs: Path) -> None:
    single, ddp = _losses(runs / "single-itc"), _losses(runs / "itc")
    assert len(ddp["itc"]) == 4
    for name, losses in single.items():
        np.testing.assert_allclose(ddp[name], losses, rtol=2e-5, err_msg=name)


def test_the_run_directory_is_a_normal_one(runs: Path) -> None:
    names = sorted(p.relative_to(runs / "ddp").as_posix() for p in (runs / "ddp").rglob("*"))
    single = sorted(p.relative_to(runs / "single").as_posix() for p in (runs / "single").rglob("*"))
    assert names == single  # nothing extra (no per-rank files, no temporaries)
