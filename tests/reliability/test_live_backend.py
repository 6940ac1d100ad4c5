"""The real gunicorn-served backend (redis + rq worker, basic auth) against a real Label Studio:
a webhook storm with real annotations interleaved, a corpus of hostile requests and media, and
the auth and secrets checks. The tests share one project and run in file order."""

from __future__ import annotations

import base64
import http.client
import io
import json
import struct
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import redis
import requests
from PIL import Image
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from ls_backend.app import MAX_BODY_BYTES
from ls_backend.demo_project import choice_result, choices_label_config, fashion_tasks
from ls_backend.label_studio import LabelStudioClient
from ls_backend.queue import RQ_QUEUE_NAME
from tests.conftest import FIXTURES
from tests.integration.helpers import status, wait_for, wait_for_cycle
from tests.reliability.conftest import record_figures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLASSES = (1, 7, 8)  # Trouser, Sneaker, Bag
N_TASKS = 60
N_EVENTS = 1000
STORM_SECONDS = 10.0
N_CLIENTS = 10
N_ANNOTATIONS = 30
ACK_LIMIT_S = 1.0  # Label Studio's webhook timeout


@pytest.fixture(scope="module")
def project(label_studio, live_backend):
    tasks, truth, names = fashion_tasks(N_TASKS, CLASSES, seed=2)
    client = LabelStudioClient(label_studio.url, label_studio.pat)
    pid = client.create_project("smartsize reliability storm", choices_label_config(names))["id"]
    ids = client.import_tasks(pid, tasks)
    backend = live_backend
    client.connect_ml_backend(pid, backend["url"], "smartsize", basic_auth=backend["auth"])
    yield {
        "id": pid,
        "client": client,
        "ids": ids,
        "truth": truth,
        "names": names,
        "ls": label_studio,
    }
    client.close()


def post(backend, path, session=None, **kwargs):
    kwargs.setdefault("auth", backend["auth"])
    kwargs.setdefault("timeout", 30)
    return (session or requests).post(f"{backend['url']}{path}", **kwargs)


def annotation_event(project_id: int) -> dict:
    event = json.loads((FIXTURES / "ml_webhook_ANNOTATION_CREATED.json").read_text())["json"]
    event["project"]["id"] = project_id
    event["annotation"]["project"] = project_id
    return event


