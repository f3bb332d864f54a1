"""Model tests use tiny tensors: one torch thread (see tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Apply the shared ``one_torch_thread`` fixture to every model test."""
