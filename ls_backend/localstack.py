"""Start real local services: a headless Label Studio 1.23.2 and a redis-server.

Used by the integration tests and by ``make demo``. Nothing here is mocked: the processes are
the real servers, each in its own process group so that ``stop()`` ends them and their children.

Label Studio runs from its own virtual environment (``SMARTSIZE_LS_VENV``, default
``<repo>/.venv-ls``). A fresh database needs ~30 s of migrations, so the first call creates a
pre-migrated *template* data dir under ``<repo>/.work/ls-template-<version>/`` (admin user,
legacy token, a personal access token) and every later server starts from a copy of it in a
few seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LS_VERSION = "1.23.2"
TEMPLATE_META = "smartsize-template.json"

# Fixed credentials of the template database (test/demo only; never used for a real server).
TEMPLATE_USERNAME = "admin@example.com"
TEMPLATE_PASSWORD = "smartsize-admin-password"
TEMPLATE_LEGACY_TOKEN = hashlib.sha1(b"smartsize-template-legacy-token").hexdigest()

# Settings that must not leak from the caller's environment into the Label Studio process.
_ENV_PREFIXES_TO_DROP = ("LABEL_STUDIO_", "HEARTEX_", "DJANGO_")
_ENV_NAMES_TO_DROP = ("SECRET_KEY", "PORT", "HOST", "USERNAME", "PASSWORD", "USER_TOKEN")


class LocalServiceError(RuntimeError):
    """A local service could not be started or did not become healthy."""


# --------------------------------------------------------------------------------------- ports


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        if s.connect_ex((host, port)) == 0:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As servers do (Label Studio's, redis): connections of a stopped server left in
        # TIME_WAIT must not make its port look busy when it restarts on the same port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _log_tail(path: Path, n_lines: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n_lines:])


def _stop_process_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# -------------------------------------------------------------------------------- Label Studio


def label_studio_venv() -> Path:
    """The virtual environment Label Studio runs from (``SMARTSIZE_LS_VENV``)."""
    return Path(os.environ.get("SMARTSIZE_LS_VENV") or REPO_ROOT / ".venv-ls")


def label_studio_executable() -> Path:
    exe = label_studio_venv() / "bin" / "label-studio"
    if not exe.exists():
        raise LocalServiceError(
            f"Label Studio is not installed at {exe} "
            "(run `make setup-ls`, or set SMARTSIZE_LS_VENV to its virtual environment)"
        )
    return exe


def template_dir() -> Path:
    """Where the pre-migrated template data dir lives (``SMARTSIZE_LS_TEMPLATE`` overrides)."""
    env = os.environ.get("SMARTSIZE_LS_TEMPLATE")
    return Path(env) if env else REPO_ROOT / ".work" / f"ls-template-{LS_VERSION}"


def ensure_secret_key(data_dir: Path) -> None:
    """Give a new data dir a hex SECRET_KEY before Label Studio's first start.

    Label Studio 1.23.2 otherwise generates a random key into ``<data_dir>/.env``; when that
    key happens to start with ``$``, the next start reads it back through django-environ as a
    reference to another variable, gets a different key, and every personal access token
    signed with the first one is "invalid" (seen once in CI: all PAT requests got 401)."""
    env_file = Path(data_dir) / ".env"
    text = env_file.read_text() if env_file.exists() else ""
    if any(line.startswith("SECRET_KEY=") for line in text.splitlines()):
        return
    fd = os.open(env_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(f"\nSECRET_KEY={secrets.token_hex(32)}\n")


def label_studio_env(data_dir: Path, username: str, password: str, token: str) -> dict[str, str]:
    """The environment for a headless Label Studio (see docs in LABEL_STUDIO.md)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_ENV_PREFIXES_TO_DROP) and k not in _ENV_NAMES_TO_DROP
    }
    env.update(
        {
            "HOME": str(data_dir),
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "DJANGO_DB": "sqlite",
            "LABEL_STUDIO_USERNAME": username,
            "LABEL_STUDIO_PASSWORD": password,
            "LABEL_STUDIO_USER_TOKEN": token,
            # Only honoured when the organisation is created (first start on a fresh DB).
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            # Both are needed for an ML backend / webhook on loopback or a private network.
            "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",
            "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@dataclass
class LabelStudioProcess:
    """A running Label Studio server started by :func:`start_label_studio`."""

    url: str
    port: int
    data_dir: Path
    log_path: Path
    username: str
    password: str
    legacy_token: str
    pat: str | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    startup_seconds: float = 0.0

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.process is not None:
            _stop_process_group(self.process, timeout)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> LabelStudioProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _http_get_json(url: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except (OSError, ValueError, urllib.error.URLError):
        return None


_PORT_LINE = re.compile(r"Starting development server at https?://[^:/]+:(\d+)/")


def start_label_studio(
    data_dir: Path,
    port: int,
    username: str,
    password: str,
    token: str,
    log_path: Path | None = None,
    timeout: float = 180.0,
) -> LabelStudioProcess:
    """Start ``label-studio start`` on ``127.0.0.1:port`` with ``data_dir`` as its data and HOME.

    Waits until ``/health`` answers ``UP`` on the port asked for; raises
    :class:`LocalServiceError` with the log tail when the port is busy, the process exits, it
    moved to another port, or ``timeout`` passes. On a fresh ``data_dir`` the admin user
    (``username``/``password``, legacy ``token``) is created with legacy tokens enabled.
    """
    exe = label_studio_executable()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path is not None else data_dir / "label-studio.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if not port_is_free(port):
        raise LocalServiceError(
            f"port {port} is busy; Label Studio would silently move to another port"
        )
    cmd = [
        str(exe),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    ensure_secret_key(data_dir)
    env = label_studio_env(data_dir, username, password, token)
    log_offset = log_path.stat().st_size if log_path.exists() else 0  # earlier runs' lines
    t0 = time.monotonic()
    proc = start_process(cmd, env, log_path, cwd=data_dir).process
    url = f"http://127.0.0.1:{port}"
    server = LabelStudioProcess(
        url=url,
        port=port,
        data_dir=data_dir,
        log_path=log_path,
        username=username,
        password=password,
        legacy_token=token,
        process=proc,
    )
    try:
        _wait_for_label_studio(server, timeout, log_offset)
    except BaseException:
        server.stop(timeout=5)
        raise
    server.startup_seconds = time.monotonic() - t0
    return server


def _new_log(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _wait_for_label_studio(server: LabelStudioProcess, timeout: float, log_offset: int = 0) -> None:
    assert server.process is not None
    deadline = time.monotonic() + timeout
    while True:
        health = _http_get_json(f"{server.url}/health", timeout=2.0)
        if health is not None and health.get("status") == "UP":
            return
        if server.process.poll() is not None:
            raise LocalServiceError(
                f"Label Studio exited with code {server.process.returncode} before becoming "
                f"healthy; log {server.log_path}:\n{_log_tail(server.log_path)}"
            )
        log = _new_log(server.log_path, log_offset)
        moved = [int(p) for p in _PORT_LINE.findall(log) if int(p) != server.port]
        if moved:
            raise LocalServiceError(
                f"Label Studio moved from port {server.port} to {moved[-1]} (port was taken "
                f"meanwhile); log {server.log_path}:\n{_log_tail(server.log_path)}"
            )
        if time.monotonic() > deadline:
            raise LocalServiceError(
                f"Label Studio did not answer /health on {server.url} within {timeout:.0f} s; "
                f"log {server.log_path}:\n{_log_tail(server.log_path)}"
            )
        time.sleep(0.5)


def create_personal_access_token(url: str, legacy_token: str, timeout: float = 30.0) -> str:
    """Create the user's personal access token (a JWT refresh token) via POST /api/token/.

    Label Studio 1.23.2 allows one live PAT per user (409 otherwise). Authenticated here with the
    legacy token; any authenticated session would do.
    """
    req = urllib.request.Request(
        f"{url}/api/token/",
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Token {legacy_token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read().decode())
    except urllib.error.HTTPError as e:
        detail = e.read()[:300].decode(errors="replace")
        raise LocalServiceError(f"POST /api/token/ failed: HTTP {e.code}: {detail}") from e
    token = body.get("token")
    if not token or token.count(".") != 2:
        raise LocalServiceError("POST /api/token/ did not return a personal access token")
    return token


def ensure_label_studio_template(timeout: float = 300.0) -> Path:
    """Create the pre-migrated template data dir once (~30 s); later calls return it at once.

    Safe against concurrent callers (an exclusive file lock around the creation).
    """
    target = template_dir()
    if (target / TEMPLATE_META).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / TEMPLATE_META).exists():
            return target
        building = target.parent / f"{target.name}.building-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        log_path = target.parent / f"{target.name}.build.log"
        log_path.unlink(missing_ok=True)
        try:
            server = start_label_studio(
                building,
                free_port(),
                TEMPLATE_USERNAME,
                TEMPLATE_PASSWORD,
                TEMPLATE_LEGACY_TOKEN,
                log_path=log_path,
                timeout=timeout,
            )
            try:
                pat = create_personal_access_token(server.url, TEMPLATE_LEGACY_TOKEN)
            finally:
                server.stop()
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        meta = {
            "label_studio_version": LS_VERSION,
            "username": TEMPLATE_USERNAME,
            "password": TEMPLATE_PASSWORD,
            "legacy_token": TEMPLATE_LEGACY_TOKEN,
            "pat": pat,
        }
        (building / TEMPLATE_META).write_text(json.dumps(meta, indent=2))
        os.chmod(building / TEMPLATE_META, 0o600)
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
    return target


def start_label_studio_from_template(
    data_dir: Path,
    port: int | None = None,
    log_path: Path | None = None,
    timeout: float = 120.0,
) -> LabelStudioProcess:
    """Copy the template data dir to ``data_dir`` (which must not exist) and start a server.

    The returned process carries the template's credentials, legacy token and PAT.
    """
    template = ensure_label_studio_template()
    meta = json.loads((template / TEMPLATE_META).read_text())
    data_dir = Path(data_dir)
    if data_dir.exists():
        raise LocalServiceError(f"{data_dir} already exists; give a new directory")
    shutil.copytree(
        template, data_dir, symlinks=True, ignore=shutil.ignore_patterns("*.log", TEMPLATE_META)
    )
    server = start_label_studio(
        data_dir,
        port if port is not None else free_port(),
        meta["username"],
        meta["password"],
        meta["legacy_token"],
        log_path=log_path,
        timeout=timeout,
    )
    server.pat = meta["pat"]
    return server


# ---------------------------------------------------------------------------------------- redis


@dataclass
class RedisProcess:
    """A running redis-server started by :func:`start_redis`."""

    port: int
    dir: Path
    process: subprocess.Popen = field(repr=False)
    host: str = "127.0.0.1"
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def stop(self, timeout: float = 10.0) -> None:
        _stop_process_group(self.process, timeout)

    def __enter__(self) -> RedisProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _redis_ping(host: str, port: int, password: str | None = None) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            if password:
                pw = password.encode()
                s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw))
                if not s.recv(64).startswith(b"+OK"):
                    return False
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(
    port: int, dir: Path, timeout: float = 20.0, password: str | None = None
) -> RedisProcess:
    """Start ``redis-server`` on 127.0.0.1:port without persistence; wait until it answers PING.

    With ``password``, clients must authenticate (``requirepass``; ``url`` carries it)."""
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(exe).exists():
        raise LocalServiceError("redis-server is not installed (Debian package redis-server)")
    dir = Path(dir).resolve()
    dir.mkdir(parents=True, exist_ok=True)
    if not port_is_free(port):
        raise LocalServiceError(f"port {port} is busy")
    log_path = dir / "redis.log"
    cmd = [
        exe,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(dir),
        "--daemonize",
        "no",
        "--logfile",
        str(log_path),
    ]
    if password:
        cmd += ["--requirepass", password]
    proc = subprocess.Popen(
        cmd,
        cwd=dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = RedisProcess(port=port, dir=dir, process=proc, password=password)
    deadline = time.monotonic() + timeout
    while not _redis_ping(server.host, port, password):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop(timeout=2)
            raise LocalServiceError(
                f"redis-server did not start on port {port}; log {log_path}:\n{_log_tail(log_path)}"
            )
        time.sleep(0.1)
    return server


# ------------------------------------------------------------------------- smartsize itself


@dataclass
class ManagedProcess:
    """Any process started by :func:`start_process` (its own process group, log to a file)."""

    argv: list[str]
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    def stop(self, timeout: float = 15.0) -> None:
        _stop_process_group(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL the whole group at once (crash tests)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, n_lines: int = 40) -> str:
        return _log_tail(self.log_path, n_lines)


def start_process(
    argv: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
) -> ManagedProcess:
    """Start ``argv`` in a new process group with stdout and stderr going to ``log_path``."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ManagedProcess(list(argv), log_path, proc)


SMARTSIZE_CLI = (sys.executable, "-m", "ls_backend.cli")


def smartsize_env(
    label_studio_url: str,
    api_key: str,
    model_dir: Path,
    *,
    auth: tuple[str, str] | None = None,
    redis_url: str | None = None,
    **settings: str,
) -> dict[str, str]:
    """The environment of a smartsize process (serve, worker) talking to one Label Studio:
    this process's environment plus the connection, ``MODEL_DIR``, basic auth, ``REDIS_URL``
    (removed when not given) and any ``SMARTSIZE_*`` settings."""
    env = {
        **os.environ,
        "LABEL_STUDIO_URL": label_studio_url,
        "LABEL_STUDIO_API_KEY": api_key,
        "MODEL_DIR": str(model_dir),
    }
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    if auth:
        env["BASIC_AUTH_USER"], env["BASIC_AUTH_PASS"] = auth
    env.update({k: str(v) for k, v in settings.items()})
    return env


def start_smartsize(command: list[str], env: dict[str, str], log_path: Path) -> ManagedProcess:
    """``smartsize <command>`` (e.g. ``["serve", "--port", "9090"]`` or ``["worker"]``)."""
    return start_process([*SMARTSIZE_CLI, *command], env, log_path)
