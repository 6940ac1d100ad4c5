"""Shared pytest configuration, and the real services of the integration and reliability
tests: a Label Studio 1.23.2 server and a redis-server.

Both run on free loopback ports for the whole session. Label Studio starts from a pre-migrated
template data dir (created once under ``.work/``, ~30 s), so start-up takes seconds.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ls_backend import localstack
from ls_backend.label_studio import LabelStudioClient

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ls-1.23.2"


@pytest.fixture(scope="session")
def ls_fixtures() -> Path:
    """Request bodies captured from a real Label Studio 1.23.2 (unit tests only)."""
    if not FIXTURES.is_dir():
        pytest.skip(f"captured fixtures not found at {FIXTURES}")
    return FIXTURES


def skip_or_fail(reason: str) -> None:
    """Locally a missing service skips; in CI (CI=true) it fails, so nothing passes unrun."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must install it: see scripts/setup.sh)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def label_studio(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[localstack.LabelStudioProcess]:
    """A running Label Studio: ``.url``, ``.legacy_token``, ``.pat``, ``.username``,
    ``.password`` (plus ``.log_path`` and ``.data_dir``)."""
    try:
        localstack.label_studio_executable()
    except localstack.LocalServiceError as e:
        skip_or_fail(str(e))
    base = tmp_path_factory.mktemp("label-studio")
    server = localstack.start_label_studio_from_template(
        base / "data", log_path=base / "label-studio.log"
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:<port>/0`` of a real redis-server without persistence."""
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed (Debian package redis-server)")
    server = localstack.start_redis(localstack.free_port(), tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ls_client(label_studio: localstack.LabelStudioProcess) -> Iterator[LabelStudioClient]:
    """A client authenticated with the admin's personal access token."""
    assert label_studio.pat is not None
    client = LabelStudioClient(label_studio.url, label_studio.pat)
    try:
        yield client
    finally:
        client.close()
