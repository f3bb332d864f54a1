"""Learning curves of stages 1 and 2: exact-match counting, schedule, metrics and resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import resume_helpers
import torch

from hyperet.config import preset
from hyperet.curves import ValidationCurve, exact_and_token_hits
from hyperet.data import Tokenizer
from hyperet.model import IGNORE
from hyperet.train import build_model, train

NANO = preset("nano")


def test_exact_and_token_hits_against_a_loop() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, 4, generator=g)
    labels = torch.randint(0, 4, (5, 7), generator=g)
    labels[:, :3] = IGNORE
    labels[1, 1:] = logits[1, :-1].argmax(-1)  # row 1: every token right
    labels[1, :3] = IGNORE
    labels[4, 1:] = IGNORE  # row 4: nothing supervised -> exact (vacuously), 0 of 0
    exact, right, total = exact_and_token_hits(logits, labels)
    for b in range(5):
        n_right = n_total = 0
        for t in range(6):
            if int(labels[b, t + 1]) != IGNORE:
                n_total += 1
                n_right += int(torch.argmax(logits[b, t])) == int(labels[b, t + 1])
        assert (int(right[b]), int(total[b])) == (n_right, n_total)
        assert bool(exact[b]) == (n_right == n_total)
    assert bool(exact[1]) and bool(exact[4])


def _curve_config(every: int) -> Any:
    config = dataclasses.replace(
        NANO, train=dataclasses.replace(NANO.train, val_every=every, checkpoint_every=3)
    )
    return config.with_stage("instruct", steps=8)


def _without_seconds(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if k != "seconds"} for p in points]


def test_points_every_n_steps_and_at_the_end(tmp_path: Path) -> None:
    metrics = train(_curve_config(3), tmp_path / "run")
    align = metrics["stages"]["align"]["val_curve"]
    instruct = metrics["stages"]["instruct"]["val_curve"]
    assert [p["step"] for p in align] == [3, 6]
    assert [p["step"] for p in instruct] == [3, 6, 8]
    losses = metrics["stages"]["instruct"]["losses"]
    assert instruct[2]["train_loss"] == pytest.approx(sum(losses[6:8]) / 2)
    for p in align:
        assert 0 <= p["caption_exact"] <= p["caption_token_accuracy"] <= 1
    for p in instruct:
        assert 0 <= p["vqa"] <= 1 and 0 <= p["mc"] <= 1
        assert set(p["vqa_per_type"]) and all(0 <= v <= 1 for v in p["vqa_per_type"].values())
    assert "val_curve" not in metrics["stages"]["lm"] or not metrics["stages"]["lm"]["val_curve"]
    off = train(_curve_config(0), tmp_path / "off")
    assert off["stages"]["instruct"]["val_curve"] == []
    # measuring never changes training: same losses with and without curves
    assert off["stages"]["instruct"]["losses"] == losses


@pytest.mark.slow
def test_resumed_run_keeps_its_curve(tmp_path: Path) -> None:
    config = _curve_config(2)
    resumed, reference = resume_helpers.interrupted_and_reference(config, tmp_path, "instruct", 5)
    for stage in ("align", "instruct"):
        assert _without_seconds(resumed["stages"][stage]["val_curve"]) == _without_seconds(
            reference["stages"][stage]["val_curve"]
        )


def test_curve_refuses_other_stages() -> None:
    tok = Tokenizer.build()
    model = build_model(NANO, tok)
    with pytest.raises(ValueError, match=r"^stage"):
        ValidationCurve("lm", NANO, tok, model, every=5)
    with pytest.raises(ValueError, match=r"^every"):
        ValidationCurve("align", NANO, tok, model, every=0)
