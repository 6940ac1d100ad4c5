"""LabelStudioClient against a real Label Studio 1.23.2 with real Fashion-MNIST images."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import numpy as np
import pytest

from ls_backend import localstack
from ls_backend.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist
from ls_backend.demo_project import choice_result, png_data_url
from ls_backend.label_studio import (
    STATUS_BEGIN,
    STATUS_END,
    LabelStudioClient,
    LabelStudioError,
    replace_status_block,
    token_kind,
)

pytestmark = pytest.mark.integration

N_IMAGES = 40
LABEL_CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
    + "".join(f'<Choice value="{c}"/>' for c in FASHION_MNIST_CLASSES)
    + "</Choices></View>"
)


@pytest.fixture(scope="module")
def fashion_tasks() -> list[dict]:
    ds = load_fashion_mnist()
    return [
        {"data": {"image": png_data_url(ds.images[i]), "fmnist_index": i}} for i in range(N_IMAGES)
    ]


def new_project(client: LabelStudioClient, fashion_tasks: list[dict], title: str):
    project = client.create_project(title, LABEL_CONFIG)
    ids = client.import_tasks(project["id"], fashion_tasks)
    return project["id"], ids


def test_both_token_kinds_authenticate(label_studio):
    for key, kind in ((label_studio.pat, "pat"), (label_studio.legacy_token, "legacy")):
        with LabelStudioClient(label_studio.url, key) as client:
            assert client.token_kind == kind
            assert client.whoami()["email"] == label_studio.username


def test_bad_token_error_is_clear_and_hides_the_token(label_studio):
    bad = "0123456789abcdef0123456789abcdef01234567"
    with LabelStudioClient(label_studio.url, bad, retries=0) as client:
        with pytest.raises(LabelStudioError) as err:
            client.get_project(1)
    assert err.value.status_code == 401
    assert "/api/projects/1" in str(err.value)
    assert bad not in str(err.value)

    head, payload, signature = label_studio.pat.split(".")
    forged = f"{head}.{payload}.{signature[::-1]}"
    with LabelStudioClient(label_studio.url, forged, retries=0) as client:
        assert client.token_kind == "pat"
        with pytest.raises(LabelStudioError) as err:
            client.get_project(1)
    assert err.value.status_code == 401 and "personal access token" in str(err.value)
    assert forged not in str(err.value) and signature not in str(err.value)


def test_token_kind():
    assert token_kind("0123456789abcdef0123456789abcdef01234567") == "legacy"
    assert token_kind("a.b.c") == "unknown"
    assert token_kind("some-other-token") == "unknown"


def test_import_and_iter_tasks_paged(ls_client, fashion_tasks):
    pid, ids = new_project(ls_client, fashion_tasks, "paging")
    assert len(ids) == N_IMAGES
    ls_client.create_annotation(ids[0], choice_result(FASHION_MNIST_CLASSES[0]), lead_time=1.5)
    ls_client.create_annotation(ids[1], [], was_cancelled=True)

    tasks = list(ls_client.iter_tasks(pid, page_size=7))
    assert [t["id"] for t in tasks] == ids
    assert all(t["data"]["image"].startswith("data:image/png;base64,") for t in tasks)
    assert [t["data"]["fmnist_index"] for t in tasks] == list(range(N_IMAGES))
    by_id = {t["id"]: t for t in tasks}
    done = by_id[ids[0]]["annotations"]
    assert len(done) == 1 and done[0]["was_cancelled"] is False and done[0]["lead_time"] == 1.5
    assert done[0]["result"][0]["value"]["choices"] == [FASHION_MNIST_CLASSES[0]]
    cancelled = by_id[ids[1]]["annotations"]
    assert len(cancelled) == 1 and cancelled[0]["was_cancelled"] is True
    assert by_id[ids[2]]["annotations"] == []

    everything = list(ls_client.iter_tasks(pid, page_size=500, fields=None))
    assert [t["id"] for t in everything] == ids and "predictions" in everything[0]


def test_predictions_drive_next_task(ls_client, fashion_tasks):
    pid, ids = new_project(ls_client, fashion_tasks, "priority")
    ls_client.create_annotation(ids[5], choice_result(FASHION_MNIST_CLASSES[1]))
    rng = np.random.default_rng(0)
    priority = rng.random(len(ids))
    priority[5] = 1.0  # annotated: must not be served even with the top priority
    preds = [
        {
            "task": tid,
            "model_version": "smartsize-1",
            "score": float(1.0 - p),
            "result": choice_result(FASHION_MNIST_CLASSES[i % 10]),
        }
        for i, (tid, p) in enumerate(zip(ids, priority, strict=True))
    ]
    assert ls_client.import_predictions(pid, preds, chunk_size=15) == len(ids)
    assert ls_client.list_model_versions(pid) == {"smartsize-1": len(ids)}
    assert ls_client.get_project(pid)["model_version"] in (None, "")  # import does not set it

    project = ls_client.set_model_version(pid, "smartsize-1")
    assert project["model_version"] == "smartsize-1"
    assert project["sampling"] == "Uncertainty sampling"
    unlabeled = [i for i in range(len(ids)) if i != 5]
    best = ids[max(unlabeled, key=lambda i: priority[i])]
    nxt = ls_client.next_task(pid)
    assert nxt is not None and nxt["id"] == best


def test_invalid_predictions_raise(ls_client, fashion_tasks):
    pid, ids = new_project(ls_client, fashion_tasks[:3], "invalid predictions")
    bad = [
        {"task": ids[0], "model_version": "x", "score": 0.5, "result": choice_result("NoSuchLabel")}
    ]
    bad[0]["result"][0]["from_name"] = "nope"
    with pytest.raises(LabelStudioError, match="created"):
        ls_client.import_predictions(pid, bad)


def test_prune_model_version(ls_client, fashion_tasks):
    pid, ids = new_project(ls_client, fashion_tasks[:10], "prune")
    for version in ("v-old", "v-new"):
        preds = [
            {"task": t, "model_version": version, "score": 0.5, "result": choice_result("Bag")}
            for t in ids
        ]
        ls_client.import_predictions(pid, preds)
    ls_client.set_model_version(pid, "v-new")
    assert set(ls_client.list_model_versions(pid)) == {"v-old", "v-new"}
    with pytest.raises(LabelStudioError, match="current model_version"):
        ls_client.delete_predictions(pid, "v-new")
    assert ls_client.delete_predictions(pid, "v-old") == len(ids)
    assert ls_client.list_model_versions(pid) == {"v-new": len(ids)}
    assert ls_client.get_project(pid)["model_version"] == "v-new"


def test_update_task_data_keeps_other_keys(ls_client, fashion_tasks):
    _, ids = new_project(ls_client, fashion_tasks[:2], "task data")
    tid = ids[0]
    image = ls_client.get_task(tid)["data"]["image"]
    data = ls_client.update_task_data(tid, {"needs_sme": 1, "sme_reason": "ambiguous"})
    assert data["needs_sme"] == 1 and data["image"] == image and data["fmnist_index"] == 0
    data = ls_client.update_task_data(
        tid, {"label_issue": 1}, remove_keys=["needs_sme", "sme_reason"]
    )
    stored = ls_client.get_task(tid)["data"]
    assert stored == data
    assert stored == {"image": image, "fmnist_index": 0, "label_issue": 1}
    assert ls_client.get_task(ids[1])["data"]["fmnist_index"] == 1


def test_ensure_view_is_idempotent(ls_client, fashion_tasks):
    pid, _ = new_project(ls_client, fashion_tasks[:2], "views")
    filters = {
        "conjunction": "and",
        "items": [
            {
                "filter": "filter:tasks:data.needs_sme",
                "operator": "equal",
                "type": "Number",
                "value": 1,
            }
        ],
    }
    vid = ls_client.ensure_view(pid, "SME escalation", filters, ["-tasks:data.priority"])
    assert ls_client.ensure_view(pid, "SME escalation", filters, ["-tasks:data.priority"]) == vid
    filters2 = {**filters, "items": [{**filters["items"][0], "value": 0}]}
    assert ls_client.ensure_view(pid, "SME escalation", filters2, ["tasks:id"]) == vid
    views = [v for v in ls_client.list_views(pid) if v["data"].get("title") == "SME escalation"]
    assert len(views) == 1
    assert views[0]["data"]["filters"] == filters2
    assert views[0]["data"]["ordering"] == ["tasks:id"]
    other = ls_client.ensure_view(pid, "Label audit", None, [])
    assert other != vid


def test_status_block_preserves_user_text(ls_client):
    project = ls_client.create_project(
        "status", LABEL_CONFIG, description="Team notes: label shoes carefully."
    )
    pid = project["id"]
    assert ls_client.set_status_block(pid, "CONTINUE: gain 0.012 per label")
    assert ls_client.set_status_block(pid, "STOP: gain 0.0001 per label\ntau 0.001")
    assert not ls_client.set_status_block(pid, "STOP: gain 0.0001 per label\ntau 0.001")
    desc = ls_client.get_project(pid)["description"]
    assert desc.startswith("Team notes: label shoes carefully.")
    assert desc.count(STATUS_BEGIN) == 1 and desc.count(STATUS_END) == 1
    assert "CONTINUE" not in desc and "STOP: gain 0.0001 per label\ntau 0.001" in desc
    assert ls_client.set_status_block(pid, None)
    assert ls_client.get_project(pid)["description"].strip() == "Team notes: label shoes carefully."


def test_replace_status_block_text():
    assert replace_status_block("", "A") == f"{STATUS_BEGIN}\nA\n{STATUS_END}"
    assert replace_status_block(None, "\nA\n  B\n") == f"{STATUS_BEGIN}\nA\n  B\n{STATUS_END}"
    once = replace_status_block("mine\n\nmore mine", "A")
    twice = replace_status_block(once, "B")
    assert twice == f"mine\n\nmore mine\n\n{STATUS_BEGIN}\nB\n{STATUS_END}"
    assert replace_status_block(twice + "\n\n" + twice, "C").count(STATUS_BEGIN) == 1
    middle = f"top\n\n{STATUS_BEGIN}\nold\n{STATUS_END}\n\nbottom"
    assert (
        replace_status_block(middle, "new") == f"top\n\n{STATUS_BEGIN}\nnew\n{STATUS_END}\n\nbottom"
    )
    assert replace_status_block(middle, "") == "top\n\nbottom"
    assert replace_status_block("just mine", None) == "just mine"


def test_unreachable_url_fails_clearly_and_fast(label_studio):
    port = localstack.free_port()
    t0 = time.monotonic()
    with LabelStudioClient(f"http://127.0.0.1:{port}", label_studio.legacy_token, retries=2) as c:
        with pytest.raises(LabelStudioError) as err:
            c.get_project(1)
    elapsed = time.monotonic() - t0
    msg = str(err.value)
    assert "cannot connect" in msg and f"127.0.0.1:{port}" in msg and "/api/projects/1" in msg
    assert label_studio.legacy_token not in msg
    assert elapsed < 5, elapsed


class _StubBackend(BaseHTTPRequestHandler):
    """The smallest ML backend Label Studio accepts; records what it receives."""

    received: ClassVar[list[tuple[str, dict, dict]]] = []

    def _answer(self, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self._answer({"status": "UP", "model_class": "Stub"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.received.append((self.path, dict(self.headers), body))
        if self.path.startswith("/setup"):
            self._answer({"model_version": "stub-0"})
        elif self.path.startswith("/predict"):
            self._answer({"results": [{"result": [], "score": 0.0}] * len(body["tasks"])})
        else:
            self._answer({"status": "ok"})

    def log_message(self, *args: object) -> None:
        pass


def test_connect_ml_backend_with_basic_auth_and_train(ls_client, fashion_tasks):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubBackend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        pid, ids = new_project(ls_client, fashion_tasks[:3], "ml backend")
        backend = ls_client.connect_ml_backend(pid, url, "smartsize", basic_auth=("u", "p w"))
        assert backend["id"] and backend["webhook_id"]
        expected = "Basic " + base64.b64encode(b"u:p w").decode()
        hooks = [h for h in ls_client.list_webhooks(pid) if h["url"] == f"{url}/webhook"]
        assert len(hooks) == 1 and hooks[0]["headers"]["Authorization"] == expected
        assert [b["id"] for b in ls_client.list_ml_backends(pid)] == [backend["id"]]

        _StubBackend.received.clear()
        ls_client.create_annotation(ids[0], choice_result("Bag"))
        hook_calls = [
            r for r in _StubBackend.received if r[2].get("action") == "ANNOTATION_CREATED"
        ]
        assert hook_calls and hook_calls[0][1].get("Authorization") == expected

        _StubBackend.received.clear()
        ls_client.train(backend["id"])
        actions = [r[2].get("action") for r in _StubBackend.received if r[0] == "/webhook"]
        assert "START_TRAINING" in actions
    finally:
        server.shutdown()
        server.server_close()
