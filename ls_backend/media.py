"""Fetch task media safely: the one module of smartsize that downloads anything.

Sources, in the forms Label Studio task data uses:

* Label Studio uploads ``/data/upload/...``, local files ``/data/local-files/?d=...``, storage
  proxies ``/storage-data/uploaded/?filepath=...`` and ``/tasks/<id>/resolve/?fileuri=...``:
  relative to ``LABEL_STUDIO_URL``, authenticated with ``LABEL_STUDIO_API_KEY``. A personal
  access token (a JWT) is exchanged at ``POST /api/token/refresh/`` for a short-lived
  ``Authorization: Bearer`` access token, cached until shortly before it expires; any other key
  is a legacy token sent as ``Authorization: Token <key>``.
* Cloud-storage URIs (``s3://``, ``gs://``, ``azure-blob://``): resolved by Label Studio for the
  task at ``GET /tasks/<task_id>/resolve/?fileuri=<urlsafe base64 of the URI>`` (the endpoint of
  label-studio 1.23.2's ``io_storages``), which either proxies the bytes or answers 303 with a
  presigned URL. That one redirect may go to any host whose addresses are all public (the
  presigned URL's host cannot be known in advance); the auth header is never sent there.
* ``data:`` URLs (base64 or percent-encoded).
* ``http(s)://`` URLs only on the Label Studio origin or a host in ``allowed_hosts``.

Everything else is refused with a :class:`MediaError` naming the task and the reason: other
schemes (``file://``, ``ftp://``...), hosts not allowed, hosts resolving to private, loopback,
link-local, reserved or otherwise non-public addresses (every address is checked) unless the
address or its network is allowlisted, more than ``max_redirects`` redirects (each hop checked
again; the auth header only goes to the Label Studio origin), bodies over ``max_bytes``
(Content-Length and streamed count), images over ``max_pixels`` (checked from the header before
decoding), non-images, truncated or corrupt images, ``..`` path segments.

``allowed_hosts`` entries: ``host`` (any port), ``host:port``, ``*.example.com`` (sub-domains),
an IP address (also allowlists that address), or a network in CIDR form (``10.0.0.0/8``, only
allowlists addresses: a host still has to be allowed by name). A hostname entry does NOT allow
the name to resolve to a private address (DNS rebinding); allowlist the address too for that.
The Label Studio host is trusted as configured, loopback included (the normal local set-up).

Limits: the address check and the connection resolve the name separately (a rebinding window
of one DNS TTL remains); environment proxies and ``.netrc`` are ignored on purpose.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from struct import error as struct_error
from urllib.parse import parse_qs, unquote, unquote_to_bytes, urljoin, urlsplit

import numpy as np
import requests
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "MediaError", "MediaFetcher"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
_USER_AGENT = "smartsize-media/0.1"
_REDIRECT_CODES = {301, 302, 303, 307, 308}
_CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
# Label Studio paths that serve media (relative task values must start with one of these).
_LS_MEDIA_PATH = re.compile(
    r"^/(data/upload/|data/local-files/|storage-data/uploaded/|"
    r"(tasks|projects)/\d+/(resolve|presign)/)"
)
_LS_RESOLVE_PATH = re.compile(r"^/(tasks|projects)/\d+/(resolve|presign)/")
# Raster formats only: no EPS/PS (Ghostscript), no formats without magic bytes.
_IMAGE_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO", "AVIF")
_CHUNK = 64 * 1024

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Iterable[str]]


class MediaError(ValueError):
    """A task's media could not be used; the message says which task and why.

    Attributes: ``task_id`` (or None), ``url`` (redacted: no query string, no credentials,
    no data), ``reason`` (the message without the task prefix).
    """

    def __init__(self, reason: str, *, task_id: int | None = None, url: str | None = None):
        prefix = f"task {task_id}: " if task_id is not None else ""
        where = f" [{url}]" if url else ""
        super().__init__(f"{prefix}{reason}{where}")
        self.reason = reason
        self.task_id = task_id
        self.url = url


def redact_url(url: str) -> str:
    """A URL safe to log or show: no credentials, query string or data payload."""
    if not isinstance(url, str):
        return repr(type(url))
    if url[:5].lower() == "data:":
        head = url[: min(url.find(","), 60)] if "," in url else url[:40]
        return f"{head},...({len(url)} chars)"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url[:80] + ("..." if len(url) > 80 else "")
    path = parts.path[:200]
    query = "?..." if parts.query else ""
    if parts.scheme:
        return f"{parts.scheme}://{host}{port}{path}{query}"
    return f"{path}{query}"


def _default_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def _is_public(ip: Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return _is_public(mapped)
    return bool(
        ip.is_global
        and not ip.is_private
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_multicast
        and not ip.is_reserved
        and not ip.is_unspecified
    )


def _parse_ip(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _has_traversal(path: str) -> bool:
    decoded = unquote(unquote(path))
    if "\\" in decoded or "\x00" in decoded:
        return True
    return any(segment in ("..", ".") for segment in decoded.split("/"))


def _jwt_payload(token: str) -> dict | None:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        decoded = []
        for part in parts[:2]:
            padded = part + "=" * (-len(part) % 4)
            decoded.append(json.loads(base64.urlsafe_b64decode(padded.encode("ascii"))))
    except (ValueError, binascii.Error, UnicodeError):
        return None
    header, payload = decoded
    if not isinstance(header, dict) or "alg" not in header or not isinstance(payload, dict):
        return None
    return payload


@dataclass(frozen=True)
class _HostRule:
    host: str
    port: int | None
    wildcard: bool

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host


@dataclass(frozen=True)
class _Target:
    url: str
    host: str
    port: int
    is_label_studio: bool


def _parse_allowed(entries: Iterable[str]) -> tuple[list[_HostRule], list[Network]]:
    rules: list[_HostRule] = []
    networks: list[Network] = []
    for raw in entries:
        entry = str(raw).strip().lower()
        if not entry:
            continue
        if "/" in entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError as exc:
                raise ValueError(f"allowed host {raw!r} is not a valid network: {exc}") from None
            continue
        host, port = entry, None
        if entry.startswith("["):  # [v6] or [v6]:port
            end = entry.find("]")
            host = entry[1:end]
            if entry[end + 1 :].startswith(":"):
                port = int(entry[end + 2 :])
        elif entry.count(":") == 1:
            host, port_text = entry.split(":")
            port = int(port_text)
        ip = _parse_ip(host)
        if ip is not None:
            networks.append(ipaddress.ip_network(ip))
            host = str(ip)
        wildcard = host.startswith("*.")
        rules.append(_HostRule(host[2:] if wildcard else host, port, wildcard))
    return rules, networks


class MediaFetcher:
    """Download and decode task media under the rules in the module docstring.

    Thread-safe: one ``requests.Session`` per thread, one cached access token shared.
    """

    def __init__(
        self,
        label_studio_url: str | None,
        api_key: str | None,
        allowed_hosts: Iterable[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        timeout: float = 10.0,
        *,
        total_timeout: float | None = None,
        max_redirects: int = 3,
        resolver: Resolver | None = None,
    ) -> None:
        if max_bytes <= 0 or max_pixels <= 0 or timeout <= 0 or max_redirects < 0:
            raise ValueError("max_bytes, max_pixels and timeout must be > 0, max_redirects >= 0")
        self.max_bytes = int(max_bytes)
        self.max_pixels = int(max_pixels)
        self.timeout = float(timeout)
        self.total_timeout = float(total_timeout) if total_timeout else 6.0 * self.timeout
        self.max_redirects = int(max_redirects)
        self._resolver: Resolver = resolver or _default_resolver
        self._rules, self._networks = _parse_allowed(allowed_hosts)
        self._api_key = api_key or None
        self._jwt = self._api_key is not None and _jwt_payload(self._api_key) is not None
        self._access: tuple[str, float] | None = None  # (token, refresh-after monotonic time)
        self._token_lock = threading.Lock()
        self._local = threading.local()

        self._ls_base: str | None = None
        self._ls_origin: tuple[str, str, int] | None = None
        if label_studio_url:
            parts = urlsplit(label_studio_url.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"LABEL_STUDIO_URL must be an http(s) URL, got {redact_url(label_studio_url)}"
                )
            port = parts.port or _default_port(parts.scheme)
            self._ls_origin = (parts.scheme, parts.hostname.lower(), port)
            netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
            if parts.port:
                netloc += f":{parts.port}"
            self._ls_base = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"

    def __repr__(self) -> str:  # never show the key
        return (
            f"MediaFetcher(label_studio_url={self._ls_base!r}, api_key="
            f"{'<set>' if self._api_key else None}, max_bytes={self.max_bytes}, "
            f"max_pixels={self.max_pixels})"
        )

    # ------------------------------------------------------------------ public API

    def fetch_bytes(self, url: str, task_id: int | None = None) -> tuple[bytes, str]:
        """Raw bytes and content type (``""`` when unknown) of ``url``."""
        if not isinstance(url, str) or not url.strip():
            raise MediaError("media value is empty or not a string", task_id=task_id)
        url = url.strip()
        scheme = url.split(":", 1)[0].lower() if ":" in url.split("/", 1)[0] else ""
        if scheme == "data":
            return self._decode_data_url(url, task_id)
        if scheme in _CLOUD_SCHEMES:
            return self._fetch_http(self._resolve_url_for(url, task_id), task_id)
        if scheme in ("http", "https"):
            return self._fetch_http(url, task_id)
        if scheme:
            raise MediaError(
                f"URL scheme {scheme!r} is not supported (use http(s), data: or a Label Studio "
                "path)",
                task_id=task_id,
                url=redact_url(url),
            )
        if url.startswith("//"):
            raise MediaError(
                "scheme-relative URLs are not supported", task_id=task_id, url=redact_url(url)
            )
        if not url.startswith("/"):
            raise MediaError(
                "media value is neither a URL nor a Label Studio path (plain text values are "
                "used directly, not fetched)",
                task_id=task_id,
                url=redact_url(url),
            )
        return self._fetch_http(self._ls_absolute(url, task_id), task_id)

    def fetch_image(self, url: str, task_id: int | None = None) -> Image.Image:
        """Fetch and decode an image: fully loaded, mode ``"RGB"`` or ``"L"``, EXIF-rotated."""
        data, _ = self.fetch_bytes(url, task_id)
        return self.decode_image(data, task_id=task_id, url=redact_url(url))

    def fetch_text(self, url: str, task_id: int | None = None) -> str:
        """Fetch a text document (Text objects with ``valueType="url"``)."""
        data, content_type = self.fetch_bytes(url, task_id)
        charset = "utf-8"
        match = re.search(r"charset=([\w.:-]+)", content_type or "", re.IGNORECASE)
        if match:
            charset = match.group(1)
        if b"\x00" in data[:8192] and not charset.lower().startswith("utf-16"):
            raise MediaError("content is binary, not text", task_id=task_id, url=redact_url(url))
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError) as exc:
            raise MediaError(
                f"content is not valid {charset} text ({type(exc).__name__})",
                task_id=task_id,
                url=redact_url(url),
            ) from None

    def decode_image(
        self, data: bytes, *, task_id: int | None = None, url: str | None = None
    ) -> Image.Image:
        """Decode image bytes with the size, format and integrity checks of :meth:`fetch_image`."""

        def fail(reason: str) -> MediaError:
            return MediaError(reason, task_id=task_id, url=url)

        if not data:
            raise fail("empty file")
        if len(data) > self.max_bytes:
            raise fail(f"file is larger than max_bytes={self.max_bytes}")
        try:
            img = Image.open(io.BytesIO(data), formats=_image_formats())
        except Image.DecompressionBombError as exc:
            raise fail(f"decompression bomb refused ({exc})") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
            raise fail(f"not a supported image ({type(exc).__name__})") from None
        width, height = img.size
        if width <= 0 or height <= 0:
            raise fail(f"image has an invalid size {width}x{height}")
        if width * height > self.max_pixels:
            raise fail(
                f"image is {width}x{height} = {width * height} pixels, over max_pixels="
                f"{self.max_pixels} (decompression bomb guard)"
            )
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated images may pass")
        try:
            img.load()
            img = ImageOps.exif_transpose(img) or img
        except Image.DecompressionBombError as exc:
            raise fail(f"decompression bomb refused ({exc})") from None
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct_error) as exc:
            raise fail(f"truncated or corrupt image ({type(exc).__name__}: {exc})") from None
        return _to_rgb_or_l(img)

    # ------------------------------------------------------------------ URL handling

    def _ls_absolute(self, path: str, task_id: int | None) -> str:
        if self._ls_base is None:
            raise MediaError(
                "a Label Studio path needs LABEL_STUDIO_URL to be configured",
                task_id=task_id,
                url=redact_url(path),
            )
        base_path = urlsplit(self._ls_base).path
        rel = path[len(base_path) :] if base_path and path.startswith(base_path + "/") else path
        if not _LS_MEDIA_PATH.match(rel):
            raise MediaError(
                "relative path is not a Label Studio media path (/data/upload/, "
                "/data/local-files/, /storage-data/uploaded/, /tasks/<id>/resolve/)",
                task_id=task_id,
                url=redact_url(path),
            )
        return self._ls_base + rel

    def _resolve_url_for(self, uri: str, task_id: int | None) -> str:
        if self._ls_base is None or task_id is None:
            raise MediaError(
                "cloud-storage URIs are resolved through Label Studio "
                "(/tasks/<id>/resolve/): LABEL_STUDIO_URL and the task id are required",
                task_id=task_id,
                url=redact_url(uri),
            )
        encoded = base64.urlsafe_b64encode(uri.encode("utf-8")).decode("ascii")
        return f"{self._ls_base}/tasks/{int(task_id)}/resolve/?fileuri={encoded}"

    def _check_url(self, url: str, task_id: int | None, presigned_hop: bool) -> _Target:
        def fail(reason: str) -> MediaError:
            return MediaError(reason, task_id=task_id, url=redact_url(url))

        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise fail(f"malformed URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise fail(f"URL scheme {scheme!r} is not allowed")
        if parts.username is not None or parts.password is not None:
            raise fail("credentials inside URLs are not allowed")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise fail("URL has no host")
        port = port or _default_port(scheme)
        if _has_traversal(parts.path):
            raise fail("path traversal ('..' segment) refused")
        if parts.path.startswith("/data/local-files"):
            for value in parse_qs(parts.query).get("d", []):
                if _has_traversal("/" + value):
                    raise fail("path traversal ('..' in local-files path) refused")

        is_ls = self._ls_origin == (scheme, host, port)
        if not is_ls:
            allowed = presigned_hop or any(rule.matches(host, port) for rule in self._rules)
            if not allowed:
                raise fail(
                    f"host {host!r} (port {port}) is not the Label Studio host and not in "
                    "allowed hosts"
                )
            self._check_addresses(host, port, fail)
        return _Target(url=url, host=host, port=port, is_label_studio=is_ls)

    def _check_addresses(self, host: str, port: int, fail: Callable[[str], MediaError]) -> None:
        literal = _parse_ip(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = list(self._resolver(host, port))
            except (OSError, UnicodeError) as exc:
                raise fail(f"cannot resolve host {host!r} ({type(exc).__name__})") from None
        if not addresses:
            raise fail(f"host {host!r} resolves to no address")
        for text in addresses:
            ip = _parse_ip(text)
            if ip is None:
                raise fail(f"host {host!r} resolved to an unparseable address {text!r}")
            if any(ip in net for net in self._networks if net.version == ip.version):
                continue
            if not _is_public(ip):
                raise fail(
                    f"host {host!r} resolves to non-public address {ip} (private, loopback, "
                    "link-local or reserved); allowlist the address or its network to permit it"
                )

    # ------------------------------------------------------------------ HTTP

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no env proxies, no .netrc credentials
            session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
            self._local.session = session
        return session

    def _auth_header(self, force_refresh: bool = False) -> str | None:
        if not self._api_key:
            return None
        if not self._jwt:
            return f"Token {self._api_key}"
        with self._token_lock:
            now = time.monotonic()
            if self._access is None or force_refresh or now >= self._access[1]:
                self._access = self._refresh_access_token()
            return f"Bearer {self._access[0]}"

    def _refresh_access_token(self) -> tuple[str, float]:
        assert self._ls_base is not None and self._api_key is not None
        url = f"{self._ls_base}/api/token/refresh/"
        try:
            resp = self._session().post(
                url,
                json={"refresh": self._api_key},
                headers={"User-Agent": _USER_AGENT},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise MediaError(
                f"cannot reach Label Studio to refresh the access token ({type(exc).__name__})"
            ) from None
        try:
            access = resp.json().get("access") if resp.status_code == 200 else None
        except ValueError:
            access = None
        finally:
            resp.close()
        if not isinstance(access, str) or not access:
            raise MediaError(
                f"Label Studio refused the personal access token (HTTP {resp.status_code} from "
                "/api/token/refresh/); check LABEL_STUDIO_API_KEY"
            )
        lifetime = 60.0
        payload = _jwt_payload(access)
        if payload and isinstance(payload.get("exp"), (int, float)):
            lifetime = float(payload["exp"]) - time.time()
        # refresh 30 s (or a quarter of a short lifetime) before expiry
        margin = min(30.0, max(lifetime, 0.0) / 4)
        return access, time.monotonic() + max(lifetime - margin, 0.0)

    def _fetch_http(self, url: str, task_id: int | None) -> tuple[bytes, str]:
        deadline = time.monotonic() + self.total_timeout
        presigned_hop = False
        retried_auth = False
        hops = 0
        current = url
        while True:
            target = self._check_url(current, task_id, presigned_hop)
            headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "gzip, deflate"}
            if target.is_label_studio:
                auth = self._auth_header(force_refresh=retried_auth)
                if auth:
                    headers["Authorization"] = auth
            log.debug("GET %s (task %s)", redact_url(current), task_id)
            try:
                resp = self._session().get(
                    current,
                    headers=headers,
                    stream=True,
                    allow_redirects=False,
                    timeout=(self.timeout, self.timeout),
                )
            except requests.RequestException as exc:
                raise MediaError(
                    f"request failed ({type(exc).__name__})",
                    task_id=task_id,
                    url=redact_url(current),
                ) from None
            try:
                status = resp.status_code
                if status in _REDIRECT_CODES:
                    location = resp.headers.get("Location")
                    if not location:
                        raise MediaError(
                            f"HTTP {status} redirect without Location",
                            task_id=task_id,
                            url=redact_url(current),
                        )
                    hops += 1
                    if hops > self.max_redirects:
                        raise MediaError(
                            f"more than {self.max_redirects} redirects",
                            task_id=task_id,
                            url=redact_url(url),
                        )
                    presigned_hop = target.is_label_studio and bool(
                        _LS_RESOLVE_PATH.match(
                            urlsplit(current).path[len(urlsplit(self._ls_base or "").path) :]
                        )
                    )
                    current = urljoin(current, location)
                    continue
                if status == 401 and target.is_label_studio and self._jwt and not retried_auth:
                    retried_auth = True  # access token revoked or expired early: refresh once
                    continue
                if status != 200:
                    hint = ""
                    if status in (401, 403) and target.is_label_studio:
                        hint = " (check LABEL_STUDIO_API_KEY and its access to the project)"
                    raise MediaError(
                        f"HTTP {status}{hint}", task_id=task_id, url=redact_url(current)
                    )
                body = self._read_body(resp, deadline, task_id, current)
                return body, resp.headers.get("Content-Type", "")
            finally:
                resp.close()

    def _read_body(
        self, resp: requests.Response, deadline: float, task_id: int | None, url: str
    ) -> bytes:
        def fail(reason: str) -> MediaError:
            return MediaError(reason, task_id=task_id, url=redact_url(url))

        length = resp.headers.get("Content-Length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise fail("invalid Content-Length") from None
            if declared > self.max_bytes:
                raise fail(f"Content-Length {declared} is over max_bytes={self.max_bytes}")
        buf = bytearray()
        try:
            for chunk in resp.iter_content(_CHUNK):
                buf += chunk
                if len(buf) > self.max_bytes:
                    raise fail(f"body is over max_bytes={self.max_bytes} (download stopped)")
                if time.monotonic() > deadline:
                    raise fail(f"download took longer than {self.total_timeout:.0f} s")
        except requests.RequestException as exc:
            raise fail(f"download failed ({type(exc).__name__})") from None
        return bytes(buf)

    # ------------------------------------------------------------------ data: URLs

    def _decode_data_url(self, url: str, task_id: int | None) -> tuple[bytes, str]:
        def fail(reason: str) -> MediaError:
            return MediaError(reason, task_id=task_id, url=redact_url(url))

        header, sep, payload = url[5:].partition(",")
        if not sep:
            raise fail("malformed data: URL (no ',')")
        params = [p.strip() for p in header.split(";")]
        is_base64 = any(p.lower() == "base64" for p in params[1:])
        media_type = params[0] or "text/plain"
        if len(payload) > self.max_bytes * 4 // 3 + 8 and is_base64:
            raise fail(f"data: URL is over max_bytes={self.max_bytes}")
        if is_base64:
            compact = re.sub(r"\s+", "", unquote(payload))
            try:
                data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
            except (binascii.Error, ValueError):
                try:
                    data = base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
                except (binascii.Error, ValueError):
                    raise fail("data: URL has invalid base64") from None
        else:
            data = unquote_to_bytes(payload)
        if len(data) > self.max_bytes:
            raise fail(f"data: URL is over max_bytes={self.max_bytes}")
        charset = [p for p in params[1:] if p.lower().startswith("charset=")]
        content_type = media_type + (f"; {charset[0]}" if charset else "")
        return data, content_type


def _image_formats() -> list[str]:
    Image.init()  # registers the plugins once; cheap afterwards
    return [f for f in _IMAGE_FORMATS if f in Image.OPEN]


def _to_rgb_or_l(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("RGB", "L"):
        return img
    if mode in ("I", "F") or mode.startswith("I;"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), mode="L")
    if mode == "1":
        return img.convert("L")
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background.convert("L") if mode in ("LA", "La") else background
    return img.convert("RGB")
