"""Measured comparison of the ITC objectives: same data, same frozen ViT, several seeds.

For each seed: build the preset's training data, pretrain the vision encoder with the recipe's
``vision`` stage (once; the ITC stage freezes it, so all objectives share it), then for each
objective attach a freshly seeded aligner, train it with :func:`~hyperet.alignment.stage.itc_stage`
for the preset's ITC budget and evaluate it on the test split with
:func:`~hyperet.alignment.analysis.evaluate_alignment`. :func:`summarise` reduces the runs to the
mean and standard deviation over seeds; :func:`markdown_table` renders the headline numbers.

This runs the stages with a plain loop (AdamW, warm-up + cosine, gradient clipping: the recipe's
optimizer settings) and no checkpoints: it is a measurement, not a run directory.

An objective may carry :class:`~hyperet.alignment.aligner.AlignerConfig` overrides, a *variant*
(:func:`parse_variant`): ``hyperbolic-entail:aperture_K=0.05,learn_curvature=true`` trains the
objective with those two settings changed; its runs are summarised under the whole spec.

Usage (from a directory other than the repository root)::

    python -m hyperet.alignment.compare --preset small --seeds 0 1 2 --out compare.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyperet.alignment.aligner import OBJECTIVES, AlignerConfig, ImageTextAligner
from hyperet.alignment.analysis import evaluate_alignment
from hyperet.alignment.stage import aligner_config_for, get_aligner, itc_metrics, itc_stage
from hyperet.config import RunConfig, StageConfig, parse_steps, preset, with_overrides
from hyperet.data import LEVELS, Tokenizer, build_split

Log = Callable[[str], None]


def _train(task: Any, stage: StageConfig, grad_clip: float, log: Log, name: str) -> list[float]:
    from hyperet.train import learning_rate

    decay = [p for p in task.params if id(p) not in task.no_decay]
    plain = [p for p in task.params if id(p) in task.no_decay]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": stage.weight_decay},
            {"params": plain, "weight_decay": 0.0},
        ],
        lr=stage.lr,
        betas=(0.9, 0.95),
    )
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(stage.steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(stage, step)
        loss = task.loss(step, stage.batch_size)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"{name}: non-finite loss {value} at step {step + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(task.params, grad_clip)
        opt.step()
        losses.append(value)
        if (step + 1) % max(1, stage.steps // 5) == 0:
            log(f"{name}: step {step + 1}/{stage.steps} loss {value:.4f} "
                f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    return losses


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """``"objective:key=value,key=value"`` -> ``(objective, overrides)``; values are JSON
    (``0.05``, ``true``, ``"poincare"``) or else plain strings.

    >>> parse_variant("hyperbolic-entail:aperture_K=0.05,similarity=poincare")
    ('hyperbolic-entail', {'aperture_K': 0.05, 'similarity': 'poincare'})
    """
    objective, _, rest = spec.partition(":")
    if objective not in OBJECTIVES:
        raise ValueError(f"objectives: {spec!r} must start with one of {sorted(OBJECTIVES)}")
    fields = {f.name for f in dataclasses.fields(AlignerConfig)}
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, text = item.partition("=")
        if not eq or key not in fields:
            raise ValueError(f"objectives: {item!r} in {spec!r} is not KEY=VALUE of AlignerConfig")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return objective, overrides


def _pretrained_vision(ctx: Any, cache: Path | None, log: Log, name: str) -> float:
    """Run the vision stage (seconds), or load its result from ``cache`` (0 s) and save it there."""
    from hyperet.train import vision_stage

    if cache is not None and cache.exists():
        ctx.model.load_state_dict(torch.load(cache, weights_only=True))
        log(f"{name}: loaded {cache}")
        return 0.0
    t0 = time.perf_counter()
    stage = ctx.config.train.stages["vision"]
    _train(vision_stage(ctx), stage, ctx.config.train.grad_clip, log, name)
    seconds = time.perf_counter() - t0
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save(ctx.model.state_dict(), tmp)
        tmp.replace(cache)
    return seconds


def compare_objectives(
    *,
    preset_name: str = "small",
    seeds: Sequence[int] = (0, 1, 2),
    objectives: Sequence[str] = tuple(OBJECTIVES),
    test_scenes: int | None = None,
    steps: dict[str, int] | None = None,
    log: Log = lambda message: None,
    on_run: Callable[[dict[str, Any]], None] = lambda run: None,
    vision_cache: Path | None = None,
) -> dict[str, Any]:
    """Train and evaluate every objective (or variant, :func:`parse_variant`) for every seed;
    returns the runs and their summary.

    Budgets are the preset's (``train.stages["vision"]``, ``train.itc``) unless ``steps``
    overrides them (``{"vision": 500, "itc": 300}``); ``on_run`` receives each finished run.
    With ``vision_cache`` (a directory) the pretrained model of each seed and vision budget is
    saved there and reused by later calls (it is the same for every objective).
    """
    from hyperet.train import Context, build_model, build_training_data

    budgets = with_overrides(preset(preset_name), steps=steps).train
    itc = budgets.itc
    tok = Tokenizer.build()
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        base: RunConfig = with_overrides(preset(preset_name), seed=seed, steps=steps)
        data = build_training_data(base, tok)
        model = build_model(base, tok)
        ctx = Context(config=base, data=data, model=model)
        cache = None
        if vision_cache is not None:
            vision_steps = base.train.stages["vision"].steps
            cache = vision_cache / f"{preset_name}-seed{seed}-vision{vision_steps}.pt"
        vision_s = _pretrained_vision(ctx, cache, log, f"seed {seed} vision")
        model.eval()
        n_test = base.data.test_scenes if test_scenes is None else test_scenes
        test = build_split(
            "test", n_scenes=n_test, seed=seed, image_size=base.data.image_size,
            min_objects=base.data.min_objects, max_objects=base.data.max_objects,
        )  # fmt: skip
        features = None  # frozen ViT tokens of the training images, shared by the objectives
        for spec in objectives:
            objective, overrides = parse_variant(spec)
            config = base.replace(train=dataclasses.replace(base.train, objective=objective))
            torch.manual_seed(seed)
            aligner_config = dataclasses.replace(aligner_config_for(config, tok), **overrides)
            model.aligner = ImageTextAligner(aligner_config)
            run_ctx = Context(config=config, data=data, model=model)
            if features is not None:
                run_ctx.cache, run_ctx.cache_key = features, ("vision",)
            task = itc_stage(run_ctx)
            features = run_ctx.cache
            t0 = time.perf_counter()
            losses = _train(task, itc, base.train.grad_clip, log, f"seed {seed} {spec}")
            itc_s = time.perf_counter() - t0
            report = evaluate_alignment(
                get_aligner(model), vision=model.vision, split=test, tokenizer=tok
            )
            runs.append(
                {
                    "seed": seed,
                    "objective": spec,
                    "vision_seconds": vision_s,
                    "itc_seconds": itc_s,
                    "final_loss": float(np.mean(losses[-max(1, len(losses) // 10) :])),
                    "training": itc_metrics(model, task),
                    "evaluation": report,
                }
            )
            on_run(runs[-1])
            log(f"seed {seed} {spec}: " + json.dumps(_headline(report)))
    return {
        "preset": preset_name,
        "seeds": list(seeds),
        "itc_stage": dataclasses.asdict(itc),
        "vision_steps": with_overrides(preset(preset_name), steps=steps)
        .train.stages["vision"]
        .steps,
        "runs": runs,
        "summary": summarise(runs),
    }


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    overall = report["retrieval"]["overall"]
    return {
        "i2t_R@1": overall["image_to_text"]["R@1"],
        "t2i_R@1": overall["text_to_image"]["R@1"],
        **report["radius"]["spearman"],
    }


def _flatten(run: dict[str, Any]) -> dict[str, float | None]:
    ev = run["evaluation"]
    out: dict[str, float | None] = {}
    for scope, block in [("overall", ev["retrieval"]["overall"])] + [
        (level, ev["retrieval"]["per_level"][level]) for level in LEVELS
    ]:
        for direction in ("image_to_text", "text_to_image"):
            for k, v in block[direction].items():
                out[f"{scope}/{direction}/{k}"] = v
    for name, v in ev["radius"]["spearman"].items():
        out[f"spearman/{name}"] = v
    for name, v in ev["radius"]["auroc_uncertainty_predicts_error"].items():
        out[f"auroc/{name}"] = v
    for level, s in ev["radius"]["text_by_level"].items():
        out[f"radius/text/{level}"] = s["mean"]
    out["radius/image"] = ev["radius"]["image"]["mean"]
    for name, v in (ev.get("entailment") or {}).items():
        if name in ("auroc", "accuracy", "true_inside_fraction", "false_inside_fraction"):
            out[f"entailment/{name}"] = v
    mon = run["training"]["monitors"]["modalities"]
    for modality in ("image", "text"):
        out[f"monitor/{modality}/boundary_fraction_max"] = mon[modality]["boundary_fraction_max"]
        out[f"monitor/{modality}/radius_max"] = mon[modality]["radius_max"]
    out["final_loss"] = run["final_loss"]
    out["itc_seconds"] = run["itc_seconds"]
    return out


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per objective and metric: mean, sample standard deviation and count over seeds."""
    by_objective: dict[str, list[dict[str, float | None]]] = {}
    for run in runs:
        by_objective.setdefault(run["objective"], []).append(_flatten(run))
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for objective, flats in by_objective.items():
        out[objective] = {}
        for key in flats[0]:
            values = [f[key] for f in flats if f[key] is not None]
            arr = np.asarray(values, dtype=np.float64)
            out[objective][key] = {
                "mean": float(arr.mean()) if arr.size else None,
                "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
                "n": float(arr.size),
            }
    return out


