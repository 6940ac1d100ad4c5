"""Outages and crashes with real services: Label Studio stopped mid-cycle, redis stopped, an rq
worker killed with SIGKILL while embedding. Each uses a private Label Studio and redis (they
are stopped and restarted on the same data dir and port); the tests run in file order on one
project."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from ls_backend import localstack
from ls_backend.cache import EmbeddingCache
from ls_backend.demo_project import choice_result, choices_label_config, fashion_tasks
from ls_backend.head import ModelStore
from ls_backend.label_studio import LabelStudioClient
from ls_backend.state import load_state, project_dir
from tests.conftest import skip_or_fail
from tests.integration.helpers import (
    backend_env,
    start_backend,
    start_worker,
    status,
    stop_backend,
    wait_for,
    wait_for_cycle,
)
from tests.reliability.conftest import record_figures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLASSES = (1, 7, 8)
N_FIRST = 45
N_MID = 200  # new tasks embedded by the cycle Label Studio disappears in
N_CRASH = 300  # new tasks embedded by the cycle whose worker is killed


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Private Label Studio + redis + smartsize (gunicorn + worker); restartable pieces."""
    try:
        localstack.label_studio_executable()
    except localstack.LocalServiceError as e:
        skip_or_fail(str(e))
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed (Debian package redis-server)")
    tmp = tmp_path_factory.mktemp("outages")
    ls = localstack.start_label_studio_from_template(
        tmp / "ls-data", log_path=tmp / "label-studio.log"
    )
    redis = localstack.start_redis(localstack.free_port(), tmp / "redis")
    env = backend_env(ls.url, ls.pat, tmp / "model", redis_url=redis.url, OMP_NUM_THREADS="1")
    s = {"ls": ls, "redis": redis, "tmp": tmp, "model_dir": tmp / "model"}
    try:
        s["backend"] = start_backend(env, tmp, worker=True)
        yield s
    finally:
        if "backend" in s:
            stop_backend(s["backend"])
        s["redis"].stop()
        s["ls"].stop()


@pytest.fixture(scope="module")
def project(stack):
    ls = stack["ls"]
    tasks, truth, names = fashion_tasks(N_FIRST, CLASSES, seed=3)
    with LabelStudioClient(ls.url, ls.pat) as client:
        pid = client.create_project("smartsize outages", choices_label_config(names))["id"]
        ids = client.import_tasks(pid, tasks)
        for j in range(len(CLASSES)):
            for i in np.flatnonzero(truth == j)[:3]:
                client.create_annotation(ids[i], choice_result(names[j]))
    return {"id": pid, "ids": ids, "truth": truth, "names": names, "n_labeled": 9}


def trigger(backend, pid, action="START_TRAINING"):
    r = requests.post(
        f"{backend['url']}/webhook",
        json={"action": action, "project": {"id": pid}},
        auth=backend["auth"],
        timeout=5,
    )
    assert r.status_code == 200, r.text
    return r.json()["status"]


def import_more(stack, pid, n, seed):
    tasks, _, _ = fashion_tasks(n, CLASSES, seed=seed)
    with LabelStudioClient(stack["ls"].url, stack["ls"].pat) as client:
        return client.import_tasks(pid, tasks)


def wait_running(backend, pid, timeout=60):
    wait_for(
        lambda: status(backend, pid)["queue"]["running"],
        timeout,
        every=0.05,
        what="the cycle to start",
    )


def test_label_studio_outage_mid_cycle(stack, project):
    backend, pid = stack["backend"], project["id"]
    trigger(backend, pid)
    first = wait_for_cycle(backend, pid, after=None, timeout=240)
    assert first["status"] == "ok" and first["n_labeled"] == 9 and first["head_version"]

    with _open_cache(stack["model_dir"]) as c:
        n_cached = len(c)
    import_more(stack, pid, N_MID, seed=4)
    trigger(backend, pid)
    wait_running(backend, pid)
    _wait_cache_growth(stack["model_dir"], n_cached + 32)
    stack["ls"].stop()  # Label Studio goes away while the cycle embeds (synced already)
    t_down = time.monotonic()
    failed = wait_for_cycle(backend, pid, after=first["finished_at"], allow_error=True)
    assert failed["status"] == "error", failed
    assert "Label Studio" in failed["error"] or "/api/" in failed["error"], failed["error"]
    s = status(backend, pid)
    assert s["current_version"] == first["model_version"]
    assert s["last_success"]["model_version"] == first["model_version"]
    for path in ("/health", "/metrics", f"/status/{pid}"):
        r = requests.get(f"{backend['url']}{path}", auth=backend["auth"], timeout=5)
        assert r.status_code == 200, path

    old = stack["ls"]
    stack["ls"] = localstack.start_label_studio(
        old.data_dir,
        old.port,
        old.username,
        old.password,
        old.legacy_token,
        log_path=old.log_path,
    )
    stack["ls"].pat = old.pat
    with LabelStudioClient(stack["ls"].url, stack["ls"].pat) as client:
        # No half-written version: annotators are still served the previous one.
        assert client.get_project(pid)["model_version"] == first["model_version"]
        trigger(backend, pid)
        again = wait_for_cycle(backend, pid, after=failed["finished_at"], timeout=240)
        assert again["status"] == "ok" and again["n_tasks"] == N_FIRST + N_MID
        assert client.get_project(pid)["model_version"] == again["model_version"]
    record_figures(
        "label_studio_outage",
        {
            "error_reported": failed["error"][:200],
            "seconds_from_stop_to_error_report": round(time.monotonic() - t_down, 1),
            "version_kept": first["model_version"],
            "next_cycle": again["status"],
        },
    )
    project["last"] = again


