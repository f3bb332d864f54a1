"""Run a study grid resumably: baselines, learning-rate tuning, then every arm on every seed.

Layout of ``OUT``::

    study.json                      the grid and seeds (a rerun must ask for the same)
    runs/<arm>/seed-<s>/            hyperet run directories (``hyperet eval`` works on them)
    tuning/<family>/lr-<x>/         learning-rate tuning runs (the tuning seed, stage 2 only)
    evals/<arm>/seed-<s>.json       test-split evaluation + validation curves of a finished run
    costs/<arm>/seed-<s>.json       CPU seconds and steps of the last training call of a run
    results.json  results.md  figures/

What is finished is decided from the files a run verifies, never from a marker: a run is done
when its last stage's checkpoint is complete and verified (:func:`hyperet.train.
load_stage_checkpoints`: digests, identity, the expected config); an evaluation is current when
it records the SHA-256 of that checkpoint's ``model.safetensors``. A run interrupted mid-stage is
resumed (``train(..., resume=True)``, bitwise the uninterrupted result); a finished one is never
trained again. Arms start from their seed's baseline run through
:func:`hyperet.branch.branch_run` (stages 0a-0b, or 0a-1, shared).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hyperet import _io
from hyperet.study.grid import BASELINE, BASELINE_ARM, FAMILIES, Arm, Grid, make_arm

STUDY_FILE = "study.json"
#: Version of the evaluation record in ``evals/``: a record of another version is recomputed
#: (2: the radius probe carries per-token radius histograms).
EVAL_SCHEMA = 2


class StudyError(ValueError):
    """The study directory cannot be used (another grid, a run that does not fit, ...)."""


@dataclass(frozen=True)
class RunSpec:
    """One training run of the study and where it starts from."""

    key: str  # path under OUT: runs/<arm>/seed-<s> or tuning/<family>/lr-<x>
    arm: Arm
    seed: int
    lr_scale: float
    source: str | None  # key of the run it branches from (None: from scratch)
    after: str | None


RunHandler = Callable[[str, str], None]  # (run key, what happened)


def run_key(arm: str, seed: int) -> str:
    return f"runs/{arm}/seed-{seed}"


def build_config(grid: Grid, arm: Arm, seed: int, lr_scale: float) -> Any:
    """The run's :class:`~hyperet.config.RunConfig`: preset, grid settings, seed, arm, scale."""
    from hyperet.config import preset
    from hyperet.overrides import apply_settings

    base = apply_settings(preset(grid.preset), grid.settings).replace(seed=seed)
    extra = [f"hyperet.lr_scale={lr_scale!r}"] if arm.family != BASELINE else []
    return apply_settings(base, [*arm.settings, *extra])


def tuning_arm(family: str) -> Arm:
    """The family member tuned: stage 2 only, diagonal for the structured families."""
    structured = family in ("hra-fast", "hra-official", "euclidean")
    return make_arm(family, "stage2", structure="diagonal" if structured else None)


def final_checkpoint_digest(run_dir: Path, config: Any) -> str | None:
    """SHA-256 of the verified, complete last-stage ``model.safetensors``; None if unfinished.

    Raises :class:`StudyError` when the directory holds a run of another config or a corrupt
    checkpoint (the message names the file).
    """
    from hyperet.checkpoint import MARKER_FILE, CheckpointError
    from hyperet.train import load_stage_checkpoints

    if not (run_dir / MARKER_FILE).is_file():
        return None
    try:
        found = load_stage_checkpoints(run_dir, config)
    except CheckpointError as err:
        raise StudyError(
            f"{run_dir}: {err} (a study directory of another grid? use a new --out)"
        ) from None
    last = config.train.stage_names()[-1]
    if last not in found or not found[last].complete:
        return None
    data = (found[last].path / "model.safetensors").read_bytes()
    return hashlib.sha256(data).hexdigest()


