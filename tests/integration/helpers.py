"""Helpers shared by the integration and reliability tests: start the real backend (gunicorn,
plus an rq worker in redis mode) and wait for its cycles through ``/status/<id>``."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from ls_backend import localstack

AUTH = ("smartsize", "backend-pass-123")


def wait_for(predicate, timeout=180.0, every=0.5, what="condition"):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def is_up(url: str, auth=AUTH) -> bool:
    try:
        return requests.get(f"{url}/health", auth=auth, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def backend_env(
    label_studio_url: str,
    api_key: str,
    model_dir: Path,
    *,
    redis_url: str | None = None,
    auth=AUTH,
    **extra: str,
) -> dict[str, str]:
    """The backend's environment: small images and batches so cycles are quick on 2 cores."""
    settings = {"SMARTSIZE_IMAGE_SIZE": "64", "SMARTSIZE_BATCH_SIZE": "10", **extra}
    return localstack.smartsize_env(
        label_studio_url, api_key, model_dir, auth=auth, redis_url=redis_url, **settings
    )


def start_backend(env: dict[str, str], tmp: Path, *, worker: bool, auth=AUTH) -> dict:
    """``smartsize serve`` on a free loopback port (and ``smartsize worker`` if ``worker``).

    Returns a dict: ``url``, ``auth``, ``env``, ``tmp``, ``serve`` and ``worker`` (the
    processes, logs in ``tmp/serve.log`` and ``tmp/worker.log``); stop with
    :func:`stop_backend`."""
    port = localstack.free_port()
    serve = localstack.start_smartsize(
        ["serve", "--host", "127.0.0.1", "--port", str(port)], env, tmp / "serve.log"
    )
    backend = {
        "url": f"http://127.0.0.1:{port}",
        "auth": auth,
        "env": env,
        "tmp": tmp,
        "serve": serve,
        "worker": None,
    }
    try:
        wait_for(lambda: is_up(backend["url"], auth), 90, what=f"smartsize on {backend['url']}")
        if worker:
            start_worker(backend)
    except BaseException:
        stop_backend(backend)
        raise
    return backend


def start_worker(backend: dict) -> localstack.ManagedProcess:
    """(Re)start the backend's ``smartsize worker`` (log appended to ``tmp/worker.log``)."""
    backend["worker"] = localstack.start_smartsize(
        ["worker"], backend["env"], backend["tmp"] / "worker.log"
    )
    return backend["worker"]


def stop_backend(backend: dict) -> None:
    for name in ("worker", "serve"):
        if backend.get(name) is not None:
            backend[name].stop()


def status(backend, project_id):
    r = requests.get(
        f"{backend['url']}/status/{project_id}", auth=backend.get("auth", AUTH), timeout=5
    )
    r.raise_for_status()
    return r.json()


def wait_for_cycle(
    backend, project_id, *, after: str | None, n_labeled=None, timeout=240, allow_error=False
):
    """The report of the first cycle that finished after ``after`` (a ``finished_at``) once
    the project's queue is idle; with ``n_labeled``, the first with that many labels."""

    def done():
        s = status(backend, project_id)
        rep = s.get("last_report") or {}
        if rep.get("status") == "skipped":
            # a coalesced cycle that found nothing new: the last real one is what counts
            rep = s.get("last_success") or {}
        fresh = rep.get("finished_at") and rep.get("finished_at") != after
        busy = s["queue"].get("running") or s["queue"].get("pending")
        if not fresh or busy or rep.get("status") == "running":
            return None
        if rep["status"] == "error" and not allow_error:
            raise AssertionError(f"cycle failed: {rep['error']}")
        if n_labeled is not None and rep.get("n_labeled") != n_labeled:
            return None
        return rep

    return wait_for(done, timeout, what=f"a cycle of project {project_id}")
