"""The recipe's training data: the training split and the tokenised example pools of every stage.

Everything is generated from ``config.seed`` (:func:`hyperet.data.build_split`) and tokenised once;
the stages of :mod:`hyperet.train.stages` draw batches from these pools by index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hyperet.batching import (
    Encoded,
    encode_caption,
    encode_mc,
    encode_mc_drill,
    encode_text,
    encode_vqa,
)
from hyperet.config import RunConfig
from hyperet.data import Split, Tokenizer, build_split
from hyperet.data.hard_negatives import hard_negative
from hyperet.data.mixture import CaptionMixture

#: Seed stream of the pointing drills' option orders (``train.lm_mc_drill``).
DRILL_STREAM = 7
#: random stream of the hard-negative captions (``[seed, HARD_NEGATIVE_STREAM]``)
HARD_NEGATIVE_STREAM = 8

#: Caption level used by projector alignment (states colour, shape, size and position).
ALIGN_LEVEL = "detailed"


@dataclass
class TrainingData:
    """The training split and the tokenised example pools of every stage."""

    split: Split
    tokenizer: Tokenizer
    images: Tensor  # (N, 3, H, W) uint8
    vision_mixture: CaptionMixture
    vision_captions: list[Encoded]  # (L * N,): row k * N + i = image i at mixture level k
    vision_caption_ids: np.ndarray  # (L * N,) id of each caption string (duplicates share)
    #: hard negative of each vision caption row, and its id (that of an equal caption, or new)
    vision_negatives: list[Encoded] | None
    vision_negative_ids: np.ndarray | None  # (L * N,)
    lm_texts: list[Encoded]
    align: list[Encoded]
    vqa: list[tuple[int, Encoded]]
    mc: list[tuple[int, Encoded]]


def build_training_data(config: RunConfig, tokenizer: Tokenizer) -> TrainingData:
    """Generate the training split (deterministic in ``config.seed``) and tokenise it."""
    d = config.data
    split = build_split(
        "train",
        n_scenes=d.train_scenes,
        seed=config.seed,
        image_size=d.image_size,
        min_objects=d.min_objects,
        max_objects=d.max_objects,
    )
    mixture = CaptionMixture.named(config.train.vision_level)
    # vision pool: row ``k * N + i`` is image i's caption at mixture level k
    vision_texts = [c for level in mixture.levels for c in split.captions[level]]
    unique = {text: i for i, text in enumerate(sorted(set(vision_texts)))}
    negatives: list[str] | None = None
    if config.train.vision_hard_negatives:
        rng = np.random.default_rng([config.seed, HARD_NEGATIVE_STREAM])
        negatives = [
            hard_negative(scene, level, rng) for level in mixture.levels for scene in split.scenes
        ]
        for text in sorted(set(negatives) - unique.keys()):
            unique[text] = len(unique)
    lm_texts = [encode_text(tokenizer, c) for texts in split.captions.values() for c in texts]
    lm_texts += [encode_text(tokenizer, f"{qa.question} {qa.answer}") for _, qa in split.qa]
    if config.train.lm_mc_drill:
        orders = np.random.default_rng([config.seed, DRILL_STREAM])
        lm_texts += [
            encode_mc_drill(tokenizer, item, orders.permutation(len(item.options)).tolist())
            for _, item in split.mc
        ]
    else:
        lm_texts += [encode_mc(tokenizer, item) for _, item in split.mc]
    # LM pretraining supervises the MC prompt too
    lm_texts = [
        Encoded(e.ids, np.where(np.arange(len(e.ids)) == 0, e.labels, e.ids)) for e in lm_texts
    ]
    max_len = config.language.max_text_len
    longest = max(len(e.ids) for e in lm_texts)
    if longest > max_len:
        raise ValueError(
            f"language.max_text_len: {max_len} is shorter than the longest text ({longest} tokens)"
        )
    return TrainingData(
        split=split,
        tokenizer=tokenizer,
        images=torch.from_numpy(np.ascontiguousarray(split.images)),
        vision_mixture=mixture,
        vision_captions=[encode_text(tokenizer, c) for c in vision_texts],
        vision_caption_ids=np.asarray([unique[t] for t in vision_texts], dtype=np.int64),
        vision_negatives=None
        if negatives is None
        else [encode_text(tokenizer, c) for c in negatives],
        vision_negative_ids=None
        if negatives is None
        else np.asarray([unique[t] for t in negatives], dtype=np.int64),
        lm_texts=lm_texts,
        align=[encode_caption(tokenizer, c) for c in split.captions[ALIGN_LEVEL]],
        vqa=[(i, encode_vqa(tokenizer, qa)) for i, qa in split.qa],
        mc=[
            (i, encode_mc(tokenizer, item, restate=config.train.mc_restate)) for i, item in split.mc
        ],
    )
