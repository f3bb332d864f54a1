"""Measured comparison of the ITC objectives: same data, same frozen ViT, several seeds.

``hyperet align-compare`` runs it. For each seed: build the preset's training data, pretrain the
vision encoder with the recipe's ``vision`` stage (once; the ITC stage freezes it, so all
objectives share it), then for each objective build the run's model (its aligner freshly
initialised from the seed, exactly as ``hyperet train --objective`` builds it) with the shared
vision weights, train the ``itc`` stage for the preset's ITC budget and evaluate the aligner on
the test split with :func:`~hyperet.alignment.analysis.evaluate_alignment`. :func:`summarise`
reduces the runs to the mean and standard deviation over seeds; :func:`markdown_table` renders
the headline numbers.

An objective may carry :class:`~hyperet.alignment.aligner.AlignerConfig` overrides, a *variant*
(:func:`parse_variant`): ``hyperbolic-entail:aperture_K=0.05,learn_curvature=true`` trains the
objective with those two settings changed; its runs are summarised under the whole spec. With a
``vision_cache`` directory each seed's pretrained model is saved there and reused by later calls.

Every step is the engine's (:func:`~hyperet.train.engine.train_step`: AdamW, warm-up + cosine,
gradient clipping, the NaN guard); there are no checkpoints: it is a measurement, not a run
directory.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyperet import _io
from hyperet.alignment.aligner import AlignerConfig
from hyperet.alignment.analysis import evaluate_alignment
from hyperet.checkpoint import config_sha256
from hyperet.config import ITC_OBJECTIVES, RunConfig, preset, with_overrides
from hyperet.data import LEVELS, Tokenizer, build_split
from hyperet.model import MLLM, aligner_config, build_model
from hyperet.train.data import build_training_data
from hyperet.train.engine import Context, StageTask, final_loss, make_optimizer, train_step
from hyperet.train.stages import itc_stage, vision_stage

Log = Callable[[str], None]

#: The metrics of the printed table (keys of :func:`summarise`).
HEADLINE_KEYS: tuple[str, ...] = (
    "overall/image_to_text/R@1",
    "overall/text_to_image/R@1",
    *(f"{lv}/image_to_text/R@1" for lv in LEVELS),
    *(f"{lv}/text_to_image/R@1" for lv in LEVELS),
    *(f"spearman/{k}" for k in ("text_vs_level", "image_vs_object_count", "image_vs_corruption")),
    "auroc/image_to_text",
    "auroc/text_to_image",
    "entailment/auroc",
    "entailment/accuracy",
)


def _fit(
    name: str, task: StageTask, config: RunConfig, log: Log, label: str
) -> tuple[list[float], dict[str, Any]]:
    """Train ``task`` for stage ``name``'s budget with the engine's steps; returns the losses and
    the metrics of the task's ``finish`` hook."""
    stage = config.train.budget(name)
    optimizer = make_optimizer(task, stage)
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(stage.steps):
        value, _ = train_step(name, step, stage, task, optimizer, config.train.grad_clip)
        losses.append(value)
        if (step + 1) % max(1, stage.steps // 5) == 0:
            log(f"{label} {name}: step {step + 1}/{stage.steps} loss {value:.4f} "
                f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    return losses, task.finish() if task.finish is not None else {}


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """``"objective:key=value,key=value"`` -> ``(objective, overrides)``; values are JSON
    (``0.05``, ``true``, ``"poincare"``) or else plain strings.

    >>> parse_variant("hyperbolic-entail:aperture_K=0.05,similarity=poincare")
    ('hyperbolic-entail', {'aperture_K': 0.05, 'similarity': 'poincare'})
    """
    objective, _, rest = spec.partition(":")
    if objective not in ITC_OBJECTIVES:
        raise ValueError(f"objectives: {spec!r} must start with one of {ITC_OBJECTIVES}")
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


def _variant_model(config: RunConfig, tok: Tokenizer, overrides: dict[str, Any]) -> MLLM:
    """:func:`~hyperet.model.build_model` with the aligner's ``overrides`` (none: that model)."""
    if not overrides:
        return build_model(config, tok)
    base = aligner_config(config, tok)
    assert base is not None  # an ITC objective (parse_variant)
    torch.manual_seed(config.seed)
    aligner = dataclasses.replace(base, **overrides)
    return MLLM(config, vocab_size=tok.vocab_size, aligner=aligner)


#: dtypes of a cached pretrained model (safetensors codes).
_CACHE_DTYPES = frozenset({"F32", "F64", "F16", "BF16", "I64", "I32", "BOOL"})


def _pretrained(config: RunConfig, data: Any, tok: Tokenizer, cache: Path | None, log: Log,
                label: str) -> tuple[dict[str, torch.Tensor], float]:  # fmt: skip
    """The state of the model after the vision stage and its seconds (0 when read from
    ``cache``, a safetensors file written atomically after a fresh run, recording the SHA-256 of
    the config that trained it; a file recording another config is refused)."""
    pretrained = build_model(config, tok)
    digest = config_sha256(config)
    if cache is not None and cache.exists():
        tensors, header = _io.read_safetensors(cache, dtypes=_CACHE_DTYPES, finite=True)
        if header.get("config_sha256") != digest:
            raise ValueError(
                f"--vision-cache: {cache} was written for another config (delete it or use "
                "another cache directory)"
            )
        pretrained.load_state_dict(tensors)
        log(f"{label} vision: loaded {cache}")
        return pretrained.state_dict(), 0.0
    t0 = time.perf_counter()
    _fit("vision", vision_stage(Context(config, data, pretrained)), config, log, label)
    seconds = time.perf_counter() - t0
    state = pretrained.state_dict()
    if cache is not None:
        tensors = {k: v.detach().clone().contiguous() for k, v in state.items()}
        _io.atomic_write_bytes(cache, _io.encode_safetensors(tensors, {"config_sha256": digest}))
    return state, seconds


def compare_objectives(
    *,
    preset_name: str = "small",
    seeds: Sequence[int] = (0, 1, 2),
    objectives: Sequence[str] = ITC_OBJECTIVES,
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
    With ``vision_cache`` (a directory) the pretrained model of each seed and config is saved
    there (``PRESET-seedS-visionN-DIGEST.safetensors``, the digest of the config) and reused by
    later calls with the same config (it is the same for every objective).
    """
    variants = [parse_variant(spec) for spec in objectives]  # bad specs fail before training
    tok = Tokenizer.build()
    runs: list[dict[str, Any]] = []
    budgets = with_overrides(preset(preset_name), steps=steps).train
    for seed in seeds:
        base = with_overrides(preset(preset_name), seed=seed, steps=steps)
        data = build_training_data(base, tok)
        cache = None
        if vision_cache is not None:
            # named by the config's digest: a changed architecture or recipe never reads a stale
            # encoder (the digest covers every field the vision stage and the model build read)
            vision_steps = base.train.stages["vision"].steps
            name = f"{preset_name}-seed{seed}-vision{vision_steps}-{config_sha256(base)[:12]}"
            cache = vision_cache / f"{name}.safetensors"
        shared, vision_s = _pretrained(base, data, tok, cache, log, f"seed {seed}")
        n_test = base.data.test_scenes if test_scenes is None else test_scenes
        test = build_split(
            "test", n_scenes=n_test, seed=seed, image_size=base.data.image_size,
            min_objects=base.data.min_objects, max_objects=base.data.max_objects,
        )  # fmt: skip
        features = None  # frozen ViT tokens of the training images, shared by the objectives
        for spec, (objective, overrides) in zip(objectives, variants, strict=True):
            config = with_overrides(base, objective=objective)
            model = _variant_model(config, tok, overrides)  # as `hyperet train` initialises it
            model.load_state_dict({**model.state_dict(), **shared})
            ctx = Context(config, data, model)
            if features is not None:
                ctx.cache, ctx.cache_key = features, ("vision",)
            task = itc_stage(ctx)
            features = ctx.cache
            t0 = time.perf_counter()
            losses, finished = _fit("itc", task, config, log, f"seed {seed} {spec}")
            itc_s = time.perf_counter() - t0
            report = evaluate_alignment(
                model.image_text_aligner(), vision=model.vision, split=test, tokenizer=tok
            )
            runs.append(
                {
                    "seed": seed,
                    "objective": spec,
                    "vision_seconds": vision_s,
                    "itc_seconds": itc_s,
                    "final_loss": final_loss(losses),
                    "training": finished["alignment"],
                    "evaluation": report,
                }
            )
            on_run(runs[-1])
            log(f"seed {seed} {spec}: " + json.dumps(_headline(report)))
    return {
        "preset": preset_name,
        "seeds": list(seeds),
        "itc_stage": dataclasses.asdict(budgets.itc),
        "vision_steps": budgets.stages["vision"].steps,
        "runs": runs,
        "summary": summarise(runs),
    }


def merge_results(paths: Sequence[Path]) -> dict[str, Any]:
    """One result from several (e.g. one file per seed), summarised again."""
    parts = [json.loads(Path(path).read_text()) for path in paths]
    runs = [run for part in parts for run in part["runs"]]
    result = {**parts[0], "seeds": sorted({r["seed"] for r in runs}), "runs": runs}
    result["summary"] = summarise(runs)
    return result


def run_comparison(out: Path, *, merge: Sequence[Path] = (), **options: Any) -> dict[str, Any]:
    """:func:`compare_objectives` (or :func:`merge_results` of ``merge``) written to ``out``.

    While it runs, ``out`` holds the finished runs (``"partial": true``), so an interrupted
    comparison keeps what it measured.
    """
    if merge:
        result = merge_results(merge)
    else:
        done: list[dict[str, Any]] = []

        def save_partial(run: dict[str, Any]) -> None:
            done.append(run)
            _io.write_json(
                out, {"preset": options.get("preset_name"), "partial": True, "runs": done}
            )

        result = compare_objectives(on_run=save_partial, **options)
    _io.write_json(out, result)
    return result


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
