"""One ALO cycle: sync -> embed what is new -> fit the head -> predict -> score -> write back.

``run_cycle`` is a plain function: the queue worker, ``smartsize cycle`` and the tests all call
it. It never leaves Label Studio half-written: predictions go in under a NEW model version and
the project is switched to it only once every prediction is in, so annotators keep being served
the previous priorities until then.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ls_backend.cache import EmbeddingCache, content_hash
from ls_backend.config import ConfigError, Settings
from ls_backend.head import ClassifierHead, ColdStart, ModelStore, MultiLabelHead
from ls_backend.label_config import (
    ClassificationConfig,
    annotation_label,
    chose_none,
    parse_label_config,
    prediction_result,
)
from ls_backend.label_studio import LabelStudioClient, LabelStudioError
from ls_backend.media import MediaError, MediaFetcher
from ls_backend.state import load_state, project_dir, save_state
from scoring import cohens_kappa, stopping_rule, vote_stats
from scoring.escalation import EscalationThresholds
from scoring.multilabel import multilabel_decisions, multilabel_votes
from scoring.pipeline import ScoringConfig, score_round, score_round_multilabel

log = logging.getLogger(__name__)

VERSION_PREFIX = "smartsize-"
SME_VIEW = "SME escalation"
AUDIT_VIEW = "Label audit"
TAG_KEYS = ("needs_sme", "sme_reason", "label_issue", "label_issue_reason")
EMBED_CHUNK = 64


# ------------------------------------------------------------------------------ task table
@dataclass
class TaskTable:
    """What a cycle needs from Label Studio's tasks, one row per task (id order)."""

    ids: np.ndarray  # (n,) int
    values: list[Any]  # media URL or text per task (None when the key is missing)
    hashes: list[str]  # content hash of the media value (tags written into data don't count)
    data: list[dict]
    # Single choice: (n,) int, -1 = unlabelled, majority vote over annotators; per annotator
    # (n, m), -1 = none. Multiple choice: (n, k) 0/1 rows (all -1 = unlabelled), per-label
    # majority; per annotator (n, m, k).
    labels: np.ndarray
    annotations: np.ndarray
    n_annotations: int

    @property
    def labelled(self) -> np.ndarray:
        """(n,) bool: the task has a consensus label."""
        return (self.labels if self.labels.ndim == 1 else self.labels[:, 0]) >= 0


def read_tasks(tasks: list[dict], config: ClassificationConfig) -> TaskTable:
    """Labels per task and annotator from Label Studio's task JSON (cancelled ones ignored)."""
    ids, values, hashes, datas = [], [], [], []
    votes: list[dict[Any, Any]] = []
    k = len(config.labels)
    annotators: dict[Any, int] = {}
    n_ann = 0
    for task in tasks:
        data = task.get("data") or {}
        value = data.get(config.value_key)
        ids.append(int(task["id"]))
        values.append(value)
        hashes.append(content_hash(value))
        datas.append(data)
        task_votes: dict[Any, Any] = {}  # annotator -> class index, or 0/1 per label
        for ann in task.get("annotations") or []:
            chosen = annotation_label(ann, config)
            if not chosen and not (config.multi_label and chose_none(ann, config)):
                continue  # skipped, stale, or (single choice) nothing chosen
            who = ann.get("completed_by")
            who = who.get("id") if isinstance(who, dict) else who
            annotators.setdefault(who, len(annotators))
            # the latest annotation per annotator wins
            if config.multi_label:
                task_votes[who] = [int(c in chosen) for c in config.labels]
            else:
                task_votes[who] = config.label_index(chosen[0])
            n_ann += 1
        votes.append(task_votes)
    m = max(1, len(annotators))
    shape = (len(ids), m, k) if config.multi_label else (len(ids), m)
    ann = np.full(shape, -1, dtype=np.int64)
    for i, task_votes in enumerate(votes):
        for who, label in task_votes.items():
            ann[i, annotators[who]] = label
    if not len(ids):
        labels = np.zeros(shape[:1] + shape[2:], dtype=np.int64)
    elif config.multi_label:
        labels = multilabel_votes(ann).labels
    else:
        labels = vote_stats(ann, n_classes=k).majority
    return TaskTable(np.asarray(ids, dtype=np.int64), values, hashes, datas, labels, ann, n_ann)


# ---------------------------------------------------------------------------- embedding
_EMBEDDERS: dict[tuple, Any] = {}
_EMBEDDERS_LOCK = threading.Lock()


