"""The ITC stage on the nano preset: only the aligner trains, batches are reproducible per step,
the loss falls, monitors land in strict-JSON metrics."""

from __future__ import annotations

import json

import pytest
import torch

from hyperet.alignment.aligner import ImageTextAligner
from hyperet.config import preset, with_overrides
from hyperet.data import Tokenizer
from hyperet.train import Context, build_model, build_training_data, itc_stage


def _context(objective: str) -> Context:
    config = with_overrides(preset("nano"), objective=objective, steps={"itc": 30})
    tok = Tokenizer.build()
    model = build_model(config, tok)
    return Context(config=config, data=build_training_data(config, tok), model=model)


def test_lm_runs_get_no_aligner() -> None:
    base = preset("nano")
    tok = Tokenizer.build()
    model = build_model(base, tok)
    assert not hasattr(model, "aligner")
    with pytest.raises(ValueError, match=r"^model:"):
        model.image_text_aligner()


@pytest.mark.parametrize("objective", ["hyperbolic-itc", "poincare-itc"])
def test_itc_stage_trains_only_the_aligner(objective: str) -> None:
    ctx = _context(objective)
    aligner = ctx.model.image_text_aligner()
    assert isinstance(aligner, ImageTextAligner)
    task = itc_stage(ctx)
    aligner_ids = {id(p) for p in aligner.parameters() if p.requires_grad}
    assert {id(p) for p in task.params} == aligner_ids
    assert not any(p.requires_grad for p in ctx.model.vision.parameters())
    vision_before = [p.detach().clone() for p in ctx.model.vision.parameters()]
    opt = torch.optim.AdamW(task.params, lr=3e-3)
    losses = []
    for step in range(30):
        loss = task.loss(step, 32)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5])
    for before, p in zip(vision_before, ctx.model.vision.parameters(), strict=True):
        assert torch.equal(before, p)
    assert task.finish is not None
    metrics = task.finish()["alignment"]
    json.dumps(metrics, allow_nan=False)
    monitors = metrics["monitors"]
    assert monitors["steps_recorded"] == 4  # steps 1, 11, 21 and the last, 30
    assert monitors["last"]["step"] == 30
    assert set(monitors["modalities"]) == {"image", "text"}
    assert monitors["last"]["grad_norm"] > 0 and monitors["grad_norm_last"] > 0
    assert monitors["grad_norm_max"] >= monitors["last"]["grad_norm"]


def test_itc_batches_depend_only_on_the_step() -> None:
    """Same sampler position and step -> same loss (exact resume draws what a fresh run draws)."""
    a, b = _context("hyperbolic-itc"), _context("hyperbolic-itc")
    ta, tb = itc_stage(a), itc_stage(b)
    assert ta.loss(0, 16).item() == tb.loss(0, 16).item()
    assert ta.loss(5, 16).item() == tb.loss(5, 16).item()
