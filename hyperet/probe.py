"""Linear probes of the frozen vision encoder: what do its features carry?

The MLLM can only answer what the frozen ViT's tokens encode, so before tuning the recipe we
measure it. A *linear probe* is a ridge-regression classifier fitted on frozen features of
training scenes and scored on the evaluated split (:func:`probe_run`):

=============  ==========================================  =====================================
target         features                                    label
=============  ==========================================  =====================================
``color``      mean of the tokens of the patches an        the object's colour (6 classes)
``shape``      object covers (:func:`object_features`),    shape (4)
``size``       one row per object                          size (2)
``position``                                               quadrant, ``"top left"`` ... (4)
``count``      mean of all patch tokens (what the CLIP     number of objects (1-4)
               head pools), one row per scene
=============  ==========================================  =====================================

Position is read from an object's own tokens: it measures whether the ViT tokens still carry
their patch position (the LM sees visual tokens without position embeddings of its own).

The classifier (:func:`fit_ridge`) standardises each feature with the training mean and standard
deviation, appends a constant 1 and solves the ridge normal equations in closed form,

.. math:: W = (\\tilde X^\\top \\tilde X + \\lambda I)^{-1} \\tilde X^\\top Y,

with :math:`Y` the one-hot training labels (the bias column is penalised too: with
standardised features this only shrinks it towards the class frequencies); the predicted class
is the argmax of :math:`\\tilde x W`. Exact and deterministic: the tests check it against a
brute-force solve and the accuracy against a loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hyperet.data.scenes import Scene, horizontal_side, shape_mask, vertical_side

#: Probe targets, in report order.
PROBE_TARGETS: tuple[str, ...] = ("color", "shape", "size", "position", "count")
#: Ridge penalty on standardised features.
RIDGE_LAMBDA = 1.0
#: Training scenes the probes are fitted on (the first ones of the run's training split).
PROBE_TRAIN_SCENES = 4000


def patch_coverage(scene: Scene, obj_index: int, patch_size: int) -> np.ndarray:
    """Boolean ``(g * g,)``: which patches (row-major) contain a pixel of object ``obj_index``."""
    size = scene.image_size
    if size % patch_size:
        raise ValueError(f"patch_size: {patch_size} does not divide the image size {size}")
    g = size // patch_size
    mask = shape_mask(scene.objects[obj_index], size)  # (S, S)
    return mask.reshape(g, patch_size, g, patch_size).any(axis=(1, 3)).reshape(-1)


def object_position(scene: Scene, obj_index: int) -> str:
    """``"top left"``, ``"bottom right"``, ... (the words of the ``detailed`` captions)."""
    obj = scene.objects[obj_index]
    return f"{vertical_side(obj, scene.image_size)} {horizontal_side(obj, scene.image_size)}"


def object_features(
    tokens: np.ndarray, scenes: Sequence[Scene], patch_size: int
) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Per-object features and labels.

    Parameters
    ----------
    tokens : ndarray, shape (N, g * g, D)
        Frozen ViT tokens of the ``N`` scenes' images (row-major patches).
    scenes : sequence of Scene
        The ``N`` scenes.
    patch_size : int
        Pixels per patch side.

    Returns
    -------
    features : ndarray, shape (M, D)
        For each of the ``M`` objects (scene by scene, left to right), the mean of the tokens of
        the patches it covers.
    labels : dict
        ``color``, ``shape``, ``size``, ``position`` labels, ``M`` each.
    """
    if len(tokens) != len(scenes):
        raise ValueError(f"tokens: {len(tokens)} images for {len(scenes)} scenes")
    rows: list[np.ndarray] = []
    labels: dict[str, list[str]] = {"color": [], "shape": [], "size": [], "position": []}
    for t, scene in zip(tokens, scenes, strict=True):
        for k, obj in enumerate(scene.objects):
            rows.append(t[patch_coverage(scene, k, patch_size)].mean(axis=0))
            labels["color"].append(obj.color)
            labels["shape"].append(obj.shape)
            labels["size"].append(obj.size)
            labels["position"].append(object_position(scene, k))
    return np.stack(rows), labels


