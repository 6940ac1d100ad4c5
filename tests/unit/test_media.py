"""Safe media fetching (ls_backend.media) against tiny local HTTP servers on 127.0.0.1."""

import base64
import io
import json
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from ls_backend.media import MediaError, MediaFetcher, redact_url

LEGACY = "0123456789abcdef0123456789abcdef01234567"


def b64url(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def make_jwt(payload) -> str:
    return f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{b64url(payload)}.c2lnbmF0dXJl"


PAT = make_jwt({"token_type": "refresh", "exp": int(time.time()) + 10**7, "jti": "x"})


def png_bytes(size=(8, 6), mode="RGB", noise=False) -> bytes:
    if noise:
        arr = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        img = Image.fromarray(arr)
    else:
        img = Image.new(mode, size, 128)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width, height) -> bytes:
    """A PNG whose IHDR declares width x height (decompression-bomb shape)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class Server:
    """A local HTTP server whose routes are set per test; records every request."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append((self.command, self.path, dict(self.headers), body))
                route = server.routes.get(self.path) or server.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if callable(route):
                    route = route(self)
                status, headers, payload = route
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" not in headers and not headers.get("_no_length"):
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def ls():
    server = Server()
    yield server
    server.close()


@pytest.fixture()
def other():
    server = Server()
    yield server
    server.close()


def fetcher(ls_server=None, key=LEGACY, **kwargs):
    kwargs.setdefault("timeout", 5)
    return MediaFetcher(ls_server.url if ls_server else None, key, **kwargs)


def auth_headers(server):
    return [h.get("Authorization") for _, _, h, _ in server.requests]


# ---------------------------------------------------------------- data: URLs and schemes


def test_fixture_data_urls_decode(ls_fixtures):
    tasks = json.loads((ls_fixtures / "ml_predict.json").read_text())["json"]["tasks"]
    f = fetcher()
    for task in tasks[:2]:
        img = f.fetch_image(task["data"]["image"], task_id=task["id"])
        assert img.mode == "RGB" and img.size == (32, 32)
        img.getpixel((0, 0))


def test_data_url_modes_and_errors():
    f = fetcher()
    grey = "data:image/png;base64," + base64.b64encode(png_bytes(mode="L")).decode()
    assert f.fetch_image(grey).mode == "L"
    rgba = "data:image/png;base64," + base64.b64encode(png_bytes(mode="RGBA")).decode()
    assert f.fetch_image(rgba).mode == "RGB"
    assert f.fetch_text("data:text/plain;charset=utf-8,caf%C3%A9") == "café"
    with pytest.raises(MediaError, match="invalid base64"):
        f.fetch_image("data:image/png;base64,@@@not base64@@@", task_id=4)
    with pytest.raises(MediaError, match="max_bytes"):
        fetcher(max_bytes=100).fetch_image(
            "data:image/png;base64," + base64.b64encode(png_bytes(noise=True)).decode()
        )
    with pytest.raises(MediaError, match="not a supported image"):
        f.fetch_image("data:image/png;base64," + base64.b64encode(b"hello, world").decode())


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x.png",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
        "//example.com/x.png",
        "image.png",
        "",
    ],
)
def test_other_schemes_refused(url):
    with pytest.raises(MediaError) as err:
        fetcher().fetch_image(url, task_id=9)
    assert str(err.value).startswith("task 9: ")


def test_label_studio_paths_need_label_studio_url():
    with pytest.raises(MediaError, match="LABEL_STUDIO_URL"):
        fetcher().fetch_image("/data/upload/3/x.png", task_id=1)
    with pytest.raises(MediaError, match="resolved through Label Studio"):
        fetcher().fetch_image("s3://bucket/x.png", task_id=1)


# ---------------------------------------------------------------- Label Studio host and auth


def test_upload_with_legacy_token(ls):
    ls.routes["/data/upload/3/a.png"] = (200, {"Content-Type": "image/png"}, png_bytes())
    img = fetcher(ls).fetch_image("/data/upload/3/a.png", task_id=1)
    assert img.size == (8, 6)
    assert auth_headers(ls) == [f"Token {LEGACY}"]


