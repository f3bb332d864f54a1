"""The arms and grids of the evidence study (docs/evidence.md).

An :class:`Arm` is a set of ``--set FIELD=VALUE`` overrides of the grid's base config plus the
stage after which it may start from the same seed's baseline run (stage-0a-1 checkpoints are
shared, :func:`hyperet.branch.branch_run`, bitwise equal to training from scratch):

- ``after="align"``: the adapter trains in stage 2 only (``hyperet.stage=finetune``), so stages
  0a, 0b and 1 are the baseline's;
- ``after="lm"``: the adapter trains in stage 1 (``pretrain``) or in both stages, so stages 0a
  and 0b are shared.

Every adapter family (HRA fast, HRA official, Euclidean, (IA)^3, LoRA, full fine-tuning) gets its
adapter learning-rate multiplier (``hyperet.lr_scale``) tuned once, on the validation split of a
separate tuning seed, at stage 2 only (its diagonal member for structured families), then frozen
for every arm of the family.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Adapter families: (settings of the family's member used for tuning, without the stage).
FAMILIES: dict[str, tuple[str, ...]] = {
    "hra-fast": ("hyperet.structure=diagonal",),
    "hra-official": ("hyperet.structure=diagonal", "hyperet.mode=official"),
    "euclidean": ("hyperet.adapter=euclidean", "hyperet.structure=diagonal"),
    "ia3": ("hyperet.adapter=ia3",),
    "lora": ("hyperet.adapter=lora",),
    "full": ("hyperet.adapter=full",),
}
#: ``hyperet.stage`` of each training-stage setting, and the stage it branches after.
STAGE_SETTINGS: dict[str, tuple[str, str]] = {
    "stage1": ("pretrain", "lm"),
    "stage2": ("finetune", "align"),
    "both": ("both", "lm"),
}
BASELINE = "baseline"
#: The curvature of the main arms (the released code's).
DEFAULT_CURVATURE = 0.01
#: Measured per-run overheads of the small preset (CPU s): data, model, checkpoints, curves;
#: and computing the frozen ViT's features of the 20,000 training images once (the ``full``
#: study of 2026-11-27: a stage-2 arm's run minus its steps, 75 s; a baseline's, 125 s).
RUN_COST = 75.0
CACHE_COST = 25.0


@dataclass(frozen=True)
class Arm:
    """One configuration of the study, run on every seed."""

    name: str
    family: str  # a key of FAMILIES, or "baseline"
    settings: tuple[str, ...]  # --set items over the grid's base config (lr_scale excluded)
    after: str | None  # branch from the seed's baseline after this stage; None: the baseline
    stage: str | None = None  # "stage1" / "stage2" / "both"
    structure: str | None = None
    curvature: float | None = None
    #: a fixed adapter learning-rate multiplier; None: the family's (tuned or 1)
    lr_scale: float | None = None


def _structure_settings(family: str, structure: str) -> tuple[str, ...]:
    base = [s for s in FAMILIES[family] if not s.startswith("hyperet.structure=")]
    return (*base, f"hyperet.structure={structure}")


def make_arm(
    family: str,
    stage: str,
    *,
    structure: str | None = None,
    curvature: float | None = None,
    lr_scale: float | None = None,
) -> Arm:
    """The arm of ``family`` trained in ``stage`` (``stage1``, ``stage2`` or ``both``).

    ``lr_scale`` fixes the arm's adapter learning-rate multiplier (name suffix ``-lrX``)
    instead of the family's tuned one: a second learning rate of the same arm.
    """
    if family not in FAMILIES:
        raise ValueError(f"family: {family!r} is not one of {tuple(FAMILIES)}")
    if stage not in STAGE_SETTINGS:
        raise ValueError(f"stage: {stage!r} is not one of {tuple(STAGE_SETTINGS)}")
    structured = family in ("hra-fast", "hra-official", "euclidean")
    if structured != (structure is not None):
        raise ValueError(f"structure: {family!r} {'needs' if structured else 'takes no'} one")
    hyperet_stage, after = STAGE_SETTINGS[stage]
    settings = _structure_settings(family, structure) if structure else FAMILIES[family]
    name = f"{family}-{structure}-{stage}" if structure else f"{family}-{stage}"
    if curvature is not None and curvature != DEFAULT_CURVATURE:
        settings = (*settings, f"hyperet.c={curvature!r}")
        name += f"-c{curvature:g}"
    settings = (*settings, f"hyperet.stage={hyperet_stage}")
    if lr_scale is not None:
        if not lr_scale > 0:
            raise ValueError(f"lr_scale: must be > 0, got {lr_scale}")
        name += f"-lr{lr_scale:g}"
    return Arm(name, family, settings, after, stage, structure, curvature, lr_scale)


BASELINE_ARM = Arm(BASELINE, BASELINE, (), None)


@dataclass(frozen=True)
class Grid:
    """A study: base config, budgets, seeds, arms and the learning-rate tuning grid."""

    name: str
    preset: str
    settings: tuple[str, ...]  # --set items applied to every run (budgets, data sizes)
    arms: tuple[Arm, ...]
    lr_scales: dict[str, tuple[float, ...]]  # family -> candidate multipliers
    seeds: int = 3
    tuning_seed: int = 1000
    eval_limit: int | None = None  # test scenes evaluated (None: the whole split)
    curvatures: tuple[float, ...] = ()
    description: str = ""
    #: CPU seconds (one thread) per training step ``"<stage>/<live|cached>"``, per run
    #: (``"run"``: data, model, feature caches, checkpoints) and per evaluation (``"eval"``):
    #: the plan's estimate (docs/evidence.md, "Sizing the full grid"); empty: no estimate.
    cost_model: tuple[tuple[str, float], ...] = ()

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "preset": self.preset,
            "settings": list(self.settings),
            "arms": [_arm_dict(a) for a in self.arms],
            "lr_scales": {k: list(v) for k, v in self.lr_scales.items()},
            "tuning_seed": self.tuning_seed,
            "eval_limit": self.eval_limit,
            "curvatures": list(self.curvatures),
        }


def _arm_dict(arm: Arm) -> dict[str, object]:
    out: dict[str, object] = {"name": arm.name, "settings": list(arm.settings), "after": arm.after}
    if arm.lr_scale is not None:
        out["lr_scale"] = arm.lr_scale
    return out


def full_arms(
    structures: tuple[str, ...] = ("diagonal", "block", "banded"),
    stages: tuple[str, ...] = ("stage1", "stage2", "both"),
    curvatures: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
) -> tuple[Arm, ...]:
    """Every arm of issue 12: baseline; HRA fast / official and the Euclidean twin per
    structure; (IA)^3, LoRA and full fine-tuning; each in every stage setting; and the
    curvature sweep of HRA diagonal (official mode, stage 2)."""
    arms = [BASELINE_ARM]
    for stage in stages:
        for family in ("hra-fast", "hra-official", "euclidean"):
            arms += [make_arm(family, stage, structure=s) for s in structures]
        arms += [make_arm(family, stage) for family in ("ia3", "lora", "full")]
    names = {a.name for a in arms}
    for c in curvatures:
        arm = make_arm("hra-official", "stage2", structure="diagonal", curvature=c)
        if arm.name not in names:
            arms.append(arm)
            names.add(arm.name)
    return tuple(arms)


def _steps(vision: int, lm: int, align: int, instruct: int) -> tuple[str, ...]:
    return tuple(
        f"train.stages.{name}.steps={n}"
        for name, n in (("vision", vision), ("lm", lm), ("align", align), ("instruct", instruct))
    )


#: Seconds-scale grid for the tests: nano model, 2 steps a stage, every sharing path once.
SMOKE = Grid(
    name="smoke",
    preset="nano",
    settings=(
        *_steps(1, 1, 2, 2),
        "vision.width=16",
        "vision.layers=1",
        "vision.embed_dim=16",
        "text.width=16",
        "language.width=16",
        "projector.hidden=16",
        "data.train_scenes=32",
        "data.val_scenes=8",
        "data.test_scenes=8",
        "train.val_every=1",
        *(f"train.stages.{s}.batch_size=8" for s in ("vision", "lm", "align", "instruct")),
        *(f"train.stages.{s}.warmup_steps=1" for s in ("vision", "lm", "align", "instruct")),
    ),
    arms=(
        BASELINE_ARM,
        make_arm("hra-fast", "stage2", structure="diagonal"),
        make_arm("euclidean", "stage2", structure="diagonal"),
        make_arm("lora", "both"),
        make_arm("hra-official", "stage2", structure="diagonal", curvature=1.0),
    ),
    lr_scales={
        "hra-fast": (1.0,),
        "euclidean": (1.0,),
        "lora": (1.0, 10.0),
        "hra-official": (1.0,),
    },
    seeds=2,
    curvatures=(1.0,),
    description="a shrunken nano model, 1-2 steps a stage: every code path in seconds",
)

#: CPU seconds, one torch thread, small preset (rotary LM), batch 64 (docs/evidence.md,
#: "Sizing the full grid"): the median process CPU time of one step, measured by the ``full``
#: study itself on the 2-core machine (2026-11-27, ``--jobs 2``, partly beside test runs;
#: mean of its runs, ``costs/``); per run, per feature cache and per 250-scene evaluation
#: (about 21 s of wall).
SMALL_COSTS: tuple[tuple[str, float], ...] = (
    ("vision", 0.53),
    ("lm", 0.13),
    ("align/cached", 0.41),
    ("align/live", 0.58),
    ("instruct/cached", 0.33),
    ("instruct/live", 0.48),
    ("run", RUN_COST),
    ("cache", CACHE_COST),
    ("eval", 21.0),
)
_SMALL_SETTINGS = (
    "train.lm_bucket_batches=16",
    "train.val_every=100",
    "train.checkpoint_every=250",
)
_FAMILY_LR: dict[str, tuple[float, ...]] = {family: (1.0, 3.0, 10.0) for family in FAMILIES}
_FAMILY_LR["full"] = (0.1, 0.3, 1.0)

#: The two-hour study (``--jobs 2`` on an idle 2-core machine): the arms that decide the
#: question - HRA (fast and with the released clamps, at three curvatures), the parameter-matched
#: Euclidean baselines (IA3, LoRA), HRA in stage 1 (the pre-training claim) - on 3 seeds, with
#: the adapters' learning rate at the stage's (no tuning: it does not fit).
FULL = Grid(
    name="full",
    preset="small",
    settings=(*_steps(1000, 300, 300, 500), *_SMALL_SETTINGS),
    arms=(
        BASELINE_ARM,
        make_arm("hra-fast", "stage2", structure="diagonal"),
        make_arm("hra-official", "stage2", structure="diagonal"),
        make_arm("hra-official", "stage2", structure="diagonal", curvature=1e-4),
        make_arm("hra-official", "stage2", structure="diagonal", curvature=1.0),
        make_arm("ia3", "stage2"),
        make_arm("lora", "stage2"),
        make_arm("hra-fast", "stage1", structure="diagonal"),
        # the same stage-2 arms with 10x the adapter learning rate: at the stage's own rate
        # the adapters barely leave the identity in 500 steps (no tuning fits in two hours)
        make_arm("hra-fast", "stage2", structure="diagonal", lr_scale=10.0),
        make_arm("hra-official", "stage2", structure="diagonal", lr_scale=10.0),
        make_arm("ia3", "stage2", lr_scale=10.0),
    ),
    lr_scales={},
    seeds=3,
    eval_limit=250,
    curvatures=(1e-4, 1e-2, 1.0),
    description="small preset, the deciding arms, 3 seeds: about 2 h with --jobs 2",
    cost_model=SMALL_COSTS,
)

#: Every arm of issue 12 with learning-rate tuning: many hours; resumable across sessions.
COMPLETE = Grid(
    name="complete",
    preset="small",
    settings=(*_steps(1000, 300, 300, 500), *_SMALL_SETTINGS),
    arms=full_arms(),
    lr_scales=_FAMILY_LR,
    seeds=3,
    eval_limit=250,
    curvatures=(1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    description="small preset, every arm of issue 12 with lr tuning, 3 seeds",
    cost_model=SMALL_COSTS,
)

GRIDS: dict[str, Grid] = {g.name: g for g in (SMOKE, FULL, COMPLETE)}


__all__ = [
    "BASELINE",
    "COMPLETE",
    "FAMILIES",
    "FULL",
    "GRIDS",
    "SMOKE",
    "Arm",
    "Grid",
    "full_arms",
    "make_arm",
]
