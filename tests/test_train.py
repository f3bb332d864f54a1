"""The staged recipe: schedule, sampling, determinism, resume, NaN guard, overfitting, HyperET."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resume_helpers
import torch
from safetensors.torch import load_file

from hyperet.checkpoint import load_checkpoint
from hyperet.config import STAGES, StageConfig, preset, with_overrides
from hyperet.data import Tokenizer
from hyperet.train import (
    STAGE_RECIPE,
    Context,
    NonFiniteLossError,
    RunDirectoryError,
    Sampler,
    StageTask,
    build_model,
    build_training_data,
    instruct_stage,
    is_mc_step,
    learning_rate,
    train,
)

NANO = preset("nano")


def _final_tensors(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / STAGES[-1] / "model.safetensors"))


def _losses(metrics: dict[str, Any]) -> dict[str, list[float]]:
    return {name: s["losses"] for name, s in metrics["stages"].items()}


# ---------------------------------------------------------------------- schedule and sampling
def test_learning_rate_warmup_then_cosine() -> None:
    stage = StageConfig(steps=11, lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    assert [learning_rate(stage, s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert learning_rate(stage, 4) == pytest.approx(1.0)  # cosine starts at the peak
    assert learning_rate(stage, 7) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(pi/2) = 0
    assert learning_rate(stage, 10) == pytest.approx(0.1)  # last step: the floor


def test_sampler_is_a_sequence_of_permutations_and_resumes_exactly() -> None:
    a = Sampler(7, [1, 2])
    first = a.take(7)
    assert sorted(first.tolist()) == list(range(7))
    a.take(3)
    state, order = a.state()
    rest = a.take(20)
    b = Sampler(7, [9])
    b.restore(state, order)
    assert b.take(20).tolist() == rest.tolist()


def test_mc_steps_are_the_requested_fraction() -> None:
    steps = [is_mc_step(s, 0.2) for s in range(100)]
    assert sum(steps) == 20
    assert not any(is_mc_step(s, 0.0) for s in range(10))
    assert all(is_mc_step(s, 1.0) for s in range(10))


# ---------------------------------------------------------------------- whole runs (nano)
def test_same_seed_same_metrics_and_weights(tmp_path: Path) -> None:
    m1 = train(NANO, tmp_path / "a")
    m2 = train(NANO, tmp_path / "b")
    assert _losses(m1) == _losses(m2)
    assert all(len(v) == NANO.train.stages[k].steps for k, v in _losses(m1).items())
    t1, t2 = _final_tensors(tmp_path / "a"), _final_tensors(tmp_path / "b")
    assert t1.keys() == t2.keys()
    assert all(torch.equal(t1[k], t2[k]) for k in t1)
    other = train(with_overrides(NANO, seed=1), tmp_path / "c")
    assert _losses(other) != _losses(m1)


@pytest.mark.parametrize(("stage", "step"), [("vision", 5), ("instruct", 6)])
def test_resume_after_interruption_equals_uninterrupted(
    tmp_path: Path, stage: str, step: int
) -> None:
    config = dataclasses.replace(NANO, train=dataclasses.replace(NANO.train, checkpoint_every=3))
    config = config.with_stage("instruct", steps=8)

    def mid_stage(run: Path) -> None:
        ckpt = load_checkpoint(run / "checkpoints" / stage)
        assert not ckpt.complete and ckpt.meta["step"] == 3  # last mid-stage checkpoint

    resumed, reference = resume_helpers.interrupted_and_reference(
        config, tmp_path, stage, step, after_interrupt=mid_stage
    )
    assert _losses(resumed) == _losses(reference)
    ref, got = _final_tensors(tmp_path / "ref"), _final_tensors(tmp_path / "run")
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    train(NANO.with_stage("lm", steps=1), tmp_path / "run")
    with pytest.raises(RunDirectoryError, match="different config"):
        train(with_overrides(NANO, seed=3), tmp_path / "run", resume=True)


def test_non_empty_output_is_refused_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(RunDirectoryError, match="not empty"):
        train(NANO, out)
    assert (out / "notes.txt").read_text() == "keep me"
    with pytest.raises(RunDirectoryError, match="nothing to resume"):
        train(NANO, tmp_path / "empty", resume=True)


def test_itc_objective_adds_the_itc_stage_after_vision(tmp_path: Path) -> None:
    """ITC objectives are tested in tests/alignment/test_itc_cli.py; here only the order."""
    config = with_overrides(NANO, objective="hyperbolic-itc", steps={"itc": 2})
    metrics = train(config, tmp_path / "run")
    assert list(metrics["stages"]) == ["vision", "itc", "lm", "align", "instruct"]
    assert len(metrics["stages"]["itc"]["losses"]) == 2


def _poison_instruct(
    monkeypatch: pytest.MonkeyPatch,
    poison: Callable[[StageTask, int, torch.Tensor], torch.Tensor],
) -> None:
    """Make the instruct stage's loss at each step ``poison(task, step, clean loss)``."""

    def poisoned(ctx: Context) -> StageTask:
        task = instruct_stage(ctx)
        clean = task.loss

        def loss(step: int, batch_size: int) -> torch.Tensor:
            return poison(task, step, clean(step, batch_size))

        return dataclasses.replace(task, loss=loss)

    recipe = [(n, poisoned if n == "instruct" else f) for n, f in STAGE_RECIPE]
    monkeypatch.setattr("hyperet.train.stages.STAGE_RECIPE", recipe)


