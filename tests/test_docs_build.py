"""The mkdocs site builds with --strict and renders the maths (needs the ``docs`` extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_strict_build_renders_maths_figures_and_snippets(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("pymdownx")
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    tutorial = (site / "tutorial" / "index.html").read_text()
    assert 'class="arithmatex"' in tutorial and "$$" not in tutorial
    assert 'src="../figures/ball.png"' in tutorial and (site / "figures" / "ball.png").is_file()
    oracle = (site / "oracle" / "index.html").read_text()
    assert "BadInput" in oracle and "--8&lt;--" not in oracle  # the grader is included
