r"""Inject HRA into attention projections explicitly, and find the adapters of a model.

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

The modules installed are in :mod:`hyperet.nn.wrappers`; merging and unmerging in
:mod:`hyperet.nn.merge`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from torch import Tensor, nn
from torch.nn.utils import parametrize

from hyperet.nn.hra import HyperbolicRadiusAdjustment
from hyperet.nn.merge import MERGED_ATTR, MergedHRA
from hyperet.nn.wrappers import (
    ROLES,
    HRALinear,
    HRAMultiheadAttention,
    RowAdapter,
    replace_submodule,
    typed_adapters,
)

Q_NAMES: frozenset[str] = frozenset({"q_proj", "query", "q"})
K_NAMES: frozenset[str] = frozenset({"k_proj", "key", "k"})
V_NAMES: frozenset[str] = frozenset({"v_proj", "value", "v"})
TARGETS: tuple[str, ...] = ("weight_rows", "activations")


def _role_of(name: str) -> str | None:
    """Role of a Linear layer from its attribute name (``"q"``, ``"k"``, ``"v"`` or None)."""
    leaf = name.rsplit(".", 1)[-1]
    for role, names in (("q", Q_NAMES), ("k", K_NAMES), ("v", V_NAMES)):
        if leaf in names:
            return role
    return None


# ---------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class AdapterSite:
    """One HRA module in a model: a stable key ``"<host path>.<role>"``, the module, its target."""

    key: str
    adapter: HyperbolicRadiusAdjustment
    target: str


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def adapter_sites(model: nn.Module) -> list[AdapterSite]:
    """Every HRA in ``model`` with a key that is the same merged or unmerged."""
    sites: list[AdapterSite] = []

    def add(path: str, adapters: nn.ModuleDict, target: str) -> None:
        for role, hra in typed_adapters(adapters).items():
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
                replace_submodule(model, cand.path, HRAMultiheadAttention(module, adapters))
            elif module.in_proj_weight is not None:  # packed q, k, v
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
                replace_submodule(model, cand.path, HRALinear(module, adapters))
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


def iter_adapters(model: nn.Module) -> Iterator[HyperbolicRadiusAdjustment]:
    """The distinct HRA modules of ``model``."""
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, HyperbolicRadiusAdjustment) and id(module) not in seen:
            seen.add(id(module))
            yield module
