"""Multi-label tasks (Label Studio ``choice="multiple"``) as k binary problems.

Shapes:

- ``label_probs (n, k)``: the probability that label ``j`` applies to item ``i``, independently
  per label (rows need not sum to 1).
- ``label_matrix (n, k)`` int: 1 = chosen, 0 = not chosen; an unlabelled item is a row of -1
  (an annotation decides every label of a task at once, so rows are all known or all unknown).
- ``votes (n, m, k)`` int: the same per annotator, -1 where annotator ``m`` did not label item
  ``n``.

Label ``j`` is the binary problem "does label j apply": probabilities ``[1 - p_j, p_j]`` and
labels ``y_j`` in {0, 1}. Every single-label score (uncertainty, disagreement, confident
learning, escalation rules) applies to it unchanged; this module builds those binary views and
merges per-label results into one value per item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoring._validation import as_int64
from scoring.disagreement import vote_stats
from scoring.uncertainty import uncertainty

__all__ = [
    "DECISION_THRESHOLD",
    "MultiLabelVotes",
    "as_label_matrix",
    "as_label_probs",
    "binary_view",
    "label_counts",
    "multilabel_decisions",
    "multilabel_uncertainty",
    "multilabel_votes",
]

# A label is predicted (chosen) when its probability is at least this.
DECISION_THRESHOLD = 0.5


def as_label_probs(label_probs, name: str = "label_probs", n: int | None = None) -> np.ndarray:
    """Validate an ``(n, k)`` matrix of per-label probabilities in [0, 1]; returns float64."""
    p = np.asarray(label_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (n, k) matrix; got shape {p.shape}")
    if n is not None and p.shape[0] != n:
        raise ValueError(f"{name} has {p.shape[0]} rows but {n} were expected")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if p.min() < -1e-9 or p.max() > 1 + 1e-9:
        raise ValueError(f"{name} must lie in [0, 1]; got range [{p.min():.4g}, {p.max():.4g}]")
    return np.clip(p, 0.0, 1.0)


def as_label_matrix(
    label_matrix, n: int | None = None, k: int | None = None, name: str = "labels"
) -> np.ndarray:
    """Validate an ``(n, k)`` int matrix of 0/1 choices with unlabelled rows all -1."""
    y = np.asarray(label_matrix)
    if y.ndim != 2 or y.shape[0] == 0 or y.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (n, k) matrix; got shape {y.shape}")
    y = as_int64(y, name, "integers -1, 0 or 1", kinds="iub")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} rows but {n} were expected")
    if k is not None and y.shape[1] != k:
        raise ValueError(f"{name} has {y.shape[1]} labels but {k} were expected")
    if not np.isin(y, (-1, 0, 1)).all():
        raise ValueError(f"{name} must hold only -1 (unlabelled), 0 and 1")
    missing = y < 0
    partial = missing.any(axis=1) & ~missing.all(axis=1)
    if partial.any():
        raise ValueError(
            f"{name}: {int(partial.sum())} row(s) mix -1 with 0/1 (e.g. row "
            f"{int(np.flatnonzero(partial)[0])}); a row is labelled entirely or not at all"
        )
    return y


def binary_view(label_probs: np.ndarray, j: int) -> np.ndarray:
    """``(n, 2)`` class probabilities ``[1 - p_j, p_j]`` of label ``j``'s binary problem."""
    p = label_probs[:, j]
    return np.column_stack([1.0 - p, p])


def multilabel_decisions(label_probs) -> np.ndarray:
    """0/1 choices ``(n, k)``: every label with P >= :data:`DECISION_THRESHOLD`."""
    return (as_label_probs(label_probs) >= DECISION_THRESHOLD).astype(np.int64)


def multilabel_uncertainty(label_probs, method: str = "entropy") -> np.ndarray:
    """Mean over labels of each label's binary uncertainty, ``(n,)`` in [0, 1].

    ``method`` is any of :data:`scoring.UNCERTAINTY_METHODS`; for a binary problem entropy is
    the entropy in bits and margin and least confidence both equal ``1 - |2 p - 1|``. The mean
    (not the max) keeps ranking resolution when many items have one doubtful label; the SME
    rules look at every label separately.
    """
    p = as_label_probs(label_probs)
    per_label = [uncertainty(binary_view(p, j), method) for j in range(p.shape[1])]
    return np.mean(per_label, axis=0)


def label_counts(label_matrix) -> np.ndarray:
    """How many labelled items carry each label, ``(k,)`` int."""
    y = as_label_matrix(label_matrix)
    return (y == 1).sum(axis=0)


@dataclass(frozen=True)
class MultiLabelVotes:
    """Annotators' votes merged per label.

    ``labels (n, k)``: per-label majority (a tie leaves the label off; unvoted rows -1).
    ``n_votes (n,)``: annotators who labelled the item. ``disagreement (n, k)``: each label's
    binary vote disagreement (:func:`scoring.vote_stats`), 1 when annotators split evenly.
    """

    labels: np.ndarray
    n_votes: np.ndarray
    disagreement: np.ndarray


def multilabel_votes(votes) -> MultiLabelVotes:
    """Merge per-annotator multi-label votes ``(n, m, k)`` (see the module docstring)."""
    v = np.asarray(votes)
    if v.ndim != 3 or 0 in v.shape:
        raise ValueError(f"votes must be a non-empty 3-D (n, m, k) array; got shape {v.shape}")
    n, m, k = v.shape
    # Each (item, annotator) row is one annotation: all k labels decided, or all -1.
    checked = as_label_matrix(v.reshape(n * m, k), name="votes").reshape(n, m, k)
    per_label = checked.transpose(0, 2, 1)  # (n, k, m)
    stats = [vote_stats(per_label[:, j, :], n_classes=2) for j in range(k)]
    labels = np.column_stack([s.majority for s in stats])
    dis = np.column_stack([s.disagreement for s in stats])
    # every label of an annotation is decided together, so any label's count is the item's
    return MultiLabelVotes(labels, stats[0].n_votes, dis)
