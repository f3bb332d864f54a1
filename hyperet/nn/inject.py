r"""Inject HRA into attention projections explicitly, merge it for inference, unmerge it.

No forward is monkey-patched. Two targets:

- ``target="weight_rows"`` (the released code): the rows of a frozen projection weight are
  mapped by HRA, through :func:`torch.nn.utils.parametrize.register_parametrization`; in fast
  mode the adapted weight is :math:`A W^T` for a frozen weight ``A`` (one row per output
  feature). The adapted weight is recomputed at every forward, gradients reach only ``W``.
- ``target="activations"``: the projected q / v token features are mapped by HRA. An
  ``nn.Linear`` is replaced by :class:`HRALinear` (``HRA(linear(x))``); an
  ``nn.MultiheadAttention`` by :class:`HRAMultiheadAttention`, which computes q, k, v with
  ``F.linear`` from the packed weight, applies HRA to the targeted ones, then attention, and
  accepts ``nn.MultiheadAttention``'s call signature.

Matching rule (``modules=None``): every ``nn.MultiheadAttention`` (q = rows ``[0, E)``, k =
``[E, 2E)``, v = ``[2E, 3E)`` of the packed ``in_proj_weight``, or its separate
``q_proj_weight`` / ``v_proj_weight``), and every ``nn.Linear`` whose attribute name is one of
``Q_NAMES`` / ``K_NAMES`` / ``V_NAMES`` for a role listed in ``targets``. ``modules=[...]``
instead adapts exactly the named modules (qualified names as in ``model.named_modules()``); a
named ``nn.Linear`` whose name matches no role gets the role ``"proj"``.

Merging folds every adapter into its base weight (weight rows: the adapted weight; activations:
:math:`W(Ax + b) = (WA)x + Wb`, fast mode only) and keeps the adapters and the original weight
values in a :class:`MergedHRA` attached to the base module as ``hyperet_merged``, so that
:func:`unmerge_hyperet` restores the original weights bitwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from hyperet.nn.hra import HyperbolicRadiusAdjustment

Q_NAMES: frozenset[str] = frozenset({"q_proj", "query", "q"})
K_NAMES: frozenset[str] = frozenset({"k_proj", "key", "k"})
V_NAMES: frozenset[str] = frozenset({"v_proj", "value", "v"})
ROLES: tuple[str, ...] = ("q", "k", "v")
TARGETS: tuple[str, ...] = ("weight_rows", "activations")
MERGED_ATTR = "hyperet_merged"


def _role_of(name: str) -> str | None:
    """Role of a Linear layer from its attribute name (``"q"``, ``"k"``, ``"v"`` or None)."""
    leaf = name.rsplit(".", 1)[-1]
    for role, names in (("q", Q_NAMES), ("k", K_NAMES), ("v", V_NAMES)):
        if leaf in names:
            return role
    return None


# ---------------------------------------------------------------------------- weight rows
class RowAdapter(nn.Module):
    """Parametrization mapping row ranges of a weight by HRA (one adapter per role).

    ``slices[role] = (start, stop)``: rows ``start:stop`` are replaced by ``HRA(rows)``.
    """

    def __init__(
        self, adapters: dict[str, HyperbolicRadiusAdjustment], slices: dict[str, tuple[int, int]]
    ) -> None:
        super().__init__()
        self.adapters = nn.ModuleDict(adapters)
        self.slices = dict(slices)

    def forward(self, weight: Tensor) -> Tensor:
        pieces: list[Tensor] = []
        row = 0
        for role, (start, stop) in sorted(self.slices.items(), key=lambda item: item[1]):
            if start > row:
                pieces.append(weight[row:start])
            pieces.append(self.adapters[role](weight[start:stop]))  # (stop - start, in)
            row = stop
        if row < weight.shape[0]:
            pieces.append(weight[row:])
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)


# ---------------------------------------------------------------------------- activations
class HRALinear(nn.Module):
    """``HRA(linear(x))``: HRA on the output features of a frozen ``nn.Linear``."""

    def __init__(self, base: nn.Linear, adapters: dict[str, HyperbolicRadiusAdjustment]) -> None:
        super().__init__()
        self.base = base
        self.adapters = nn.ModuleDict(adapters)
        if len(self.adapters) != 1:
            raise ValueError("adapters: HRALinear takes exactly one adapter")

    def forward(self, x: Tensor) -> Tensor:
        (adapter,) = self.adapters.values()
        return adapter(self.base(x))  # (..., out_features)


def _additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``nn.MultiheadAttention`` mask (bool: True = masked out, or float: added) as a float."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, -math.inf)
    return mask.to(dtype)


class HRAMultiheadAttention(nn.Module):
    """Multi-head attention with HRA on the projected q / k / v features of a frozen MHA.

    Accepts ``nn.MultiheadAttention``'s call signature (as used by
    ``nn.TransformerEncoderLayer`` and CLIP-style blocks) and returns ``(output, weights)``.
    Only the packed layout (``kdim == vdim == embed_dim``, no ``bias_k``, no
    ``add_zero_attn``) is supported.
    """

    # nn.TransformerEncoderLayer takes its fused kernel (which reads in_proj_weight directly and
    # would skip HRA) only when this is True; the packed weight is still used here.
    _qkv_same_embed_dim = False

    def __init__(
        self, base: nn.MultiheadAttention, adapters: dict[str, HyperbolicRadiusAdjustment]
    ) -> None:
        super().__init__()
        if not base._qkv_same_embed_dim or base.bias_k is not None or base.add_zero_attn:
            raise ValueError(
                "model: target='activations' supports nn.MultiheadAttention with a packed "
                "in_proj_weight, no bias_k/bias_v and no add_zero_attn"
            )
        self.base = base
        self.adapters = nn.ModuleDict(adapters)

    # attributes read by nn.TransformerEncoder(Layer)
    @property
    def batch_first(self) -> bool:
        return bool(self.base.batch_first)

    @property
    def embed_dim(self) -> int:
        return int(self.base.embed_dim)

    @property
    def num_heads(self) -> int:
        return int(self.base.num_heads)

    @property
    def in_proj_weight(self) -> Tensor:
        return self.base.in_proj_weight

    @property
    def in_proj_bias(self) -> Tensor | None:
        return self.base.in_proj_bias

    @property
    def out_proj(self) -> nn.Linear:
        return self.base.out_proj

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        base = self.base
        batched = query.dim() == 3
        if not batched:  # (L, E) -> (1, L, E)
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not base.batch_first:  # (L, B, E) -> (B, L, E)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        e, h = base.embed_dim, base.num_heads
        w, b = base.in_proj_weight, base.in_proj_bias
        projected = []
        for i, (role, x) in enumerate(zip(ROLES, (query, key, value), strict=True)):
            y = F.linear(x, w[i * e : (i + 1) * e], None if b is None else b[i * e : (i + 1) * e])
            projected.append(self.adapters[role](y) if role in self.adapters else y)  # (B, *, E)
        q, k, v = projected
        bsz, tgt_len, src_len = q.shape[0], q.shape[1], k.shape[1]
        q = q.reshape(bsz, tgt_len, h, e // h).transpose(1, 2)  # (B, H, L, Dh)
        k = k.reshape(bsz, src_len, h, e // h).transpose(1, 2)  # (B, H, S, Dh)
        v = v.reshape(bsz, src_len, h, e // h).transpose(1, 2)  # (B, H, S, Dh)

        mask: Tensor | None = None
        if attn_mask is not None:
            am = _additive_mask(attn_mask, q.dtype)
            mask = (
                am.view(1, 1, tgt_len, src_len)
                if am.dim() == 2
                else am.view(bsz, h, tgt_len, src_len)
            )
        elif is_causal:
            causal = torch.ones(tgt_len, src_len, dtype=torch.bool, device=q.device).triu(1)
            mask = _additive_mask(causal, q.dtype).view(1, 1, tgt_len, src_len)
        if key_padding_mask is not None:
            kpm = _additive_mask(key_padding_mask, q.dtype).view(bsz, 1, 1, src_len)
            mask = kpm if mask is None else mask + kpm
        dropout_p = base.dropout if self.training else 0.0

        weights: Tensor | None = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(e // h)  # (B, H, L, S)
            if mask is not None:
                scores = scores + mask
            probs = F.dropout(scores.softmax(dim=-1), p=dropout_p)
            out = probs @ v  # (B, H, L, Dh)
            weights = probs.mean(dim=1) if average_attn_weights else probs
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        out = base.out_proj(out.transpose(1, 2).reshape(bsz, tgt_len, e))  # (B, L, E)
        if not batched:
            out = out.squeeze(0)
            weights = None if weights is None else weights.squeeze(0)
        elif not base.batch_first:
            out = out.transpose(0, 1)  # (L, B, E)
        return out, weights


# ---------------------------------------------------------------------------- merged state
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


# ---------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class AdapterSite:
    """One HRA module in a model: a stable key ``"<host path>.<role>"``, the module, its target."""

    key: str
    adapter: HyperbolicRadiusAdjustment
    target: str


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _hras(modules: nn.ModuleDict) -> dict[str, HyperbolicRadiusAdjustment]:
    """A ModuleDict of HRA modules as a typed dict."""
    return {role: cast(HyperbolicRadiusAdjustment, m) for role, m in modules.items()}


def adapter_sites(model: nn.Module) -> list[AdapterSite]:
    """Every HRA in ``model`` with a key that is the same merged or unmerged."""
    sites: list[AdapterSite] = []

    def add(path: str, adapters: nn.ModuleDict, target: str) -> None:
        for role, hra in _hras(adapters).items():
            sites.append(AdapterSite(_join(path, role), hra, target))

    for path, module in model.named_modules():
        if isinstance(module, (HRALinear, HRAMultiheadAttention)):
            add(path, module.adapters, "activations")
        if parametrize.is_parametrized(module):
            for plist in cast(nn.ModuleDict, module.parametrizations).values():
                for p in cast(parametrize.ParametrizationList, plist):
                    if isinstance(p, RowAdapter):
                        add(path, p.adapters, "weight_rows")
        merged = getattr(module, MERGED_ATTR, None)
        if isinstance(merged, MergedHRA):
            for row_adapter in merged.row_adapters.values():
                add(path, cast(RowAdapter, row_adapter).adapters, "weight_rows")
            add(path, merged.adapters, "activations")
    return sites


# ---------------------------------------------------------------------------- apply
@dataclass
class _Candidate:
    path: str
    module: nn.Module
    roles: tuple[str, ...]


def _candidates(
    model: nn.Module, targets: tuple[str, ...], modules: Sequence[str] | None, within: str | None
) -> list[_Candidate]:
    found: list[_Candidate] = []
    if within is not None:
        try:
            model.get_submodule(within)
        except AttributeError as error:
            raise ValueError(f"within: no submodule named {within!r} in the model") from error
    if modules is None:
        for path, module in model.named_modules():
            if within and not (path == within or path.startswith(within + ".")):
                continue
            if isinstance(module, nn.MultiheadAttention):
                found.append(_Candidate(path, module, targets))
            elif isinstance(module, nn.Linear):
                role = _role_of(path)
                if role is not None and role in targets:
                    found.append(_Candidate(path, module, (role,)))
        return found
    for path in modules:
        try:
            module = model.get_submodule(path)
        except AttributeError as error:
            raise ValueError(f"modules: no submodule named {path!r} in the model") from error
        if isinstance(module, nn.MultiheadAttention):
            found.append(_Candidate(path, module, targets))
        elif isinstance(module, nn.Linear):
            found.append(_Candidate(path, module, (_role_of(path) or "proj",)))
        else:
            raise ValueError(
                f"modules: {path!r} is a {type(module).__name__}, "
                "expected nn.MultiheadAttention or nn.Linear"
            )
    return found


def _set_submodule(model: nn.Module, path: str, new: nn.Module) -> None:
    if not path:
        raise ValueError(
            "model: target='activations' cannot replace the root module itself; wrap it"
        )
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path), name, new)


def _freeze(*tensors: Tensor | None) -> None:
    for t in tensors:
        if t is not None:
            t.requires_grad_(False)


def apply_hyperet(
    model: nn.Module,
    *,
    structure: str,
    targets: Sequence[str] = ("q", "v"),
    target: str = "weight_rows",
    c: float = 0.01,
    mode: str = "fast",
    block_size: int = 4,
    bandwidth: int = 2,
    learn_curvature: bool = False,
    policy: str | None = None,
    modules: Sequence[str] | None = None,
    within: str | None = None,
    freeze_base: bool = True,
) -> list[nn.Parameter]:
    """Add one HRA per targeted attention projection; freeze the base model (PEFT-style).

    Parameters
    ----------
    model : nn.Module
        Modified in place (parametrizations registered; for ``target="activations"`` the
        matched modules are replaced by wrappers).
    structure, c, mode, block_size, bandwidth, learn_curvature, policy
        Passed to :class:`~hyperet.nn.hra.HyperbolicRadiusAdjustment`.
    targets : sequence of {"q", "k", "v"}
        Projections to adapt (one HRA each).
    target : {"weight_rows", "activations"}
        Adapt the rows of the frozen weight (released code) or the projected features.
    modules : sequence of str, optional
        Qualified names of the modules to adapt instead of the automatic matching rule.
    within : str, optional
        Apply the matching rule only under this submodule (e.g. ``"model.vision_tower"`` of a
        ``LlavaForConditionalGeneration``, whose language model also has ``q_proj`` /
        ``v_proj``); ``freeze_base`` still covers the whole model.
    freeze_base : bool
        True (default, as PEFT's ``get_peft_model``): every parameter of ``model`` that is not
        an adapter parameter gets ``requires_grad=False``, so the trainable parameters are
        exactly the returned ones. False: only the adapted projections are frozen and the
        rest of the model keeps its ``requires_grad`` flags (a recipe that sets trainability
        per stage, e.g. ``hyperet train``).

    Returns
    -------
    list of nn.Parameter
        The new trainable parameters (to give to the optimizer).

    Raises
    ------
    ValueError
        Invalid arguments, a model that already carries HRA, or nothing matched.
    """
    targets = tuple(targets)
    if not targets or any(t not in ROLES for t in targets) or len(set(targets)) != len(targets):
        raise ValueError(f"targets: expected distinct roles among {ROLES}, got {targets!r}")
    if target not in TARGETS:
        raise ValueError(f"target: expected one of {TARGETS}, got {target!r}")
    if adapter_sites(model):
        raise ValueError("model: already carries HRA adapters (apply_hyperet was called before)")
    candidates = _candidates(model, targets, modules, within)
    if not candidates:
        raise ValueError(
            "model: no attention projection matched (looked for nn.MultiheadAttention and "
            f"nn.Linear named {sorted(Q_NAMES | K_NAMES | V_NAMES)} for targets {targets}); "
            "pass modules=[...]"
        )

    def make(d: int, like: Tensor) -> HyperbolicRadiusAdjustment:
        return HyperbolicRadiusAdjustment(
            d,
            structure=structure,
            block_size=block_size,
            bandwidth=bandwidth,
            c=c,
            learn_curvature=learn_curvature,
            mode=mode,
            policy=policy,
            device=like.device,
            dtype=like.dtype,
        )

    params: list[nn.Parameter] = []
    for cand in candidates:
        module = cand.module
        if isinstance(module, nn.MultiheadAttention):
            e = module.embed_dim
            if target == "activations":
                _freeze(module.in_proj_weight, module.in_proj_bias)
                adapters = {role: make(e, module.in_proj_weight) for role in cand.roles}
                _set_submodule(model, cand.path, HRAMultiheadAttention(module, adapters))
            elif module._qkv_same_embed_dim:
                weight = module.in_proj_weight  # (3E, E)
                _freeze(weight, module.in_proj_bias)
                adapters = {role: make(e, weight) for role in cand.roles}
                slices = {
                    role: (ROLES.index(role) * e, (ROLES.index(role) + 1) * e)
                    for role in cand.roles
                }
                parametrize.register_parametrization(
                    module, "in_proj_weight", RowAdapter(adapters, slices)
                )
            else:
                for role in cand.roles:
                    name = f"{role}_proj_weight"
                    weight = getattr(module, name)  # (E, kdim or vdim)
                    _freeze(weight)
                    adapter = make(weight.shape[1], weight)
                    adapters = {role: adapter}
                    parametrize.register_parametrization(
                        module, name, RowAdapter(adapters, {role: (0, weight.shape[0])})
                    )
                _freeze(module.in_proj_bias)
        else:
            assert isinstance(module, nn.Linear)
            (role,) = cand.roles
            _freeze(module.weight, module.bias)
            if target == "activations":
                adapters = {role: make(module.out_features, module.weight)}
                _set_submodule(model, cand.path, HRALinear(module, adapters))
            else:
                adapters = {role: make(module.in_features, module.weight)}
                parametrize.register_parametrization(
                    module, "weight", RowAdapter(adapters, {role: (0, module.out_features)})
                )
        for adapter in adapters.values():
            params.extend(adapter.parameters())
    if freeze_base:
        adapter_ids = {id(p) for p in params}
        for p in model.parameters():
            if id(p) not in adapter_ids:
                p.requires_grad_(False)
    return params


def adapted_module_names(model: nn.Module) -> list[str]:
    """Qualified names of the modules that host adapters (what the matching rule selected).

    Passing them as ``apply_hyperet(..., modules=names)`` to a fresh copy of the model adapts
    exactly the same modules.
    """
    hosts = {site.key.rpartition(".")[0] for site in adapter_sites(model)}
    return sorted(hosts)


# ---------------------------------------------------------------------------- merge / unmerge
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
            raise ValueError(f"model: {_join(path, name)} has other parametrizations besides HRA")
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
    adapters = _hras(wrapper.adapters)
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
            _set_submodule(model, path, _merge_wrapper(module, path))
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
        adapters = _hras(holder.adapters)
        wrapper: nn.Module
        if isinstance(module, nn.MultiheadAttention):
            wrapper = HRAMultiheadAttention(module, adapters)
        else:
            wrapper = HRALinear(cast(nn.Linear, module), adapters)
        _set_submodule(model, path, wrapper)
        restored += len(adapters)
    return restored


def iter_adapters(model: nn.Module) -> Iterator[HyperbolicRadiusAdjustment]:
    """The distinct HRA modules of ``model``."""
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, HyperbolicRadiusAdjustment) and id(module) not in seen:
            seen.add(id(module))
            yield module