def test_personal_access_token_is_refreshed_and_cached(ls):
    calls = {"n": 0}

    def refresh(handler):
        calls["n"] += 1
        access = make_jwt({"token_type": "access", "exp": int(time.time()) + 300, "n": calls["n"]})
        return 200, {"Content-Type": "application/json"}, json.dumps({"access": access}).encode()

    ls.routes["/api/token/refresh/"] = refresh
    ls.routes["/data/local-files/"] = (200, {}, png_bytes())
    f = fetcher(ls, key=PAT)
    f.fetch_image("/data/local-files/?d=images/a.png", task_id=1)
    f.fetch_image("/data/local-files/?d=images/b.png", task_id=2)
    assert calls["n"] == 1
    posts = [r for r in ls.requests if r[0] == "POST"]
    assert json.loads(posts[0][3]) == {"refresh": PAT}
    gets = [r for r in ls.requests if r[0] == "GET"]
    assert all(h["Authorization"].startswith("Bearer ") for _, _, h, _ in gets)
    assert all(PAT not in h["Authorization"] for _, _, h, _ in gets)
    assert PAT not in repr(f) and LEGACY not in repr(fetcher(ls))


def test_expired_access_token_is_refreshed_once_on_401(ls):
    seen = []

    def refresh(handler):
        access = make_jwt({"token_type": "access", "exp": int(time.time()) + 300, "n": len(seen)})
        seen.append(access)
        return 200, {}, json.dumps({"access": access}).encode()

    def upload(handler):
        ok = handler.headers["Authorization"] == f"Bearer {seen[-1]}" and len(seen) == 2
        return (200, {}, png_bytes()) if ok else (401, {}, b"")

    ls.routes["/api/token/refresh/"] = refresh
    ls.routes["/data/upload/1/a.png"] = upload
    assert fetcher(ls, key=PAT).fetch_image("/data/upload/1/a.png").size == (8, 6)
    assert len(seen) == 2


def test_rejected_token_gives_clear_error(ls):
    ls.routes["/api/token/refresh/"] = (401, {}, b'{"detail": "invalid"}')
    with pytest.raises(MediaError, match="LABEL_STUDIO_API_KEY") as err:
        fetcher(ls, key=PAT).fetch_image("/data/upload/1/a.png", task_id=3)
    assert PAT not in str(err.value)
    ls.routes["/data/upload/1/a.png"] = (401, {}, b"")
    with pytest.raises(MediaError, match="HTTP 401") as err:
        fetcher(ls).fetch_image("/data/upload/1/a.png", task_id=3)
    assert LEGACY not in str(err.value)


def test_absolute_label_studio_url_and_text(ls):
    ls.routes["/data/upload/1/doc.txt"] = (
        200,
        {"Content-Type": "text/plain; charset=latin-1"},
        "naïve".encode("latin-1"),
    )
    assert fetcher(ls).fetch_text(ls.url + "/data/upload/1/doc.txt") == "naïve"
    ls.routes["/data/upload/1/bin"] = (200, {}, b"\x00\x01\x02binary")
    with pytest.raises(MediaError, match="binary"):
        fetcher(ls).fetch_text("/data/upload/1/bin")


@pytest.mark.parametrize(
    "path",
    [
        "/data/upload/../../api/projects/",
        "/data/upload/%2e%2e/%2e%2e/etc/passwd",
        "/data/local-files/?d=../../etc/passwd",
        "/data/local-files/?d=images/%2E%2E/%2E%2E/secret",
        "/api/projects/1/",
    ],
)
def test_path_traversal_and_non_media_paths_refused(ls, path):
    with pytest.raises(MediaError):
        fetcher(ls).fetch_image(path, task_id=1)
    assert ls.requests == []


# ---------------------------------------------------------------- allowlist, addresses, redirects