# ------------------------------------------------------------------------------- the storm
def test_webhook_storm(live_backend, project):
    backend, pid, client = live_backend, project["id"], project["client"]
    r = post(backend, "/webhook", json={"action": "START_TRAINING", "project": {"id": pid}})
    assert r.status_code == 200
    cold = wait_for_cycle(backend, pid, after=None, timeout=240)
    assert cold["status"] == "ok" and cold["n_labeled"] == 0

    conn = redis.Redis.from_url(backend["redis"].url)
    queue = Queue(RQ_QUEUE_NAME, connection=conn)
    event = annotation_event(pid)
    latencies: list[float] = []
    answers: Counter = Counter()
    codes: Counter = Counter()
    errors: list[str] = []
    polls = {"n": 0, "max_queued_jobs": 0, "max_started_jobs": 0, "running": 0, "pending": 0}
    lock = threading.Lock()
    stop = threading.Event()
    t0 = time.monotonic() + 0.5

    def sender(k: int) -> None:
        with requests.Session() as session:
            for i in range(k, N_EVENTS, N_CLIENTS):
                time.sleep(max(0.0, t0 + i * STORM_SECONDS / N_EVENTS - time.monotonic()))
                started = time.perf_counter()
                try:
                    r = post(backend, "/webhook", session, json=event, timeout=5)
                    elapsed = time.perf_counter() - started
                    with lock:
                        latencies.append(elapsed)
                        codes[r.status_code] += 1
                        if r.status_code == 200:
                            answers[r.json()["status"]] += 1
                except requests.RequestException as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")

    def annotator() -> None:
        rng = np.random.default_rng(0)
        chosen = []
        for j in range(len(CLASSES)):
            members = np.flatnonzero(project["truth"] == j)
            chosen += rng.choice(members, N_ANNOTATIONS // len(CLASSES), replace=False).tolist()
        rng.shuffle(chosen)
        with LabelStudioClient(project["ls"].url, project["ls"].pat) as ann_client:
            for n, i in enumerate(chosen):
                time.sleep(max(0.0, t0 + n * STORM_SECONDS / N_ANNOTATIONS - time.monotonic()))
                label = project["names"][project["truth"][i]]
                ann_client.create_annotation(project["ids"][i], choice_result(label))

    def poller() -> None:
        while not stop.is_set():
            s = status(backend, pid)["queue"]
            queued = sum(1 for j in queue.get_jobs() if j.args == (pid,))
            started = StartedJobRegistry(queue=queue).count
            polls["n"] += 1
            polls["running"] += bool(s["running"])
            polls["pending"] += bool(s["pending"])
            polls["max_queued_jobs"] = max(polls["max_queued_jobs"], queued)
            polls["max_started_jobs"] = max(polls["max_started_jobs"], started)
            stop.wait(0.1)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(N_CLIENTS)]
    ann = threading.Thread(target=annotator)
    poll = threading.Thread(target=poller, daemon=True)
    poll.start()
    for t in [*threads, ann]:
        t.start()
    for t in [*threads, ann]:
        t.join(timeout=120)
    storm_s = time.monotonic() - t0
    final = wait_for_cycle(
        backend, pid, after=cold["finished_at"], n_labeled=N_ANNOTATIONS, timeout=240
    )
    stop.set()
    poll.join(timeout=10)

    lat = np.array(latencies)
    finished = FinishedJobRegistry(queue=queue).count
    failed = FailedJobRegistry(queue=queue).count
    figures = {
        "events_sent": N_EVENTS,
        "events_acknowledged_200": codes[200],
        "storm_seconds": round(storm_s, 2),
        "clients": N_CLIENTS,
        "ack_p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1) if lat.size else None,
        "ack_p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1) if lat.size else None,
        "ack_max_ms": round(float(lat.max()) * 1000, 1) if lat.size else None,
        "answers": dict(answers),
        "status_polls": polls,
        "annotations_made_in_label_studio": N_ANNOTATIONS,
        "annotations_in_final_model": final["n_annotations"],
        "final_model_version": final["model_version"],
        "cycles_run_total": finished + failed,
        "cycles_failed": failed,
    }
    record_figures("webhook_storm", figures)
    assert not errors, errors[:5]
    assert codes == {200: N_EVENTS}, codes
    assert lat.max() < ACK_LIMIT_S, figures
    assert polls["n"] >= 20 and polls["max_queued_jobs"] <= 1 and polls["max_started_jobs"] <= 1
    assert answers["queued"] + answers["coalesced"] == N_EVENTS
    assert final["n_annotations"] == N_ANNOTATIONS and final["n_labeled"] == N_ANNOTATIONS
    assert client.get_project(pid)["model_version"] == final["model_version"]
    assert failed == 0


