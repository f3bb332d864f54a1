"""Run configs: presets, JSON round trip, validation messages, command-line overrides."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from hyperet.config import STAGES, RunConfig, parse_steps, preset, with_overrides


@pytest.mark.parametrize("name", ["nano", "small"])
def test_presets_round_trip_through_json(name: str) -> None:
    config = preset(name)
    again = RunConfig.from_json(config.to_json())
    assert again == config
    assert tuple(again.train.stages) == STAGES


def test_json_key_order_does_not_matter() -> None:
    data = json.loads(preset("nano").to_json())
    data["train"]["stages"] = dict(reversed(list(data["train"]["stages"].items())))
    assert tuple(RunConfig.from_dict(data).train.stages) == STAGES


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["vision"].update(patch_size=5), "^vision.patch_size"),
        (lambda d: d["vision"].update(heads=3), "^vision.heads"),
        (lambda d: d["projector"].update(shuffle=3), "^projector.shuffle"),
        (lambda d: d["hyperet"].update(structure="dense"), "^hyperet.structure"),
        (lambda d: d["hyperet"].update(c=0.0), "^hyperet.c"),
        (lambda d: d["train"].update(objective="mse"), "^train.objective"),
        (lambda d: d["train"].update(vision_level="fine"), "^train.vision_level"),
        (lambda d: d["train"]["stages"]["lm"].update(steps=-1), "^train.stages.lm.steps"),
        (lambda d: d["train"]["stages"].pop("lm"), "^train.stages"),
        (lambda d: d["data"].update(train_scenes=0), "^data.train_scenes"),
        (lambda d: d.update(extra=1), "^config: unknown keys"),
        (lambda d: d["language"].pop("width"), "^language: missing keys"),
        (lambda d: d.pop("train"), "^config: missing keys"),
        (lambda d: d.update(format=99), "^format"),
    ],
)
def test_invalid_configs_name_the_field(
    edit: Callable[[dict[str, Any]], Any], message: str
) -> None:
    data = json.loads(preset("nano").to_json())
    edit(data)
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict(data)


def test_corrupt_json_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^config: not valid JSON"):
        RunConfig.from_json("{")


def test_parse_steps() -> None:
    assert parse_steps(["vision=3", "instruct=10"]) == {"vision": 3, "instruct": 10}
    for bad in ("vision", "eyes=3", "lm=x", "lm=-1"):
        with pytest.raises(ValueError, match=r"^steps"):
            parse_steps([bad])


def test_overrides_touch_only_the_named_fields() -> None:
    base = preset("small")
    new = with_overrides(base, seed=7, hyperet="banded", steps={"lm": 5})
    assert new.seed == 7 and new.hyperet.structure == "banded"
    assert new.train.stages["lm"].steps == 5
    assert new.train.stages["vision"] == base.train.stages["vision"]
    assert with_overrides(base) == base


def test_derived_sizes() -> None:
    small = preset("small")
    assert small.grid_size == small.data.image_size // small.vision.patch_size
    assert small.num_visual_tokens == (small.grid_size // small.projector.shuffle) ** 2