def test_host_allowlist(ls, other):
    other.routes["/x.png"] = (200, {}, png_bytes())
    with pytest.raises(MediaError, match="not in allowed hosts"):
        fetcher(ls).fetch_image(other.url + "/x.png", task_id=5)
    assert other.requests == []
    img = fetcher(ls, allowed_hosts=(f"127.0.0.1:{other.port}",)).fetch_image(other.url + "/x.png")
    assert img.size == (8, 6)
    assert auth_headers(other) == [None]  # the key never goes to another host


def test_allowlisted_hostname_must_not_resolve_to_private_addresses(other):
    other.routes["/x.png"] = (200, {}, png_bytes())
    url = f"http://localhost:{other.port}/x.png"
    with pytest.raises(MediaError, match="non-public address"):
        fetcher(None, allowed_hosts=("localhost",)).fetch_image(url)
    assert other.requests == []
    allowed = ("localhost", "127.0.0.0/8", "::1/128")
    assert fetcher(None, allowed_hosts=allowed).fetch_image(url).size == (8, 6)


@pytest.mark.parametrize(
    "addresses",
    [
        ["169.254.169.254"],
        ["10.0.0.1"],
        ["93.184.216.34", "192.168.1.1"],
        ["::1"],
        ["::ffff:10.0.0.1"],
    ],
)
def test_every_resolved_address_is_checked(addresses):
    resolver = lambda host, port: addresses  # noqa: E731
    f = fetcher(None, allowed_hosts=("cdn.example.com",), resolver=resolver)
    with pytest.raises(MediaError, match="non-public address"):
        f.fetch_image("https://cdn.example.com/a.png", task_id=2)


def test_wildcard_allowlist_matches_subdomains_only():
    calls = []
    f = fetcher(
        None,
        allowed_hosts=("*.example.com",),
        resolver=lambda h, p: calls.append(h) or ["10.0.0.1"],
    )
    with pytest.raises(MediaError, match="non-public"):  # host allowed, address refused
        f.fetch_image("https://img.example.com/a.png")
    with pytest.raises(MediaError, match="not in allowed hosts"):
        f.fetch_image("https://example.com.evil.net/a.png")
    with pytest.raises(MediaError, match="credentials"):
        f.fetch_image("https://example.com@evil.net/a.png")
    assert calls == ["img.example.com"]


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "host '169.254.169.254' .* not in allowed"),
        ("http://10.0.0.1/x.png", "host '10.0.0.1' .* not in allowed"),
        ("file:///etc/passwd", "URL scheme 'file' is not allowed"),
        ("OTHER_PORT", "host '127.0.0.1' \\(port \\d+\\) is not the Label Studio host"),
    ],
)
def test_redirects_are_checked(ls, other, location, reason):
    location = location.replace("OTHER_PORT", other.url + "/x.png")
    ls.routes["/data/upload/1/r.png"] = (302, {"Location": location}, b"")
    other.routes["/x.png"] = (200, {}, png_bytes())
    with pytest.raises(MediaError, match="task 6: " + reason):
        fetcher(ls).fetch_image("/data/upload/1/r.png", task_id=6)
    assert other.requests == []


def test_redirect_to_allowlisted_host_drops_auth_and_hops_are_limited(ls, other):
    ls.routes["/data/upload/1/r.png"] = (302, {"Location": other.url + "/x.png"}, b"")
    other.routes["/x.png"] = (200, {}, png_bytes())
    f = fetcher(ls, allowed_hosts=(f"127.0.0.1:{other.port}",))
    assert f.fetch_image("/data/upload/1/r.png").size == (8, 6)
    assert auth_headers(ls) == [f"Token {LEGACY}"] and auth_headers(other) == [None]

    for i in range(5):
        ls.routes[f"/data/upload/loop{i}"] = (307, {"Location": f"/data/upload/loop{i + 1}"}, b"")
    ls.routes["/data/upload/loop5"] = (200, {}, png_bytes())
    with pytest.raises(MediaError, match="more than 3 redirects"):
        f.fetch_image("/data/upload/loop0")
    ok = fetcher(ls, max_redirects=5).fetch_image("/data/upload/loop0")
    assert ok.size == (8, 6)


