"""Evaluation of a trained run directory: VQA, baselines, multiple choice, retrieval, radius probe.

Everything is measured on a split regenerated from the run's config (``test`` by default; the data
are a deterministic function of the seed), optionally limited to its first ``limit`` scenes.

- **VQA** exact match of the greedy answer (``<bos> question <sep>`` -> answer), overall, per
  question type and relational vs non-relational.
- **Text-only prior**: the same model and prompts with the visual tokens removed (text positions
  do not depend on the image, so the LM sees exactly the text it was trained on).
- **Majority baseline**: the most frequent training answer of each question type.
- **Multiple choice** (ScienceQA-style): accuracy of the generated ``"The answer is X."`` (parsed by
  :func:`hyperet.data.parse_answer`; unparsable counts as wrong and is reported as the parse-failure
  rate) and accuracy by option likelihood (argmax over options of the summed log-probability of
  ``"The answer is X." <eos>``), overall and per category.
- **Caption retrieval** (image -> caption) via the CLIP head (mean-pooled ViT tokens vs the text
  tower): for each level, the candidates are the distinct captions of the evaluated scenes; a hit
  at ``k`` means the image's own caption text is among the ``k`` most similar.
- **Hyperbolic-radius probe**: mean ``Rad(expmap0(f)) = dist0(expmap0(f))`` at ``c = 0.01``
  (float64, ``hyperet.ops``) over the ViT's patch tokens ``f``, overall and by number of objects
  in the scene, with the trained HRA and with HRA reset to the identity (= without HyperET),
  and the histogram of every token's radius (:func:`radius_histogram`, both on the same bins);
  and the same radius of the text tower's caption embeddings per caption level.
- **Parameters**: total, trainable in the last stage, HyperET's count and share.
- **Image-text alignment** (ITC objectives only, key ``alignment``): image->text and text->image
  Recall@1/5/10 overall and per caption level with chance levels, and the radius-uncertainty
  analysis of :func:`hyperet.alignment.analysis.evaluate_alignment` (a histogram PNG is written
  to the run directory when matplotlib is installed).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hyperet.batching import collate, collate_prompts, encode_mc, encode_text, mc_prompt, vqa_prompt
from hyperet.checkpoint import (
    CHECKPOINTS,
    CONFIG_FILE,
    MARKER_FILE,
    METRICS_FILE,
    TOKENIZER_FILE,
    CheckpointError,
    config_sha256,
    load_config,
    load_model_state,
    read_marker,
    read_tokenizer_text,
)
from hyperet.choices import SPLITS
from hyperet.config import STAGES, RunConfig
from hyperet.data import Split, Tokenizer, build_split, parse_answer
from hyperet.device import place
from hyperet.model import MLLM
from hyperet.train import (
    apply_hyperet_to,
    build_model,
    check_metrics_file,
    load_stage_checkpoints,
)

PROBE_CURVATURE = 0.01
#: Bins of the radius probe's per-token histogram (equal widths from 0 to the largest radius).
RADIUS_BINS = 40
ProgressHandler = Callable[[str, int, int], None]  # (task, done, total)


class LoadedRun:
    """A run directory's config, tokenizer and final model (HRA applied when it was trained).

    Everything is verified (:mod:`hyperet.checkpoint`): the marker's digests of config and
    tokenizer, each stage checkpoint's content digest and identity, and that the model comes from
    the final stage's complete checkpoint; ``metrics.json`` must agree with the stage metrics
    stored in the checkpoints.
    """

    def __init__(self, run_dir: Path, device: torch.device | str = "cpu") -> None:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise CheckpointError(f"{run_dir}: run directory not found")
        self.path = run_dir
        self.config: RunConfig = load_config(run_dir / CONFIG_FILE, root=run_dir)
        marker = read_marker(run_dir)
        if config_sha256(self.config) != marker["config_sha256"]:
            raise CheckpointError(f"{run_dir / CONFIG_FILE}: does not match {MARKER_FILE}")
        text = read_tokenizer_text(run_dir, marker)
        try:
            self.tokenizer = Tokenizer.from_json(text)
        except ValueError as err:
            raise CheckpointError(f"{run_dir / TOKENIZER_FILE}: {err}") from None
        order = self.config.train.stage_names()
        final = run_dir / CHECKPOINTS / order[-1]
        if not (final.exists() or final.is_symlink()):
            raise CheckpointError(
                f"{run_dir}: training is not finished (no checkpoints/{order[-1]}); "
                "resume it with `hyperet train --out RUN --resume`"
            )
        found = load_stage_checkpoints(run_dir, self.config)
        ckpt = found[order[-1]]
        if not ckpt.complete:
            raise CheckpointError(
                f"{final}: the last stage stopped at step {ckpt.meta['step']}; resume the run first"
            )
        self.model: MLLM = build_model(self.config, self.tokenizer)
        self.hyperet_params: list[nn.Parameter] = []
        self.identity: list[Tensor] = []
        if ckpt.meta.get("hyperet_applied"):
            self.hyperet_params = apply_hyperet_to(self.model, self.config)
            self.identity = [p.detach().clone() for p in self.hyperet_params]  # fresh = identity
            if self.config.hyperet.adapter == "full":  # "without": the ViT of stage 0a
                pretrained = found["vision"].model
                names = [n for n, _ in self.model.vision.named_parameters() if n != "proj"]
                self.identity = [pretrained[f"vision.{n}"].clone() for n in names]
        load_model_state(self.model, ckpt.model, source=final)
        self.model.eval()
        aligner = getattr(self.model, "aligner", None)  # ITC runs: analysed through its parts
        entry = list(aligner.children()) if isinstance(aligner, nn.Module) else []
        place(self.model, torch.device(device), outputs_to_cpu=True, entry=entry)
        self.metrics: dict[str, Any] = {"stages": {n: c.metrics for n, c in found.items()}}
        path = run_dir / METRICS_FILE
        if path.exists() or path.is_symlink():
            stored = check_metrics_file(path, run_dir)
            if stored["stages"] != self.metrics["stages"]:
                raise CheckpointError(f"{path}: does not match the metrics in the checkpoints")


def _batches(n: int, size: int) -> list[range]:
    return [range(s, min(n, s + size)) for s in range(0, n, size)]


def _limit(split: Split, limit: int | None) -> Split:
    if limit is None or limit >= len(split.scenes):
        return split
    return Split(
        split.name,
        split.scenes[:limit],
        split.images[:limit],
        {level: texts[:limit] for level, texts in split.captions.items()},
        [(i, qa) for i, qa in split.qa if i < limit],
        [(i, mc) for i, mc in split.mc if i < limit],
    )


@torch.no_grad()
def _output_tokens(model: MLLM, images: np.ndarray, batch: int) -> Tensor:
    """The ViT's output tokens ``(N, tokens, width)``, which its CLIP head pools (retrieval)."""
    imgs = torch.from_numpy(np.ascontiguousarray(images))
    return torch.cat([model.vision(imgs[r.start : r.stop]) for r in _batches(len(imgs), batch)])


