"""SME escalation: which tasks a subject-matter expert should see, and why."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoring._validation import as_labels, as_probs, as_unit_scores


@dataclass(frozen=True)
class EscalationThresholds:
    """When a task goes to an SME (all configurable).

    - ``ambiguous_margin``: the model's two most probable classes are closer than this.
    - ``contested``: annotator-annotator vote disagreement (``VoteStats.disagreement``) at or
      above this.
    - ``model_disagreement``: for a labelled task, ``1 - P_model(given label)`` (out-of-fold) at
      or above this.
    - ``critical_prob`` / ``critical_confident``: a critical class is possible (probability at
      or above ``critical_prob``) but not clear-cut (below ``critical_confident``).
    """

    ambiguous_margin: float = 0.1
    contested: float = 0.5
    model_disagreement: float = 0.9
    critical_prob: float = 0.25
    critical_confident: float = 0.9

    def __post_init__(self):
        for name in (
            "ambiguous_margin",
            "contested",
            "model_disagreement",
            "critical_prob",
            "critical_confident",
        ):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"escalation threshold {name} must be in [0, 1]; got {v}")
        if self.critical_prob > self.critical_confident:
            raise ValueError("critical_prob must not exceed critical_confident")


def sme_escalation(
    *,
    pred_probs=None,
    labels=None,
    vote_disagreement=None,
    model_disagreement=None,
    critical_classes=(),
    thresholds: EscalationThresholds | None = None,
    class_names=None,
) -> tuple[np.ndarray, list[str]]:
    """Rules over the signals -> ``(escalate (n,) bool, reasons list of n str)``.

    A task is escalated when any rule fires; its reason lists every rule that fired, joined
    by "; " ("" when none). Rules:

    - **ambiguous** (needs ``pred_probs``): top-2 probability gap < ``ambiguous_margin``.
    - **contested** (needs ``vote_disagreement``): annotators split at or above ``contested``.
    - **model disagrees** (needs ``model_disagreement`` and ``labels`` with -1 = unlabelled):
      a labelled task whose given label the model finds improbable.
    - **critical** (needs ``pred_probs`` and ``critical_classes``, class indices): a critical
      class is possible but not clear-cut.

    pred_probs (n, k); labels (n,) int, -1 = unlabelled; vote_disagreement (n,) and
    model_disagreement (n,) in [0, 1].
    """
    t = thresholds or EscalationThresholds()
    n = None
    p = None
    if pred_probs is not None:
        p = as_probs(pred_probs)
        n = p.shape[0]
    y = None
    if labels is not None:
        y = as_labels(labels, n=n, k=None if p is None else p.shape[1], allow_missing=True)
        n = y.shape[0]
    vd = md = None
    if vote_disagreement is not None:
        vd = as_unit_scores(vote_disagreement, n, "vote_disagreement")
        n = vd.shape[0]
    if model_disagreement is not None:
        md = as_unit_scores(model_disagreement, n, "model_disagreement")
        n = md.shape[0]
    if n is None:
        raise ValueError("sme_escalation needs at least one signal")

    def name(j: int) -> str:
        return f"'{class_names[j]}'" if class_names is not None else f"class {j}"

    reasons: list[list[str]] = [[] for _ in range(n)]
    if p is not None:
        k = p.shape[1]
        top2 = np.argsort(-p, axis=1, kind="stable")[:, :2]
        p1 = p[np.arange(n), top2[:, 0]]
        p2 = p[np.arange(n), top2[:, 1]]
        for i in np.flatnonzero(p1 - p2 < t.ambiguous_margin):
            reasons[i].append(
                f"ambiguous: model torn between {name(top2[i, 0])} ({p1[i]:.2f})"
                f" and {name(top2[i, 1])} ({p2[i]:.2f})"
            )
        crit = [int(c) for c in critical_classes]
        if any(c < 0 or c >= k for c in crit):
            raise ValueError(f"critical_classes must be class indices in [0, {k})")
        for c in crit:
            hit = (p[:, c] >= t.critical_prob) & (p[:, c] < t.critical_confident)
            for i in np.flatnonzero(hit):
                reasons[i].append(f"critical: possible {name(c)} (P={p[i, c]:.2f})")
    if vd is not None:
        for i in np.flatnonzero(vd >= t.contested):
            reasons[i].append(f"contested: annotators disagree (disagreement {vd[i]:.2f})")
    if md is not None:
        if y is None:
            raise ValueError("model_disagreement needs labels (-1 for unlabelled tasks)")
        for i in np.flatnonzero((md >= t.model_disagreement) & (y >= 0)):
            reasons[i].append(f"model disagrees with the label {name(y[i])} (P={1 - md[i]:.2f})")
    escalate = np.array([bool(r) for r in reasons], dtype=bool)
    return escalate, ["; ".join(r) for r in reasons]
