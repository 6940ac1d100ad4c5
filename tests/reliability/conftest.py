"""Fixtures of the reliability suite.

The session services ``label_studio``, ``redis_url`` and ``ls_client`` come from
``tests/integration/conftest.py`` (moved to ``tests/conftest.py`` so both folders share one
Label Studio per session). Tests that stop a service get their own private copy here, so the
shared ones are never disturbed.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ls_backend import localstack
from tests.conftest import skip_or_fail
from tests.integration.helpers import backend_env, start_backend, stop_backend

REPO = Path(__file__).resolve().parents[2]
FIGURES = REPO / ".work" / "reliability" / "figures.json"


def record_figures(name: str, figures: dict) -> None:
    """Keep a test's measured figures in ``.work/reliability/figures.json`` (for the README)."""
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(FIGURES.read_text())
    except (OSError, ValueError):
        data = {}
    data[name] = figures
    FIGURES.write_text(json.dumps(data, indent=1, sort_keys=True))
    print(f"\n{name}: {json.dumps(figures, sort_keys=True)}")


class Canary:
    """A loopback HTTP server that must never be contacted: it counts every request."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                hits.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

            do_GET = do_POST = do_HEAD = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    server = Canary()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def secret_redis(tmp_path_factory) -> Iterator[localstack.RedisProcess]:
    """A private redis-server that requires a password (to check it never leaks)."""
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed (Debian package redis-server)")
    server = localstack.start_redis(
        localstack.free_port(),
        tmp_path_factory.mktemp("redis-secret"),
        password="redispw" + secrets.token_hex(12),
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def live_backend(label_studio, secret_redis, tmp_path_factory) -> Iterator[dict]:
    """gunicorn + one rq worker against the session Label Studio, basic auth on, redis with a
    password; ``secrets`` lists every secret the backend was given."""
    tmp = tmp_path_factory.mktemp("smartsize-live")
    auth = ("smartsize", "basicpw" + secrets.token_hex(12))
    env = backend_env(
        label_studio.url,
        label_studio.pat,
        tmp / "model",
        redis_url=secret_redis.url,
        auth=auth,
        OMP_NUM_THREADS="1",  # a shared 2-core machine: keep the worker off the web process
    )
    backend = start_backend(env, tmp, worker=True, auth=auth)
    backend["secrets"] = {
        "LABEL_STUDIO_API_KEY": label_studio.pat,
        "BASIC_AUTH_PASS": auth[1],
        "redis password": secret_redis.password,
    }
    backend["redis"] = secret_redis
    try:
        yield backend
    finally:
        stop_backend(backend)
