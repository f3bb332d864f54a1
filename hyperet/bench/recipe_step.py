"""Benchmark suite ``recipe``: where a training step of the compact MLLM spends its CPU time.

Rows (``ratio = theirs / ours``, > 1: *ours* is cheaper), each a full optimiser step of the
``small`` preset's model at batch 64 (``quick``: the ``nano`` model, batch 16):

1. ``lm step: length-bucketed vs random batches`` - LM pretraining texts range from 3 to 73
   tokens (captions, questions, multiple-choice prompts); a random batch pads every row to its
   longest text (about 74 % padding on the small preset), a bucketed batch holds texts of similar
   length (64 consecutive texts of a length-sorted pool of 16 batches). The recipe uses random
   batches unless ``train.lm_bucket_batches`` is set; this row measures what that saves.
2. ``instruct step: cached features vs live ViT`` - stage 2 without HRA reads the frozen ViT's
   features from a cache (the recipe's default); with HRA the ViT runs forward and backward
   every step.
3. ``instruct step: foreach AdamW vs per-tensor AdamW`` - torch's default on CPU is the
   per-tensor loop.
4. ``collate a VQA batch vs an instruct step`` - the Python cost of building a batch
   (``hyperet.batching.collate``) against a whole step (the ratio is how many batches could be
   collated in the time of one step).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hyperet.batching import collate
from hyperet.bench import Row, interleaved_medians
from hyperet.config import preset
from hyperet.data import Tokenizer
from hyperet.overrides import apply_settings
from hyperet.train import (
    Context,
    build_model,
    build_training_data,
    instruct_stage,
    lm_stage,
    make_optimizer,
)


def _step_fn(
    params: list[torch.nn.Parameter], opt: torch.optim.Optimizer
) -> Callable[[Callable[[], torch.Tensor]], None]:
    """One optimiser step (zero grad, backward, clip, step) of a loss closure."""

    def step(loss_fn: Callable[[], torch.Tensor]) -> None:
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    return step


def run(quick: bool = False) -> list[Row]:
    """The rows of the module docstring."""
    name = "nano" if quick else "small"
    batch = 16 if quick else 64
    repeats = 3 if quick else 7
    config = apply_settings(
        preset(name), ["data.train_scenes=512" if quick else "data.train_scenes=2000"]
    )
    tok = Tokenizer.build()
    data = build_training_data(config, tok)
    model = build_model(config, tok)
    ctx = Context(config=config, data=data, model=model)
    rng = np.random.default_rng(0)
    rows: list[Row] = []

    # 1. LM: random vs length-bucketed batches
    lm = lm_stage(ctx)
    lm_step = _step_fn(lm.params, make_optimizer(lm, config.train.stages["lm"]))
    texts = data.lm_texts
    lengths = np.array([len(e.ids) for e in texts])
    pool = rng.choice(len(texts), batch * 16, replace=False)
    pool = pool[np.argsort(lengths[pool], kind="stable")]
    bucketed = [pool[i * batch : (i + 1) * batch] for i in range(16)]
    random = [rng.choice(len(texts), batch, replace=False) for _ in range(16)]
    turn = {"random": 0, "bucketed": 0}

    def lm_batch(kind: str) -> Callable[[], None]:
        def go() -> None:
            idx = (random if kind == "random" else bucketed)[turn[kind] % 16]
            turn[kind] += 1
            b = collate([texts[i] for i in idx])
            lm_step(lambda: model(b.input_ids, b.labels)[1])

        return go

    t = interleaved_medians(
        {"bucketed": lm_batch("bucketed"), "random": lm_batch("random")}, repeats=repeats * 2
    )
    width = np.mean([lengths[b].max() for b in random]) / np.mean(
        [lengths[b].max() for b in bucketed]
    )
    rows.append(
        Row(
            "recipe",
            "lm step: length-bucketed vs random batches",
            t["bucketed"],
            t["random"],
            t["random"] / t["bucketed"],
            None,
            f"mean batch width {width:.1f}x shorter",
        )
    )

    # 2-3. instruct: cached vs live features; foreach vs per-tensor AdamW
    task = instruct_stage(ctx)
    features = ctx.vision_features(("vision",))
    vqa = data.vqa
    idx = rng.choice(len(vqa), batch, replace=False)
    b = collate([vqa[i][1] for i in idx])
    images = torch.from_numpy(np.asarray([vqa[i][0] for i in idx]))
    single = make_optimizer(task, config.train.stages["instruct"])
    groups = [
        {"params": g["params"], "weight_decay": g["weight_decay"]} for g in single.param_groups
    ]
    foreach = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), foreach=True)
    cached_step = _step_fn(task.params, single)
    foreach_step = _step_fn(task.params, foreach)
    vision_params = list(model.vision.parameters())
    for p in vision_params:  # what HRA needs: gradients through the frozen ViT
        p.requires_grad_(True)

    def live() -> None:
        cached_step(lambda: model(b.input_ids, b.labels, images=data.images[images])[1])

    def cached() -> None:
        cached_step(lambda: model(b.input_ids, b.labels, features=features[images])[1])

    t = interleaved_medians({"cached": cached, "live": live}, repeats=repeats)
    rows.append(
        Row(
            "recipe",
            "instruct step: cached features vs live ViT",
            t["cached"],
            t["live"],
            t["live"] / t["cached"],
            None,
            "live = forward and backward through the ViT",
        )
    )
    for p in vision_params:
        p.requires_grad_(False)
        p.grad = None

    def with_foreach() -> None:
        foreach_step(lambda: model(b.input_ids, b.labels, features=features[images])[1])

    t = interleaved_medians({"foreach": with_foreach, "single": cached}, repeats=repeats)
    rows.append(
        Row(
            "recipe",
            "instruct step: foreach AdamW vs per-tensor AdamW",
            t["foreach"],
            t["single"],
            t["single"] / t["foreach"],
            None,
            "",
        )
    )

    # 4. collation against a whole step
    examples = [vqa[i][1] for i in idx]
    t = interleaved_medians({"collate": lambda: collate(examples), "step": cached}, repeats=repeats)
    rows.append(
        Row(
            "recipe",
            "collate a VQA batch vs an instruct step",
            t["collate"],
            t["step"],
            t["step"] / t["collate"],
            None,
            f"collation = {100 * t['collate'] / t['step']:.2f} % of a step",
        )
    )
    return rows
