"""``HyperETConfig``: the arguments of :func:`~hyperet.nn.apply_hyperet` as one JSON-able value.

The method is called **HyperET** everywhere it is serialised (``"method": "hyperet"`` in
``adapter_config.json``, this class's name); PEFT already uses "HRA" / ``hra_`` for Householder
Reflection Adaptation, so our module name ``HyperbolicRadiusAdjustment`` is never abbreviated in
files. See ``docs/hra.md``.

    config = HyperETConfig(structure="diagonal")
    params = config.apply(model)                    # apply_hyperet(model, **fields)
    config = HyperETConfig.from_model(model)        # what a model carries (names matched)
    config = HyperETConfig.from_pretrained(DIR)     # read DIR/adapter_config.json
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from hyperet import _io
from hyperet.nn.inject import adapted_module_names, adapter_sites, apply_hyperet
from hyperet.nn.structured import BandedMatrix, BlockDiagonalMatrix
from hyperet.nn.wrappers import ROLES

#: Name of the method in serialised configs (not "hra": PEFT's Householder adapter).
METHOD = "hyperet"
#: Files of an adapter directory (PEFT's names).
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
#: dtypes an adapter weights file may hold (safetensors codes); loading never casts.
ADAPTER_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})

T = TypeVar("T")


class AdapterCheckpointError(ValueError):
    """An adapter checkpoint cannot be written or loaded (message names the problem)."""


def read_checked(path: Path, read: Callable[..., T], problem: str = "", **options: Any) -> T:
    """``read(path, **options)`` (a :mod:`hyperet._io` reader) with its refusal re-raised as
    :class:`AdapterCheckpointError` ``"path: '<path>'<problem>: <reason>"``."""
    try:
        return read(path, **options)
    except _io.FileCheckError as error:
        reason = str(error).removeprefix(f"{path}: ")
        raise AdapterCheckpointError(f"path: {str(path)!r}{problem}: {reason}") from None


def read_config_json(path: Path) -> dict[str, Any]:
    """The content of a HyperET ``adapter_config.json`` (strict JSON, ``method`` checked)."""
    config = read_checked(path, _io.read_json, " is not valid JSON")
    if isinstance(config, dict) and "peft_type" in config:  # e.g. PEFT's HRA (Householder)
        raise AdapterCheckpointError(
            f"path: {str(path)!r} is a PEFT adapter config (peft_type "
            f"{config['peft_type']!r}), not a HyperET one"
        )
    if not isinstance(config, dict) or config.get("method") != METHOD:
        raise AdapterCheckpointError(
            f"path: {str(path)!r} is not a HyperET adapter config (method "
            f"{config.get('method') if isinstance(config, dict) else None!r}, expected {METHOD!r})"
        )
    return config


@dataclass(frozen=True)
class HyperETConfig:
    """How HyperET adapts a model: every argument of :func:`~hyperet.nn.apply_hyperet`.

    ``modules`` ``None`` uses the automatic matching rule; a saved config lists the module names
    that were matched, so applying it to a fresh copy of the model adapts exactly those.
    """

    structure: str
    targets: tuple[str, ...] = ("q", "v")
    target: str = "weight_rows"
    c: float = 0.01
    mode: str = "fast"
    block_size: int = 4
    bandwidth: int = 2
    learn_curvature: bool = False
    policy: str | None = None
    modules: tuple[str, ...] | None = None
    within: str | None = None
    freeze_base: bool = True

    def apply(self, model: nn.Module) -> list[nn.Parameter]:
        """``apply_hyperet(model, **self)``; returns the new trainable parameters."""
        return apply_hyperet(
            model,
            structure=self.structure,
            targets=self.targets,
            target=self.target,
            c=self.c,
            mode=self.mode,
            block_size=self.block_size,
            bandwidth=self.bandwidth,
            learn_curvature=self.learn_curvature,
            policy=self.policy,
            modules=self.modules,
            within=self.within,
            freeze_base=self.freeze_base,
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["targets"] = list(self.targets)
        out["modules"] = None if self.modules is None else list(self.modules)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HyperETConfig:
        """Inverse of :meth:`to_dict`; unknown keys (format fields, ``adapters``) are ignored."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "structure" not in kwargs:
            raise ValueError("config: no 'structure' field")
        if "targets" in kwargs:
            kwargs["targets"] = tuple(kwargs["targets"])
        if kwargs.get("modules") is not None:
            kwargs["modules"] = tuple(kwargs["modules"])
        return cls(**kwargs)

    @classmethod
    def from_model(cls, model: nn.Module) -> HyperETConfig:
        """The config of the adapters ``model`` carries, with the matched module names.

        ``c`` is the adapters' curvature; with ``learn_curvature`` each adapter learned its own,
        stored with the weights, and ``c`` is the first one's (only an initial value). A model
        whose adapters differ in another field (not one ``apply_hyperet`` call) raises.
        """
        sites = adapter_sites(model)
        if not sites:
            raise ValueError("model: carries no HyperET adapters (call apply_hyperet first)")

        def one(field: str, values: list[Any]) -> Any:
            if len(set(values)) != 1:
                raise ValueError(f"model: adapters differ in {field} ({sorted(set(values))})")
            return values[0]

        adapters = [s.adapter for s in sites]
        learned = adapters[0].learn_curvature
        sizes = {type(a.matrix): a.matrix for a in adapters}
        block = sizes.get(BlockDiagonalMatrix)
        band = sizes.get(BandedMatrix)
        roles = {s.key.rpartition(".")[2] for s in sites}
        return cls(
            structure=one("structure", [a.structure for a in adapters]),
            targets=tuple(r for r in ROLES if r in roles),
            target=one("target", [s.target for s in sites]),
            # learned curvatures differ per adapter and live in the weights: c is then the first
            c=adapters[0].c_value if learned else one("c", [a.c_value for a in adapters]),
            mode=one("mode", [a.mode for a in adapters]),
            block_size=block.block_size if isinstance(block, BlockDiagonalMatrix) else 4,
            bandwidth=band.bandwidth if isinstance(band, BandedMatrix) else 2,
            learn_curvature=one("learn_curvature", [a.learn_curvature for a in adapters]),
            policy=one("policy", [a.policy for a in adapters]),
            modules=tuple(adapted_module_names(model)),
        )

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str]) -> HyperETConfig:
        """Read ``directory/adapter_config.json`` (written by ``save_adapters``)."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise ValueError(f"directory: no {CONFIG_NAME} in {str(directory)!r}")
        return cls.from_dict(read_config_json(path))