@torch.no_grad()
def _features(model: MLLM, images: np.ndarray, batch: int) -> Tensor:
    imgs = torch.from_numpy(np.ascontiguousarray(images))
    return torch.cat(
        [model.visual_features(imgs[r.start : r.stop]) for r in _batches(len(imgs), batch)]
    )


def _accuracy(hits: Sequence[bool]) -> float | None:
    return float(np.mean(hits)) if hits else None


def _grouped(keys: Sequence[str], hits: Sequence[bool]) -> dict[str, float | None]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for k, h in zip(keys, hits, strict=True):
        groups[k].append(h)
    return {k: _accuracy(v) for k, v in sorted(groups.items())}


@torch.no_grad()
def _generate_answers(
    model: MLLM,
    tok: Tokenizer,
    prompts: list[list[int]],
    image_idx: np.ndarray,
    features: Tensor | None,
    *,
    max_new_tokens: int,
    batch: int,
    progress: Callable[[int], None],
) -> list[str]:
    out: list[str] = []
    for r in _batches(len(prompts), batch):
        b = collate_prompts(prompts[r.start : r.stop])
        feats = (
            None if features is None else features[torch.from_numpy(image_idx[r.start : r.stop])]
        )
        new = model.generate(
            b.input_ids,
            b.lengths,
            eos_id=tok.eos_id,
            max_new_tokens=max_new_tokens,
            features=feats,
        )
        out.extend(tok.decode(ids, skip_special=True).strip() for ids in new)
        progress(len(r))
    return out


