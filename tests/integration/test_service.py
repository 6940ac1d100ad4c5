"""The whole service against a real Label Studio 1.23.2: connect, annotate, webhooks, cycles,
priorities served by Label Studio's own label stream, tags, views, status, Train button.

Runs once with the in-process queue and once with redis + an rq worker."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from ls_backend import localstack
from ls_backend.demo_project import choice_result, choices_label_config, fashion_tasks
from ls_backend.label_studio import STATUS_BEGIN, LabelStudioClient
from tests.integration.helpers import (
    AUTH,
    backend_env,
    start_backend,
    status,
    stop_backend,
    wait_for_cycle,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Trouser, Sneaker, Bag: visually distinct, so a few labels train a good head; Sneaker is rare.
CLASSES = (1, 7, 8)
N_TASKS = 90


@pytest.fixture(scope="module", params=["in-process", "redis"])
def backend(request, label_studio, tmp_path_factory):
    """A running smartsize (gunicorn) with basic auth, plus an rq worker in redis mode."""
    mode = request.param
    tmp = tmp_path_factory.mktemp(f"smartsize-{mode}")
    redis = None
    if mode == "redis":
        redis = localstack.start_redis(localstack.free_port(), tmp / "redis")
    env = backend_env(
        label_studio.url,
        label_studio.pat,
        tmp / "model",
        redis_url=redis.url if redis else None,
        SMARTSIZE_CRITICAL_CLASSES="Sneaker",
    )
    try:
        running = start_backend(env, tmp, worker=mode == "redis")
    except BaseException:
        if redis:
            redis.stop()
        raise
    yield {**running, "mode": mode}
    stop_backend(running)
    if redis:
        redis.stop()


@pytest.fixture(scope="module")
def project(label_studio, backend):
    tasks, truth, names = fashion_tasks(N_TASKS, CLASSES, rare={7: 0.15}, seed=1)
    client = LabelStudioClient(label_studio.url, label_studio.pat)
    created = client.create_project(
        f"smartsize e2e {backend['mode']}",
        choices_label_config(names),
        description="Our own words about this project.",
    )
    pid = created["id"]
    ids = client.import_tasks(pid, tasks)
    yield {"id": pid, "client": client, "ids": ids, "truth": truth, "names": names}
    client.close()


def test_end_to_end(label_studio, backend, project):
    client: LabelStudioClient = project["client"]
    pid, ids, truth, names = project["id"], project["ids"], project["truth"], project["names"]

    # 1. Connect as a Label Studio user would; the webhook gets the basic-auth header.
    ml = client.connect_ml_backend(pid, backend["url"], "smartsize", basic_auth=AUTH)
    hooks = [h for h in client.list_webhooks(pid) if h["url"].startswith(backend["url"])]
    assert hooks, "Label Studio did not create the backend's webhook"
    expected = "Basic " + base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
    assert all(h.get("headers", {}).get("Authorization") == expected for h in hooks)

    # 2. Train button with no labels: a cold-start cycle ranks by embedding structure alone.
    client.train(ml["id"])
    cold = wait_for_cycle(backend, pid, after=None)
    assert cold["status"] == "ok" and cold["cold_start"] and cold["n_labeled"] == 0
    proj = client.get_project(pid)
    assert proj["model_version"] == cold["model_version"]
    assert proj["sampling"] == "Uncertainty sampling"

    # 3. Annotate through the API as annotators do: each save fires a webhook -> cycles.
    #    Four Trousers are labelled "Bag" on purpose (a systematic error for the audit).
    rng = np.random.default_rng(0)
    labelled = []
    for j in range(3):
        members = [i for i in range(N_TASKS) if truth[i] == j]
        labelled += list(rng.choice(members, 4 if j == 1 else 12, replace=False))
    wrong = [i for i in labelled if truth[i] == 0][:4]
    for i in labelled:
        label = names[2] if i in wrong else names[truth[i]]
        client.create_annotation(ids[i], choice_result(label))
    warm = wait_for_cycle(backend, pid, after=cold["finished_at"], n_labeled=len(labelled))
    assert not warm["cold_start"] and warm["metric"] is not None

    # 4. Priorities: one prediction per unlabelled task under the new version, and Label
    #    Studio's own label stream serves the top-priority task first.
    proj = client.get_project(pid)
    assert proj["model_version"] == warm["model_version"]
    versions = client.list_model_versions(pid)
    # Label Studio may also call /predict for labelled tasks (stored under the same version).
    assert versions.get(warm["model_version"], 0) >= N_TASKS - len(labelled)
    assert warm["n_predictions"] == N_TASKS - len(labelled)
    nxt = client.next_task(pid)
    assert nxt is not None and nxt["id"] == warm["top"][0]["task"]
    pred = next(
        p
        for p in client.get_task(nxt["id"]).get("predictions", [])
        if p["model_version"] == warm["model_version"]
    )
    assert pred["result"][0]["value"]["choices"][0] in names
    assert pred["score"] == pytest.approx(0.0, abs=1e-6)  # 1 - priority of the top task

    # 5. SME tags, audit tags and the two views.
    tasks = {t["id"]: t for t in client.iter_tasks(pid)}
    flagged = [i for i in range(N_TASKS) if tasks[ids[i]]["data"].get("label_issue") == 1]
    hits = set(flagged) & {int(i) for i in wrong}
    assert len(hits) >= 3 and len(set(flagged) - hits) <= 2, (flagged, wrong)
    assert "labelled 'Bag'" in tasks[ids[min(hits)]]["data"]["label_issue_reason"]
    sme = [t for t in tasks.values() if t["data"].get("needs_sme") == 1]
    assert len(sme) == warm["n_escalated"] and all(t["data"]["sme_reason"] for t in sme)
    titles = {v["data"]["title"] for v in client.list_views(pid)}
    assert {"SME escalation", "Label audit"} <= titles

    # 6. The stopping-rule status block, with the user's own text kept.
    description = client.get_project(pid)["description"]
    assert description.startswith("Our own words about this project.")
    assert STATUS_BEGIN in description and warm["stopping"]["decision"] in description
    assert description.count(STATUS_BEGIN) == 1

    # 7. The backend's own status writes fired PROJECT_UPDATED, which triggered nothing.
    time.sleep(2)
    s = status(backend, pid)
    assert not s["queue"]["running"] and not s["queue"]["pending"]
    assert s["last_report"]["finished_at"] == warm["finished_at"]
    metrics = requests.get(f"{backend['url']}/metrics", auth=AUTH, timeout=5).text
    assert 'action="PROJECT_UPDATED",result="ignored"' in metrics

    # 8. /predict as Label Studio calls it: one result per task with the current version.
    body = {
        "tasks": [tasks[ids[i]] for i in range(5)],
        "project": f"{pid}.0",
        "label_config": proj["label_config"],
        "params": {"context": None},
    }
    r = requests.post(f"{backend['url']}/predict", json=body, auth=AUTH, timeout=60)
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 5 and all(x["model_version"] == warm["model_version"] for x in results)
    assert all(x["result"][0]["value"]["choices"][0] in names for x in results)

    # 9. Train button again: a forced cycle writes a new version and prunes old ones.
    client.train(ml["id"])
    again = wait_for_cycle(backend, pid, after=warm["finished_at"])
    assert again["model_version"] != warm["model_version"]
    assert client.get_project(pid)["model_version"] == again["model_version"]
    kept = [v for v in client.list_model_versions(pid) if v.startswith("smartsize-")]
    assert len(kept) <= 2 and cold["model_version"] not in kept


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,1500",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_status_page_in_chromium(backend, project, chromium, tmp_path):
    """The HTML status page, loaded in a real headless Chromium from the running backend,
    shows the numbers the JSON status has; a screenshot is kept in test-artifacts/."""
    import subprocess

    exe = chromium
    pid = project["id"]
    rep = status(backend, pid)["last_success"]
    url = backend["url"].replace("http://", f"http://{AUTH[0]}:{AUTH[1]}@") + "/status"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"]
    dom = subprocess.run(
        [exe, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    section = dom[dom.index(f'id="project-{pid}"') :]
    section = section[: section.index("</section>")]
    assert f'data-field="decision">{rep["stopping"]["decision"]}<' in section
    for label, value in (
        ("labels used", rep["n_labeled"]),
        ("tasks", rep["n_tasks"]),
        ("SME escalations", rep["n_escalated"]),
        ("label issues", rep["n_label_issues"]),
    ):
        assert f"<th>{label}</th><td>{value}</td>" in section, label
    assert "<svg" in section and rep["model_version"] in section
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"status-{backend['mode']}.png"
    subprocess.run([exe, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000


def test_connect_command(label_studio, backend, monkeypatch, capsys):
    """`smartsize connect` on an existing project: backend, webhook auth header, views."""
    from ls_backend.cli import main

    client = LabelStudioClient(label_studio.url, label_studio.pat)
    pid = client.create_project("smartsize connect", choices_label_config(["a", "b"]))["id"]
    for key, value in {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.legacy_token,
        "BASIC_AUTH_USER": AUTH[0],
        "BASIC_AUTH_PASS": AUTH[1],
    }.items():
        monkeypatch.setenv(key, value)
    assert main(["connect", "--project", str(pid), "--url", backend["url"]]) == 0
    assert main(["connect", "--project", str(pid), "--url", backend["url"]]) == 0  # idempotent
    out = capsys.readouterr().out
    assert "connected ML backend" in out and "already connected" in out
    assert len(client.list_ml_backends(pid)) == 1
    hooks = [h for h in client.list_webhooks(pid) if h["url"].startswith(backend["url"])]
    assert hooks and all(h["headers"].get("Authorization", "").startswith("Basic ") for h in hooks)
    titles = [v["data"]["title"] for v in client.list_views(pid)]
    assert titles.count("SME escalation") == 1 and titles.count("Label audit") == 1
    client.close()
