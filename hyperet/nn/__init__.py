"""How do I adapt a model? The HRA module, its injection into attention, merge, checkpoints.

See ``docs/hra.md``.
"""

from __future__ import annotations

from hyperet.nn.accounting import ParameterReport, count_parameters
from hyperet.nn.adapter_config import HyperETConfig
from hyperet.nn.adapter_io import AdapterCheckpointError, load_adapters, save_adapters
from hyperet.nn.baselines import apply_baseline, baseline_parameter_count
from hyperet.nn.hra import HyperbolicRadiusAdjustment
from hyperet.nn.inject import adapted_module_names, adapter_sites, apply_hyperet
from hyperet.nn.merge import merge_hyperet, unmerge_hyperet
from hyperet.nn.structured import (
    BandedMatrix,
    BlockDiagonalMatrix,
    DiagonalMatrix,
    StructuredMatrix,
    make_structured,
)
from hyperet.nn.wrappers import HRALinear, HRAMultiheadAttention

__all__ = [
    "AdapterCheckpointError",
    "BandedMatrix",
    "BlockDiagonalMatrix",
    "DiagonalMatrix",
    "HRALinear",
    "HRAMultiheadAttention",
    "HyperETConfig",
    "HyperbolicRadiusAdjustment",
    "ParameterReport",
    "StructuredMatrix",
    "adapted_module_names",
    "adapter_sites",
    "apply_baseline",
    "apply_hyperet",
    "baseline_parameter_count",
    "count_parameters",
    "load_adapters",
    "make_structured",
    "merge_hyperet",
    "save_adapters",
    "unmerge_hyperet",
]