def scene_features(
    tokens: np.ndarray, scenes: Sequence[Scene]
) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Mean-pooled tokens ``(N, D)`` and the ``count`` label (number of objects) per scene."""
    return tokens.mean(axis=1), {"count": [str(len(s.objects)) for s in scenes]}


@dataclass(frozen=True)
class RidgeProbe:
    """A fitted ridge classifier: standardisation, weights ``(D + 1, C)`` and class names."""

    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    weights: np.ndarray  # (D + 1, C)
    classes: tuple[str, ...]

    def design(self, x: np.ndarray) -> np.ndarray:
        """Standardised features with a trailing constant column, ``(M, D + 1)``."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return np.concatenate([z, np.ones((len(z), 1))], axis=1)

    def predict(self, x: np.ndarray) -> list[str]:
        """The class of each row of ``x`` (argmax of the ridge scores; ties: first class)."""
        scores = self.design(x) @ self.weights  # (M, C)
        return [self.classes[i] for i in scores.argmax(axis=1)]


def fit_ridge(x: np.ndarray, labels: Sequence[str], lam: float = RIDGE_LAMBDA) -> RidgeProbe:
    """Fit the ridge classifier of the module docstring on ``x`` ``(M, D)`` and ``labels``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(labels) or len(x) == 0:
        raise ValueError(f"x: need a non-empty (M, D) array with M = {len(labels)} labels")
    if not lam > 0:
        raise ValueError(f"lam: ridge penalty must be > 0, got {lam}")
    classes = tuple(sorted(set(labels)))
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)  # constant features stay 0 after centring
    probe = RidgeProbe(mean, scale, np.zeros((x.shape[1] + 1, len(classes))), classes)
    a = probe.design(x)  # (M, D + 1)
    index = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(x), len(classes)))
    y[np.arange(len(x)), [index[c] for c in labels]] = 1.0
    weights = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ y)
    return RidgeProbe(mean, scale, weights, classes)


def accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Fraction of equal entries."""
    if len(predicted) != len(truth) or not truth:
        raise ValueError("predicted: need as many (>= 1) predictions as labels")
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))


def probe_scores(
    train: tuple[np.ndarray, dict[str, list[str]]],
    test: tuple[np.ndarray, dict[str, list[str]]],
    lam: float = RIDGE_LAMBDA,
) -> dict[str, dict[str, Any]]:
    """Fit one probe per label on ``train`` and score it on ``test``.

    Each entry: ``accuracy`` (test), ``train_accuracy``, ``majority`` (accuracy of always
    predicting the most frequent training label), ``classes``, ``n_train``, ``n_test``.
    """
    (x_train, y_train), (x_test, y_test) = train, test
    out: dict[str, dict[str, Any]] = {}
    for target, labels in y_train.items():
        probe = fit_ridge(x_train, labels, lam)
        top = min(Counter(labels).items(), key=lambda kv: (-kv[1], kv[0]))[0]
        out[target] = {
            "accuracy": accuracy(probe.predict(x_test), y_test[target]),
            "train_accuracy": accuracy(probe.predict(x_train), labels),
            "majority": accuracy([top] * len(y_test[target]), y_test[target]),
            "classes": len(probe.classes),
            "n_train": len(labels),
            "n_test": len(y_test[target]),
        }
    return out


def probe_features(
    train_tokens: np.ndarray,
    train_scenes: Sequence[Scene],
    test_tokens: np.ndarray,
    test_scenes: Sequence[Scene],
    patch_size: int,
    lam: float = RIDGE_LAMBDA,
) -> dict[str, dict[str, Any]]:
    """Every probe of :data:`PROBE_TARGETS` from frozen tokens ``(N, g * g, D)``."""
    objects = probe_scores(
        object_features(train_tokens, train_scenes, patch_size),
        object_features(test_tokens, test_scenes, patch_size),
        lam,
    )
    scenes = probe_scores(
        scene_features(train_tokens, train_scenes), scene_features(test_tokens, test_scenes), lam
    )
    merged = {**objects, **scenes}
    return {t: merged[t] for t in PROBE_TARGETS}


@torch.no_grad()
def block_tokens(vision: Any, images: np.ndarray, layer: int, batch: int) -> np.ndarray:
    """Tokens ``(N, g * g, D)`` after ``layer`` blocks of ``vision`` (0: after ``ln_pre``),
    captured by a forward hook (the encoder's own forward runs unchanged)."""
    n_blocks = len(vision.blocks)
    if not 0 <= layer <= n_blocks:
        raise ValueError(f"layer: must be in [0, {n_blocks}], got {layer}")
    module = vision.ln_pre if layer == 0 else vision.blocks[layer - 1]
    captured: list[Tensor] = []
    handle = module.register_forward_hook(lambda mod, args, out: captured.append(out))
    try:
        imgs = torch.from_numpy(np.ascontiguousarray(images))
        for start in range(0, len(imgs), batch):
            vision(imgs[start : start + batch])
    finally:
        handle.remove()
    return torch.cat(captured).numpy()


