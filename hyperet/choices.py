"""The named choices of the library, each declared once.

Plain tuples of strings, imported by the rooms that validate them (``hyperet.ops``,
``hyperet.nn``, the run configuration) and by the CLI, which offers them as options without
importing torch; so this module imports nothing.
"""

from __future__ import annotations

#: Numerical policies of ``hyperet.ops`` (docs/policy.md); ``None`` picks one from the dtype.
POLICIES: tuple[str, ...] = ("exact", "train")
#: Structures of the HRA matrix (docs/architecture.md's layouts).
STRUCTURES: tuple[str, ...] = ("diagonal", "block", "banded")
#: How the HRA module evaluates ``logmap0(M (x) expmap0(u))`` (docs/hra.md).
HRA_MODES: tuple[str, ...] = ("fast", "literal", "official")
#: Where ``HyperbolicRadiusAdjustment.adapt_projection`` applies the map (docs/hra.md);
#: "auto" picks the cheaper side for the shapes at hand.
HRA_SIDES: tuple[str, ...] = ("auto", "tokens", "weight")
#: Devices a run may ask for (``hyperet.device``); "auto" picks CUDA when present.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: Splits of the synthetic data set.
SPLITS: tuple[str, ...] = ("train", "val", "test")

__all__ = ["DEVICES", "HRA_MODES", "HRA_SIDES", "POLICIES", "SPLITS", "STRUCTURES"]