def evaluate_vqa(
    run: LoadedRun, split: Split, features: Tensor, *, batch: int, progress: ProgressHandler
) -> dict[str, Any]:
    """VQA exact match with the image, text-only, and the majority-answer baseline."""
    tok, model = run.tokenizer, run.model
    prompts = [vqa_prompt(tok, qa.question) for _, qa in split.qa]
    image_idx = np.asarray([i for i, _ in split.qa], dtype=np.int64)
    types = [qa.qtype for _, qa in split.qa]
    answers = [qa.answer for _, qa in split.qa]
    results: dict[str, Any] = {"n": len(prompts)}
    for name, feats in (("vqa", features), ("text_only_prior", None)):
        done = [0]

        def tick(k: int, name: str = name, done: list[int] = done) -> None:
            done[0] += k
            progress(name, done[0], len(prompts))

        preds = _generate_answers(
            model, tok, prompts, image_idx, feats, max_new_tokens=4, batch=batch, progress=tick
        )
        hits = [p == a for p, a in zip(preds, answers, strict=True)]
        relational = ["relational" if qa.relational else "non_relational" for _, qa in split.qa]
        results[name] = {
            "overall": _accuracy(hits),
            "per_type": _grouped(types, hits),
            "by_kind": _grouped(relational, hits),
        }
        if name == "vqa":
            results["confusion"] = confusion(types, answers, preds)
            results["examples"] = [
                {"question": split.qa[i][1].question, "answer": answers[i], "predicted": preds[i]}
                for i in range(min(8, len(preds)))
            ]
    majority = majority_answers(run.config)
    hits = [majority[t] == a for t, a in zip(types, answers, strict=True)]
    results["majority_baseline"] = {
        "overall": _accuracy(hits),
        "per_type": _grouped(types, hits),
        "answers": majority,
    }
    return results


def confusion(
    groups: Sequence[str], truth: Sequence[str], predicted: Sequence[str]
) -> dict[str, dict[str, dict[str, int]]]:
    """Per group (question type): ``{true answer: {predicted answer: count}}``, sorted keys."""
    table: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for g, t, p in zip(groups, truth, predicted, strict=True):
        table[g][t][p] += 1
    return {
        g: {t: dict(sorted(c.items())) for t, c in sorted(rows.items())}
        for g, rows in sorted(table.items())
    }


def majority_answers(config: RunConfig) -> dict[str, str]:
    """The most frequent training answer of each question type (ties: alphabetical first)."""
    train = build_split(
        "train",
        n_scenes=config.data.train_scenes,
        seed=config.seed,
        image_size=config.data.image_size,
        min_objects=config.data.min_objects,
        max_objects=config.data.max_objects,
    )
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for _, qa in train.qa:
        counts[qa.qtype][qa.answer] += 1
    return {t: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, c in sorted(counts.items())}


def mc_answer_budget(restate: bool) -> int:
    """Tokens generated for a multiple-choice answer: ``the answer is x .`` and ``<eos>`` fit in
    8; a restated option adds two (``red .``; every option is one word)."""
    return 10 if restate else 8