def get_embedder(settings: Settings, object_type: str):
    """The process-wide embedder for an object type (loaded once, then reused)."""
    key = (object_type, tuple(sorted(settings.embedder.items())))
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            if object_type == "image":
                from ls_backend.embedding import ImageEmbedder

                _EMBEDDERS[key] = ImageEmbedder(**settings.embedder)
            else:
                from ls_backend.embedding import TextEmbedder

                _EMBEDDERS[key] = TextEmbedder()
        return _EMBEDDERS[key]


def media_fetcher(settings: Settings) -> MediaFetcher:
    return MediaFetcher(
        settings.label_studio_url,
        settings.label_studio_api_key,
        allowed_hosts=settings.allowed_hosts,
        max_bytes=settings.max_image_bytes,
    )


def load_item(fetcher: MediaFetcher, config: ClassificationConfig, value: Any, task_id: int):
    """The object to embed for one task: a PIL image, or the text (fetched when a URL)."""
    if not isinstance(value, str) or not value:
        raise MediaError(f"task {task_id}: no '{config.value_key}' value in the task data")
    if config.object_type == "image":
        return fetcher.fetch_image(value, task_id=task_id)
    return fetcher.fetch_text(value, task_id=task_id) if config.value_is_url else value


def embed_tasks(
    ids,
    values,
    hashes,
    config,
    embedder,
    cache: EmbeddingCache,
    fetcher: MediaFetcher,
    progress: bool = False,
):
    """Embeddings for the given tasks, from the cache or computed (and cached) now.

    Returns ``(vectors (n, d), ok (n,) bool, errors {task_id: message}, n_new)``; a task whose
    media cannot be read is reported, not fatal."""
    keys = list(zip((int(i) for i in ids), hashes, strict=True))
    found, vectors = cache.get(keys)
    errors: dict[int, str] = {}
    todo = np.flatnonzero(~found)
    n_new = 0
    bar = None
    if progress and todo.size:
        from tqdm import tqdm

        bar = tqdm(total=int(todo.size), desc="embedding new tasks", unit="task")
    for start in range(0, todo.size, EMBED_CHUNK):
        chunk = todo[start : start + EMBED_CHUNK]
        items, rows = [], []
        for i in chunk:
            try:
                items.append(load_item(fetcher, config, values[i], int(ids[i])))
                rows.append(i)
            except MediaError as exc:
                errors[int(ids[i])] = str(exc)
        if items:
            vecs = embedder.embed(items, progress=False)
            vectors[rows] = vecs
            found[rows] = True
            cache.put([keys[i] for i in rows], vecs)
            n_new += len(rows)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return vectors, found, errors, n_new


# -------------------------------------------------------------------------------- helpers
def _class_weights(settings: Settings, config: ClassificationConfig):
    unknown = [c for c in settings.criticality if c not in config.labels]
    unknown += [c for c in settings.critical_classes if c not in config.labels]
    if unknown:
        raise ConfigError(
            f"SMARTSIZE_CRITICALITY / SMARTSIZE_CRITICAL_CLASSES name {sorted(set(unknown))}, "
            f"which are not classes of this project ({', '.join(config.labels)})"
        )
    crit = None
    if settings.criticality:
        crit = tuple(settings.criticality.get(c, 1.0) for c in config.labels)
    critical = tuple(config.labels.index(c) for c in settings.critical_classes)
    return crit, critical


def _decisions(probs: np.ndarray, multi_label: bool) -> np.ndarray:
    """A head's hard predictions: the class per row, or the 0/1 choice per label."""
    return multilabel_decisions(probs) if multi_label else probs.argmax(axis=1)


