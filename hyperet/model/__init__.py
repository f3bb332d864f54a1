"""The compact MLLM, one file per part: vision encoder, CLIP text tower, projector, LM, composition.

See docs/mllm.md for the architecture, the presets and the staged recipe.
"""

from __future__ import annotations

from hyperet.model.clip import ContrastiveHead, TextEncoder, multi_positive_infonce
from hyperet.model.language import LanguageModel
from hyperet.model.mllm import (
    IGNORE,
    MLLM,
    aligner_config,
    build_model,
    next_token_loss,
)
from hyperet.model.projector import Projector, pixel_shuffle
from hyperet.model.vision import ResidualAttentionBlock, VisionEncoder

__all__ = [
    "IGNORE",
    "MLLM",
    "ContrastiveHead",
    "LanguageModel",
    "Projector",
    "ResidualAttentionBlock",
    "TextEncoder",
    "VisionEncoder",
    "aligner_config",
    "build_model",
    "multi_positive_infonce",
    "next_token_loss",
    "pixel_shuffle",
]