def train_run(out: Path, spec: RunSpec, config: Any, on_event: Any = None) -> bool:
    """Train ``spec`` to completion (branching or resuming as needed); False if already done."""
    from hyperet.branch import branch_run
    from hyperet.checkpoint import MARKER_FILE
    from hyperet.train import StepDone, train

    run_dir = out / spec.key
    if final_checkpoint_digest(run_dir, config) is not None:
        return False
    if not (run_dir / MARKER_FILE).is_file() and spec.source is not None:
        assert spec.after is not None
        branch_run(out / spec.source, run_dir, config, after=spec.after)
    steps = 0
    between: dict[str, list[float]] = {}  # stage -> CPU s between consecutive steps
    last: list[Any] = [None, 0.0]  # stage of the previous step, its CPU time stamp

    def count(event: Any) -> None:
        nonlocal steps
        if isinstance(event, StepDone):
            steps += 1
            now = time.process_time()
            if last[0] == event.stage:
                between.setdefault(event.stage, []).append(now - last[1])
            last[:] = [event.stage, now]
        if on_event is not None:
            on_event(spec.key, event)

    import torch

    cpu0, wall0 = time.process_time(), time.perf_counter()
    train(config, run_dir, resume=(run_dir / MARKER_FILE).is_file(), on_event=count)
    cost = {
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
        "steps": steps,
        "threads": torch.get_num_threads(),
        # median process CPU s of one step (validation points and checkpoints fall outside it)
        "step_cpu_s": {stage: float(np.median(v)) for stage, v in between.items()},
    }
    _io.write_json(out / "costs" / f"{spec.key.removeprefix('runs/')}.json", cost)
    return True


def _slim(result: dict[str, Any]) -> dict[str, Any]:
    """What the study keeps of :func:`hyperet.evaluate.evaluate` (no examples, no confusion)."""
    vqa = {k: v for k, v in result["vqa"].items() if k not in ("examples", "confusion")}
    return {
        "scenes": result["scenes"],
        "vqa": vqa,
        "text_only_prior": result["text_only_prior"],
        "multiple_choice": result["multiple_choice"],
        "retrieval": result["retrieval"],
        "radius_probe": result["radius_probe"],
        "parameters": result["parameters"],
    }


def evaluate_run(out: Path, spec: RunSpec, config: Any, limit: int | None) -> dict[str, Any]:
    """The run's evaluation record (cached in ``evals/``; recomputed when the run changed)."""
    from hyperet.checkpoint import METRICS_FILE
    from hyperet.evaluate import evaluate
    from hyperet.train import check_metrics_file

    run_dir = out / spec.key
    digest = final_checkpoint_digest(run_dir, config)
    if digest is None:
        raise StudyError(f"{run_dir}: not finished, cannot be evaluated")
    path = out / "evals" / f"{spec.key.removeprefix('runs/')}.json"
    if path.is_file():
        record = _io.read_json(path)
        if (
            isinstance(record, dict)
            and record.get("checkpoint_sha256") == digest
            and record.get("schema") == EVAL_SCHEMA
        ):
            return record
    stages = check_metrics_file(run_dir / METRICS_FILE, run_dir)["stages"]
    record = {
        "schema": EVAL_SCHEMA,
        "checkpoint_sha256": digest,
        "arm": spec.arm.name,
        "seed": spec.seed,
        "lr_scale": spec.lr_scale,
        "curves": {name: s.get("val_curve", []) for name, s in stages.items()},
        "seconds_per_step": {name: s.get("seconds_per_step") for name, s in stages.items()},
        "test": _slim(evaluate(run_dir, split="test", limit=limit)),
    }
    _io.write_json(path, record)
    return record


def _grows(stored: Any, identity: dict[str, Any]) -> bool:
    """Whether ``identity`` is the ``stored`` study with arms appended and nothing else changed
    (same seeds, settings, tuning, evaluation): a study may grow in its own directory."""
    if not isinstance(stored, dict) or stored.get("seeds") != identity["seeds"]:
        return False
    old, new = dict(stored.get("grid") or {}), dict(identity["grid"])
    old_arms, new_arms = old.pop("arms", None), new.pop("arms")
    return (
        old == new
        and isinstance(old_arms, list)
        and len(new_arms) > len(old_arms)
        and new_arms[: len(old_arms)] == old_arms
    )