@torch.no_grad()
def evaluate_multiple_choice(
    run: LoadedRun, split: Split, features: Tensor, *, batch: int, progress: ProgressHandler
) -> dict[str, Any]:
    """Generated-answer accuracy (with parse failures) and option-likelihood accuracy."""
    tok, model = run.tokenizer, run.model
    items = [item for _, item in split.mc]
    image_idx = np.asarray([i for i, _ in split.mc], dtype=np.int64)
    cats = [item.category for item in items]
    restate = run.config.train.mc_restate
    prompts = [mc_prompt(tok, item) for item in items]
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        progress("multiple_choice", done[0], len(items))

    texts = _generate_answers(
        model,
        tok,
        prompts,
        image_idx,
        features,
        max_new_tokens=10 if restate else 8,
        batch=batch,
        progress=tick,
    )
    parsed = [
        parse_answer(t, n_options=len(item.options)) for t, item in zip(texts, items, strict=True)
    ]
    gen_hits = [p == item.answer_index for p, item in zip(parsed, items, strict=True)]
    # option likelihood: score every (item, option) pair
    rows = [(k, o) for k, item in enumerate(items) for o in range(len(item.options))]
    scores = np.empty(len(rows))
    for r in _batches(len(rows), batch):
        chunk = rows[r.start : r.stop]
        b = collate([encode_mc(tok, items[k], o, restate=restate) for k, o in chunk])
        idx = torch.from_numpy(image_idx[[k for k, _ in chunk]])
        scores[r.start : r.stop] = model.sequence_logprob(
            b.input_ids, b.labels, features=features[idx]
        ).numpy()
    best: dict[int, tuple[float, int]] = {}
    for (k, o), s in zip(rows, scores, strict=True):
        if k not in best or s > best[k][0]:
            best[k] = (float(s), o)
    lik_hits = [best[k][1] == item.answer_index for k, item in enumerate(items)]
    return {
        "n": len(items),
        "generated": {
            "overall": _accuracy(gen_hits),
            "per_category": _grouped(cats, gen_hits),
            "parse_failure_rate": _accuracy([p is None for p in parsed]),
        },
        "likelihood": {"overall": _accuracy(lik_hits), "per_category": _grouped(cats, lik_hits)},
        "chance": float(np.mean([1 / len(item.options) for item in items])) if items else None,
    }


@torch.no_grad()
def _caption_embeddings(model: MLLM, tok: Tokenizer, texts: list[str], batch: int) -> Tensor:
    out = []
    encoded = [encode_text(tok, t) for t in texts]
    for r in _batches(len(encoded), batch):
        b = collate(encoded[r.start : r.stop])
        out.append(model.text(b.input_ids, b.lengths))
    return torch.cat(out)


@torch.no_grad()
def evaluate_retrieval(
    run: LoadedRun, split: Split, tokens: Tensor, *, batch: int
) -> dict[str, Any]:
    """Image -> caption Recall@1/5 per level via the CLIP head (distinct captions as candidates)."""
    model, tok = run.model, run.tokenizer
    image_emb = nn.functional.normalize(model.vision.embed(tokens), dim=-1)  # (N, E)
    out: dict[str, Any] = {"method": "clip_head", "trained_level": run.config.train.vision_level}
    for level, texts in split.captions.items():
        candidates = sorted(set(texts))
        index = {t: i for i, t in enumerate(candidates)}
        text_emb = nn.functional.normalize(
            _caption_embeddings(model, tok, candidates, batch), dim=-1
        )
        sims = image_emb @ text_emb.T  # (N, C)
        target = torch.tensor([index[t] for t in texts])
        own = sims[torch.arange(len(texts)), target][:, None]  # (N, 1)
        rank = (sims >= own).sum(dim=1) - 1  # 0 = top; ties count against the image
        out[level] = {
            "recall@1": float((rank < 1).float().mean()),
            "recall@5": float((rank < 5).float().mean()),
            "candidates": len(candidates),
        }
    return out


def _radius(x: Tensor) -> Tensor:
    """``dist0(expmap0(x))`` at c = 0.01 in float64 through ``hyperet.ops`` (per row)."""
    from hyperet.ops import dist0, expmap0

    x64 = x.detach().to(torch.float64)
    return dist0(expmap0(x64, c=PROBE_CURVATURE), c=PROBE_CURVATURE)