def _layer_name(layer: int) -> str | int:
    """``"output"`` for the ViT's output (``-1``), else the number of blocks."""
    return "output" if layer == -1 else layer


#: ``stage`` value of :func:`probe_run` that probes the freshly initialised ViT (a control).
UNTRAINED = "untrained"


def load_vision(run_dir: Path, stage: str | None = None) -> tuple[Any, Any, str]:
    """``(config, model, stage)``: the run's model as saved at the end of ``stage``.

    ``stage=None`` takes the latest complete stage checkpoint (the ViT is frozen after stage
    0a, so every later checkpoint holds the same ViT unless HRA trained); ``"untrained"`` the
    freshly initialised model of the run's config (what a linear probe reads from random
    features). HRA is applied when the checkpoint was saved with it.
    """
    from hyperet.checkpoint import (
        CONFIG_FILE,
        CheckpointError,
        load_checkpoint,
        load_config,
        load_model_state,
    )
    from hyperet.data import Tokenizer
    from hyperet.train import apply_hyperet_to, build_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run directory not found")
    config = load_config(run_dir / CONFIG_FILE)
    model = build_model(config, Tokenizer.build())
    if stage == UNTRAINED:
        return config, model.eval(), stage
    order = config.train.stage_names()
    if stage is not None and stage not in order:
        raise ValueError(f"stage: {stage!r} is not one of {(*order, UNTRAINED)}")
    candidates = [stage] if stage is not None else order[::-1]
    for name in candidates:
        directory = run_dir / "checkpoints" / name
        if directory.is_dir():
            ckpt = load_checkpoint(directory)
            if ckpt.complete:
                if ckpt.meta.get("hyperet_applied"):
                    apply_hyperet_to(model, config)
                load_model_state(model, ckpt.model, source=directory)
                return config, model.eval(), name
    raise CheckpointError(
        f"{run_dir}: no complete checkpoint of stage {stage or 'any'} (train it first)"
    )


def probe_run(
    run_dir: Path | str,
    *,
    stage: str | None = None,
    split: str = "test",
    limit: int | None = None,
    train_scenes: int = PROBE_TRAIN_SCENES,
    batch: int = 256,
    layer: int | None = None,
) -> dict[str, Any]:
    """Linear probes of a run's frozen ViT (at the end of ``stage``, see :func:`load_vision`),
    fitted on the first ``train_scenes`` training scenes and scored on ``split`` (its first
    ``limit`` scenes). ``layer`` probes the tokens after that many blocks (0: the patch
    embedding plus position embedding after ``ln_pre``) instead of the tokens the projector
    reads (``projector.feature_layer``: by default the ViT's output, all blocks then
    ``ln_post``)."""
    from hyperet.data import build_split
    from hyperet.evaluate import SPLITS, _features, _limit

    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {SPLITS}")
    if train_scenes < 1:
        raise ValueError(f"train_scenes: must be >= 1, got {train_scenes}")
    config, model, loaded = load_vision(Path(run_dir), stage)
    d = config.data
    n_scenes = {"train": d.train_scenes, "val": d.val_scenes, "test": d.test_scenes}

    def make(name: str, n: int) -> Any:
        return build_split(
            name,
            n_scenes=n,
            seed=config.seed,
            image_size=d.image_size,
            min_objects=d.min_objects,
            max_objects=d.max_objects,
        )

    test_split = _limit(make(split, n_scenes[split]), limit)
    # the first scenes of the training split (scenes and images do not depend on n_scenes)
    train_split = make("train", min(train_scenes, d.train_scenes))
    patch = config.vision.patch_size
    if layer is None:
        train_tokens = _features(model, train_split.images, batch).numpy()
        test_tokens = _features(model, test_split.images, batch).numpy()
    else:
        train_tokens = block_tokens(model.vision, train_split.images, layer, batch)
        test_tokens = block_tokens(model.vision, test_split.images, layer, batch)
    return {
        "stage": loaded,
        "layer": _layer_name(config.projector.feature_layer if layer is None else layer),
        "lambda": RIDGE_LAMBDA,
        "train_scenes": len(train_split.scenes),
        "test_split": test_split.name,
        "test_scenes": len(test_split.scenes),
        "vision_level": config.train.vision_level,
        "targets": probe_features(
            train_tokens, train_split.scenes, test_tokens, test_split.scenes, patch
        ),
    }


__all__ = [
    "PROBE_TARGETS",
    "RidgeProbe",
    "accuracy",
    "block_tokens",
    "fit_ridge",
    "load_vision",
    "object_features",
    "patch_coverage",
    "probe_features",
    "probe_run",
    "probe_scores",
    "scene_features",
]
