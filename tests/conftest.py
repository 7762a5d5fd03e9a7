"""Shared pytest fixtures.

Tests see only the built-in components: third-party plugins installed in the
environment are not loaded (``SPECTRON_KIT_LOAD_PLUGINS=""``) unless a test
asks for them.
"""
import os
from pathlib import Path

import pytest

os.environ.setdefault("SPECTRON_KIT_LOAD_PLUGINS", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir():
    """The shared real-speech folder, or None when this machine lacks it."""
    path = Path(os.environ.get("SPECTRON_KIT_SHARED_DATA", REPO.parent / "shared" / "data"))
    return path if path.is_dir() else None


@pytest.fixture
def shared_data():
    """Path to ``../shared/data``; skips the test when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real speech samples not found (set SPECTRON_KIT_SHARED_DATA to ../shared/data)")
    return path


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Each test starts from a registry loaded under its own environment."""
    from spectron_kit import registry

    registry.reset_registry()
    yield
    registry.reset_registry()
