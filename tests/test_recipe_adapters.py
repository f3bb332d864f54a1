"""The study's adapters inside the recipe: lr multiplier, full fine-tuning, resume, config."""

from __future__ import annotations

from pathlib import Path

import pytest
import resume_helpers
import torch
from safetensors.torch import load_file

from hyperet.config import preset
from hyperet.overrides import apply_settings

QUICK = [f"train.stages.{s}.steps={n}" for s, n in (("vision", 2), ("lm", 2), ("align", 2))]


def weights(run: Path, stage: str) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / stage / "model.safetensors"))


def test_lr_scale_multiplies_the_adapters_first_adam_step(tmp_path: Path) -> None:
    """Adam's first update is lr * g / (|g| + eps): the IA3 scales, all 1 at the start, move by
    at most the adapter's learning rate, by about it where |g| >> eps, and a multiplier s moves
    every entry exactly s times as far (same gradient, same eps)."""
    from hyperet.train import learning_rate, train

    moved = {}
    for scale in (1.0, 4.0):
        config = apply_settings(
            preset("nano"),
            [*QUICK, "train.stages.instruct.steps=1", "hyperet.adapter=ia3",
             f"hyperet.lr_scale={scale}", "train.val_every=0"],
        )  # fmt: skip
        train(config, tmp_path / str(scale))
        w = weights(tmp_path / str(scale), "instruct")
        scales = [v for k, v in w.items() if k.endswith(".scale")]
        assert len(scales) == 2 * config.vision.layers  # q and v of every block
        lr = learning_rate(config.train.stages["instruct"], 0) * scale
        delta = torch.cat([(s - 1).abs().flatten() for s in scales]).double()
        assert float(delta.max()) <= lr * (1 + 1e-4)
        assert float(delta.max()) == pytest.approx(lr, rel=1e-3)
        moved[scale] = delta
    nonzero = moved[1.0] > 0
    assert int(nonzero.sum()) > 0.9 * nonzero.numel()
    ratio = moved[4.0][nonzero] / moved[1.0][nonzero]
    torch.testing.assert_close(ratio, torch.full_like(ratio, 4.0), rtol=1e-3, atol=0)


def test_full_fine_tuning_trains_the_vit_only_where_active(tmp_path: Path) -> None:
    from hyperet.train import train

    config = apply_settings(
        preset("nano"), [*QUICK, "train.stages.instruct.steps=2", "hyperet.adapter=full",
                         "hyperet.stage=pretrain", "train.val_every=0"],
    )  # fmt: skip
    train(config, tmp_path / "run")
    vision, align, instruct = (
        weights(tmp_path / "run", s) for s in ("vision", "align", "instruct")
    )
    blocks = [k for k in vision if k.startswith("vision.blocks.")]
    assert blocks and all(not torch.equal(vision[k], align[k]) for k in blocks if "weight" in k)
    assert all(torch.equal(align[k], instruct[k]) for k in vision if k.startswith("vision."))
    assert torch.equal(vision["vision.proj"], instruct["vision.proj"])  # the CLIP head: no grad


@pytest.mark.parametrize(
    "settings",
    [["hyperet.adapter=lora", "hyperet.lr_scale=3.0", "hyperet.stage=both"],
     ["hyperet.adapter=euclidean", "hyperet.structure=banded", "hyperet.lr_scale=0.5"]],
)  # fmt: skip
def test_resume_is_bitwise_with_baseline_adapters(tmp_path: Path, settings: list[str]) -> None:
    config = apply_settings(preset("nano"), [*QUICK, "train.val_every=0", *settings])
    resumed, reference = resume_helpers.interrupted_and_reference(config, tmp_path, "instruct", 5)
    assert resumed["stages"]["instruct"]["losses"] == reference["stages"]["instruct"]["losses"]
    assert resume_helpers.same_final_weights(tmp_path / "run", tmp_path / "ref")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["hyperet.adapter=dora"], "hyperet.adapter"),
        (["hyperet.adapter=lora", "hyperet.structure=diagonal"], "hyperet.structure"),
        (["hyperet.adapter=ia3", "hyperet.mode=official"], "hyperet.mode"),
        (["hyperet.rank=0"], "hyperet.rank"),
        (["hyperet.lr_scale=0.0"], "hyperet.lr_scale"),
    ],
)
def test_config_refuses_meaningless_adapter_settings(settings: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_settings(preset("nano"), settings)
