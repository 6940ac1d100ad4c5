"""The HTTP face of smartsize: Label Studio's ML-backend protocol plus status and metrics.

This module only parses, authenticates, enqueues and answers. Heavy work happens in the
queue's worker (``ls_backend.cycle``); ``/predict`` answers from cached embeddings and the
current head.
"""

from __future__ import annotations

import base64
import hmac
import logging
import threading
import time
from collections import Counter
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ls_backend import __version__
from ls_backend.config import Settings
from ls_backend.media import MediaError
from ls_backend.model import SmartsizeModel, check_label_config
from ls_backend.state import load_state

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024  # /predict may carry data: URLs for every selected task
MAX_PREDICT_TASKS = 10_000


class BadRequest(ValueError):
    """A request body we cannot use; answered with 400 and this message."""


class Metrics:
    """Counters for /metrics (Prometheus text format), thread-safe, no extra dependency."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counters: Counter = Counter()
        self.predict_seconds = 0.0

    def inc(self, name: str, labels: tuple = (), amount: float = 1) -> None:
        with self._lock:
            self.counters[(name, labels)] += amount

    def render(self, extra: dict[str, float]) -> str:
        lines = []
        with self._lock:
            items = sorted(self.counters.items())
        seen = set()
        for (name, labels), value in items:
            if name not in seen:
                lines.append(f"# TYPE {name} counter")
                seen.add(name)
            lab = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")
        for name, value in extra.items():
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {value:g}")
        return "\n".join(lines) + "\n"


def _json_body() -> dict:
    if not request.data:
        raise BadRequest("empty body; send a JSON object")
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:  # silent=True only covers ValueError; "[[[[..." nests too deep
        raise BadRequest("the JSON body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def parse_project_id(value: Any) -> int | None:
    """Label Studio sends the project as ``"3.1796412365"`` (/setup, /predict), ``3`` or
    ``{"id": 3, ...}`` (webhooks)."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str):
        head = value.split(".", 1)[0].strip()
        if head.isdigit() and int(head) > 0:
            return int(head)
    return None


def create_app(settings: Settings | None = None, queue=None) -> Flask:
    """App factory. Without ``queue``, one is made from the settings: rq on redis when
    ``REDIS_URL`` is set, else an in-process worker thread."""
    settings = settings or Settings.from_env()
    if queue is None:
        from ls_backend.cycle import run_cycle
        from ls_backend.queue import make_queue

        queue = make_queue(
            settings.redis_url, lambda pid, force: run_cycle(pid, settings, force=force)
        )
    model = SmartsizeModel(settings, queue)
    metrics = Metrics()
    app = Flask("smartsize")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["smartsize"] = {
        "settings": settings,
        "queue": queue,
        "model": model,
        "metrics": metrics,
    }
    expected = None
    if settings.auth_enabled:
        pair = f"{settings.basic_auth_user}:{settings.basic_auth_pass}".encode()
        expected = b"Basic " + base64.b64encode(pair)

    @app.before_request
    def _auth():
        if expected is None:
            return None
        given = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return None
        metrics.inc("smartsize_auth_failures_total")
        return Response(
            '{"error": "authentication required"}\n',
            401,
            {"WWW-Authenticate": 'Basic realm="smartsize"'},
            mimetype="application/json",
        )

    @app.errorhandler(BadRequest)
    def _bad_request(exc):
        metrics.inc("smartsize_bad_requests_total", (("route", request.path),))
        return jsonify(error=str(exc)), 400

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return jsonify(error=exc.description or exc.name), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc):
        log.exception("unexpected error on %s", request.path)
        metrics.inc("smartsize_internal_errors_total", (("route", request.path),))
        return jsonify(error="internal error; see the smartsize log"), 500

    @app.get("/health")
    @app.get("/")
    def health():
        return jsonify(status="UP", model_class="SmartsizeModel", version=__version__)

    @app.post("/setup")
    def setup():
        body = _json_body()
        schema = body.get("schema")
        if schema is not None and not isinstance(schema, str):
            raise BadRequest("'schema' must be the label config as a string")
        extra = body.get("extra_params")
        if extra is not None and not isinstance(extra, (str, dict)):
            raise BadRequest("'extra_params' must be null, a string or an object")
        if schema:
            problem = check_label_config(schema)
            if problem:
                raise BadRequest(f"unsupported label config: {problem}")
        return jsonify(model_version=model.current_version(parse_project_id(body.get("project"))))

    @app.post("/predict")
    def predict():
        started = time.perf_counter()
        body = _json_body()
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BadRequest("'tasks' must be a list of task objects")
        if len(tasks) > MAX_PREDICT_TASKS:
            raise BadRequest(f"at most {MAX_PREDICT_TASKS} tasks per request")
        project_id = parse_project_id(body.get("project"))
        if project_id is None and tasks:
            project_id = parse_project_id(tasks[0].get("project"))
        if project_id is None:
            raise BadRequest("'project' is missing (expected '<id>.<timestamp>')")
        label_config = body.get("label_config")
        if not isinstance(label_config, str) or not label_config.strip():
            raise BadRequest("'label_config' must be the project's label config string")
        problem = check_label_config(label_config)
        if problem:
            raise BadRequest(f"unsupported label config: {problem}")
        try:
            params = body.get("params") if isinstance(body.get("params"), dict) else {}
            results = model.predict(
                tasks, params.get("context"), project_id=project_id, label_config=label_config
            )
        except MediaError as exc:  # per-task errors are handled inside; this is a safety net
            raise BadRequest(str(exc)) from None
        metrics.inc("smartsize_predict_tasks_total", amount=len(tasks))
        metrics.inc("smartsize_predict_seconds_total", amount=time.perf_counter() - started)
        return jsonify(results=results, model_version=model.current_version(project_id))

    @app.post("/webhook")
    def webhook():
        body = _json_body()
        action = body.get("action")
        if not isinstance(action, str) or not action:
            raise BadRequest("'action' is missing")
        project_id = parse_project_id(body.get("project"))
        answer = model.fit(action, body, project_id=project_id)
        metrics.inc("smartsize_webhook_events_total", (("action", action), ("result", answer)))
        return jsonify(status=answer, action=action, project=project_id)

    @app.get("/versions")
    def versions():
        project_id = parse_project_id(request.args.get("project"))
        found: list[str] = []
        root = settings.model_dir / "projects"
        if project_id:
            ids = [project_id]
        elif root.is_dir():
            ids = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
        else:
            ids = []
        for pid in ids:
            found.extend(load_state(settings.model_dir, pid).get("versions", []))
        return jsonify(versions=sorted(set(found)))

    @app.get("/metrics")
    def metrics_route():
        extra = {}
        for attr in ("completed", "failed"):
            if hasattr(queue, attr):
                extra[f"smartsize_queue_cycles_{attr}"] = getattr(queue, attr)
        return Response(metrics.render(extra), mimetype="text/plain; version=0.0.4")

    @app.get("/status")
    def status_page():
        from ls_backend.status_page import render_status_page

        html = render_status_page(settings.model_dir, queue, settings.label_studio_url)
        return Response(html, mimetype="text/html")

    @app.get("/status/<int:project_id>")
    def status(project_id: int):
        state = load_state(settings.model_dir, project_id)
        return jsonify(
            project_id=project_id,
            current_version=state.get("current_version"),
            queue=queue.state(project_id),
            last_report=state.get("last_report"),
            last_success=state.get("last_success"),
            history=state.get("history"),
        )

    return app
