"""Run configuration of the compact MLLM: dataclasses, the ``nano`` and ``small`` presets, JSON.

A :class:`RunConfig` is everything that determines a run: data sizes, the four model parts
(vision encoder, CLIP text tower, projector, language model), HyperET, the staged recipe and the
seed. It round-trips through JSON (``to_json`` / ``from_json``) and is validated on construction
by :meth:`RunConfig.validate`, which raises ``ValueError`` naming the offending field.

Stages of the recipe (LLaVA-style, in order; see docs/mllm.md):

=============  =====  ===================================================================
name           paper  what trains
=============  =====  ===================================================================
``vision``     0a     vision encoder + CLIP text tower (symmetric InfoNCE, one caption level)
``itc``        -      ITC objectives only: the image-text aligner on the frozen ViT's tokens
``lm``         0b     language model on the dataset's text (next token)
``align``      1      projector only (captions; vision encoder and LM frozen)
``instruct``   2      projector + LM (VQA + multiple choice; loss on answer tokens)
=============  =====  ===================================================================

HyperET (HRA on the frozen vision encoder's q and v) is active in ``align`` (``pretrain``),
``instruct`` (``finetune``) or both.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from hyperet.choices import HRA_MODES, STRUCTURES
from hyperet.data.mixture import VISION_LEVELS

#: Stage names in training order.
STAGES: tuple[str, ...] = ("vision", "lm", "align", "instruct")
#: HRA structures accepted by ``--hyperet`` ("none" disables HyperET).
HYPERET_STRUCTURES: tuple[str, ...] = ("none", *STRUCTURES)
#: How the frozen ViT is adapted: HRA (the method), its exact Euclidean twin (the same
#: structured matrices applied linearly, ``hyperet.nn.baselines``), (IA)^3-style scaling, LoRA
#: or full fine-tuning of the ViT (the study's baselines, docs/evidence.md).
ADAPTERS: tuple[str, ...] = ("hra", "euclidean", "ia3", "lora", "full")
#: Where HyperET is active: stage 1 (``pretrain`` = align), stage 2 (``finetune`` = instruct).
HYPERET_STAGES: tuple[str, ...] = ("pretrain", "finetune", "both")
#: Training objectives; the ITC ones add the ``itc`` stage after ``vision`` (docs/alignment.md).
OBJECTIVES: tuple[str, ...] = (
    "lm",
    "hyperbolic-itc",
    "poincare-itc",
    "euclidean-itc",
    "hyperbolic-entail",
    "meru",
)
#: The objectives that train the image-text aligner (every one but ``lm``).
ITC_OBJECTIVES: tuple[str, ...] = OBJECTIVES[1:]
#: The image-text contrastive stage run by ITC objectives (budget: ``TrainConfig.itc``).
ITC_STAGE = "itc"
#: Every stage of the recipe in training order (``itc`` only runs for ITC objectives).
RECIPE_STAGES: tuple[str, ...] = (STAGES[0], ITC_STAGE, *STAGES[1:])
PRESETS: tuple[str, ...] = ("nano", "small")
#: Arithmetic of a stage's forward passes (``StageConfig.precision``): ``float32``, or ``bfloat16``
#: autocast (weights, gradients and optimizer state stay float32; ``train.engine.train_step``)
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
#: The preset of ``hyperet train`` without ``--preset``.
DEFAULT_PRESET = "small"
#: Version of the config.json layout; bumped on incompatible changes.
CONFIG_FORMAT = 1


@dataclass(frozen=True)
class DataConfig:
    """Sizes of the procedurally generated splits (scenes; each has captions, VQA and MC)."""

    train_scenes: int = 20000
    val_scenes: int = 500
    test_scenes: int = 1000
    image_size: int = 32
    min_objects: int = 1
    max_objects: int = 4


@dataclass(frozen=True)
class VisionConfig:
    """ViT with CLIP-style residual attention blocks; ``embed_dim`` is the CLIP head's width."""

    patch_size: int = 4
    width: int = 128
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    embed_dim: int = 128


@dataclass(frozen=True)
class TextEncoderConfig:
    """The CLIP text tower used by vision pretraining and caption retrieval."""

    width: int = 128
    layers: int = 2
    heads: int = 4
    mlp_ratio: int = 4


