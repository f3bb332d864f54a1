"""Branch a run after a completed stage: cheap ablations of the later stages.

Ranking levers of stage 2 (learning rate, budget, multiple-choice fraction, HyperET on or off)
needs many runs that share stages 0a-1. :func:`branch_run` copies a finished run's checkpoints
up to and including stage ``after`` into a new run directory whose config may differ from the
source **only in fields that no stage up to ``after`` reads**; ``hyperet train --out DST
--resume`` then trains the remaining stages. The result is bitwise the run one would get by
training the new config from scratch (tested), at a fraction of the cost.

Fields free after each stage (besides ``train.checkpoint_every`` and ``train.val_every``, which
never change weights): the budgets and optimiser settings of the later stages,

============  ==========================================================================
after         may differ
============  ==========================================================================
``vision``    ``train.stages.{lm,align,instruct}.*``, ``train.lm_*``, ``train.mc_*``,
              ``train.caption_fraction``, ``projector.feature_layer``
``itc``       as after ``vision``
``lm``        ``train.stages.{align,instruct}.*``, ``train.mc_*``, ``train.caption_fraction``,
              ``projector.feature_layer``
``align``     ``train.stages.instruct.*``, ``train.mc_*``, ``train.caption_fraction``
============  ==========================================================================

and ``hyperet.*`` when neither config applies HRA in any stage up to ``after`` (e.g. branch
after ``align`` into ``hyperet.structure=diagonal`` with ``hyperet.stage=finetune``: both arms
of a HyperET comparison share stages 0a-1 exactly; HRA starts at the identity and draws no
random numbers). Architecture fields (``projector.*``, ``language.*``, ...) are never free
(except ``projector.feature_layer``, which changes no parameter and is read from stage 1 on):
the parts are initialised one after another from one seed, so changing any part's shape
changes the initial weights of the parts built after it - train such changes from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hyperet import __version__
from hyperet.checkpoint import (
    CHECKPOINTS,
    CONFIG_FILE,
    METRICS_FILE,
    load_checkpoint,
    load_config,
    run_lock,
    save_checkpoint,
    write_json,
)
from hyperet.config import RECIPE_STAGES, RunConfig
from hyperet.data import Tokenizer
from hyperet.train import (
    RunDirectoryError,
    check_new_directory,
    hyperet_applied_in,
    prepare_run_directory,
)

#: Fields read only by a stage and those after it (dotted prefixes of ``config.json`` paths).
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "lm": ("train.stages.lm.", "train.lm_mc_drill", "train.lm_bucket_batches"),
    "align": ("train.stages.align.", "projector.feature_layer"),
    "instruct": (
        "train.stages.instruct.",
        "train.mc_fraction",
        "train.mc_restate",
        "train.caption_fraction",
    ),
}
#: Fields that never change trained weights.
FREE_FIELDS: tuple[str, ...] = ("train.checkpoint_every", "train.val_every")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def config_changes(old: RunConfig, new: RunConfig) -> list[str]:
    """Dotted paths of every field whose value differs between ``old`` and ``new``."""
    a, b = _flatten(old.to_dict()), _flatten(new.to_dict())
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def free_fields(after: str, old: RunConfig, new: RunConfig) -> tuple[str, ...]:
    """Field prefixes that may differ when branching after ``after`` (module docstring)."""
    later = RECIPE_STAGES[RECIPE_STAGES.index(after) + 1 :]
    free = [*FREE_FIELDS, *(f for s in later for f in STAGE_FIELDS.get(s, ()))]
    if not hyperet_applied_in(old, after) and not hyperet_applied_in(new, after):
        free.append("hyperet.")
    return tuple(free)


def branch_run(
    source: Path, out: Path, config: RunConfig, *, after: str, force: bool = False
) -> list[str]:
    """Start run ``out`` (config ``config``) from ``source``'s checkpoints up to ``after``.

    Returns the changed fields. Raises :class:`~hyperet.train.RunDirectoryError` when
    ``after`` is not a completed stage of ``source`` or a changed field is read by a stage up to
    ``after``; :class:`~hyperet.checkpoint.CheckpointError` on a missing or corrupt source.
    """
    source, out = Path(source), Path(out)
    old = load_config(source / CONFIG_FILE)
    order = old.train.stage_names()
    if after not in order[:-1] or config.train.stage_names() != order:
        raise RunDirectoryError(
            f"--after: {after!r} is not one of the stages {order[:-1]} of {source} "
            "(or the new config runs other stages)"
        )
    ckpt = load_checkpoint(source / "checkpoints" / after)
    if not ckpt.complete:
        raise RunDirectoryError(f"{source}: stage {after!r} is not complete; resume it first")
    changes = config_changes(old, config)
    free = free_fields(after, old, config)
    bound = [c for c in changes if not c.startswith(free)]
    if bound:
        raise RunDirectoryError(
            f"{source}: fields {', '.join(bound)} are read by stages up to {after!r}; "
            "branch after an earlier stage or train from scratch"
        )
    if source.resolve() == out.resolve():
        raise RunDirectoryError(f"{out}: the branch must go to a new directory")
    kept = order[: order.index(after) + 1]
    sources = {s: load_checkpoint(source / CHECKPOINTS / s, root=source) for s in kept}
    check_new_directory(out, force)
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):  # the new run's marker, config and tokenizer, then re-signed checkpoints
        prepare_run_directory(out, config, Tokenizer.build(), resume=False, force=force)
        stages: dict[str, Any] = {}
        for stage, ckpt in sources.items():
            data = None if ckpt.metrics is None else {**ckpt.metrics, "config": config.to_dict()}
            save_checkpoint(
                out / CHECKPOINTS / stage,
                config=config,
                model=ckpt.model,
                meta=ckpt.meta,
                state=ckpt.state,
                metrics=data,
            )
            stages[stage] = data
        metrics = {
            "package_version": __version__,
            "seed": config.seed,
            "config": config.to_dict(),
            "stages": stages,
            "branched_from": {"run": str(source), "after": after, "changed": changes},
        }
        write_json(out / METRICS_FILE, metrics)
    return changes


__all__ = ["FREE_FIELDS", "STAGE_FIELDS", "branch_run", "config_changes", "free_fields"]
