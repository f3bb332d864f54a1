"""The op registry agrees with the implementations it names: argument names, order, keywords."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

from hyperet import ops, reference
from hyperet.oracle import exact
from hyperet.oracle.spec import FAMILY_OPS, GOLDEN_OPS, SPECS, STRUCTURE_PARAMS


def _arguments(fn: object) -> tuple[tuple[str, ...], set[str]]:
    """Positional parameter names in order, and keyword-only names."""
    params = inspect.signature(fn).parameters.values()  # type: ignore[arg-type]
    positional = tuple(p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD)
    keywords = {p.name for p in params if p.kind == p.KEYWORD_ONLY}
    return positional, keywords


@pytest.mark.parametrize("module", [reference, exact, ops], ids=lambda m: m.__name__)
@pytest.mark.parametrize("op", [op for op, spec in SPECS.items() if not spec.structure])
def test_each_implementation_takes_the_registered_inputs(module: ModuleType, op: str) -> None:
    spec = SPECS[op]
    positional, keywords = _arguments(getattr(module, op))
    assert positional == spec.positional, op
    assert set(spec.keywords) <= keywords, op
    assert ("c" in keywords) == (not op.endswith("_to_dense")), op


def test_the_lists_derived_from_the_registry() -> None:
    for op in FAMILY_OPS:
        assert len(SPECS[op].kinds) == len(SPECS[op].positional), op
    hra = [op for op in GOLDEN_OPS if SPECS[op].structure]
    assert [SPECS[op].inputs[0] for op in hra] == list(STRUCTURE_PARAMS.values())
    assert not set(hra) & set(FAMILY_OPS)
    for op in GOLDEN_OPS:
        spec = SPECS[op]
        assert set(spec.shapes) == {*spec.inputs, "expected"}, op
        assert set(spec.conditioned) <= set(spec.inputs), op