# --------------------------------------------------------------------------- hostile input
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_bomb_png(side: int = 100_000) -> bytes:
    """A PNG that claims side x side pixels (10 gigapixels) with a little zlib data."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (side + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)


def real_bomb_png() -> bytes:
    """A real decompression bomb: 7000 x 7000 (49 Mpx, over the 40 Mpx limit) in ~50 kB."""
    buf = io.BytesIO()
    Image.new("L", (7000, 7000)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def hostile_media(ls_url: str, canary_port: int, good_png: bytes) -> dict[str, object]:
    c = canary_port
    return {
        "header bomb": data_url(header_bomb_png()),
        "real bomb": data_url(real_bomb_png()),
        "truncated png": data_url(good_png[: len(good_png) // 2]),
        "non-image": data_url(b"hello, not an image"),
        "html": "data:text/html,<script>alert(1)</script>",
        "svg": data_url(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        "bad base64": "data:image/png;base64,!!!!",
        "metadata service": "http://169.254.169.254/latest/meta-data/iam/",
        "private 10.x": "http://10.0.0.1/x.png",
        "localhost other port": f"http://localhost:{c}/x.png",
        "loopback other port": f"http://127.0.0.1:{c}/x.png",
        "loopback LS-like path": f"http://127.0.0.1:{c}/data/upload/1/x.png",
        "ipv6 loopback": f"http://[::1]:{c}/x.png",
        "decimal ip": f"http://2130706433:{c}/x.png",
        "hex ip": f"http://0x7f000001:{c}/x.png",
        "credentials in url": f"http://user:pw@127.0.0.1:{c}/x.png",
        "scheme-relative": f"//127.0.0.1:{c}/x.png",
        "file url": "file:///etc/passwd",
        "ftp url": f"ftp://127.0.0.1:{c}/x.png",
        "gopher url": f"gopher://127.0.0.1:{c}/_x",
        "traversal local-files": "/data/local-files/?d=../../etc/passwd",
        "traversal local-files abs": f"{ls_url}/data/local-files/?d=../../etc/passwd",
        "traversal encoded": "/data/local-files/?d=%2e%2e/%2e%2e/etc/passwd",
        "traversal upload": "/data/upload/../../../etc/passwd",
        "not a media path": "/api/projects/",
        "empty": "",
        "missing": None,
        "number": 5,
        "list": ["a"],
        "huge string": "x" * 200_000,
    }


def test_hostile_corpus_never_500_and_never_fetches(live_backend, project, label_studio, canary):
    backend, pid = live_backend, project["id"]
    label_config = project["client"].get_project(pid)["label_config"]
    real = project["client"].get_task(project["ids"][0])
    good_png = base64.b64decode(real["data"]["image"].split(",", 1)[1])
    tried = Counter()
    bodies: list[str] = []

    def check(r: requests.Response, what: str, ok=(400, 404, 405, 413, 414, 415)) -> None:
        tried[what] += 1
        bodies.append(r.text)
        assert r.status_code < 500, (what, r.status_code, r.text[:300])
        assert r.status_code in (200, *ok), (what, r.status_code, r.text[:300])
        if r.status_code == 414:  # gunicorn's own answer to a request line over 4094 bytes
            assert "URI Too Long" in r.text
        elif r.status_code >= 400:
            assert r.json()["error"], what

    # 1. Hostile media in /predict: one empty result per hostile task, a real one predicted.
    media = hostile_media(label_studio.url, canary.port, good_png)
    tasks = [real]
    for n, (_, value) in enumerate(media.items()):
        tasks.append({"id": 900_000 + n, "project": pid, "data": {"image": value}})
    tasks += [
        {"id": 900_500, "data": {}},
        {"id": 900_501},
        {"id": 900_502, "data": "not a dict"},
        {"id": 900_503, "data": None},
        {"id": 900_504, "data": {"image": {"nested": True}}},
    ]
    body = {"tasks": tasks, "project": f"{pid}.0", "label_config": label_config, "params": {}}
    r = post(backend, "/predict", json=body, timeout=120)
    check(r, "predict: hostile media")
    assert r.status_code == 200, r.text[:300]
    results = r.json()["results"]
    assert len(results) == len(tasks)
    assert results[0]["result"], "the real task should get a pre-label"
    empty = [i for i, res in enumerate(results[1:], 1) if res["result"] == []]
    assert empty == list(range(1, len(tasks))), [
        list(media)[i - 1] for i in range(1, len(media) + 1) if i not in empty
    ]
    tried["hostile media values"] = len(tasks) - 1

    # 2. Malformed bodies for every route.
    cfg_tasks = [{"id": project["ids"][1], "data": real["data"]}]
    deep = "[" * 50_000 + "]" * 50_000
    corpus = {
        "/webhook": [
            b"{not json",
            b"",
            b"[]",
            b'"a string"',
            b"null",
            deep.encode(),
            json.dumps({"project": {"id": pid}}).encode(),
            json.dumps({"action": 12, "project": pid}).encode(),
            json.dumps({"action": None}).encode(),
            json.dumps({"action": ["ANNOTATION_CREATED"]}).encode(),
            json.dumps({"action": "ANNOTATION_CREATED", "project": "abc"}).encode(),
            json.dumps({"action": "ANNOTATION_CREATED", "project": {"id": -5}}).encode(),
            json.dumps({"action": "ANNOTATION_CREATED", "project": [pid]}).encode(),
            json.dumps({"action": "X" * 100_000, "project": pid}).encode(),
            json.dumps({"action": "NOT_AN_EVENT", "project": pid}).encode(),
            b"\xff\xfe\x00garbage",
        ],
        "/setup": [
            b"{not json",
            b"",
            deep.encode(),
            json.dumps({"schema": 12}).encode(),
            json.dumps({"schema": ["<View/>"]}).encode(),
            json.dumps({"schema": "<View><Image name='i' value='$i'/></View>"}).encode(),
            json.dumps({"schema": "not xml <<<"}).encode(),
            json.dumps({"schema": "<View>" + "<View>" * 5000 + "</View>" * 5001}).encode(),
            json.dumps(
                {
                    "schema": "<!DOCTYPE v [<!ENTITY a 'aaaaaaaaaa'>"
                    + "".join(
                        f"<!ENTITY {chr(98 + k)} '{('&' + chr(97 + k) + ';') * 10}'>"
                        for k in range(8)
                    )
                    + "]><View>&i;</View>"
                }
            ).encode(),
            json.dumps({"schema": label_config, "extra_params": 5}).encode(),
            json.dumps({"schema": label_config.replace('"single"', '"multiple"')}).encode(),
            json.dumps({"project": {"id": "x"}, "schema": None}).encode(),
        ],
        "/predict": [
            b"{not json",
            b"",
            deep.encode(),
            json.dumps({"tasks": "x", "project": f"{pid}.0", "label_config": label_config}),
            json.dumps({"tasks": [1, 2], "project": f"{pid}.0", "label_config": label_config}),
            json.dumps({"tasks": cfg_tasks, "label_config": label_config}),
            json.dumps({"tasks": cfg_tasks, "project": f"{pid}.0"}),
            json.dumps({"tasks": cfg_tasks, "project": f"{pid}.0", "label_config": 7}),
            json.dumps({"tasks": cfg_tasks, "project": f"{pid}.0", "label_config": "<View>"}),
            json.dumps(
                {
                    "tasks": cfg_tasks,
                    "project": f"{pid}.0",
                    "label_config": "<View><Text name='t' value='$t'/></View>",
                }
            ),
            json.dumps(
                {
                    "tasks": cfg_tasks,
                    "project": f"{pid}.0",
                    "label_config": label_config.replace("Trouser", "Shirt"),
                }
            ),
            json.dumps(
                {
                    "tasks": [{"id": "abc", "data": real["data"]}],
                    "project": f"{pid}.0",
                    "label_config": label_config,
                }
            ),
            json.dumps(
                {
                    "tasks": [{"id": None, "data": real["data"]}],
                    "project": f"{pid}.0",
                    "label_config": label_config,
                }
            ),
            json.dumps(
                {
                    "tasks": [{"id": 1.5, "data": real["data"]}],
                    "project": f"{pid}.0",
                    "label_config": label_config,
                    "params": "x",
                }
            ),
            json.dumps({"tasks": [{}] * 10_001, "project": f"{pid}.0", "label_config": "x"}),
        ],
    }
    for route, payloads in corpus.items():
        for payload in payloads:
            r = post(backend, route, data=payload, headers={"Content-Type": "application/json"})
            check(r, f"{route} malformed")
    for path in (
        "/versions?project=abc",
        "/versions?project=-1",
        "/versions?project=" + "9" * 40,
        "/status/abc",
        "/status/-1",
        "/status/" + "9" * 40,
        "/status/0",
        "/metrics?x=" + "y" * 5000,
        "/nope",
        "/../../etc/passwd",
        "/webhook",
    ):
        r = requests.get(f"{backend['url']}{path}", auth=backend["auth"], timeout=30)
        check(r, "GET odd paths")
    for path in ("/health", "/metrics", "/versions", f"/status/{pid}"):
        r = post(backend, path, data=b"{}")
        check(r, "wrong method")

    # 3. A body over MAX_CONTENT_LENGTH is refused from its header, unread: 413.
    host, port = backend["url"].removeprefix("http://").split(":")
    for route in ("/predict", "/webhook", "/setup"):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.putrequest("POST", route)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        token = base64.b64encode(":".join(backend["auth"]).encode()).decode()
        conn.putheader("Authorization", f"Basic {token}")
        conn.endheaders()
        conn.send(b"{" + b" " * 65536)
        resp = conn.getresponse()
        tried["huge body"] += 1
        assert resp.status == 413, (route, resp.status)
        conn.close()

    record_figures(
        "hostile_input_http",
        {
            "requests": sum(tried.values()) - tried["hostile media values"],
            "hostile_media_values": tried["hostile media values"],
            "by_kind": dict(tried),
            "canary_requests": len(canary.hits),
        },
    )
    assert canary.hits == [], canary.hits
    live_backend["bodies"] = bodies
    assert requests.get(f"{backend['url']}/health", auth=backend["auth"], timeout=5).ok


# ------------------------------------------------------------------------ auth and secrets
def test_auth_on_every_route_of_the_real_server(live_backend, project):
    url, pid = live_backend["url"], project["id"]
    routes = [
        ("GET", "/"),
        ("GET", "/health"),
        ("POST", "/setup"),
        ("POST", "/predict"),
        ("POST", "/webhook"),
        ("GET", "/versions"),
        ("GET", "/metrics"),
        ("GET", f"/status/{pid}"),
        ("GET", "/status"),
        ("POST", "/job_status"),
        ("GET", "/nope"),
    ]
    user, password = live_backend["auth"]
    for creds in (None, (user, "wrong"), ("other", password), (user, password + "x")):
        for method, path in routes:
            r = requests.request(
                method,
                f"{url}{path}",
                json={"action": "START_TRAINING", "project": pid},
                auth=creds,
                timeout=10,
            )
            assert r.status_code == 401, (method, path, creds and creds[0], r.status_code)
            assert r.headers.get("WWW-Authenticate", "").startswith("Basic")
            assert password not in r.text


def test_secrets_never_appear(live_backend, project):
    backend, pid = live_backend, project["id"]
    # Provoke error paths that could echo configuration: a cycle for an unknown project.
    post(backend, "/webhook", json={"action": "START_TRAINING", "project": 999_999})
    wait_for(
        lambda: status(backend, 999_999)["last_report"],
        120,
        what="the failed cycle for an unknown project",
    )

    def get(path):
        return requests.get(f"{backend['url']}{path}", auth=backend["auth"], timeout=5).text

    texts = {
        "status": json.dumps(status(backend, pid)),
        "status unknown project": json.dumps(status(backend, 999_999)),
        "metrics": get("/metrics"),
        "versions": get("/versions"),
        "error bodies": "\n".join(backend.get("bodies", [])),
    }
    for name in ("serve.log", "worker.log"):
        texts[name] = (Path(backend["tmp"]) / name).read_text(errors="replace")
    assert "Traceback" not in texts["serve.log"], texts["serve.log"][-3000:]
    user, password = backend["auth"]
    forms = dict(backend["secrets"])
    forms["basic auth header"] = base64.b64encode(f"{user}:{password}".encode()).decode()
    for where, text in texts.items():
        for what, secret in forms.items():
            assert secret and secret not in text, f"{what} appears in {where}"
    record_figures(
        "secrets",
        {"places_checked": sorted(texts), "secrets_checked": sorted(forms), "leaks": 0},
    )
