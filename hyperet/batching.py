"""Prompt formats and torch batches for every stage of the recipe.

Text layouts (``[img]`` is the projected visual prefix, which carries no text position):

- LM text: ``<bos> text <eos>``; every token after ``<bos>`` supervised;
- caption: ``[img] <bos> caption <eos>``; caption and ``<eos>`` supervised;
- VQA: ``[img] <bos> question <sep> answer <eos>``; answer and ``<eos>`` supervised;
- multiple choice: ``[img] <bos> QCM prompt <sep> the answer is x . <eos>``; the answer
  sentence and ``<eos>`` supervised;
- CLIP text: ``<bos> caption <eos>`` into the text tower, pooled at ``<eos>``.

Sequences are right-padded with ``<pad>`` (id 0); labels hold ``-100`` wherever no loss is taken.
A prompt for generation is the same sequence cut just after ``<sep>``.

This module sits on the data layer (it turns ``hyperet.data`` examples into tensors;
``hyperet.data`` itself is numpy only); the model reads :data:`IGNORE` from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hyperet.data import QA, MCItem, Tokenizer, answer_text, drill_text, format_prompt

#: Label value excluded from the loss.
IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    """One tokenised example: ids and per-token labels (``IGNORE`` where unsupervised)."""

    ids: np.ndarray  # (T,) int64
    labels: np.ndarray  # (T,) int64

    def __post_init__(self) -> None:
        if self.ids.shape != self.labels.shape:
            raise ValueError("labels: must have the shape of ids")


@dataclass(frozen=True)
class TextBatch:
    """Right-padded token batch: ``input_ids`` and ``labels`` ``(B, T)``, ``lengths`` ``(B,)``."""

    input_ids: Tensor
    labels: Tensor
    lengths: Tensor


def _encoded(prompt: list[int], target: list[int]) -> Encoded:
    ids = np.asarray(prompt + target, dtype=np.int64)
    labels = np.asarray([IGNORE] * len(prompt) + target, dtype=np.int64)
    return Encoded(ids, labels)


def encode_text(tokenizer: Tokenizer, text: str) -> Encoded:
    """LM pretraining: ``<bos> text <eos>``, every token after ``<bos>`` supervised."""
    ids = tokenizer.encode(text, bos=True, eos=True)
    return _encoded(ids[:1], ids[1:])


def encode_caption(tokenizer: Tokenizer, caption: str) -> Encoded:
    """Projector alignment: ``<bos> caption <eos>`` after the visual prefix."""
    return encode_text(tokenizer, caption)


def vqa_prompt(tokenizer: Tokenizer, question: str) -> list[int]:
    """``<bos> question <sep>``: what the model sees before answering."""
    return [*tokenizer.encode(question, bos=True), tokenizer.sep_id]


def encode_vqa(tokenizer: Tokenizer, qa: QA) -> Encoded:
    """Instruction tuning on VQA: loss on ``answer <eos>``."""
    return _encoded(vqa_prompt(tokenizer, qa.question), tokenizer.encode(qa.answer, eos=True))


def mc_prompt(tokenizer: Tokenizer, item: MCItem) -> list[int]:
    """``<bos> Question / Context / Options / Answer: <sep>`` (ScienceQA QCM layout)."""
    return [*tokenizer.encode(format_prompt(item), bos=True), tokenizer.sep_id]


def mc_answer(
    tokenizer: Tokenizer, item: MCItem, index: int | None = None, *, restate: bool = False
) -> list[int]:
    """Tokens of ``"The answer is X." <eos>`` for option ``index`` (default: the correct one).

    ``restate`` prefixes the option's text (:func:`hyperet.data.answer_text`).
    """
    if index is None:
        index = item.answer_index
    if not 0 <= index < len(item.options):
        raise ValueError(f"index: option {index} out of range for {len(item.options)} options")
    chosen = MCItem(item.question, item.context, item.options, index, item.category)
    return tokenizer.encode(answer_text(chosen, restate=restate), eos=True)


def encode_mc(
    tokenizer: Tokenizer, item: MCItem, index: int | None = None, *, restate: bool = False
) -> Encoded:
    """Instruction tuning on multiple choice: loss on ``the answer is x . <eos>``.

    ``restate``: loss on ``option . the answer is x . <eos>`` (``train.mc_restate``).
    """
    return _encoded(mc_prompt(tokenizer, item), mc_answer(tokenizer, item, index, restate=restate))


def encode_mc_drill(tokenizer: Tokenizer, item: MCItem, order: Sequence[int]) -> Encoded:
    """LM pretraining on a pointing drill: the MC prompt, then every option restated and pointed
    at in ``order`` (:func:`hyperet.data.drill_text`); every token after ``<bos>`` supervised."""
    prompt = mc_prompt(tokenizer, item)
    ids = np.asarray(prompt + tokenizer.encode(drill_text(item, list(order)), eos=True))
    return Encoded(ids, np.concatenate([[IGNORE], ids[1:]]).astype(np.int64))


def collate(examples: Sequence[Encoded]) -> TextBatch:
    """Right-pad ``examples`` into a :class:`TextBatch` (pad id 0, label ``IGNORE``)."""
    if not examples:
        raise ValueError("examples: empty batch")
    lengths = [len(e.ids) for e in examples]
    width = max(lengths)
    ids = np.zeros((len(examples), width), dtype=np.int64)
    labels = np.full((len(examples), width), IGNORE, dtype=np.int64)
    for row, e in enumerate(examples):
        ids[row, : len(e.ids)] = e.ids
        labels[row, : len(e.labels)] = e.labels
    return TextBatch(
        torch.from_numpy(ids), torch.from_numpy(labels), torch.tensor(lengths, dtype=torch.int64)
    )


def collate_prompts(prompts: Sequence[list[int]]) -> TextBatch:
    """Right-pad generation prompts (labels all ``IGNORE``)."""
    return collate(
        [Encoded(np.asarray(p, dtype=np.int64), np.full(len(p), IGNORE)) for p in prompts]
    )
