"""Hyperbolic image-text contrastive alignment (hyperbolic BLIP-2); see docs/alignment.md.

- :mod:`~hyperet.alignment.connector`: Q-Former-lite queries, text encoder, ball projection;
- :mod:`~hyperet.alignment.losses`: similarities, query aggregation / RQS, symmetric InfoNCE;
- :mod:`~hyperet.alignment.pruning`: Random Text Pruning;
- :mod:`~hyperet.alignment.aligner`: the composed model and its config;
- :mod:`~hyperet.alignment.metrics`: retrieval recall, Spearman, AUROC, radius histograms;
- :mod:`~hyperet.alignment.monitors`: stability monitors (radius, boundary, clamp hits);
- :mod:`~hyperet.alignment.entailment`: entailment-cone terms and MERU's Lorentz embedding.
"""

from __future__ import annotations

from hyperet.alignment.aligner import (
    RECIPES,
    AlignerConfig,
    AlignmentOutput,
    ImageTextAligner,
)
from hyperet.alignment.connector import (
    BallProjection,
    BoundedLogScalar,
    QueryConnector,
    TextEncoder,
)
from hyperet.alignment.entailment import (
    caption_entailment,
    image_entailment,
    lorentz_expmap0,
    lorentz_to_ball,
    pairwise_lorentz_dist,
)
from hyperet.alignment.losses import (
    ContrastiveLoss,
    aggregate_queries,
    duplicate_positives,
    info_nce,
    random_query_mask,
    select_queries,
    similarity_matrix,
)
from hyperet.alignment.metrics import (
    auroc,
    average_ranks,
    caption_relevance,
    chance_recall,
    entailment_accuracy,
    hierarchy_pairs,
    plot_radius_histograms,
    radius_histogram,
    recall_at_k,
    retrieval_ranks,
    retrieval_recall,
    spearman,
)
from hyperet.alignment.monitors import (
    EmbeddingStats,
    StabilityMonitor,
    embedding_stats,
)
from hyperet.alignment.pruning import random_text_pruning

__all__ = [
    "RECIPES",
    "AlignerConfig",
    "AlignmentOutput",
    "BallProjection",
    "BoundedLogScalar",
    "ContrastiveLoss",
    "EmbeddingStats",
    "ImageTextAligner",
    "QueryConnector",
    "StabilityMonitor",
    "TextEncoder",
    "aggregate_queries",
    "auroc",
    "average_ranks",
    "caption_entailment",
    "caption_relevance",
    "chance_recall",
    "duplicate_positives",
    "embedding_stats",
    "entailment_accuracy",
    "hierarchy_pairs",
    "image_entailment",
    "info_nce",
    "lorentz_expmap0",
    "lorentz_to_ball",
    "pairwise_lorentz_dist",
    "plot_radius_histograms",
    "radius_histogram",
    "random_query_mask",
    "random_text_pruning",
    "recall_at_k",
    "retrieval_ranks",
    "retrieval_recall",
    "select_queries",
    "similarity_matrix",
    "spearman",
]