def _task(args: tuple[Path, RunSpec, Any, int | None, bool, int]) -> tuple[str, bool]:
    """One run, trained and (for main arms) evaluated; the process-pool entry point."""
    out, spec, config, limit, evaluate_it, threads = args
    if threads:
        import torch

        torch.set_num_threads(threads)
    trained = train_run(out, spec, config)
    if evaluate_it:
        evaluate_run(out, spec, config, limit)
    return spec.key, trained


class Study:
    """A grid run into ``out`` (resumable; :meth:`run` returns the results dict)."""

    def __init__(
        self,
        grid: Grid,
        out: Path,
        *,
        seeds: int | None = None,
        jobs: int = 1,
        on_run: RunHandler | None = None,
        on_event: Callable[[str, Any], None] | None = None,
    ) -> None:
        if seeds is not None and seeds < 1:
            raise StudyError(f"--seeds: need at least 1, got {seeds}")
        if jobs < 1:
            raise StudyError(f"--jobs: need at least 1, got {jobs}")
        self.grid, self.out, self.jobs = grid, Path(out), jobs
        self.seeds = list(range(grid.seeds if seeds is None else seeds))
        if grid.tuning_seed in self.seeds:
            raise StudyError(f"--seeds: seed {grid.tuning_seed} is the tuning seed")
        self.on_run: RunHandler = on_run or (lambda key, what: None)
        self.on_event = on_event
        self.lr_scale: dict[str, float] = {}
        self.tuning: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ plan
    def families(self) -> list[str]:
        """Families of the grid's arms, in :data:`FAMILIES` order."""
        used = {arm.family for arm in self.grid.arms}
        return [f for f in FAMILIES if f in used]

    def tuned_families(self) -> list[str]:
        return [f for f in self.families() if len(self.grid.lr_scales.get(f, (1.0,))) > 1]

    def baseline_specs(self) -> list[RunSpec]:
        seeds = list(self.seeds)
        if self.tuned_families():
            seeds.append(self.grid.tuning_seed)
        return [RunSpec(run_key(BASELINE, s), BASELINE_ARM, s, 1.0, None, None) for s in seeds]

    def tuning_specs(self) -> list[RunSpec]:
        specs = []
        source = run_key(BASELINE, self.grid.tuning_seed)
        for family in self.tuned_families():
            arm = tuning_arm(family)
            for x in self.grid.lr_scales[family]:
                key = f"tuning/{family}/lr-{x:g}"
                specs.append(RunSpec(key, arm, self.grid.tuning_seed, x, source, arm.after))
        return specs

    def arm_specs(self) -> list[RunSpec]:
        return [
            RunSpec(
                run_key(arm.name, s),
                arm,
                s,
                self.lr_scale[arm.family] if arm.lr_scale is None else arm.lr_scale,
                run_key(BASELINE, s),
                arm.after,
            )
            for arm in self.grid.arms
            if arm.family != BASELINE
            for s in self.seeds
        ]

    def config(self, spec: RunSpec) -> Any:
        return build_config(self.grid, spec.arm, spec.seed, spec.lr_scale)

    def plan(self) -> dict[str, Any]:
        """Every run and the training steps it costs, without running anything.

        ``steps``: ``{"vision" | "lm" | "<align|instruct>/<live|cached>": steps}`` summed over
        runs, counting only the stages a run trains itself (after its branch point); ``live``
        where the ViT runs every step (an adapter trains), ``cached`` where its features are
        computed once (``feature_caches`` counts those stages). ``estimated_cpu_s`` applies the
        grid's ``cost_model``. The lr-tuned arms are listed with the multiplier 1 (the choice is
        made after tuning; it costs nothing).
        """
        for family in self.families():
            self.lr_scale.setdefault(family, 1.0)
        specs = [*self.baseline_specs(), *self.tuning_specs(), *self.arm_specs()]
        steps: dict[str, int] = {}
        caches = 0  # stages that compute the frozen ViT's features of every training image
        for spec in specs:
            config = self.config(spec)
            names = config.train.stage_names()
            first = 0 if spec.after is None else names.index(spec.after) + 1
            for name in names[first:]:
                key = name  # vision and lm: no frozen features involved
                if name in ("align", "instruct"):
                    live = config.hyperet.active_in(name)
                    caches += not live
                    key = f"{name}/{'live' if live else 'cached'}"
                steps[key] = steps.get(key, 0) + config.train.stages[name].steps
        evaluated = len(self.seeds) * len(self.grid.arms)
        plan: dict[str, Any] = {
            "runs": len(specs),
            "evaluated": evaluated,
            "keys": [s.key for s in specs],
            "steps": steps,
            "feature_caches": caches,
            "estimated_cpu_s": None,
        }
        cost = dict(self.grid.cost_model)
        if cost:
            total = sum(n * cost[key] for key, n in steps.items())
            total += len(specs) * cost["run"] + caches * cost["cache"] + evaluated * cost["eval"]
            plan["estimated_cpu_s"] = total
        return plan

    # ------------------------------------------------------------------ run
    def _check_directory(self) -> None:
        identity = {"grid": self.grid.to_dict(), "seeds": self.seeds}
        path = self.out / STUDY_FILE
        if path.is_file():
            stored = _io.read_json(path)
            if stored != identity and not _grows(stored, identity):
                raise StudyError(
                    f"{path}: this directory holds another study (grid or --seeds differ); "
                    "use a new --out"
                )
            if stored != identity:  # arms added to the same grid: the finished runs stay valid
                _io.write_json(path, identity)
            return
        if self.out.exists() and any(self.out.iterdir()):
            raise StudyError(f"{self.out}: not empty and not a study directory")
        self.out.mkdir(parents=True, exist_ok=True)
        _io.write_json(path, identity)

    def _execute(self, specs: list[RunSpec], evaluate_them: bool) -> None:
        limit = self.grid.eval_limit
        if self.jobs == 1 or len(specs) <= 1:
            for spec in specs:
                config = self.config(spec)
                trained = train_run(self.out, spec, config, self.on_event)
                self.on_run(spec.key, "trained" if trained else "finished before")
                if evaluate_them:
                    evaluate_run(self.out, spec, config, limit)
                    self.on_run(spec.key, "evaluated")
            return
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        tasks = [(self.out, s, self.config(s), limit, evaluate_them, threads) for s in specs]
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(self.jobs, mp_context=context) as pool:
            for key, trained in pool.map(_task, tasks):
                self.on_run(key, "trained" if trained else "finished before")

    def _choose_learning_rates(self) -> None:
        """Per family: the candidate with the best final validation VQA accuracy of stage 2
        (teacher-forced, ``metrics.json`` learning curve); ties go to the smaller multiplier."""
        from hyperet.checkpoint import METRICS_FILE
        from hyperet.train import check_metrics_file

        for family in self.families():
            candidates = self.grid.lr_scales.get(family, (1.0,))
            if len(candidates) == 1:
                self.lr_scale[family] = candidates[0]
                continue
            scores: dict[str, float] = {}
            for spec in (s for s in self.tuning_specs() if s.arm.family == family):
                run_dir = self.out / spec.key
                curve = check_metrics_file(run_dir / METRICS_FILE, run_dir)["stages"]["instruct"]
                points = curve.get("val_curve") or []
                if not points:
                    raise StudyError(f"{run_dir}: no validation curve (train.val_every is 0)")
                scores[f"{spec.lr_scale:g}"] = float(points[-1]["vqa"])
            best = max(sorted(candidates), key=lambda x: scores[f"{x:g}"])  # first max: smallest
            self.lr_scale[family] = best
            self.tuning[family] = {"candidates": scores, "chosen": best}

    def run(self) -> dict[str, Any]:
        """Train and evaluate everything not yet done; write and return the results."""
        from hyperet.study.report import write_report

        self._check_directory()
        self._execute(self.baseline_specs(), evaluate_them=False)
        self._execute(self.tuning_specs(), evaluate_them=False)
        self._choose_learning_rates()
        main = [s for s in self.baseline_specs() if s.seed in self.seeds] + self.arm_specs()
        self._execute(main, evaluate_them=True)
        records = {
            spec.key: evaluate_run(self.out, spec, self.config(spec), self.grid.eval_limit)
            for spec in main
        }
        return write_report(self, records)


__all__ = ["RunSpec", "Study", "StudyError", "build_config", "run_key"]
