"""The model as Label Studio sees it, with label-studio-ml's method names:
``predict(tasks, context)`` answers ``/predict``; ``fit(event, data)`` answers training
events by requesting a coalesced cycle (training never runs inside a request)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from ls_backend.cache import EmbeddingCache, content_hash
from ls_backend.config import Settings
from ls_backend.cycle import embed_tasks, get_embedder, media_fetcher
from ls_backend.head import ModelStore, MultiLabelHead
from ls_backend.label_config import (
    UnsupportedLabelConfig,
    parse_label_config,
    prediction_result,
)
from ls_backend.state import load_state, project_dir
from scoring import uncertainty
from scoring.multilabel import multilabel_uncertainty

log = logging.getLogger(__name__)

COLD_VERSION = "smartsize-cold-start"
# event -> force: a forced cycle ignores SMARTSIZE_MIN_NEW_ANNOTATIONS.
TRAINING_EVENTS = {
    "ANNOTATION_CREATED": False,
    "ANNOTATION_UPDATED": False,
    "ANNOTATIONS_CREATED": False,
    "ANNOTATIONS_DELETED": False,
    "START_TRAINING": True,
    "TASKS_CREATED": True,
}


class SmartsizeModel:
    def __init__(self, settings: Settings, queue=None):
        self.settings = settings
        self.queue = queue
        self._heads: dict[tuple[int, str], Any] = {}
        self._lock = threading.Lock()

    # -------------------------------------------------------------------- versions
    def current_version(self, project_id: int | None) -> str:
        if project_id is None:
            return COLD_VERSION
        return load_state(self.settings.model_dir, project_id).get("current_version") or (
            COLD_VERSION
        )

    def _head(self, project_id: int):
        """The head Label Studio's current version was written with (cached), or None."""
        state = load_state(self.settings.model_dir, project_id)
        version = state.get("current_head")
        if not version:
            return None, state.get("current_version") or COLD_VERSION
        key = (project_id, version)
        with self._lock:
            if key not in self._heads:
                store = ModelStore(project_dir(self.settings.model_dir, project_id) / "heads")
                self._heads = {key: store.load(version)}  # keep one per process: bounded
            return self._heads[key], state.get("current_version") or COLD_VERSION

    # --------------------------------------------------------------------- predict
    def predict(
        self,
        tasks: list[dict],
        context: dict | None = None,
        *,
        project_id: int | None = None,
        label_config: str | None = None,
    ) -> list[dict]:
        """Exactly one ``{"result", "score", "model_version"}`` per task, in order.

        ``score`` follows Label Studio's uncertainty-sampling convention (lower = serve
        first): ``1 - margin uncertainty`` (for multiple choice, its mean over labels). Tasks
        that cannot be predicted (cold start, unreadable media) get an empty result rather than
        a made-up label."""
        if project_id is None:
            raise ValueError("predict needs the project id")
        stored, version = self._head(project_id)
        empty = [{"result": [], "score": 0.0, "model_version": version} for _ in tasks]
        if stored is None or not tasks:
            return empty
        config = parse_label_config(label_config or "")
        stored_multi = isinstance(stored.head, MultiLabelHead)
        if list(stored.meta.get("labels", [])) != list(config.labels) or (
            stored_multi != config.multi_label
        ):
            log.warning(
                "project %s: label config changed since the last cycle; no pre-labels "
                "until the next one",
                project_id,
            )
            return empty
        ids = np.array([_task_id(t) for t in tasks], dtype=np.int64)
        values = [_task_data(t).get(config.value_key) for t in tasks]
        hashes = [content_hash(v) for v in values]
        embedder = get_embedder(self.settings, config.object_type)
        if stored.meta.get("embedder") not in (None, embedder.cache_id):
            return empty
        cache = EmbeddingCache(
            self.settings.model_dir / "embeddings", embedder.cache_id, embedder.dim
        )
        try:
            vectors, ok, errors, _ = embed_tasks(
                ids, values, hashes, config, embedder, cache, media_fetcher(self.settings)
            )
        finally:
            cache.close()
        for message in errors.values():
            log.warning("predict: %s", message)
        out = list(empty)
        rows = np.flatnonzero(ok)
        if rows.size:
            probs = stored.head.predict_proba(vectors[rows])
            if config.multi_label:
                unc = multilabel_uncertainty(probs, "margin")
            else:
                unc = uncertainty(probs, "margin")
            for r, p, u in zip(rows, probs, unc, strict=True):
                out[r] = {
                    "result": prediction_result(config, p),
                    "score": float(1.0 - u),
                    "model_version": version,
                }
        return out

    # ------------------------------------------------------------------------- fit
    def fit(self, event: str, data: dict | None = None, project_id: int | None = None) -> str:
        """Request a cycle for a training event; other events are ignored. Returns the queue's
        answer ("queued", "coalesced", "deferred") or "ignored"."""
        if event not in TRAINING_EVENTS or project_id is None:
            return "ignored"
        if self.queue is None:
            raise RuntimeError("no queue configured")
        return self.queue.request(int(project_id), force=TRAINING_EVENTS[event])


def _task_id(task: dict) -> int:
    """The task's id, or -1 when it is missing or not an integer Label Studio could send."""
    tid = task.get("id")
    if isinstance(tid, int) and not isinstance(tid, bool) and 0 <= tid < 2**63:
        return tid
    return -1


def _task_data(task: dict) -> dict:
    """The task's ``data`` when it is an object (anything else has no media: empty result)."""
    data = task.get("data")
    return data if isinstance(data, dict) else {}


def check_label_config(xml: str) -> str | None:
    """None when smartsize can serve this label config, else the reason."""
    try:
        parse_label_config(xml)
    except UnsupportedLabelConfig as exc:
        return str(exc)
    return None
