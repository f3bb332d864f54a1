"""`hyperet train` options: only the options given override the preset (or the resumed run)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hyperet.cli.train import command

from hyperet.config import preset
from hyperet.train import RunDirectoryError, run_config

#: Options that set a config field: without them on the command line the preset decides.
CONFIG_OPTIONS = (
    "preset",
    "hyperet",
    "hyperet_stage",
    "curvature",
    "seed",
    "vision_level",
    "objective",
    "checkpoint_every",
)


def test_config_options_default_to_none_so_the_preset_decides() -> None:
    ctx = command.make_context("train", [])
    assert {name: ctx.params[name] for name in CONFIG_OPTIONS} == dict.fromkeys(CONFIG_OPTIONS)


def test_no_option_given_is_the_preset(tmp_path: Path) -> None:
    assert run_config(tmp_path, preset_name="nano") == preset("nano")
    assert run_config(tmp_path) == preset("small")
    given = run_config(tmp_path, preset_name="nano", seed=3, hyperet=None, steps=["lm=2"])
    want = preset("nano").with_stage("lm", steps=2).replace(seed=3)
    assert given == want


def test_a_resumed_run_keeps_its_config_unless_an_option_is_given(tmp_path: Path) -> None:
    stored = dataclasses.replace(preset("nano"), seed=7)
    (tmp_path / "config.json").write_text(stored.to_json())
    assert run_config(tmp_path, resume=True) == stored
    assert run_config(tmp_path, resume=True, curvature=0.5).hyperet.c == 0.5
    with pytest.raises(RunDirectoryError, match=r"^--preset small: the run in .* uses nano$"):
        run_config(tmp_path, resume=True, preset_name="small")
