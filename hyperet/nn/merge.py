r"""Merge HRA into the base weights for inference, and unmerge it bitwise.

Merging folds every adapter into its base weight (weight rows: the adapted weight; activations:
:math:`W(Ax + b) = (WA)x + Wb`, fast mode only) and keeps the adapters and the original weight
values in a :class:`MergedHRA` attached to the base module as ``hyperet_merged``, so that
:func:`unmerge_hyperet` restores the original weights bitwise.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from hyperet.nn.hra import HyperbolicRadiusAdjustment
from hyperet.nn.wrappers import (
    ROLES,
    HRALinear,
    HRAMultiheadAttention,
    RowAdapter,
    replace_submodule,
    typed_adapters,
)

#: Attribute of a base module that holds its :class:`MergedHRA`.
MERGED_ATTR = "hyperet_merged"


class MergedHRA(nn.Module):
    """Adapters folded into their host's weights, with the original values kept for unmerge.

    ``target="weight_rows"``: ``row_adapters[tensor_name]`` is the removed parametrization.
    ``target="activations"``: ``adapters`` maps role to HRA (the host was wrapped).
    Original values live in non-persistent buffers ``original_<tensor name>``.
    """

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.row_adapters = nn.ModuleDict()
        self.adapters = nn.ModuleDict()
        self.originals: list[str] = []

    def keep_original(self, name: str, value: Tensor) -> None:
        self.register_buffer(f"original_{name}", value.detach().clone(), persistent=False)
        self.originals.append(name)

    def original(self, name: str) -> Tensor:
        value: Tensor = getattr(self, f"original_{name}")
        return value


def _merge_rows(module: nn.Module, path: str) -> tuple[MergedHRA | None, int]:
    """Fold the RowAdapter parametrizations of ``module`` into its tensors."""
    holder: MergedHRA | None = None
    count = 0
    plists = cast(nn.ModuleDict, module.parametrizations)
    for name in list(plists.keys()):
        plist = cast(parametrize.ParametrizationList, plists[name])
        row_adapters = [p for p in plist if isinstance(p, RowAdapter)]
        if not row_adapters:
            continue
        if len(plist) != 1:
            raise ValueError(f"model: {path}.{name} has other parametrizations besides HRA")
        value = getattr(module, name).detach()  # the adapted weight
        if holder is None:
            holder = MergedHRA("weight_rows")
        holder.keep_original(name, plist.original)
        holder.row_adapters[name] = row_adapters[0]
        parametrize.remove_parametrizations(module, name, leave_parametrized=False)
        getattr(module, name).copy_(value)
        count += len(row_adapters[0].adapters)
    return holder, count


def _fold_rows(
    weight: Tensor, bias: Tensor | None, rows: slice, adapter: HyperbolicRadiusAdjustment
) -> None:
    """In place: ``weight[rows] <- W weight[rows]``, ``bias[rows] <- W bias[rows]``."""
    folded_weight, folded_bias = adapter.fold_columns(
        weight[rows], None if bias is None else bias[rows]
    )
    weight[rows] = folded_weight
    if bias is not None and folded_bias is not None:
        bias[rows] = folded_bias


def _merge_wrapper(wrapper: HRALinear | HRAMultiheadAttention, path: str) -> nn.Module:
    """Fold the adapters of an activations wrapper into its base module and return the base."""
    adapters = typed_adapters(wrapper.adapters)
    for adapter in adapters.values():
        if not adapter.is_linear:
            raise ValueError(
                f"model: {path} uses mode={adapter.mode!r}, policy={adapter.policy!r}; target="
                "'activations' can only be merged in fast mode without a capping policy"
            )
    holder = MergedHRA("activations")
    if isinstance(wrapper, HRALinear):
        base: nn.Module = wrapper.base
        names = ("weight", "bias")
    else:
        base = wrapper.base
        names = ("in_proj_weight", "in_proj_bias")
    weight, bias = getattr(base, names[0]), getattr(base, names[1])
    holder.keep_original(names[0], weight)
    if bias is not None:
        holder.keep_original(names[1], bias)
    for role, adapter in adapters.items():
        if isinstance(wrapper, HRALinear):
            rows = slice(0, weight.shape[0])
        else:
            e = wrapper.base.embed_dim
            rows = slice(ROLES.index(role) * e, (ROLES.index(role) + 1) * e)
        _fold_rows(weight, bias, rows, adapter)
        holder.adapters[role] = adapter
    setattr(base, MERGED_ATTR, holder)
    return base


@torch.no_grad()
def merge_hyperet(model: nn.Module) -> int:
    """Fold every HRA into its base weight so inference runs the plain model.

    Weight rows: the adapted weight (any mode) replaces the frozen weight's values.
    Activations: :math:`W(Ax + b) = (WA)x + Wb` (only ``mode="fast"`` without a capping
    policy, else ``ValueError``); the wrapper is replaced by its base module.
    Returns the number of adapters merged.
    """
    merged = 0
    for path, module in list(model.named_modules()):
        if parametrize.is_parametrized(module):
            holder, count = _merge_rows(module, path)
            if holder is not None:
                setattr(module, MERGED_ATTR, holder)
                merged += count
        elif isinstance(module, (HRALinear, HRAMultiheadAttention)):
            merged += len(module.adapters)
            replace_submodule(model, path, _merge_wrapper(module, path))
    return merged


@torch.no_grad()
def unmerge_hyperet(model: nn.Module) -> int:
    """Undo :func:`merge_hyperet`: restore the original weights bitwise, re-attach the adapters.

    Returns the number of adapters restored.
    """
    restored = 0
    for path, module in list(model.named_modules()):
        holder = getattr(module, MERGED_ATTR, None)
        if not isinstance(holder, MergedHRA):
            continue
        delattr(module, MERGED_ATTR)
        for name in holder.originals:
            getattr(module, name).copy_(holder.original(name))
        if holder.target == "weight_rows":
            for name, row_adapter in holder.row_adapters.items():
                parametrize.register_parametrization(module, name, row_adapter)
                restored += len(cast(RowAdapter, row_adapter).adapters)
            continue
        adapters = typed_adapters(holder.adapters)
        wrapper: nn.Module
        if isinstance(module, nn.MultiheadAttention):
            wrapper = HRAMultiheadAttention(module, adapters)
        else:
            wrapper = HRALinear(cast(nn.Linear, module), adapters)
        replace_submodule(model, path, wrapper)
        restored += len(adapters)
    return restored