@dataclass(frozen=True)
class ProjectorConfig:
    """Pixel-shuffle by ``shuffle`` (1 keeps every patch token) then Linear-GELU-Linear.

    The small preset merges 2x2 patch tokens (16 visual tokens of 4 x 128 features): all 64 tokens
    cost 2.4x more per instruction-tuning step and measured no better (docs/mllm.md).
    """

    shuffle: int = 2
    hidden: int = 192
    #: ViT tokens the projector reads: -1 the encoder's output (``ln_post``), k >= 0 the
    #: residual stream after k blocks (LLaVA reads the penultimate block); the small preset
    #: reads block 2 of 4, which keeps position and shape (docs/mllm.md)
    feature_layer: int = 2
    #: also read the patch tokens (layer 0: patch + position embedding after ``ln_pre``, what
    #: each patch shows and where), concatenated feature-wise after ``feature_layer``'s tokens
    #: (multi-layer features, as in LLaVA variants that fuse several layers)
    patch_tokens: bool = False
    #: add a learned position embedding to each visual token (the LM's text positions do not
    #: cover the visual prefix; LLaVA's LLM gives image tokens positions too)
    position: bool = True


@dataclass(frozen=True)
class LanguageConfig:
    """Decoder-only LM; ``max_text_len`` bounds text positions (image tokens carry none)."""

    width: int = 192
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    max_text_len: int = 96
    #: rotary (RoPE) positions in self-attention instead of learned absolute position vectors
    #: (small preset since stop 11: VQA 66.1 -> 72.0 % on seed 0, docs/mllm.md levers)
    rotary: bool = True


@dataclass(frozen=True)
class StageConfig:
    """Fixed step budget and optimiser settings of one stage (AdamW, warm-up + cosine)."""

    steps: int
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 0.02
    #: arithmetic of the stage's forward passes, one of :data:`PRECISIONS` (``bfloat16``:
    #: autocast; weights, gradients and AdamW state stay float32)
    precision: str = "float32"


@dataclass(frozen=True)
class HyperETConfig:
    """HRA on the frozen vision encoder (``structure="none"`` disables it).

    ``adapter`` selects a baseline instead of HRA (:data:`ADAPTERS`): ``euclidean`` uses
    ``structure`` too; ``ia3``, ``lora`` (rank ``rank``) and ``full`` need ``structure="none"``.
    ``lr_scale`` multiplies the stage's learning rate for the adapter's parameters.
    """

    structure: str = "none"
    stage: str = "finetune"
    c: float = 0.01
    block_size: int = 4
    bandwidth: int = 2
    mode: str = "fast"
    adapter: str = "hra"
    rank: int = 2
    lr_scale: float = 1.0

    @property
    def enabled(self) -> bool:
        """Whether an adapter (HRA or a baseline) is applied at all."""
        return self.structure != "none" or self.adapter in ("ia3", "lora", "full")

    def active_in(self, stage: str) -> bool:
        """Whether HRA is active (trainable, uncached vision features) in ``stage``."""
        if not self.enabled:
            return False
        if stage == "align":
            return self.stage in ("pretrain", "both")
        if stage == "instruct":
            return self.stage in ("finetune", "both")
        return False


def _default_stages() -> dict[str, StageConfig]:
    return {
        "vision": StageConfig(steps=1500, lr=1e-3, warmup_steps=100),
        "lm": StageConfig(steps=400, lr=1e-3, warmup_steps=50),
        "align": StageConfig(steps=500, lr=1e-3, warmup_steps=50),
        # bfloat16 only where it pays on this CPU: the LM-heavy stage (docs/mllm.md, stop 13)
        "instruct": StageConfig(steps=3000, lr=5e-4, warmup_steps=100, precision="bfloat16"),
    }


