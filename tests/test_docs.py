"""Docs stay true: runnable examples in docs/*.md pass, and CI runs the README's test command."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: p.name)
def test_doc_examples_run(page: Path) -> None:
    """Every ``>>>`` example in a docs page runs and prints what the page says it prints."""
    result = doctest.testfile(
        str(page),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} examples failed in {page.name}"
    )


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert len(ci_lines) == 1, ci_lines
    readme = (ROOT / "README.md").read_text()
    assert f"\n{ci_lines[0]}\n" in readme


def test_readme_never_installs_an_unpinned_torch() -> None:
    readme = (ROOT / "README.md").read_text()
    for line in readme.splitlines():
        if "pip install" in line:
            assert "torch==" in line, line
