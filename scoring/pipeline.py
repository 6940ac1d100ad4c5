"""One scoring round: every signal of one ALO cycle, computed from arrays.

This is THE priority the service writes to Label Studio; the benchmarks and the demo call the
same function, so what is measured is what is deployed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scoring._validation import as_embeddings, as_labels, as_probs
from scoring.audit import label_issues, systematic_confusions
from scoring.disagreement import annotator_model_disagreement, vote_stats
from scoring.escalation import EscalationThresholds, sme_escalation
from scoring.neighbors import kmeans, knn, typicality, uniqueness
from scoring.priority import (
    cold_start_labels,
    priority,
    queue_priority,
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
    diversity: float = 0.5
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
    """Score every item of a project.

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
    unlabeled = ~labeled
    n_lab = int(labeled.sum())
    cold = p is None or n_lab < cold_start_labels(k)

    nb = knn(x, min(max(cfg.uniqueness_k, cfg.typicality_k), n - 1), center=True, seed=cfg.seed)
    uniq = uniqueness(x, min(cfg.uniqueness_k, n - 1), neighbors=nb)
    unc = None if p is None else uncertainty(p, cfg.uncertainty_method)

    if cold:
        typ = typicality(x, neighbors=nb)
        result = priority(typicality=typ, weights=cfg.weights)
        batch = select_typical(x, cfg.batch_size, labeled=labeled, seed=cfg.seed)
    else:
        counts = np.bincount(y[labeled], minlength=k)
        result = priority(
            uncertainty=unc,
            uniqueness=uniq,
            pred_probs=p,
            class_counts=counts,
            criticality=cfg.criticality,
            weights=cfg.weights,
            class_names=class_names,
        )
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

    # Escalation sees out-of-fold probabilities for labelled rows, current ones for the rest.
    # In cold start the model is too weak for its doubts to mean anything: only annotators'
    # disagreement escalates, and there is no audit.
    esc_probs = None
    if p is not None and not cold:
        esc_probs = p.copy()
        if oof_probs is not None:
            oof = as_probs(oof_probs, "oof_probs")
            esc_probs[labeled] = oof[labeled]
    model_dis = None
    if esc_probs is not None and oof_probs is not None and n_lab:
        model_dis = np.zeros(n)
        model_dis[labeled] = annotator_model_disagreement(y[labeled], esc_probs[labeled])
    vote_dis = None
    if annotations is not None:
        vote_dis = vote_stats(annotations, n_classes=k).disagreement
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
            class_names=class_names,
        )
        if cfg.max_escalations and escalate.sum() > cfg.max_escalations:
            escalate = _keep_most_severe(
                escalate, cfg.max_escalations, esc_probs, vote_dis, model_dis, cfg.critical_classes
            )
            esc_reason = [r if e else "" for r, e in zip(esc_reason, escalate, strict=True)]

    issue = np.zeros(n, bool)
    issue_reason = [""] * n
    confusions: list[dict] = []
    if (
        not cold
        and oof_probs is not None
        and n_lab >= cfg.min_labels_for_audit
        and np.unique(y[labeled]).size >= 2
    ):
        oof = as_probs(oof_probs, "oof_probs")
        li = np.flatnonzero(labeled)
        mask = label_issues(y[li], oof[li])
        issue[li[mask]] = True
        for i in li[mask]:
            j = int(oof[i].argmax())
            given = class_names[y[i]] if class_names is not None else f"class {y[i]}"
            likely = class_names[j] if class_names is not None else f"class {j}"
            issue_reason[i] = (
                f"labelled '{given}' but the model (not trained on it) says "
                f"'{likely}' (P={oof[i, j]:.2f})"
            )
        confusions = systematic_confusions(y[li], oof[li])
        if class_names is not None:
            for c in confusions:
                c["given_name"] = class_names[c["given"]]
                c["likely_true_name"] = class_names[c["likely_true"]]

    clusters = None
    if cfg.n_clusters > 0:
        clusters, _ = kmeans(x, cfg.n_clusters, seed=cfg.seed)
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
        clusters,
    )


def _keep_most_severe(escalate, limit, probs, vote_dis, model_dis, critical) -> np.ndarray:
    """Keep the ``limit`` escalations with the strongest signal: the largest of annotator
    disagreement, model disagreement, critical-class probability and margin uncertainty."""
    n = escalate.size
    severity = np.zeros(n)
    for signal in (vote_dis, model_dis):
        if signal is not None:
            severity = np.maximum(severity, signal)
    if probs is not None:
        severity = np.maximum(severity, uncertainty(probs, "margin"))
        for c in critical:
            severity = np.maximum(severity, probs[:, c])
    idx = np.flatnonzero(escalate)
    keep = idx[np.argsort(-severity[idx], kind="stable")[:limit]]
    out = np.zeros(n, bool)
    out[keep] = True
    return out