@dataclass(frozen=True)
class TrainConfig:
    """The staged recipe: per-stage budgets plus settings shared by every stage."""

    stages: dict[str, StageConfig] = field(default_factory=_default_stages)
    objective: str = "lm"
    vision_level: str = "mixture"
    #: vision pretraining adds one hard-negative caption per pair (one fact of the scene
    #: edited: :mod:`hyperet.data.hard_negatives`) to the image-to-text softmax
    vision_hard_negatives: bool = False
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    #: fraction of multiple-choice items in an instruction-tuning batch (the rest is VQA)
    mc_fraction: float = 0.2
    #: fraction of the other (non-MC) instruction-tuning steps that train on ``detailed``
    #: captions (every object's size, colour, shape and position: dense binding supervision,
    #: as LLaVA's instruction data mixes detailed descriptions into VQA)
    caption_fraction: float = 0.0
    #: multiple-choice responses restate the chosen option first ("red. The answer is B.");
    #: the LM stage's text keeps the plain "The answer is B."
    mc_restate: bool = True
    #: LM pretraining reads each multiple-choice prompt with a pointing drill (every option
    #: restated and pointed at, "red. The answer is B. blue. The answer is A.") instead of
    #: its plain answer: the letter lookup is text-only and cheap to learn there
    lm_mc_drill: bool = False
    #: LM pretraining on length-bucketed batches: sort pools of N batches by length (0: off)
    lm_bucket_batches: int = 16
    #: validation points (learning curves) every N steps of align and instruct (0: none)
    val_every: int = 250
    #: budget of the ITC stage (run after ``vision`` only when ``objective`` is an ITC one)
    itc: StageConfig = field(
        default_factory=lambda: StageConfig(steps=600, lr=1e-3, warmup_steps=50)
    )

    def budget(self, stage: str) -> StageConfig:
        """The budget of ``stage`` (one of :data:`RECIPE_STAGES`)."""
        return self.itc if stage == ITC_STAGE else self.stages[stage]

    def stage_names(self) -> tuple[str, ...]:
        """The stages a run goes through, in order (``itc`` only for the ITC objectives)."""
        return tuple(s for s in RECIPE_STAGES if s != ITC_STAGE or is_itc(self.objective))


