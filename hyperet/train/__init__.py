"""Training of the compact MLLM: the engine, the recipe and the run directory.

- :mod:`~hyperet.train.engine`: one stage trained to its budget (:class:`StageTask`,
  :func:`run_stage`, :class:`Sampler`, the schedule, events, the NaN guard); never prints;
- :mod:`~hyperet.train.data`: the training split and the tokenised pools of every stage;
- :mod:`~hyperet.train.stages`: the recipe, one function per stage in :data:`STAGE_RECIPE`
  (``vision``, ``itc``, ``lm``, ``align``, ``instruct``);
- :mod:`~hyperet.train.run`: :func:`train` (a run directory, checkpoints, exact resume);
- :mod:`~hyperet.train.compare`: the measured comparison of the ITC objectives.

Determinism: given the config (seed included) and the thread count, a run is bitwise
reproducible on CPU, and ``resume=True`` after an interruption reaches the same weights and losses
as an uninterrupted run.
"""

from __future__ import annotations

from hyperet.model import build_model
from hyperet.train.data import TrainingData, build_training_data
from hyperet.train.engine import (
    CheckpointSaved,
    Context,
    Event,
    EventHandler,
    NonFiniteLossError,
    Sampler,
    StageFinished,
    StageSkipped,
    StageStarted,
    StageTask,
    StepDone,
    learning_rate,
    make_optimizer,
    run_stage,
)
from hyperet.train.run import (
    RunDirectoryError,
    check_metrics_file,
    check_new_directory,
    load_stage_checkpoints,
    prepare_run_directory,
    run_config,
    train,
)
from hyperet.train.stages import (
    STAGE_RECIPE,
    align_stage,
    apply_hyperet_to,
    hyperet_applied_in,
    instruct_pool,
    instruct_stage,
    is_mc_step,
    itc_stage,
    lm_stage,
    vision_stage,
)

__all__ = [
    "STAGE_RECIPE",
    "CheckpointSaved",
    "Context",
    "Event",
    "EventHandler",
    "NonFiniteLossError",
    "RunDirectoryError",
    "Sampler",
    "StageFinished",
    "StageSkipped",
    "StageStarted",
    "StageTask",
    "StepDone",
    "TrainingData",
    "align_stage",
    "apply_hyperet_to",
    "build_model",
    "build_training_data",
    "check_metrics_file",
    "check_new_directory",
    "hyperet_applied_in",
    "instruct_pool",
    "instruct_stage",
    "is_mc_step",
    "itc_stage",
    "learning_rate",
    "lm_stage",
    "load_stage_checkpoints",
    "make_optimizer",
    "prepare_run_directory",
    "run_config",
    "run_stage",
    "train",
    "vision_stage",
]
