"""nox sessions. Run ``nox -l`` to list them.

nox uses its virtualenv backend: uv would ignore the torch CPU wheel on disk and pull a
multi-GB CUDA build. Every session installs ``torch==2.13.0`` first for the same reason.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["tests", "lint"]

TORCH = "torch==2.13.0"


def _install(session: nox.Session, *extras: str) -> None:
    session.install(TORCH)
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session
def tests(session: nox.Session) -> None:
    """The default test suite (what CI runs)."""
    _install(session, "dev")
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """Long tests: thorough hypothesis profile, full mpmath batteries, long training checks."""
    _install(session, "dev")
    session.run(
        "pytest",
        "-n",
        "2",
        "-m",
        "slow or not slow",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "thorough"},
    )


@nox.session
def cuda(session: nox.Session) -> None:
    """Tests that need a CUDA device (run on a GPU machine), Triton kernels included."""
    _install(session, "dev", "gpu")
    session.run("pytest", "-m", "cuda", *session.posargs)


@nox.session
def triton(session: nox.Session) -> None:
    """The Triton kernels under Triton's CPU interpreter and compiled for sm_90 (no GPU needed),
    with the backend tests."""
    _install(session, "dev", "gpu")
    session.run(
        "pytest",
        "-p",
        "no:xdist",
        "tests/ops/test_ops_triton.py",
        "tests/ops/test_ops_backends.py",
        "tests/test_bench_kernels.py",
        *session.posargs,
        env={"TRITON_INTERPRET": "1"},
    )
    # and every kernel launch compiled for sm_90 by Triton's own compiler (no GPU needed)
    session.run("pytest", "-p", "no:xdist", "-m", "slow", "tests/ops/test_ops_triton_compile.py")


@nox.session
def hf(session: nox.Session) -> None:
    """HyperET on tiny random transformers models (CLIP, SigLIP, LLaVA): needs the hf extra."""
    _install(session, "dev", "hf")
    session.run("pytest", "-p", "no:cacheprovider", "tests/hf", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", "hyperet", "cli", "tests", "golden", "noxfile.py")
    session.run("ruff", "format", "--check", "hyperet", "cli", "tests", "golden", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on the package."""
    _install(session, "dev")
    session.run("mypy", "hyperet", "cli")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs with mkdocs --strict (maths by arithmatex) and run their doctests."""
    _install(session, "dev", "docs")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")
    session.run(
        "pytest", "-p", "no:cacheprovider", "tests/test_docs.py", "tests/test_docs_build.py"
    )


@nox.session
def figures(session: nox.Session) -> None:
    """Redraw the tutorial's figures into docs/figures/ (commit the PNGs) and test the generator,
    and the study's plots (``hyperet study`` draws them when matplotlib is installed)."""
    _install(session, "dev", "plot")
    session.run("python", "-m", "hyperet.figures", "docs/figures")
    session.run("pytest", "-p", "no:cacheprovider", "tests/test_figures.py", "tests/study")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: structured vs dense, ops vs geoopt, pairwise distance, HRA step."""
    _install(session, "bench")
    session.run("hyperet", "bench", *session.posargs)


@nox.session
def golden(session: nox.Session) -> None:
    """Regenerate the shipped golden vectors and their SHA-256 manifest under golden/."""
    _install(session)
    session.run("hyperet", "oracle", "export", "golden")
