"""`--set FIELD=VALUE` config overrides, and the doctests of this issue's new modules."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hyperet.cli.main import main

import hyperet.data.mixture
import hyperet.overrides
import hyperet.progress_log
from hyperet.config import preset
from hyperet.overrides import apply_settings

SMALL = preset("small")


@pytest.mark.parametrize(
    "module", [hyperet.overrides, hyperet.progress_log, hyperet.data.mixture], ids=str
)
def test_module_doctests(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0


def test_settings_change_exactly_the_named_fields() -> None:
    new = apply_settings(
        SMALL,
        [
            "projector.shuffle=1",
            "language.layers=6",
            "train.stages.instruct.lr=2e-3",
            "train.vision_level=mixture",
            "train.mc_fraction=0.5",
        ],
    )
    expected = SMALL.to_dict()
    expected["projector"]["shuffle"] = 1
    expected["language"]["layers"] = 6
    expected["train"]["stages"]["instruct"]["lr"] = 0.002
    expected["train"]["vision_level"] = "mixture"
    expected["train"]["mc_fraction"] = 0.5
    assert new.to_dict() == expected
    assert isinstance(new.language.layers, int) and isinstance(new.train.mc_fraction, float)
    assert apply_settings(SMALL, []) == SMALL


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ("projector.shuffle", "expected FIELD=VALUE"),
        ("=3", "expected FIELD=VALUE"),
        ("projector.shuffle=1.5", "needs an int"),
        ("train.stages.instruct.lr=fast", "needs a float"),
        ("train.stages.warp.lr=1", "no section 'warp'"),
        ("language.depth=6", "no field 'depth' in 'language'"),
        ("language=6", "is a section"),
        ("projector.shuffle=3", "does not divide"),  # validated like any config
        ("train.vision_level=fine", "train.vision_level"),
    ],
)
def test_bad_settings_name_the_problem(item: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        apply_settings(SMALL, [item])


def test_cli_set_reaches_the_stored_config(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--preset", "nano", "--out", str(out), "--steps", "instruct=2"]
    result = CliRunner().invoke(main, [*args, "--set", "train.mc_fraction=0.5"])
    assert result.exit_code == 0, result.stderr
    stored = json.loads((out / "config.json").read_text())
    assert stored["train"]["mc_fraction"] == 0.5
    bad = CliRunner().invoke(main, [*args, "--force", "--set", "language.depth=2"])
    assert bad.exit_code == 2 and "no field 'depth'" in bad.stderr