def test_non_finite_loss_stops_training_and_is_never_checkpointed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison_instruct(
        monkeypatch, lambda task, step, value: value * float("nan") if step == 5 else value
    )
    with pytest.raises(NonFiniteLossError, match="stage 'instruct' at step 6"):
        train(NANO, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "instruct")
    assert ckpt.meta["step"] == 4 and not ckpt.complete  # the last good checkpoint
    assert all(torch.isfinite(t).all() for t in ckpt.model.values() if t.is_floating_point())
    assert all(math.isfinite(v) for v in ckpt.state["losses"].tolist())


def test_non_finite_gradient_is_reported_as_a_gradient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def nan_gradient(task: StageTask, step: int, value: torch.Tensor) -> torch.Tensor:
        if step != 2:
            return value
        zero = (task.params[0] * 0).sum()  # sqrt at 0: value 0, derivative inf (-> nan)
        return value + torch.sqrt(zero)

    _poison_instruct(monkeypatch, nan_gradient)
    with pytest.raises(NonFiniteLossError, match=r"^non-finite gradient norm \(nan\) in stage "):
        train(NANO, tmp_path / "run")


def test_overfits_one_batch() -> None:
    config = with_overrides(NANO, steps={name: 0 for name in STAGES})
    tokenizer = Tokenizer.build()
    data = build_training_data(config, tokenizer)
    data.vqa = data.vqa[:8]  # one batch, seen again and again
    model = build_model(config, tokenizer)
    ctx = Context(config=config, data=data, model=model)
    task = instruct_stage(ctx)
    optimizer = torch.optim.AdamW(task.params, lr=3e-3)
    first = last = None
    for step in range(150):
        loss = task.loss(step * 5 + 1, 8)  # never an MC step (mc_fraction 0.2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = float(loss.detach()) if first is None else first
        last = float(loss.detach())
    assert first is not None and last is not None
    assert first > 1.0 and last < 0.05


@pytest.mark.parametrize("structure", ["diagonal", "block", "banded"])
def test_hyperet_trains_only_adapters_on_the_vit(tmp_path: Path, structure: str) -> None:
    config = with_overrides(
        NANO, hyperet=structure, hyperet_stage="both", steps={"vision": 2, "lm": 1}
    )
    metrics = train(config, tmp_path / "run")
    align = load_checkpoint(tmp_path / "run" / "checkpoints" / "align")
    vision = load_checkpoint(tmp_path / "run" / "checkpoints" / "vision")
    instruct = load_checkpoint(tmp_path / "run" / "checkpoints" / "instruct")
    assert metrics["stages"]["instruct"]["hyperet_active"]
    assert not metrics["stages"]["instruct"]["cached_features"]
    assert metrics["stages"]["instruct"]["hyperet_parameters"] > 0
    adapter_keys = {k for k in instruct.model if k.startswith("vision.") and k not in vision.model}
    assert adapter_keys, "HRA adds tensors to the vision encoder"
    for key, before in vision.model.items():
        if not key.startswith("vision."):
            continue
        # the frozen ViT (stored under the parametrization's "original" when adapted)
        after_key = (
            key
            if key in instruct.model
            else key.replace("in_proj_weight", "parametrizations.in_proj_weight.original")
        )
        assert torch.equal(instruct.model[after_key], before), key
    changed = [k for k in adapter_keys if not torch.equal(align.model[k], instruct.model[k])]
    assert changed, "the adapters trained in the instruct stage"


def test_frozen_parts_do_not_change(tmp_path: Path) -> None:
    train(NANO, tmp_path / "run")
    ckpts = {s: load_checkpoint(tmp_path / "run" / "checkpoints" / s).model for s in STAGES}
    frozen = {
        "lm": ("vision.", "text.", "projector."),
        "align": ("vision.", "text.", "lm."),
        "instruct": ("vision.", "text.", "clip_head."),
    }
    for stage, prefixes in frozen.items():
        before = ckpts[STAGES[STAGES.index(stage) - 1]]
        for key, value in ckpts[stage].items():
            if key.startswith(prefixes):
                assert torch.equal(value, before[key]), (stage, key)
    assert not torch.equal(
        ckpts["instruct"]["projector.mlp.0.weight"], ckpts["align"]["projector.mlp.0.weight"]
    )


def test_training_data_pools_are_consistent() -> None:
    tokenizer = Tokenizer.build()
    data = build_training_data(NANO, tokenizer)
    n = NANO.data.train_scenes
    assert data.images.shape == (n, 3, NANO.data.image_size, NANO.data.image_size)
    texts = data.split.captions[NANO.train.vision_level]
    for i in range(n):
        for j in range(n):
            assert (texts[i] == texts[j]) == (
                data.vision_caption_ids[i] == data.vision_caption_ids[j]
            )
    for image, enc in data.vqa[:20]:
        assert 0 <= image < n
        supervised = enc.ids[enc.labels != -100]
        assert supervised[-1] == tokenizer.eos_id
    assert np.all([len(e.ids) <= NANO.language.max_text_len for e in data.lm_texts])
