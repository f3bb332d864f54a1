"""Parameter accounting: how many parameters HRA adds, in total and as a share of the model."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hyperet.nn.inject import iter_adapters


@dataclass(frozen=True)
class ParameterReport:
    """Parameter counts of a model carrying HRA adapters.

    Counts are free parameters: the ``k (k+1)`` structural zeros stored by each banded
    matrix (entries outside the matrix) are not counted.

    Attributes
    ----------
    adapter : int
        Free parameters of all HRA modules (matrix entries, plus ``c`` when learned).
    total : int
        All free parameters of the model, adapters included.
    trainable : int
        Free parameters with ``requires_grad=True``.
    """

    adapter: int
    total: int
    trainable: int

    @property
    def base(self) -> int:
        """Parameters of the model without the adapters."""
        return self.total - self.adapter

    @property
    def percent(self) -> float:
        """Adapter parameters as a percentage of the total: ``100 * adapter / total``."""
        return 100.0 * self.adapter / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "adapter": self.adapter,
            "total": self.total,
            "trainable": self.trainable,
            "base": self.base,
            "percent": self.percent,
        }


def count_parameters(model: nn.Module) -> ParameterReport:
    """Count adapter, total and trainable parameters of ``model`` (shared tensors counted once)."""
    adapters = list(iter_adapters(model))
    # structural zeros stored by banded matrices, per parameter tensor
    stored_not_free: dict[int, int] = {}
    for adapter in adapters:
        extra = adapter.matrix.num_stored_parameters - adapter.matrix.num_free_parameters
        for p in adapter.matrix.parameters():
            stored_not_free[id(p)] = extra
    total = trainable = 0
    for p in model.parameters():  # deduplicated by identity
        n = p.numel() - stored_not_free.get(id(p), 0)
        total += n
        trainable += n if p.requires_grad else 0
    return ParameterReport(
        adapter=sum(a.num_free_parameters for a in adapters), total=total, trainable=trainable
    )
