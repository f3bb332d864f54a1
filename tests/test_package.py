"""Package-level checks: version, console script, import directions."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

import hyperet
from hyperet.cli.main import main


def test_version_flag_prints_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert hyperet.__version__ in result.output


def test_help_lists_every_command_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from hyperet.cli.main import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "for name in ('train', 'eval', 'bench', 'oracle'):\n"
        "    assert name in r.output, name\n"
        "assert 'torch' not in sys.modules, 'hyperet --help imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
