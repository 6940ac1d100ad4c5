"""Fixtures of the integration tests. The session services (``label_studio``, ``redis_url``,
``ls_client``) and ``skip_or_fail`` live in ``tests/conftest.py``, shared with
``tests/reliability``: one Label Studio per test session."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import skip_or_fail


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a headless-capable Chromium (Debian package chromium)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        skip_or_fail("chromium is not installed (Debian package chromium)")
    return exe