def markdown_table(summary: dict[str, Any], keys: Sequence[str]) -> str:
    """A markdown table: one row per metric key, one column per objective (mean ± std)."""
    objectives = list(summary)
    lines = ["| metric | " + " | ".join(objectives) + " |", "|---" * (len(objectives) + 1) + "|"]
    for key in keys:
        cells = []
        for objective in objectives:
            s = summary[objective].get(key)
            if s is None or s["mean"] is None:
                cells.append("n/a")
            elif s["std"] is None:
                cells.append(f"{s['mean']:.3f}")
            else:
                cells.append(f"{s['mean']:.3f} ± {s['std']:.3f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - a measurement script
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=["nano", "small"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--objectives", nargs="+", default=list(OBJECTIVES), help="objectives or variants"
    )
    parser.add_argument("--test-scenes", type=int, default=None)
    parser.add_argument("--steps", nargs="*", default=[], help="STAGE=N budget overrides")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vision-cache", type=Path, help="directory of pretrained vision models")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="Only merge these result files into --out."
    )
    args = parser.parse_args(argv)

    def write(result: dict[str, Any]) -> None:
        args.out.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")

    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
        runs = [run for part in parts for run in part["runs"]]
        result = {**parts[0], "seeds": sorted({r["seed"] for r in runs}), "runs": runs}
        result["summary"] = summarise(runs)
    else:
        done: list[dict[str, Any]] = []

        def save_partial(run: dict[str, Any]) -> None:
            done.append(run)
            write({"preset": args.preset, "partial": True, "runs": done})

        result = compare_objectives(
            preset_name=args.preset,
            seeds=args.seeds,
            objectives=args.objectives,
            test_scenes=args.test_scenes,
            steps=parse_steps(args.steps),
            log=lambda message: print(message, flush=True),
            on_run=save_partial,
            vision_cache=args.vision_cache,
        )
    write(result)
    keys = ["overall/image_to_text/R@1", "overall/text_to_image/R@1"]
    keys += [f"{lv}/image_to_text/R@1" for lv in LEVELS] + [
        f"{lv}/text_to_image/R@1" for lv in LEVELS
    ]
    keys += [
        f"spearman/{k}" for k in ("text_vs_level", "image_vs_object_count", "image_vs_corruption")
    ]
    keys += ["auroc/image_to_text", "auroc/text_to_image"]
    keys += ["entailment/auroc", "entailment/accuracy"]
    print(markdown_table(result["summary"], keys))


if __name__ == "__main__":  # pragma: no cover
    main()
