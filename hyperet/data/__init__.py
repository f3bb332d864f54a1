"""Procedural multi-granularity data: scenes, captions, VQA, multiple choice, tokenizer, splits.

Numpy only; everything is a deterministic function of a seed. See docs/data.md.
"""

from __future__ import annotations

from .captions import LEVELS, caption
from .dataset import Split, build_split
from .multiple_choice import (
    MC_CATEGORIES,
    MCItem,
    answer_text,
    drill_text,
    format_prompt,
    parse_answer,
)
from .questions import QA, QUESTION_TYPES, questions_for
from .scenes import COLORS, SHAPES, SIZES, Scene, SceneObject, render, sample_scene
from .tokenizer import Tokenizer

__all__ = [
    "COLORS",
    "LEVELS",
    "MC_CATEGORIES",
    "QA",
    "QUESTION_TYPES",
    "SHAPES",
    "SIZES",
    "MCItem",
    "Scene",
    "SceneObject",
    "Split",
    "Tokenizer",
    "answer_text",
    "build_split",
    "caption",
    "drill_text",
    "format_prompt",
    "parse_answer",
    "questions_for",
    "render",
    "sample_scene",
]