def is_itc(objective: str) -> bool:
    """Whether ``objective`` trains the image-text aligner (:data:`ITC_OBJECTIVES`)."""
    return objective in ITC_OBJECTIVES


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run (resolved, validated, JSON round-trippable)."""

    preset: str = "small"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    hyperet: HyperETConfig = field(default_factory=HyperETConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    format: int = CONFIG_FORMAT

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` (message starts with the field path) on an invalid config.

        Every field must have its declared type (an ``int`` field refuses ``1.5`` and ``True``, a
        ``float`` field refuses ``inf`` and ``NaN``) and stay within :data:`SIZE_LIMITS`.
        """
        _check_types(self, "")
        _positive(self, "data.train_scenes", "data.val_scenes", "data.test_scenes")
        _positive(self, "data.image_size", "data.min_objects", "data.max_objects")
        if self.data.max_objects < self.data.min_objects:
            raise ValueError("data.max_objects: must be >= data.min_objects")
        _positive(self, "vision.patch_size", "vision.width", "vision.layers", "vision.heads")
        _positive(self, "vision.mlp_ratio", "vision.embed_dim")
        if self.data.image_size % self.vision.patch_size:
            raise ValueError(
                f"vision.patch_size: {self.vision.patch_size} does not divide "
                f"data.image_size {self.data.image_size}"
            )
        _divisible(self.vision.width, self.vision.heads, "vision.heads")
        _positive(self, "text.width", "text.layers", "text.heads", "text.mlp_ratio")
        _divisible(self.text.width, self.text.heads, "text.heads")
        _positive(self, "projector.shuffle", "projector.hidden")
        if not -1 <= self.projector.feature_layer <= self.vision.layers:
            raise ValueError(
                f"projector.feature_layer: must be -1 or in [0, {self.vision.layers}], "
                f"got {self.projector.feature_layer}"
            )
        if self.grid_size % self.projector.shuffle:
            raise ValueError(
                f"projector.shuffle: {self.projector.shuffle} does not divide the patch grid "
                f"side {self.grid_size}"
            )
        _positive(self, "language.width", "language.layers", "language.heads")
        _positive(self, "language.mlp_ratio", "language.max_text_len")
        _divisible(self.language.width, self.language.heads, "language.heads")
        if self.preset not in PRESETS:
            raise ValueError(f"preset: {self.preset!r} is not one of {PRESETS}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed: {self.seed} is not in [0, 2**63)")
        h = self.hyperet
        if h.structure not in HYPERET_STRUCTURES:
            raise ValueError(
                f"hyperet.structure: {h.structure!r} is not one of {HYPERET_STRUCTURES}"
            )
        if h.stage not in HYPERET_STAGES:
            raise ValueError(f"hyperet.stage: {h.stage!r} is not one of {HYPERET_STAGES}")
        if not h.c > 0:
            raise ValueError(f"hyperet.c: curvature must be > 0, got {h.c}")
        if h.mode not in HRA_MODES:
            raise ValueError(f"hyperet.mode: {h.mode!r} is not one of {HRA_MODES}")
        if h.structure == "block" and self.vision.width % h.block_size:
            raise ValueError(
                f"hyperet.block_size: {h.block_size} does not divide vision.width "
                f"{self.vision.width}"
            )
        if h.adapter not in ADAPTERS:
            raise ValueError(f"hyperet.adapter: {h.adapter!r} is not one of {ADAPTERS}")
        if h.adapter in ("ia3", "lora", "full") and h.structure != "none":
            raise ValueError(
                f"hyperet.structure: must be 'none' with hyperet.adapter {h.adapter!r} "
                "(the structure belongs to 'hra' and 'euclidean')"
            )
        if h.adapter != "hra" and h.mode != "fast":
            raise ValueError(f"hyperet.mode: {h.mode!r} applies to hyperet.adapter 'hra' only")
        if h.rank < 1:
            raise ValueError(f"hyperet.rank: must be >= 1, got {h.rank}")
        if not h.lr_scale > 0:
            raise ValueError(f"hyperet.lr_scale: must be > 0, got {h.lr_scale}")
        if h.block_size < 1 or h.bandwidth < 0:
            raise ValueError("hyperet.block_size: must be >= 1 (and hyperet.bandwidth >= 0)")
        t = self.train
        if set(t.stages) != set(STAGES):
            raise ValueError(f"train.stages: expected the stages {STAGES}, got {tuple(t.stages)}")
        budgets = [(f"train.stages.{name}", s) for name, s in t.stages.items()]
        for path, s in [*budgets, ("train.itc", t.itc)]:
            if s.steps < 0:
                raise ValueError(f"{path}.steps: must be >= 0, got {s.steps}")
            if s.batch_size < 1:
                raise ValueError(f"{path}.batch_size: must be >= 1, got {s.batch_size}")
            if not s.lr > 0:
                raise ValueError(f"{path}.lr: must be > 0, got {s.lr}")
            if not 0 <= s.min_lr_ratio <= 1:
                raise ValueError(f"{path}.min_lr_ratio: must be in [0, 1]")
            if s.warmup_steps < 0:
                raise ValueError(f"{path}.warmup_steps: must be >= 0")
            if s.weight_decay < 0:
                raise ValueError(f"{path}.weight_decay: must be >= 0")
            if s.precision not in PRECISIONS:
                raise ValueError(f"{path}.precision: {s.precision!r} is not one of {PRECISIONS}")
        if t.vision_level not in VISION_LEVELS:
            raise ValueError(
                f"train.vision_level: {t.vision_level!r} is not one of {VISION_LEVELS}"
            )
        if self.projector.patch_tokens and is_itc(t.objective):
            raise ValueError(
                "projector.patch_tokens: not supported with the ITC objectives (their aligner "
                "reads the ViT tokens of projector.feature_layer alone)"
            )
        if t.objective not in OBJECTIVES:
            raise ValueError(f"train.objective: {t.objective!r} is not one of {OBJECTIVES}")
        if not t.grad_clip > 0:
            raise ValueError(f"train.grad_clip: must be > 0, got {t.grad_clip}")
        if t.checkpoint_every < 1:
            raise ValueError(f"train.checkpoint_every: must be >= 1, got {t.checkpoint_every}")
        if t.lm_bucket_batches < 0:
            raise ValueError(f"train.lm_bucket_batches: must be >= 0, got {t.lm_bucket_batches}")
        if t.val_every < 0:
            raise ValueError(f"train.val_every: must be >= 0, got {t.val_every}")
        if not 0 <= t.mc_fraction <= 1:
            raise ValueError(f"train.mc_fraction: must be in [0, 1], got {t.mc_fraction}")
        if not 0 <= t.caption_fraction <= 1:
            raise ValueError(f"train.caption_fraction: must be in [0, 1], got {t.caption_fraction}")
        if self.format != CONFIG_FORMAT:
            raise ValueError(
                f"format: config format {self.format} is not supported (expected {CONFIG_FORMAT})"
            )

    # ------------------------------------------------------------------ derived sizes
    @property
    def grid_size(self) -> int:
        """Side of the patch grid (patches per row)."""
        return self.data.image_size // self.vision.patch_size

    @property
    def num_visual_tokens(self) -> int:
        """Visual tokens handed to the LM after the projector's pixel shuffle."""
        return (self.grid_size // self.projector.shuffle) ** 2

    # ------------------------------------------------------------------ edits and JSON
    def replace(self, **changes: Any) -> RunConfig:
        """A copy with top-level fields replaced (validated)."""
        return dataclasses.replace(self, **changes)

    def with_stage(self, stage: str, **changes: Any) -> RunConfig:
        """A copy with fields of one stage's :class:`StageConfig` replaced."""
        if stage not in STAGES:
            raise ValueError(f"stage: {stage!r} is not one of {STAGES}")
        stages = dict(self.train.stages)
        stages[stage] = dataclasses.replace(stages[stage], **changes)
        return self.replace(train=dataclasses.replace(self.train, stages=stages))

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-serialisable dict."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """JSON text (sorted keys, indented) of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ``ValueError``.

        Every field must be present (no silent defaults), so that a config stored by an older or
        newer version is reported instead of being reinterpreted.
        """
        if not isinstance(data, dict):
            raise ValueError("config: expected a JSON object")
        kwargs: dict[str, Any] = {}
        sections = {
            "data": DataConfig,
            "vision": VisionConfig,
            "text": TextEncoderConfig,
            "projector": ProjectorConfig,
            "language": LanguageConfig,
            "hyperet": HyperETConfig,
        }
        _check_keys(data, cls, "config")
        for key, value in data.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value, key)
            elif key == "train":
                kwargs[key] = _build_train(value)
            else:
                kwargs[key] = value
        try:
            return cls(**kwargs)
        except TypeError as err:  # wrong value types surface here
            raise ValueError(f"config: {err}") from None

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        """Parse JSON text written by :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"config: not valid JSON ({err})") from None
        return cls.from_dict(data)