def radius_histogram(radius: np.ndarray, top: float) -> dict[str, Any]:
    """Counts of every token's radius in :data:`RADIUS_BINS` equal bins of ``[0, top]``.

    ``edges[i] = i * top / RADIUS_BINS``; bin ``i`` holds ``edges[i] <= r < edges[i + 1]``, the
    last bin also ``r = top`` (numpy's convention), so the counts add up to ``radius.size`` when
    ``top >= radius.max()``. A ``top`` of 0 (every token at the origin) gives one bin ``[0, 1]``.
    """
    if top < 0 or not np.isfinite(top):
        raise ValueError(f"top: must be finite and >= 0, got {top}")
    if top == 0:
        counts, edges = np.array([radius.size]), np.array([0.0, 1.0])
    else:
        counts, edges = np.histogram(radius, bins=RADIUS_BINS, range=(0.0, top))
    return {"edges": [float(e) for e in edges], "counts": [int(n) for n in counts]}


@torch.no_grad()
def evaluate_radius(
    run: LoadedRun, split: Split, features: Tensor, *, batch: int
) -> dict[str, Any]:
    """Mean hyperbolic radius of visual tokens (with/without HRA) and of caption embeddings."""
    counts = [str(len(scene.objects)) for scene in split.scenes]
    width = run.config.vision.width  # feature_layer's tokens (not projector.patch_tokens' half)
    radii = {
        "with_hyperet" if run.hyperet_params else "without_hyperet": _radius(features[..., :width])
    }
    if run.hyperet_params:
        trained = [p.detach().clone() for p in run.hyperet_params]
        try:
            for p, ident in zip(run.hyperet_params, run.identity, strict=True):
                p.copy_(ident)
            radii["without_hyperet"] = _radius(
                _features(run.model, split.images, batch)[..., :width]
            )
        finally:
            for p, t in zip(run.hyperet_params, trained, strict=True):
                p.copy_(t)
    top = max(float(r.max()) for r in radii.values())  # one set of bin edges for both

    def summarise(radius: Tensor) -> dict[str, Any]:  # radius: (N, T) per patch token
        per_image = radius.mean(dim=1)  # (N,) mean over patch tokens
        groups: dict[str, list[float]] = defaultdict(list)
        for k, r in zip(counts, per_image.tolist(), strict=True):
            groups[k].append(r)
        return {
            "mean": float(per_image.mean()),
            "by_object_count": {k: float(np.mean(v)) for k, v in sorted(groups.items())},
            "histogram": radius_histogram(radius.cpu().numpy(), top),
        }

    out: dict[str, Any] = {"c": PROBE_CURVATURE, "visual": {}}
    for name, radius in radii.items():
        out["visual"][name] = summarise(radius)
    out["caption_embedding_by_level"] = {
        level: float(_radius(_caption_embeddings(run.model, run.tokenizer, texts, batch)).mean())
        for level, texts in split.captions.items()
    }
    return out


@torch.no_grad()
def evaluate_itc(
    run: LoadedRun, split: Split, *, batch: int, plot_path: Path | None
) -> dict[str, Any]:
    """ITC runs: retrieval per level and radius uncertainty of ``model.aligner``.

    The aligner was trained on the ViT before any HRA (the ``itc`` stage precedes ``align``),
    so HRA is reset to the identity while it is evaluated (see
    :func:`hyperet.alignment.analysis.evaluate_alignment`).
    """
    from hyperet.alignment.analysis import evaluate_alignment

    trained = [p.detach().clone() for p in run.hyperet_params]
    try:
        for p, ident in zip(run.hyperet_params, run.identity, strict=True):
            p.copy_(ident)
        return evaluate_alignment(
            run.model.image_text_aligner(),
            vision=run.model.vision,
            split=split,
            tokenizer=run.tokenizer,
            batch=batch,
            plot_path=plot_path,
        )
    finally:
        for p, t in zip(run.hyperet_params, trained, strict=True):
            p.copy_(t)


