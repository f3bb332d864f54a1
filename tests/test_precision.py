"""bfloat16 autocast training (``StageConfig.precision``): what stays float32, what changes,
resume, and where the small preset uses it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import resume_helpers
import torch
from safetensors.torch import load_file

from hyperet.config import STAGES, RunConfig, preset
from hyperet.data import Tokenizer
from hyperet.model.clip import ContrastiveHead
from hyperet.model.mllm import next_token_loss
from hyperet.train import Context, build_model, build_training_data, instruct_stage
from hyperet.train.engine import make_optimizer, train_step

NANO = preset("nano")


def _with_precision(config: RunConfig, precision: str) -> RunConfig:
    """Every stage in ``precision``."""
    stages = {
        name: dataclasses.replace(stage, precision=precision)
        for name, stage in config.train.stages.items()
    }
    return dataclasses.replace(config, train=dataclasses.replace(config.train, stages=stages))


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^train\.stages\.vision\.precision"):
        _with_precision(NANO, "float16")
    with pytest.raises(ValueError, match=r"^precision"):
        bad = dataclasses.replace(NANO.train.stages["instruct"], precision="half")  # unvalidated
        train_step("instruct", 0, bad, None, None, 1.0)  # type: ignore[arg-type]


def test_losses_are_float32_under_autocast() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    emb = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lm = next_token_loss(logits.bfloat16(), labels)
        clip = ContrastiveHead()(emb.bfloat16(), emb.bfloat16(), torch.arange(4))
    assert lm.dtype == torch.float32 and clip.dtype == torch.float32
    # the float32 value of the same (bfloat16-rounded) inputs: the loss itself is not rounded
    expected = next_token_loss(logits.bfloat16().float(), labels)
    assert lm.item() == pytest.approx(expected.item(), rel=1e-6)


def _instruct_step(precision: str) -> tuple[float, list[torch.Tensor], list[torch.Tensor]]:
    config = _with_precision(NANO, precision)
    tokenizer = Tokenizer.build()
    data = build_training_data(config, tokenizer)
    torch.manual_seed(0)
    model = build_model(config, tokenizer)
    task = instruct_stage(Context(config=config, data=data, model=model))
    optimizer = make_optimizer(task, config.train.stages["instruct"])
    value, _ = train_step("instruct", 1, config.train.stages["instruct"], task, optimizer, 1.0)
    grads = [p.grad for p in task.params if p.grad is not None]
    return value, [p.detach().clone() for p in task.params], grads


def test_a_bfloat16_step_keeps_float32_state_and_a_close_loss() -> None:
    value32, params32, _ = _instruct_step("float32")
    value16, params16, grads16 = _instruct_step("bfloat16")
    assert all(p.dtype == torch.float32 for p in params16)
    assert grads16 and all(g.dtype == torch.float32 for g in grads16)
    assert value16 != value32  # the matrix products really ran in bfloat16 ...
    assert value16 == pytest.approx(value32, rel=2e-2)  # ... to bfloat16's accuracy
    moved = [not torch.equal(a, b) for a, b in zip(params16, params32, strict=True)]
    assert any(moved)


def test_bfloat16_training_resumes_to_the_same_result(tmp_path: Path) -> None:
    config = _with_precision(NANO, "bfloat16")
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, checkpoint_every=3)
    )
    config = config.with_stage("instruct", steps=8)
    resumed, reference = resume_helpers.interrupted_and_reference(config, tmp_path, "instruct", 6)
    assert {k: s["losses"] for k, s in resumed["stages"].items()} == {
        k: s["losses"] for k, s in reference["stages"].items()
    }
    last = Path("checkpoints") / STAGES[-1] / "model.safetensors"
    ref, got = load_file(str(tmp_path / "ref" / last)), load_file(str(tmp_path / "run" / last))
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert all(v.dtype != torch.bfloat16 for v in got.values())


def test_small_trains_only_stage_2_in_bfloat16_and_nano_in_float32() -> None:
    small = {name: s.precision for name, s in preset("small").train.stages.items()}
    assert small == {
        "vision": "float32",
        "lm": "float32",
        "align": "float32",
        "instruct": "bfloat16",
    }
    assert {s.precision for s in NANO.train.stages.values()} == {"float32"}


def test_a_cpu_without_native_bfloat16_gets_a_warning(monkeypatch) -> None:
    from hyperet import device as device_facts
    from hyperet.train.run import slow_bfloat16

    small, cpu = preset("small"), torch.device("cpu")
    monkeypatch.setattr(device_facts, "cpu_has_native_bfloat16", lambda: False)
    assert "train.stages.instruct.precision=float32" in (slow_bfloat16(small, cpu) or "")
    assert slow_bfloat16(_with_precision(small, "float32"), cpu) is None
    assert slow_bfloat16(small, torch.device("meta")) is None  # not a CPU: no claim
    monkeypatch.setattr(device_facts, "cpu_has_native_bfloat16", lambda: True)
    assert slow_bfloat16(small, cpu) is None