#: Upper bounds of integer fields (by field name), so that a typo cannot ask for a model or a
#: data set that exhausts memory or runs for days; other integer fields (steps, intervals, ...)
#: are bounded by ``MAX_COUNT`` and ``seed`` by ``2**63``.
SIZE_LIMITS: dict[str, int] = {
    "train_scenes": 10**6,
    "val_scenes": 10**6,
    "test_scenes": 10**6,
    "image_size": 1024,
    "min_objects": 64,
    "max_objects": 64,
    "patch_size": 1024,
    "width": 8192,
    "embed_dim": 8192,
    "hidden": 8192,
    "layers": 256,
    "heads": 256,
    "mlp_ratio": 64,
    "shuffle": 64,
    "max_text_len": 8192,
    "batch_size": 65536,
    "block_size": 8192,
    "bandwidth": 8192,
}
MAX_COUNT = 10**9


def _check_types(obj: Any, where: str) -> None:
    """Check every field of a config dataclass against its declared type (recursively)."""
    for f in fields(obj):
        value, path = getattr(obj, f.name), f"{where}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_types(value, path + ".")
        elif f.type == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{path}: must be an integer, got {value!r}")
            limit = 2**63 if f.name == "seed" else SIZE_LIMITS.get(f.name, MAX_COUNT)
            if value > limit:
                raise ValueError(f"{path}: {value} exceeds the limit {limit}")
        elif f.type == "float":
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{path}: must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{path}: must be finite, got {value!r}")
        elif f.type == "str" and not isinstance(value, str):
            raise ValueError(f"{path}: must be a string, got {value!r}")
        elif f.type == "dict[str, StageConfig]":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, StageConfig) for k, v in value.items()
            ):
                raise ValueError(f"{path}: must map stage names to stage configs")
            for name, stage in value.items():
                _check_types(stage, f"{path}.{name}.")


def _check_keys(data: dict[str, Any], cls: type, where: str) -> None:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    missing = sorted(names - set(data))  # a stored config is complete: no silent defaults
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")


