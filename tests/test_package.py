"""Package-level checks: version, console script, import directions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from hyperet.cli.main import main

import hyperet


def test_version_flag_prints_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert hyperet.__version__ in result.output


def test_help_lists_every_command_without_importing_torch(tmp_path: Path) -> None:
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
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2


def test_every_package_folder_is_listed_in_pyproject() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {"hyperet.cli"} | {
        ".".join(p.parent.relative_to(root).parts) for p in (root / "hyperet").rglob("__init__.py")
    }
    assert found == listed
