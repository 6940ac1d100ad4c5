"""One scoring round: every signal of one ALO cycle, computed from arrays.

This is THE priority the service writes to Label Studio; the benchmarks and the demo call the
same function, so what is measured is what is deployed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from scoring._validation import as_embeddings, as_labels, as_probs
from scoring.audit import label_issues, systematic_confusions
from scoring.disagreement import annotator_model_disagreement, vote_stats
from scoring.escalation import EscalationThresholds, sme_escalation
from scoring.multilabel import (
    as_label_matrix,
    as_label_probs,
    binary_view,
    label_counts,
    multilabel_uncertainty,
    multilabel_votes,
)
from scoring.neighbors import kmeans, knn, typicality, uniqueness
from scoring.priority import (
    class_rarity,
    cold_start_labels,
    priority,
    queue_priority,
    relative_criticality,
    select_batch,
    select_typical,
)
from scoring.uncertainty import uncertainty


@dataclass(frozen=True)
class ScoringConfig:
    """Knobs of one round (all documented in docs/SCORING.md)."""

    uncertainty_method: str = "margin"
    uniqueness_k: int = 3
    typicality_k: int = 20
    weights: dict | None = None
    criticality: tuple[float, ...] | None = None
    critical_classes: tuple[int, ...] = ()
    batch_size: int = 50
    diversity: float = 0.1
    n_clusters: int = 0
    thresholds: EscalationThresholds = field(default_factory=EscalationThresholds)
    min_labels_for_audit: int = 20
    max_escalations: int = 100  # an SME queue people can work through; 0 = no cap
    seed: int = 0


@dataclass(frozen=True)
class RoundScores:
    """Everything one round decides; every array has one row per item.

    ``queue`` is the priority to serve in ``[0, 1]`` (1 = first; 0 for labelled items),
    ``batch`` the diverse top batch (indices, in order), ``reason`` a few words per item.
    ``label_issue`` flags labelled items whose label is likely wrong (out-of-fold
    confident learning) and ``confusions`` lists systematic given -> likely-true class pairs.
    """

    queue: np.ndarray
    score: np.ndarray
    reason: np.ndarray
    batch: np.ndarray
    cold_start: bool
    uncertainty: np.ndarray | None
    uniqueness: np.ndarray
    escalate: np.ndarray
    escalation_reason: list[str]
    label_issue: np.ndarray
    label_issue_reason: list[str]
    confusions: list[dict]
    clusters: np.ndarray | None


def score_round(
    embeddings,
    labels,
    *,
    pred_probs=None,
    oof_probs=None,
    annotations=None,
    n_classes: int | None = None,
    class_names=None,
    config: ScoringConfig | None = None,
) -> RoundScores:
    """Score every item of a single-label project.

    embeddings (n, d); labels (n,) int, -1 = unlabelled (the consensus label where several
    annotators labelled); pred_probs optional (n, k) from the current head (None in cold
    start); oof_probs optional (n, k), out-of-fold for labelled rows (others ignored);
    annotations optional (n, m) per-annotator labels (-1 = none) for vote disagreement.
    """
    cfg = config or ScoringConfig()
    x = as_embeddings(embeddings, min_rows=2)
    n = x.shape[0]
    y = as_labels(labels, n=n, allow_missing=True)
    p = None if pred_probs is None else as_probs(pred_probs)
    if p is not None and p.shape[0] != n:
        raise ValueError(f"pred_probs has {p.shape[0]} rows; embeddings {n}")
    k = p.shape[1] if p is not None else (n_classes or int(y.max()) + 1)
    labeled = y >= 0
    n_lab = int(labeled.sum())
    cold = p is None or n_lab < cold_start_labels(k)

    nb, uniq = _neighbourhood(x, cfg)
    unc = None if p is None else uncertainty(p, cfg.uncertainty_method)
    signals = {}
    if not cold:
        signals = dict(
            uncertainty=unc,
            uniqueness=uniq,
            typicality=typicality(x, neighbors=nb),
            pred_probs=p,
            class_counts=np.bincount(y[labeled], minlength=k),
            criticality=cfg.criticality,
            class_names=class_names,
        )
    queue, score, reason, batch = _rank(x, labeled, cold, nb, cfg, signals)

    # Escalation sees out-of-fold probabilities for labelled rows, current ones for the rest.
    # In cold start the model is too weak for its doubts to mean anything: only annotators'
    # disagreement escalates, and there is no audit.
    esc_probs = None
    if p is not None and not cold:
        esc_probs = _with_oof(p, oof_probs, labeled, as_probs)
    vote_dis = None
    if annotations is not None:
        vote_dis = vote_stats(annotations, n_classes=k).disagreement
    audit = not cold and oof_probs is not None and n_lab >= cfg.min_labels_for_audit
    found = _review(y, esc_probs, oof_probs is not None, audit, vote_dis, cfg, class_names)
    escalate, esc_reason, severity, issue, issue_reason, confusions = found
    escalate, esc_reason = _cap(escalate, esc_reason, severity, cfg.max_escalations)

    return RoundScores(
        queue,
        score,
        reason,
        batch,
        cold,
        unc,
        uniq,
        escalate,
        esc_reason,
        issue,
        issue_reason,
        confusions,
        _clusters(x, cfg),
    )


def score_round_multilabel(
    embeddings,
    labels,
    *,
    pred_probs=None,
    oof_probs=None,
    votes=None,
    class_names=None,
    config: ScoringConfig | None = None,
) -> RoundScores:
    """Score every item of a multi-label project (``choice="multiple"``).

    embeddings (n, d); labels (n, k) int 0/1 per label, unlabelled rows all -1 (per-label
    majority where several annotators labelled); pred_probs optional (n, k) per-label
    probabilities (None in cold start); oof_probs optional (n, k), out-of-fold for labelled
    rows; votes optional (n, m, k) per annotator (-1 rows = did not label).

    Each label is the binary problem "does it apply" (:mod:`scoring.multilabel`): uncertainty
    is the mean binary uncertainty over labels; rarity is that of the likeliest rare label
    (``max_j p_j r_j``, ``r`` from :func:`class_rarity` of the label counts); criticality is
    that of the likeliest critical label (``max_j p_j c_j / max c``, never below
    ``min c / max c``); the SME rules and the audit run per label and an item is escalated or
    flagged when any label is, with reasons naming the label. ``confusions`` entries carry
    ``label`` and read "'not X' is often really 'X'" (X systematically left off) or the
    reverse (X applied where it does not belong); a label confused in both directions at once
    is reported in neither (two-way noise, not a systematic slip).
    """
    cfg = config or ScoringConfig()
    x = as_embeddings(embeddings, min_rows=2)
    n = x.shape[0]
    y = as_label_matrix(labels, n=n)
    k = y.shape[1]
    p = None if pred_probs is None else as_label_probs(pred_probs, "pred_probs", n=n)
    if p is not None and p.shape[1] != k:
        raise ValueError(f"pred_probs has {p.shape[1]} labels; labels has {k}")
    names = list(class_names) if class_names is not None else [f"label {j}" for j in range(k)]
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} entries; labels has {k}")
    labeled = y[:, 0] >= 0
    n_lab = int(labeled.sum())
    cold = p is None or n_lab < cold_start_labels(k)

    nb, uniq = _neighbourhood(x, cfg)
    unc = None if p is None else multilabel_uncertainty(p, cfg.uncertainty_method)
    signals = {}
    if not cold:
        counts = label_counts(y[labeled]) if n_lab else np.zeros(k, dtype=np.int64)
        weighted = p * class_rarity(counts) if k >= 2 else np.zeros_like(p)
        signals = dict(
            uncertainty=unc,
            uniqueness=uniq,
            typicality=typicality(x, neighbors=nb),
            rarity=np.clip(weighted.max(axis=1), 0.0, 1.0),
            rarity_class=weighted.argmax(axis=1),
            item_criticality=_multilabel_criticality(p, cfg.criticality),
            class_names=names,
        )
    queue, score, reason, batch = _rank(x, labeled, cold, nb, cfg, signals)

    esc_probs = None
    if p is not None and not cold:
        esc_probs = _with_oof(p, oof_probs, labeled, as_label_probs)
    merged_votes = None if votes is None else multilabel_votes(votes)
    if merged_votes is not None and merged_votes.labels.shape != (n, k):
        raise ValueError(f"votes must be (n, m, k) = ({n}, m, {k})")
    audit = not cold and oof_probs is not None and n_lab >= cfg.min_labels_for_audit

    escalate, issue = np.zeros(n, bool), np.zeros(n, bool)
    esc_parts: list[list[str]] = [[] for _ in range(n)]
    issue_parts: list[list[str]] = [[] for _ in range(n)]
    severity = np.zeros(n)
    confusions: list[dict] = []
    for j, name in enumerate(names):
        label_cfg = _binary_config(cfg, j)
        found = _review(
            y[:, j],
            None if esc_probs is None else binary_view(esc_probs, j),
            oof_probs is not None,
            audit,
            None if merged_votes is None else merged_votes.disagreement[:, j],
            label_cfg,
            (f"not {name}", name),
        )
        e, e_reason, sev, iss, iss_reason, conf = found
        escalate |= e
        issue |= iss
        severity = np.maximum(severity, sev)
        for i in np.flatnonzero(e):
            esc_parts[i].append(f"[{name}] {e_reason[i]}")
        for i in np.flatnonzero(iss):
            issue_parts[i].append(f"[{name}] {iss_reason[i]}")
        if len(conf) == 1:  # both directions at once is two-way noise, not a systematic slip
            confusions.append({**conf[0], "label": j})
    confusions.sort(key=lambda c: -c["count"])
    esc_reason = ["; ".join(r) for r in esc_parts]
    escalate, esc_reason = _cap(escalate, esc_reason, severity, cfg.max_escalations)

    return RoundScores(
        queue,
        score,
        reason,
        batch,
        cold,
        unc,
        uniq,
        escalate,
        esc_reason,
        issue,
        ["; ".join(r) for r in issue_parts],
        confusions,
        _clusters(x, cfg),
    )


# ------------------------------------------------------------------------- shared steps
def _neighbourhood(x, cfg: ScoringConfig):
    """One kNN search serving both uniqueness and typicality; returns ``(neighbours,
    uniqueness (n,))``."""
    n = x.shape[0]
    nb = knn(x, min(max(cfg.uniqueness_k, cfg.typicality_k), n - 1), center=True, seed=cfg.seed)
    return nb, uniqueness(x, min(cfg.uniqueness_k, n - 1), neighbors=nb)


def _clusters(x, cfg: ScoringConfig):
    """k-means cluster ids (n,) when ``cfg.n_clusters`` asks for them, else None."""
    if cfg.n_clusters <= 0:
        return None
    return kmeans(x, cfg.n_clusters, seed=cfg.seed)[0]


def _rank(x, labeled, cold, nb, cfg: ScoringConfig, signals: dict):
    """Queue, score, reason and diverse batch: typicality alone in cold start, else
    ``priority`` of the given signals (weights ``cfg.weights`` over ``DEFAULT_WEIGHTS``).
    Returns ``(queue (n,), score (n,), reason (n,) object, batch)``."""
    n = x.shape[0]
    unlabeled = ~labeled
    if cold:
        result = priority(typicality=typicality(x, neighbors=nb), weights=cfg.weights)
        batch = select_typical(x, cfg.batch_size, labeled=labeled, seed=cfg.seed)
    else:
        result = priority(**signals, weights=cfg.weights)
        batch = select_batch(
            x, result.score, cfg.batch_size, labeled=labeled, diversity=cfg.diversity
        )
    score = np.where(unlabeled, result.score, 0.0)
    queue = np.zeros(n)
    if unlabeled.any():
        idx = np.flatnonzero(unlabeled)
        pos = {int(j): i for i, j in enumerate(idx)}
        queue[idx] = queue_priority(score[idx], [pos[int(b)] for b in batch])
    reason = np.where(unlabeled, result.reason, "")
    in_batch = np.zeros(n, bool)
    in_batch[batch] = True
    reason = np.array(
        [f"{r} (diverse batch)" if b else r for r, b in zip(reason, in_batch, strict=True)],
        dtype=object,
    )
    return queue, score, reason, batch


def _with_oof(p, oof_probs, labeled, validate):
    """Current probabilities, with the out-of-fold ones in the labelled rows when given."""
    out = p.copy()
    if oof_probs is not None:
        oof = validate(oof_probs, "oof_probs")
        if oof.shape != p.shape:
            raise ValueError(f"oof_probs has shape {oof.shape}; pred_probs {p.shape}")
        out[labeled] = oof[labeled]
    return out


def _review(y, esc_probs, have_oof: bool, audit: bool, vote_dis, cfg: ScoringConfig, names):
    """SME escalation and label audit of one single-label problem.

    y (n,) int with -1 = unlabelled; esc_probs (n, k) (out-of-fold in labelled rows) or None
    in cold start; vote_dis (n,) or None. Returns ``(escalate, reasons, severity, issue,
    issue_reasons, confusions)`` before the escalation cap; ``severity (n,)`` ranks
    escalations for the cap."""
    n = y.shape[0]
    labeled = y >= 0
    model_dis = None
    if esc_probs is not None and have_oof and labeled.any():
        model_dis = np.zeros(n)
        model_dis[labeled] = annotator_model_disagreement(y[labeled], esc_probs[labeled])
    if esc_probs is None and vote_dis is None:
        escalate, esc_reason = np.zeros(n, bool), [""] * n
    else:
        escalate, esc_reason = sme_escalation(
            pred_probs=esc_probs,
            labels=y,
            vote_disagreement=vote_dis,
            model_disagreement=model_dis,
            critical_classes=cfg.critical_classes,
            thresholds=cfg.thresholds,
            class_names=names,
        )
    severity = _severity(n, esc_probs, vote_dis, model_dis, cfg.critical_classes)

    issue = np.zeros(n, bool)
    issue_reason = [""] * n
    confusions: list[dict] = []
    if audit and esc_probs is not None and np.unique(y[labeled]).size >= 2:
        oof = esc_probs  # out-of-fold in every labelled row
        li = np.flatnonzero(labeled)
        mask = label_issues(y[li], oof[li])
        issue[li[mask]] = True
        for i in li[mask]:
            j = int(oof[i].argmax())
            given = names[y[i]] if names is not None else f"class {y[i]}"
            likely = names[j] if names is not None else f"class {j}"
            issue_reason[i] = (
                f"labelled '{given}' but the model (not trained on it) says "
                f"'{likely}' (P={oof[i, j]:.2f})"
            )
        confusions = systematic_confusions(y[li], oof[li])
        if names is not None:
            for c in confusions:
                c["given_name"] = names[c["given"]]
                c["likely_true_name"] = names[c["likely_true"]]
    return escalate, esc_reason, severity, issue, issue_reason, confusions


def _severity(n, probs, vote_dis, model_dis, critical) -> np.ndarray:
    """The strongest escalation signal per item: the largest of annotator disagreement, model
    disagreement, critical-class probability and margin uncertainty."""
    severity = np.zeros(n)
    for signal in (vote_dis, model_dis):
        if signal is not None:
            severity = np.maximum(severity, signal)
    if probs is not None:
        severity = np.maximum(severity, uncertainty(probs, "margin"))
        for c in critical:
            severity = np.maximum(severity, probs[:, c])
    return severity


def _cap(escalate, reasons, severity, limit: int):
    """Keep the ``limit`` escalations with the highest severity (0 = no cap)."""
    if not limit or escalate.sum() <= limit:
        return escalate, reasons
    idx = np.flatnonzero(escalate)
    keep = idx[np.argsort(-severity[idx], kind="stable")[:limit]]
    out = np.zeros(escalate.size, bool)
    out[keep] = True
    return out, [r if e else "" for r, e in zip(reasons, out, strict=True)]


def _binary_config(cfg: ScoringConfig, label: int) -> ScoringConfig:
    """``cfg`` for label ``label``'s binary problem: class 1 ("applies") is critical when the
    label is."""
    return replace(cfg, critical_classes=(1,) if label in cfg.critical_classes else ())


def _multilabel_criticality(p: np.ndarray, criticality) -> np.ndarray | None:
    """``max(max_j p_j c_j, min c) / max c`` per item (None without weights)."""
    if criticality is None:
        return None
    c = relative_criticality(criticality, p.shape[1])
    return np.maximum((p * c).max(axis=1), c.min())
