"""The local service starters: redis-server and the port checks around Label Studio."""

from __future__ import annotations

import socket

import pytest
import redis

from ls_backend import localstack

pytestmark = pytest.mark.integration


def test_redis_fixture_answers(redis_url):
    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    client.set("smartsize:probe", "1")
    assert client.get("smartsize:probe") == b"1"


def test_label_studio_refuses_a_busy_port(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert not localstack.port_is_free(port)
        with pytest.raises(localstack.LocalServiceError, match=f"port {port} is busy"):
            localstack.start_label_studio(tmp_path / "ls", port, "a@example.com", "pw", "t" * 40)


def test_label_studio_server_has_both_tokens(label_studio):
    assert label_studio.is_running()
    assert label_studio.pat and label_studio.pat.count(".") == 2
    assert len(label_studio.legacy_token) == 40
    assert label_studio.url == f"http://127.0.0.1:{label_studio.port}"