def test_redis_outage(stack, project):
    backend, pid = stack["backend"], project["id"]
    before = project["last"]
    port, rdir = stack["redis"].port, stack["redis"].dir
    stack["redis"].stop()
    with LabelStudioClient(stack["ls"].url, stack["ls"].pat) as client:
        i = int(np.flatnonzero(project["truth"] == 0)[5])
        client.create_annotation(project["ids"][i], choice_result(project["names"][0]))
    answers = [trigger(backend, pid, "ANNOTATION_CREATED") for _ in range(5)]
    assert set(answers) == {"deferred"}, answers
    s = status(backend, pid)
    assert s["queue"]["pending"] and "redis unavailable" in s["queue"]["error"]
    for path in ("/health", "/metrics", "/versions"):
        r = requests.get(f"{backend['url']}{path}", auth=backend["auth"], timeout=5)
        assert r.status_code == 200, path
    time.sleep(4)
    worker_survived = backend["worker"].is_running()

    stack["redis"] = localstack.start_redis(port, rdir)
    if not backend["worker"].is_running():
        start_worker(backend)
    t_up = time.monotonic()
    rep = wait_for_cycle(backend, pid, after=before["finished_at"], n_labeled=10, timeout=180)
    assert rep["status"] == "ok" and rep["n_annotations"] == 10
    record_figures(
        "redis_outage",
        {
            "webhook_answers_while_down": answers,
            "worker_survived_outage": worker_survived,
            "seconds_from_redis_back_to_cycle_done": round(time.monotonic() - t_up, 1),
            "annotation_made_during_outage_in_model": True,
        },
    )
    project["last"] = rep
    project["n_labeled"] = 10


def _open_cache(model_dir: Path) -> EmbeddingCache:
    (index,) = (model_dir / "embeddings").glob("*/index.sqlite")
    with sqlite3.connect(index) as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    return EmbeddingCache(model_dir / "embeddings", meta["namespace"], int(meta["dim"]))


def _wait_cache_growth(model_dir: Path, n: int) -> None:
    def grown():
        with _open_cache(model_dir) as c:
            return len(c) >= n

    wait_for(grown, 120, every=0.1, what=f"{n} cached embeddings")


def _cached_keys(cache: EmbeddingCache) -> list[tuple[int, str]]:
    with sqlite3.connect(cache.path / "index.sqlite") as conn:
        return [(int(t), h) for t, h in conn.execute("SELECT task_id, content_hash FROM vectors")]


def test_worker_killed_during_embedding(stack, project):
    backend, pid, model_dir = stack["backend"], project["id"], stack["model_dir"]
    before = project["last"]
    cache = _open_cache(model_dir)
    n_cached = len(cache)
    cache.close()
    import_more(stack, pid, N_CRASH, seed=6)
    trigger(backend, pid)
    wait_running(backend, pid)

    _wait_cache_growth(model_dir, n_cached + 64)
    backend["worker"].kill()
    t_kill = time.monotonic()

    # The previous model and head, and the cache, still load.
    state = load_state(model_dir, pid)
    assert state["current_version"] == before["model_version"]
    stored = ModelStore(project_dir(model_dir, pid) / "heads").load(state["current_head"])
    with _open_cache(model_dir) as c:
        keys = _cached_keys(c)
        found, vectors = c.get(keys)
        assert found.all() and len(keys) > n_cached
        probs = stored.head.predict_proba(vectors)
        assert np.allclose(probs.sum(axis=1), 1.0)
    r = requests.post(
        f"{backend['url']}/predict",
        json={
            "tasks": [{"id": project["ids"][0], "data": {"image": ""}}],
            "project": f"{pid}.0",
            "label_config": choices_label_config(project["names"]),
        },
        auth=backend["auth"],
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["model_version"] == before["model_version"]

    # The next cycle recovers (a new worker; the dead one's lock must not block it).
    start_worker(backend)
    trigger(backend, pid)
    rep = wait_for_cycle(backend, pid, after=before["finished_at"], timeout=240)
    assert rep["status"] == "ok", rep
    assert rep["n_tasks"] == N_FIRST + N_MID + N_CRASH
    assert rep["n_embedded_new"] < N_CRASH  # what the killed worker cached is reused
    record_figures(
        "worker_kill",
        {
            "embeddings_cached_before_kill": len(keys) - n_cached,
            "embedded_by_next_cycle": rep["n_embedded_new"],
            "seconds_from_kill_to_next_cycle_done": round(time.monotonic() - t_kill, 1),
        },
    )
