"""The HTTP protocol against request bodies captured from a real Label Studio 1.23.2.

The cycle runner here is a recorder (the real cycle is exercised against a real Label Studio in
tests/integration); the queue, app, auth and parsing are the real code."""

import base64
import json
import threading
import time

import pytest

from ls_backend.app import create_app, parse_project_id
from ls_backend.config import Settings
from ls_backend.queue import InProcessQueue


class Recorder:
    def __init__(self, delay=0.0):
        self.calls = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, project_id, force):
        with self.lock:
            self.calls.append((project_id, force))
        time.sleep(self.delay)


def body(ls_fixtures, name):
    return json.loads((ls_fixtures / f"{name}.json").read_text())["json"]


@pytest.fixture
def make_client(tmp_path):
    made = []

    def make(delay=0.0, **settings):
        recorder = Recorder(delay)
        queue = InProcessQueue(recorder)
        app = create_app(Settings(model_dir=tmp_path, **settings), queue=queue)
        made.append(queue)
        return app.test_client(), recorder, queue

    yield make
    for q in made:
        q.close()


def test_health_and_setup(make_client, ls_fixtures):
    client, _, _ = make_client()
    assert client.get("/health").get_json()["status"] == "UP"
    setup = body(ls_fixtures, "ml_setup")
    for extra in (None, "some string", {"a": 1}):
        r = client.post("/setup", json={**setup, "extra_params": extra})
        assert r.status_code == 200 and isinstance(r.get_json()["model_version"], str)
    r = client.post("/setup", json={**setup, "extra_params": 5})
    assert r.status_code == 400 and "extra_params" in r.get_json()["error"]
    r = client.post("/setup", json={**setup, "schema": "<View><Image name='i' value='$i'/></View>"})
    assert r.status_code == 400 and "unsupported label config" in r.get_json()["error"]


def test_webhook_actions(make_client, ls_fixtures):
    client, recorder, queue = make_client()
    r = client.post("/webhook", json=body(ls_fixtures, "ml_webhook_PROJECT_UPDATED"))
    assert r.get_json()["status"] == "ignored" and "job" not in r.get_json()
    r = client.post("/webhook", json=body(ls_fixtures, "ml_webhook_START_TRAINING"))
    assert r.get_json()["status"] in ("queued", "coalesced")
    for name in (
        "ml_webhook_ANNOTATION_CREATED",
        "ml_webhook_ANNOTATIONS_DELETED",
        "ml_webhook_TASKS_CREATED",
    ):
        assert client.post("/webhook", json=body(ls_fixtures, name)).status_code == 200
    assert queue.wait_idle(10)
    project = body(ls_fixtures, "ml_webhook_START_TRAINING")["project"]["id"]
    assert recorder.calls and all(p == project for p, _ in recorder.calls)
    assert recorder.calls[0] == (project, True)  # START_TRAINING forces a cycle


def test_burst_coalesces_to_one_running_and_one_pending(make_client, ls_fixtures):
    client, recorder, queue = make_client(delay=0.3)
    event = body(ls_fixtures, "ml_webhook_ANNOTATION_CREATED")
    answers = [client.post("/webhook", json=event).get_json()["status"] for _ in range(200)]
    assert answers[0] == "queued"
    assert answers.count("queued") <= 2 and answers.count("coalesced") >= 198
    assert queue.wait_idle(10)
    assert len(recorder.calls) <= 2


def test_predict_one_result_per_task_in_cold_start(make_client, ls_fixtures):
    client, _, _ = make_client()
    req = body(ls_fixtures, "ml_predict")
    r = client.post("/predict", json=req)
    assert r.status_code == 200
    results = r.get_json()["results"]
    assert len(results) == len(req["tasks"])
    assert all(res["result"] == [] and isinstance(res["model_version"], str) for res in results)


@pytest.mark.parametrize(
    "route, payload",
    [
        ("/predict", b"{not json"),
        ("/predict", b"[]"),
        ("/predict", json.dumps({"tasks": "x", "project": "1.2", "label_config": "<View/>"})),
        ("/predict", json.dumps({"tasks": [], "label_config": "<View/>"})),
        ("/predict", json.dumps({"tasks": [{}], "project": "1.2", "label_config": 7})),
        ("/predict", json.dumps({"tasks": [{}], "project": "1.2", "label_config": "<View>"})),
        ("/webhook", b""),
        ("/webhook", json.dumps({"project": {"id": 1}})),
        ("/webhook", json.dumps({"action": 12})),
        ("/setup", json.dumps({"schema": 12})),
        ("/setup", b"\xff\xfe"),
    ],
)
def test_malformed_bodies_get_a_clear_400(make_client, route, payload):
    client, recorder, _ = make_client()
    r = client.post(route, data=payload, content_type="application/json")
    assert r.status_code == 400, r.data
    assert r.get_json()["error"]
    assert recorder.calls == []


def test_unknown_route_and_method_are_json(make_client):
    client, _, _ = make_client()
    assert client.get("/nope").status_code == 404
    assert client.get("/webhook").status_code == 405


def test_versions_metrics_status(make_client, ls_fixtures):
    client, _, _ = make_client()
    assert client.get("/versions").get_json() == {"versions": []}
    client.post("/webhook", json=body(ls_fixtures, "ml_webhook_PROJECT_UPDATED"))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'smartsize_webhook_events_total{action="PROJECT_UPDATED",result="ignored"} 1' in text
    status = client.get("/status/3").get_json()
    assert status["project_id"] == 3 and status["queue"]["backend"] == "in-process"


def test_basic_auth_on_every_route(make_client, ls_fixtures):
    client, recorder, _ = make_client(basic_auth_user="ls", basic_auth_pass="s3cret-pass")
    routes = [
        ("get", "/health"),
        ("post", "/setup"),
        ("post", "/predict"),
        ("post", "/webhook"),
        ("get", "/versions"),
        ("get", "/metrics"),
        ("get", "/status/3"),
        ("get", "/"),
    ]
    for method, route in routes:
        r = getattr(client, method)(route, json={"action": "START_TRAINING", "project": 3})
        assert r.status_code == 401, route
        assert "s3cret" not in r.get_data(as_text=True)
    wrong = {"Authorization": "Basic " + base64.b64encode(b"ls:nope").decode()}
    assert client.get("/health", headers=wrong).status_code == 401
    good = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret-pass").decode()}
    assert client.get("/health", headers=good).status_code == 200
    r = client.post("/webhook", json=body(ls_fixtures, "ml_webhook_START_TRAINING"), headers=good)
    assert r.status_code == 200
    metrics = client.get("/metrics", headers=good).get_data(as_text=True)
    assert "s3cret" not in metrics and "smartsize_auth_failures_total" in metrics
    assert recorder.calls or r.get_json()["status"] in ("queued", "coalesced")


def test_parse_project_id():
    assert parse_project_id("3.1796412365") == 3
    assert parse_project_id({"id": 7}) == 7
    assert parse_project_id(4) == 4
    for bad in (None, "", "x.1", -1, True, {"id": "a"}, [1]):
        assert parse_project_id(bad) is None
