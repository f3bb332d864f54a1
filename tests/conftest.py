"""Test configuration: hypothesis profiles and deterministic torch threading.

Profiles (choose with ``HYPOTHESIS_PROFILE``; ``CI=true`` selects ``ci`` by default):

- ``dev``: quick feedback while editing (few examples);
- ``ci``: the default suite in CI (more examples, derandomized so a CI run is reproducible);
- ``thorough``: the ``nox -s slow`` session (many examples).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
_default = "ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))

try:  # torch is a dependency, but keep the reference tests importable without it
    import torch

    # One intra-op thread per test process: pytest-xdist already runs one process per core,
    # and oversubscribed threads made tests 10-30x slower on the 2-core machine.
    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Every test starts and ends with one torch thread, even if the code under test (e.g.
    ``hyperet train`` through CliRunner) changes the thread count."""
    import torch

    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)