def parameter_report(run: LoadedRun) -> dict[str, Any]:
    """Total parameters, those trained in the last stage, and HyperET's count and share."""
    total = sum(p.numel() for p in run.model.parameters())
    adapter = sum(p.numel() for p in run.hyperet_params)
    if run.hyperet_params and run.config.hyperet.adapter == "hra":
        from hyperet.nn import count_parameters

        report = count_parameters(run.model)
        total, adapter = report.total, report.adapter
    elif run.hyperet_params:  # a baseline: banded matrices store k (k + 1) structural zeros
        from hyperet.nn import StructuredMatrix

        zeros = sum(
            m.num_stored_parameters - m.num_free_parameters
            for m in run.model.modules()
            if isinstance(m, StructuredMatrix)
        )
        total, adapter = total - zeros, adapter - zeros
    last = run.metrics.get("stages", {}).get(STAGES[-1], {})
    return {
        "total": total,
        "trainable_last_stage": last.get("trainable_parameters"),
        "hyperet": adapter,
        "hyperet_percent": 100.0 * adapter / total if total else 0.0,
        "by_part": {
            name: sum(p.numel() for p in module.parameters())
            for name, module in run.model.named_children()
        },
    }


def load_split(run: LoadedRun, split: str, limit: int | None = None) -> Split:
    """The run's ``split`` regenerated from its seed, limited to its first ``limit`` scenes."""
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {SPLITS}")
    d = run.config.data
    n_scenes = {"train": d.train_scenes, "val": d.val_scenes, "test": d.test_scenes}
    # the first k scenes of a split do not depend on its size: generate only what is evaluated
    full = build_split(
        split,
        n_scenes=n_scenes[split] if limit is None else min(limit, n_scenes[split]),
        seed=run.config.seed,
        image_size=d.image_size,
        min_objects=d.min_objects,
        max_objects=d.max_objects,
    )
    return _limit(full, limit)


def evaluate(
    run_dir: Path,
    *,
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 256,
    on_progress: ProgressHandler | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Evaluate the run in ``run_dir``; returns a JSON-serialisable dict of every measurement.

    ``device``: where the networks run (:mod:`hyperet.device`); the metrics are the same.
    """
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {SPLITS}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit: must be >= 1, got {limit}")
    progress: ProgressHandler = on_progress or (lambda task, done, total: None)
    run = LoadedRun(Path(run_dir), device=device)
    cfg = run.config
    data = load_split(run, split, limit)
    features = _features(run.model, data.images, batch_size)
    vqa = evaluate_vqa(run, data, features, batch=batch_size, progress=progress)
    itc = {}
    if hasattr(run.model, "aligner"):  # ITC objectives; the PNG only with matplotlib installed
        png = run.path / f"radius_histograms_{split}.png"
        itc["alignment"] = evaluate_itc(run, data, batch=batch_size, plot_path=png)
    return {
        "run": str(run.path),
        "split": split,
        "scenes": len(data.scenes),
        "seed": cfg.seed,
        "preset": cfg.preset,
        "hyperet": {
            "structure": cfg.hyperet.structure,
            "stage": cfg.hyperet.stage,
            "c": cfg.hyperet.c,
            "adapter": cfg.hyperet.adapter,
        },
        "vqa": {
            "n": vqa["n"],
            **vqa["vqa"],
            "confusion": vqa["confusion"],
            "examples": vqa["examples"],
        },
        "text_only_prior": vqa["text_only_prior"],
        "majority_baseline": vqa["majority_baseline"],
        "multiple_choice": evaluate_multiple_choice(
            run, data, features, batch=batch_size, progress=progress
        ),
        "retrieval": evaluate_retrieval(
            run,
            data,
            features
            if cfg.projector.feature_layer == -1 and not cfg.projector.patch_tokens
            else _output_tokens(run.model, data.images, batch_size),
            batch=batch_size,
        ),
        "radius_probe": evaluate_radius(run, data, features, batch=batch_size),
        "parameters": parameter_report(run),
        **itc,
        "training": {
            name: {k: s.get(k) for k in ("steps", "wall_time_s", "final_loss")}
            for name, s in run.metrics.get("stages", {}).items()
        },
    }
