"""Disagreement: annotator vs model, annotator vs annotator, and a weighted consensus.

Multi-annotator input is an ``annotations (n, m)`` int matrix: one column per annotator, the
class index they chose for each item, ``-1`` where they did not label it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoring._validation import as_labels, as_probs


def annotator_model_disagreement(labels, pred_probs) -> np.ndarray:
    """``1 - P_model(given label)`` per item, in ``[0, 1]``.

    Use OUT-OF-FOLD ``pred_probs`` (the model must not have trained on the item), else the
    model simply agrees with what it memorised.

    labels : (n,) int in [0, k);  pred_probs : (n, k)  ->  (n,) float64
    """
    p = as_probs(pred_probs)
    y = as_labels(labels, n=p.shape[0], k=p.shape[1])
    return 1.0 - p[np.arange(p.shape[0]), y]


def _check_annotations(annotations, n_classes: int | None) -> tuple[np.ndarray, int]:
    a = np.asarray(annotations)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"annotations must be 2-D (n items, m annotators); got shape {a.shape}")
    flat = as_labels(a.ravel(), allow_missing=True, name="annotations").reshape(a.shape)
    k = int(n_classes) if n_classes is not None else int(flat.max()) + 1
    if k < 2:
        raise ValueError(f"need at least 2 classes; got n_classes={k}")
    if flat.max() >= k:
        raise ValueError(f"annotations contain class {flat.max()} but n_classes={k}")
    return flat, k


def _vote_counts(a: np.ndarray, k: int) -> np.ndarray:
    counts = np.zeros((a.shape[0], k), dtype=np.int64)
    rows, cols = np.nonzero(a >= 0)
    np.add.at(counts, (rows, a[rows, cols]), 1)
    return counts


@dataclass(frozen=True)
class VoteStats:
    """Per-item statistics of the annotators' votes, all ``(n,)``.

    ``n_votes``: annotations per item. ``majority``: most-voted class (-1 with no vote; ties go
    to the lowest index). ``agreement``: share of votes for the majority (1 with <= 1 vote).
    ``disagreement``: vote entropy normalised by ``log(min(k, n_votes))``, so two annotators who
    split are 1.0 and unanimous items are 0 (0 with fewer than 2 votes)."""

    n_votes: np.ndarray
    majority: np.ndarray
    agreement: np.ndarray
    disagreement: np.ndarray


def vote_stats(annotations, n_classes: int | None = None) -> VoteStats:
    """Annotator-annotator agreement for ``annotations (n, m)`` (``-1`` = not labelled)."""
    a, k = _check_annotations(annotations, n_classes)
    counts = _vote_counts(a, k)
    n_votes = counts.sum(axis=1)
    majority = np.where(n_votes > 0, counts.argmax(axis=1), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = counts / n_votes[:, None]
        plogp = np.where(share > 0, share * np.log(share), 0.0)
        entropy = -plogp.sum(axis=1)
        norm = np.log(np.minimum(k, np.maximum(n_votes, 2)))
        disagreement = np.where(n_votes >= 2, entropy / norm, 0.0)
        agreement = np.where(n_votes >= 2, counts.max(axis=1) / n_votes, 1.0)
    return VoteStats(n_votes, majority, agreement, np.clip(disagreement, 0.0, 1.0))


@dataclass(frozen=True)
class Consensus:
    """``labels (n,)`` consensus class (-1 for items nobody labelled), ``quality (n,)`` the
    posterior probability of that class, ``posterior (n, k)``, ``annotator_weights (m,)`` and
    ``model_weight`` (0 without a model)."""

    labels: np.ndarray
    quality: np.ndarray
    posterior: np.ndarray
    annotator_weights: np.ndarray
    model_weight: float


def _weight_vs_baseline(accuracy: float, baseline: float) -> float:
    # 1 for a perfect source, 0 for one no better than always answering the majority class.
    return float(max(1e-3, 1.0 - (1.0 - accuracy) / max(1e-3, 1.0 - baseline)))


def consensus(annotations, pred_probs=None, n_classes: int | None = None) -> Consensus:
    """Consensus labels from several annotators and (optionally) a model, CROWDLAB-style.

    1. Start from the majority vote (ties broken by the model's probability when given).
    2. Each annotator's accuracy ``a_j`` is their agreement with that consensus on items with
       at least two votes; their weight is ``1 - (1 - a_j) / (1 - b)`` where ``b`` is the share
       of the most common consensus class (so a weight means "better than guessing the
       majority class"), floored at 0.001.
    3. The model's weight is computed the same way from its argmax accuracy against the
       consensus, times ``sqrt(mean votes per labelled item)``.
    4. ``posterior_ic ∝ w_model p_ic + sum_j w_j L_j(c)``, where annotator j's likelihood is
       ``a_j`` for the class they chose and ``(1 - a_j) / (k - 1)`` for every other class.

    annotations : (n, m) int, -1 = not labelled;  pred_probs : optional (n, k), out-of-fold.
    """
    a, k = _check_annotations(annotations, n_classes if pred_probs is None else None)
    p = None
    if pred_probs is not None:
        p = as_probs(pred_probs)
        if p.shape[0] != a.shape[0]:
            raise ValueError(f"pred_probs has {p.shape[0]} rows, annotations {a.shape[0]}")
        if a.max() >= p.shape[1]:
            raise ValueError(f"annotations contain class {a.max()}; pred_probs has {p.shape[1]}")
        k = p.shape[1]
    counts = _vote_counts(a, k).astype(np.float64)
    n_votes = counts.sum(axis=1)
    labelled = n_votes > 0
    tie_break = p * 1e-6 if p is not None else -np.arange(k) * 1e-9
    start = np.where(labelled, (counts + tie_break).argmax(axis=1), -1)
    if not labelled.any():
        raise ValueError("annotations hold no label at all")
    baseline = np.bincount(start[labelled], minlength=k).max() / labelled.sum()

    m = a.shape[1]
    acc = np.full(m, np.nan)
    multi = n_votes >= 2
    for j in range(m):
        rows = multi & (a[:, j] >= 0)
        if rows.any():
            acc[j] = np.mean(a[rows, j] == start[rows])
    if np.all(np.isnan(acc)):
        acc[:] = 1.0 - 1e-3  # nobody overlaps: trust every annotator alike
    acc = np.where(np.isnan(acc), np.nanmean(acc), acc)
    acc = np.clip(acc, 1e-3, 1 - 1e-3)
    weights = np.array([_weight_vs_baseline(x, baseline) for x in acc])

    evidence = np.zeros((a.shape[0], k))
    for j in range(m):
        rows = np.flatnonzero(a[:, j] >= 0)
        like = np.full((rows.size, k), (1.0 - acc[j]) / (k - 1))
        like[np.arange(rows.size), a[rows, j]] = acc[j]
        evidence[rows] += weights[j] * like
    total = (weights[None, :] * (a >= 0)).sum(axis=1)

    model_weight = 0.0
    if p is not None:
        model_acc = np.mean(p[labelled].argmax(axis=1) == start[labelled])
        model_weight = _weight_vs_baseline(model_acc, baseline) * np.sqrt(n_votes[labelled].mean())
        evidence += model_weight * p
        total = total + model_weight
    with np.errstate(invalid="ignore", divide="ignore"):
        posterior = np.where(total[:, None] > 0, evidence / total[:, None], 1.0 / k)
    labels = np.where(labelled, posterior.argmax(axis=1), -1)
    quality = posterior[np.arange(a.shape[0]), np.maximum(labels, 0)]
    quality = np.where(labelled, quality, posterior.max(axis=1))
    return Consensus(labels, quality, posterior, weights, float(model_weight))