def _macro_f1(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Macro-F1 over the classes present (single choice) or over the labels ever chosen
    (multiple choice, ``y_true`` 2-D)."""
    from sklearn.metrics import f1_score

    multi_label = y_true.ndim == 2
    present = np.flatnonzero(y_true.any(axis=0)) if multi_label else np.unique(y_true)
    pred = _decisions(probs, multi_label)
    return float(f1_score(y_true, pred, labels=present, average="macro", zero_division=0))


def new_version(n_labels: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{VERSION_PREFIX}{stamp}-{n_labels}L"


def status_block(report: dict) -> str:
    """The delimited block written into the project description (plain text, no secrets)."""
    stop = report.get("stopping") or {}
    lines = [f"smartsize {report['finished_at']} - {stop.get('decision', 'CONTINUE')}"]
    if stop.get("explanation"):
        lines.append(stop["explanation"])
    lines.append(
        f"Labels used: {report['n_labeled']} of {report['n_tasks']} tasks. "
        f"SME escalations: {report['n_escalated']} (view '{SME_VIEW}'). "
        f"Label issues: {report['n_label_issues']} (view '{AUDIT_VIEW}')."
    )
    for c in report.get("confusions", [])[:3]:
        lines.append(
            f"Systematic confusion: '{c.get('given_name', c['given'])}' is often really "
            f"'{c.get('likely_true_name', c['likely_true'])}' (~{c['count']:.0f} labels, "
            f"{100 * c['share']:.0f}% of that class)."
        )
    if report.get("n_media_errors"):
        lines.append(f"{report['n_media_errors']} task(s) skipped: media could not be read.")
    lines.append(f"Priorities: model version {report['model_version']}.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- cycle
def run_cycle(
    project_id: int,
    settings: Settings,
    *,
    client: LabelStudioClient | None = None,
    force: bool = False,
    progress: bool = False,
) -> dict:
    """Run one ALO cycle for a project; returns the report (also kept in the project state).

    Never raises for expected failures (Label Studio down, bad config, unreadable media): the
    report's ``status`` is then ``"error"`` with a clear ``error`` message, and Label Studio
    keeps serving the previous version.
    """
    started = time.time()
    state = load_state(settings.model_dir, project_id)
    report: dict[str, Any] = {
        "project_id": int(project_id),
        "status": "running",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timings": {},
    }
    own_client = client is None
    try:
        settings.require_label_studio()
        if own_client:
            client = LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key)
        report.update(_cycle(project_id, settings, client, state, force, progress, report))
    except (LabelStudioError, ConfigError, ValueError, OSError) as exc:
        report["status"] = "error"
        report["error"] = f"{type(exc).__name__}: {exc}"
        log.error("cycle for project %s failed: %s", project_id, report["error"])
    finally:
        if own_client and client is not None:
            client.close()
    report["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["duration_s"] = round(time.time() - started, 3)
    state = load_state(settings.model_dir, project_id)  # the cycle may have updated it
    state["last_report"] = report
    if report["status"] == "ok":
        state["last_success"] = report
    save_state(settings.model_dir, project_id, state)
    return report


def _cycle(project_id, settings, client, state, force, progress, report) -> dict:
    t = report["timings"]
    t0 = time.perf_counter()
    project = client.get_project(project_id)
    config = parse_label_config(project.get("label_config") or "")
    crit, critical = _class_weights(settings, config)
    tasks = list(client.iter_tasks(project_id))
    table = read_tasks(tasks, config)
    t["sync_s"] = round(time.perf_counter() - t0, 3)
    n = table.ids.size
    new_ann = table.n_annotations - int(state.get("annotation_count", 0))
    if not force and state.get("current_version") and 0 <= new_ann < settings.min_new_annotations:
        return {
            "status": "skipped",
            "n_tasks": n,
            "reason": f"{new_ann} new annotation(s); SMARTSIZE_MIN_NEW_ANNOTATIONS is "
            f"{settings.min_new_annotations}",
        }
    if n < 2:
        return {"status": "skipped", "n_tasks": n, "reason": "the project has fewer than 2 tasks"}

    t0 = time.perf_counter()
    embedder = get_embedder(settings, config.object_type)
    cache = EmbeddingCache(settings.model_dir / "embeddings", embedder.cache_id, embedder.dim)
    try:
        vectors, ok, media_errors, n_new = embed_tasks(
            table.ids,
            table.values,
            table.hashes,
            config,
            embedder,
            cache,
            media_fetcher(settings),
            progress=progress,
        )
    finally:
        cache.close()
    t["embed_s"] = round(time.perf_counter() - t0, 3)
    rows = np.flatnonzero(ok)
    if rows.size < 2:
        raise ValueError(f"only {rows.size} task(s) have readable media; see media errors")
    x = vectors[rows]
    y = table.labels[rows]
    labelled = table.labelled[rows]
    k = len(config.labels)

    t0 = time.perf_counter()
    probs = oof = None
    head = None
    metric = None
    try:
        if config.multi_label:
            head = MultiLabelHead().fit(x[labelled], y[labelled])
        else:
            head = ClassifierHead().fit(x[labelled], y[labelled], n_classes=k)
        probs = head.predict_proba(x)
        oof = np.zeros_like(probs)
        oof[labelled] = head.oof_proba_
        oof[~labelled] = probs[~labelled]
        metric = _macro_f1(y[labelled], oof[labelled])
    except ColdStart as exc:
        report["cold_start_reason"] = str(exc)
    t["fit_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    thresholds = EscalationThresholds(
        ambiguous_margin=settings.ambiguous_margin,
        contested=settings.contested,
        model_disagreement=settings.model_disagreement,
        critical_prob=settings.critical_prob,
        critical_confident=max(settings.critical_prob, 0.9),
    )
    cfg = ScoringConfig(
        weights=settings.priority_weights or None,
        criticality=crit,
        critical_classes=critical,
        batch_size=settings.batch_size,
        max_escalations=settings.max_escalations,
        diversity=settings.diversity,
        thresholds=thresholds,
    )
    if config.multi_label:
        scores = score_round_multilabel(
            x,
            y,
            pred_probs=probs,
            oof_probs=oof,
            votes=table.annotations[rows],
            class_names=list(config.labels),
            config=cfg,
        )
    else:
        scores = score_round(
            x,
            y,
            pred_probs=probs,
            oof_probs=oof,
            annotations=table.annotations[rows],
            n_classes=k,
            class_names=list(config.labels),
            config=cfg,
        )

    n_labeled = int(labelled.sum())
    # A learning curve only makes sense for one task: a changed label set or a switch between
    # single and multiple choice starts a new history (the metric itself changed).
    task_signature = {"labels": list(config.labels), "multi_label": config.multi_label}
    history = state["history"] if state.get("task_signature") in (None, task_signature) else []
    history = [h for h in history if h["n_labels"] != n_labeled]
    if metric is not None:
        history.append(
            {
                "n_labels": n_labeled,
                "metric": metric,
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        )
    history.sort(key=lambda h: h["n_labels"])
    kappa = _stability(settings, project_id, table.ids[rows], labelled, probs, config.multi_label)
    if history:
        decision = stopping_rule(
            [h["n_labels"] for h in history],
            [h["metric"] for h in history],
            tau=settings.tau,
            cost_per_label=settings.cost_per_label,
            stability_kappa=kappa,
        ).to_dict()
    else:
        decision = {
            "decision": "CONTINUE",
            "explanation": "CONTINUE: no model yet (cold start"
            "); annotate the typical examples served first.",
            "labels_used": n_labeled,
            "tau": settings.tau,
            "cost_per_label": settings.cost_per_label,
        }
    t["score_s"] = round(time.perf_counter() - t0, 3)

    # ---- write back: predictions under a new version, then flip, then prune -------------
    t0 = time.perf_counter()
    version = new_version(n_labeled)
    store = ModelStore(project_dir(settings.model_dir, project_id) / "heads")
    head_version = None
    if head is not None:
        head_version = store.save(
            head,
            {
                "model_version": version,
                "labels": list(config.labels),
                "multi_label": config.multi_label,
                "embedder": embedder.cache_id,
            },
        )
    predictions = []
    for r in np.flatnonzero(~labelled):
        result = [] if probs is None else prediction_result(config, probs[r])
        predictions.append(
            {
                "task": int(table.ids[rows[r]]),
                "result": result,
                "score": float(1.0 - scores.queue[r]),
                "model_version": version,
            }
        )
    if predictions:
        client.import_predictions(project_id, predictions)
    client.set_model_version(project_id, version)
    state = load_state(settings.model_dir, project_id)
    state.update(
        current_version=version,
        current_head=head_version,
        task_signature=task_signature,
        history=history,
        annotation_count=table.n_annotations,
    )
    state["versions"] = [v for v in state["versions"] if v != version] + [version]
    save_state(settings.model_dir, project_id, state)
    pruned = _prune_versions(client, project_id, version, settings.keep_versions)

    # ---- tags and views -------------------------------------------------------------------
    n_tagged = _write_tags(client, table, rows, scores)
    views = ensure_views(client, project_id)
    t["write_s"] = round(time.perf_counter() - t0, 3)

    order = np.argsort(-scores.queue)
    top = [
        {
            "task": int(table.ids[rows[i]]),
            "priority": float(scores.queue[i]),
            "reason": str(scores.reason[i]),
        }
        for i in order[:10]
        if not labelled[i]
    ]
    out = {
        "status": "ok",
        "model_version": version,
        "head_version": head_version,
        "n_tasks": int(n),
        "n_embedded": int(rows.size),
        "n_embedded_new": int(n_new),
        "n_labeled": n_labeled,
        "n_annotations": table.n_annotations,
        "n_media_errors": len(media_errors),
        "media_errors": dict(list(media_errors.items())[:20]),
        "cold_start": bool(scores.cold_start),
        "metric_name": "out-of-fold macro-F1",
        "metric": metric,
        "stopping": decision,
        "stability_kappa": kappa,
        "n_escalated": int(scores.escalate.sum()),
        "n_label_issues": int(scores.label_issue.sum()),
        "confusions": scores.confusions,
        "class_counts": _class_counts(config, y[labelled]),
        "n_predictions": len(predictions),
        "pruned_versions": pruned,
        "n_tag_writes": n_tagged,
        "top": top,
        "views": views,
    }
    report.update(out)
    report["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    client.set_status_block(project_id, status_block(report))
    return out


def _class_counts(config: ClassificationConfig, y: np.ndarray) -> dict[str, int]:
    """Labelled tasks per choice (a multi-label task counts once for each of its labels)."""
    if config.multi_label:
        return {c: int(n) for c, n in zip(config.labels, (y == 1).sum(axis=0), strict=True)}
    return {c: int(np.sum(y == j)) for j, c in enumerate(config.labels)}


def _stability(settings, project_id, ids, labelled, probs, multi_label: bool) -> float | None:
    """Cohen's kappa between this and the previous model's predictions on tasks unlabelled in
    both (the stop set); the current predictions are kept for the next cycle. Multi-label
    predictions are compared label by label (the 0/1 decisions of every task and label)."""
    path = project_dir(settings.model_dir, project_id) / "predictions.npz"
    if probs is None:
        return None
    unl = ~labelled
    cur_ids, cur_pred = ids[unl], _decisions(probs[unl], multi_label)
    kappa = None
    try:
        with np.load(path) as prev:
            common, a, b = np.intersect1d(prev["ids"], cur_ids, return_indices=True)
            if common.size >= 10 and prev["pred"].shape[1:] == cur_pred.shape[1:]:
                kappa = cohens_kappa(prev["pred"][a].ravel(), cur_pred[b].ravel())
    except (OSError, KeyError, ValueError):
        pass
    import io

    from ls_backend.state import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, ids=cur_ids, pred=cur_pred)
    atomic_write_bytes(path, buf.getvalue())
    return kappa


def _prune_versions(client, project_id: int, current: str, keep: int) -> list[str]:
    """Delete smartsize's own older versions beyond ``keep`` (never the current one, never a
    version another model wrote)."""
    versions = [
        v
        for v in client.list_model_versions(project_id)
        if v.startswith(VERSION_PREFIX) and v != current
    ]
    versions.sort(reverse=True)  # names sort by time
    doomed = versions[max(0, keep - 1) :]
    for v in doomed:
        client.delete_predictions(project_id, v)
    return doomed


def _write_tags(client, table: TaskTable, rows: np.ndarray, scores) -> int:
    """Read-modify-write the SME / audit tags of tasks whose tags changed; returns writes."""
    writes = 0
    for r, i in enumerate(rows):
        want: dict[str, Any] = {}
        if scores.escalate[r]:
            want["needs_sme"] = 1
            want["sme_reason"] = scores.escalation_reason[r]
        if scores.label_issue[r]:
            want["label_issue"] = 1
            want["label_issue_reason"] = scores.label_issue_reason[r]
        have = {key: table.data[i][key] for key in TAG_KEYS if key in table.data[i]}
        if have == want:
            continue
        remove = [key for key in TAG_KEYS if key in have and key not in want]
        # The data was read at the start of this cycle; task data is written by importers and
        # by this service, not by annotators, so merging into it saves one read per task.
        client.update_task_data(int(table.ids[i]), want, remove_keys=remove, current=table.data[i])
        writes += 1
    return writes


def ensure_views(client, project_id: int) -> dict[str, int]:
    """The "SME escalation" and "Label audit" Data Manager tabs; returns their ids."""
    views = {}
    for title, key in ((SME_VIEW, "needs_sme"), (AUDIT_VIEW, "label_issue")):
        views[title] = client.ensure_view(
            project_id,
            title,
            filters={
                "conjunction": "and",
                "items": [
                    {
                        "filter": f"filter:tasks:data.{key}",
                        "operator": "equal",
                        "type": "Number",
                        "value": 1,
                    }
                ],
            },
        )
    return views


def run_cycle_from_env(project_id: int, force: bool = False) -> dict:
    """Entry point of the rq job: settings from the worker's environment."""
    return run_cycle(project_id, Settings.from_env(), force=force)
