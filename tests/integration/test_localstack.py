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


def test_new_data_dirs_get_a_hex_secret_key(tmp_path, label_studio):
    """Label Studio's own random key can start with '$', which its .env reader then takes for
    a variable reference: the key changes on restart and every PAT becomes invalid."""
    localstack.ensure_secret_key(tmp_path)
    lines = (tmp_path / ".env").read_text().split()
    keys = [line.split("=", 1)[1] for line in lines if line.startswith("SECRET_KEY=")]
    assert len(keys) == 1 and all(c in "0123456789abcdef" for c in keys[0])
    localstack.ensure_secret_key(tmp_path)  # idempotent: never replaces an existing key
    assert (tmp_path / ".env").read_text().split() == lines
    template = localstack.ensure_label_studio_template()
    key = next(x for x in (template / ".env").read_text().split() if x.startswith("SECRET_KEY="))
    assert not key.split("=", 1)[1].startswith("$")