def test_cloud_uri_goes_through_task_resolve(ls, other):
    uri = "s3://bucket/folder/a b.png"
    encoded = base64.urlsafe_b64encode(uri.encode()).decode()
    ls.routes[f"/tasks/42/resolve/?fileuri={encoded}"] = (200, {}, png_bytes())
    assert fetcher(ls).fetch_image(uri, task_id=42).size == (8, 6)
    assert auth_headers(ls) == [f"Token {LEGACY}"]

    # presigned redirect: any host with allowlisted/public addresses, never with the key
    presigned = other.url + "/bucket/a.png?X-Amz-Signature=secret"
    ls.routes[f"/tasks/43/resolve/?fileuri={encoded}"] = (303, {"Location": presigned}, b"")
    other.routes["/bucket/a.png"] = (200, {}, png_bytes())
    with pytest.raises(MediaError, match="non-public") as err:
        fetcher(ls).fetch_image(uri, task_id=43)
    assert "secret" not in str(err.value)
    f = fetcher(ls, allowed_hosts=("127.0.0.1/32",))
    assert f.fetch_image(uri, task_id=43).size == (8, 6)
    assert auth_headers(other) == [None]


# ---------------------------------------------------------------- size and content checks


def test_body_size_limits(ls):
    big = png_bytes((128, 128), noise=True)
    ls.routes["/data/upload/big.png"] = (200, {}, big)
    ls.routes["/data/upload/nolen.png"] = (200, {"_no_length": "1"}, big)
    f = fetcher(ls, max_bytes=len(big) - 1)
    with pytest.raises(MediaError, match="Content-Length"):
        f.fetch_image("/data/upload/big.png")
    with pytest.raises(MediaError, match="download stopped"):
        f.fetch_image("/data/upload/nolen.png")
    assert fetcher(ls, max_bytes=len(big)).fetch_image("/data/upload/nolen.png").size == (128, 128)


def test_decompression_bombs_refused(ls):
    ls.routes["/data/upload/bomb.png"] = (200, {}, png_header_only(7000, 7000))  # 49 Mpx
    ls.routes["/data/upload/huge.png"] = (200, {}, png_header_only(30000, 30000))  # 900 Mpx
    with pytest.raises(MediaError, match="max_pixels"):
        fetcher(ls).fetch_image("/data/upload/bomb.png", task_id=1)
    with pytest.raises(MediaError, match="decompression bomb"):
        fetcher(ls).fetch_image("/data/upload/huge.png", task_id=1)


def test_truncated_and_non_images_refused(ls):
    whole = png_bytes((64, 64), noise=True)
    ls.routes["/data/upload/cut.png"] = (200, {}, whole[: len(whole) // 2])
    ls.routes["/data/upload/page.html"] = (200, {}, b"<html>not an image</html>")
    ls.routes["/data/upload/empty.png"] = (200, {}, b"")
    with pytest.raises(MediaError, match="truncated or corrupt"):
        fetcher(ls).fetch_image("/data/upload/cut.png", task_id=1)
    with pytest.raises(MediaError, match="not a supported image"):
        fetcher(ls).fetch_image("/data/upload/page.html", task_id=1)
    with pytest.raises(MediaError, match="empty"):
        fetcher(ls).fetch_image("/data/upload/empty.png", task_id=1)


def test_errors_are_per_task_and_redacted():
    err = MediaError("nope", task_id=12, url=redact_url("https://u:p@h.example/a.png?sig=s3cr3t"))
    assert (
        str(err).startswith("task 12: nope") and "s3cr3t" not in str(err) and ":p@" not in str(err)
    )
    assert isinstance(err, ValueError)
    assert "AAAA" not in redact_url("data:image/png;base64," + "A" * 500)
