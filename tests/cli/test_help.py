"""Every --help explains every option, has Examples and exit codes; errors have one style."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from hyperet.cli.main import COMMANDS, main


def _commands() -> list[tuple[str, click.Command]]:
    """``(path, command)`` for the root, every command and every subcommand of a group."""
    found: list[tuple[str, click.Command]] = [("hyperet", main)]
    ctx = click.Context(main, info_name="hyperet")
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None
        found.append((f"hyperet {name}", command))
        if isinstance(command, click.Group):
            sub_ctx = click.Context(command, info_name=name, parent=ctx)
            for sub in command.list_commands(sub_ctx):
                sub_command = command.get_command(sub_ctx, sub)
                assert sub_command is not None
                found.append((f"hyperet {name} {sub}", sub_command))
    return found


COMMAND_PATHS = [path for path, _ in _commands()]


@pytest.mark.parametrize("path", COMMAND_PATHS)
def test_every_option_has_help_and_the_help_has_examples(path: str) -> None:
    command = dict(_commands())[path]
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{path} {param.opts[0]}: no help text"
    result = CliRunner().invoke(main, [*path.split()[1:], "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output, path
    assert "Exit codes:" in result.output, path
    if not isinstance(command, click.Group):
        assert "  hyperet " in result.output.split("Examples:")[1], path  # a runnable line


def test_train_help_lists_stages_presets_and_the_interrupt_code() -> None:
    text = CliRunner().invoke(main, ["train", "--help"], terminal_width=100).output
    from hyperet.config import ITC_STAGE, STAGES

    for stage in (*STAGES, ITC_STAGE):
        assert stage in text.split("--steps STAGE=N")[1].split("--checkpoint-every")[0], stage
    assert "--steps-" not in text
    assert "small: vision 1500" in text.replace("\n", " ").replace("  ", " ")
    assert "130" in text


def test_steps_option_sets_every_stage_including_itc(tmp_path: object) -> None:
    from hyperet.config import ITC_STAGE, STAGES, parse_steps, preset, with_overrides

    items = [f"{stage}={i + 1}" for i, stage in enumerate((*STAGES, ITC_STAGE))]
    config = with_overrides(preset("nano"), steps=parse_steps(items))
    assert [config.train.stages[s].steps for s in STAGES] == [1, 2, 3, 4]
    assert config.train.itc.steps == 5


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--preset", "huge"],  # a click usage error
        ["oracle", "grade", "/nonexistent/" + "x" * 200, "/nonexistent/results.safetensors"],
    ],
    ids=["usage", "oracle"],
)
def test_errors_are_one_line_on_a_pipe_with_exit_2(args: list[str]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "hyperet.cli.main", *args], capture_output=True, text=True
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "Traceback" not in run.stderr


def test_a_long_error_inside_a_command_is_one_line_too() -> None:
    result = CliRunner().invoke(main, ["train", "--steps", "nonsense=" + "9" * 200])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: steps: expected STAGE=N"), lines


def test_no_help_imports_torch() -> None:
    """--help of every command stays fast: torch is imported inside command bodies only."""
    code = (
        "import sys\n"
        "from hyperet.cli.main import main\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        main([*path.split()[1:], '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, *COMMAND_PATHS], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
