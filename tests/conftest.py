"""Shared pytest configuration."""

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ls-1.23.2"


@pytest.fixture(scope="session")
def ls_fixtures() -> Path:
    """Request bodies captured from a real Label Studio 1.23.2 (unit tests only)."""
    if not FIXTURES.is_dir():
        pytest.skip(f"captured fixtures not found at {FIXTURES}")
    return FIXTURES
