"""``FIELD=VALUE`` overrides of any field of a :class:`~hyperet.config.RunConfig`.

Lever experiments (docs/mllm.md) change fields that have no dedicated command-line option - the
projector's pixel shuffle, the LM's depth, one stage's learning rate. ``hyperet train --set
FIELD=VALUE`` names the field by its path in ``config.json`` and parses the value as the type
the field has now:

>>> from hyperet.config import preset
>>> config = apply_settings(
...     preset("small"), ["projector.shuffle=1", "train.stages.instruct.lr=1e-3"]
... )
>>> config.projector.shuffle, config.train.stages["instruct"].lr
(1, 0.001)
>>> apply_settings(preset("small"), ["language.depth=6"])
Traceback (most recent call last):
...
ValueError: --set language.depth=6: no field 'depth' in 'language' (fields: heads, layers, ...)

The result is validated like every config (``RunConfig.from_dict``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hyperet.config import RunConfig


def _parse(item: str, path: str, text: str, current: Any) -> Any:
    if isinstance(current, bool):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"--set {item}: {path} needs true or false, got {text!r}")
        return text.lower() == "true"
    if isinstance(current, int | float):
        kind = type(current)
        try:
            return kind(text)
        except ValueError:
            raise ValueError(
                f"--set {item}: {path} needs a{'n' if kind is int else ''} "
                f"{kind.__name__}, got {text!r}"
            ) from None
    if isinstance(current, str):
        return text
    raise ValueError(f"--set {item}: {path} is a section, not a value")


def apply_settings(config: RunConfig, items: Sequence[str]) -> RunConfig:
    """``config`` with every ``"dotted.path=value"`` of ``items`` applied (validated).

    Raises ``ValueError`` naming the item when the path does not exist, the value does not
    parse as the field's type, or the resulting config is invalid.
    """
    data = config.to_dict()
    for item in items:
        path, sep, text = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--set {item}: expected FIELD=VALUE, e.g. projector.shuffle=1")
        *parents, leaf = path.split(".")
        node: Any = data
        where = "config"
        for part in parents:
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"--set {item}: no section {part!r} in {where!r}")
            node, where = node[part], part
        if not isinstance(node, dict) or leaf not in node:
            names = ", ".join(sorted(node)) if isinstance(node, dict) else ""
            raise ValueError(f"--set {item}: no field {leaf!r} in {where!r} (fields: {names})")
        node[leaf] = _parse(item, path, text, node[leaf])
    return RunConfig.from_dict(data)


__all__ = ["apply_settings"]