def _build(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a JSON object")
    _check_keys(value, cls, where)
    try:
        return cls(**value)
    except TypeError as err:
        raise ValueError(f"{where}: {err}") from None


def _build_train(value: Any) -> TrainConfig:
    if not isinstance(value, dict):
        raise ValueError("train: expected a JSON object")
    _check_keys(value, TrainConfig, "train")
    value = dict(value)
    stages = value.get("stages", {})
    if not isinstance(stages, dict):
        raise ValueError("train.stages: expected a JSON object")
    ordered = [n for n in STAGES if n in stages] + [n for n in stages if n not in STAGES]
    value["stages"] = {
        name: _build(StageConfig, stages[name], f"train.stages.{name}") for name in ordered
    }
    if "itc" in value:
        value["itc"] = _build(StageConfig, value["itc"], "train.itc")
    return TrainConfig(**value)


def _get(config: RunConfig, path: str) -> Any:
    obj: Any = config
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _positive(config: RunConfig, *paths: str) -> None:
    for path in paths:
        value = _get(config, path)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{path}: must be a positive integer, got {value!r}")


def _divisible(width: int, heads: int, path: str) -> None:
    if width % heads:
        raise ValueError(f"{path}: {heads} heads do not divide the width {width}")


def preset(name: str) -> RunConfig:
    """The named preset: ``small`` (the default run, minutes) or ``nano`` (tests, seconds)."""
    if name == "small":
        return RunConfig(preset="small")
    if name == "nano":
        return RunConfig(
            preset="nano",
            data=DataConfig(train_scenes=256, val_scenes=32, test_scenes=48),
            vision=VisionConfig(patch_size=8, width=32, layers=2, heads=2, embed_dim=32),
            text=TextEncoderConfig(width=32, layers=1, heads=2),
            # nano keeps the plainest path of every switch (tests exercise the others)
            projector=ProjectorConfig(shuffle=1, hidden=48, feature_layer=-1, position=False),
            language=LanguageConfig(width=48, layers=1, heads=2, rotary=False),
            train=TrainConfig(
                stages={
                    name: StageConfig(steps=6, batch_size=16, lr=3e-3, warmup_steps=2)
                    for name in STAGES
                },
                checkpoint_every=4,
                itc=StageConfig(steps=6, batch_size=16, lr=3e-3, warmup_steps=2),
                vision_level="count",
                lm_bucket_batches=0,
                mc_restate=False,
            ),
        )
    raise ValueError(f"preset: {name!r} is not one of {PRESETS}")


def parse_steps(items: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Parse ``("vision=100", "instruct=2000")`` into ``{"vision": 100, "instruct": 2000}``."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in RECIPE_STAGES:
            raise ValueError(
                f"steps: expected STAGE=N with STAGE one of {RECIPE_STAGES}, got {item!r}"
            )
        try:
            out[name] = int(value)
        except ValueError:
            raise ValueError(f"steps: {value!r} in {item!r} is not an integer") from None
        if out[name] < 0:
            raise ValueError(f"steps: {item!r} must be >= 0")
    return out


def with_overrides(
    config: RunConfig,
    *,
    seed: int | None = None,
    hyperet: str | None = None,
    hyperet_stage: str | None = None,
    curvature: float | None = None,
    steps: dict[str, int] | None = None,
    vision_level: str | None = None,
    objective: str | None = None,
    checkpoint_every: int | None = None,
) -> RunConfig:
    """``config`` with the command-line options that are not ``None`` applied (validated)."""
    h = config.hyperet
    h = dataclasses.replace(
        h,
        structure=h.structure if hyperet is None else hyperet,
        stage=h.stage if hyperet_stage is None else hyperet_stage,
        c=h.c if curvature is None else curvature,
    )
    t = config.train
    new = steps or {}
    t = dataclasses.replace(
        t,
        vision_level=t.vision_level if vision_level is None else vision_level,
        objective=t.objective if objective is None else objective,
        checkpoint_every=t.checkpoint_every if checkpoint_every is None else checkpoint_every,
        stages={
            name: dataclasses.replace(s, steps=new[name]) if name in new else s
            for name, s in t.stages.items()
        },
        itc=dataclasses.replace(t.itc, steps=new[ITC_STAGE]) if ITC_STAGE in new else t.itc,
    )
    return config.replace(seed=config.seed if seed is None else seed, hyperet=h, train=t)
