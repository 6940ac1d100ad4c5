"""Label audit: confident learning on out-of-fold probabilities, and systematic confusions.

All functions expect OUT-OF-FOLD ``pred_probs`` (each row predicted by a model that did not
train on that item); in-sample probabilities hide label errors because the model memorised them.
"""

from __future__ import annotations

import numpy as np

from scoring._validation import as_labels, as_probs

QUALITY_METHODS = ("self_confidence", "normalized_margin")


def _check(labels, pred_probs) -> tuple[np.ndarray, np.ndarray]:
    p = as_probs(pred_probs)
    y = as_labels(labels, n=p.shape[0], k=p.shape[1])
    return y, p


def label_quality(labels, pred_probs, method: str = "self_confidence") -> np.ndarray:
    """Per-item label quality in ``[0, 1]``; low = the given label is likely wrong.

    - ``self_confidence``: ``p[i, y_i]``.
    - ``normalized_margin``: ``(p[i, y_i] - max_{j != y_i} p[i, j] + 1) / 2``.

    labels (n,), pred_probs (n, k)  ->  (n,) float64
    """
    y, p = _check(labels, pred_probs)
    rows = np.arange(p.shape[0])
    given = p[rows, y]
    if method == "self_confidence":
        return given
    if method == "normalized_margin":
        others = p.copy()
        others[rows, y] = -np.inf
        return (given - others.max(axis=1) + 1.0) / 2.0
    raise ValueError(f"unknown method {method!r}; choose one of {QUALITY_METHODS}")


def class_thresholds(labels, pred_probs) -> np.ndarray:
    """Per-class confidence thresholds ``t_j = mean(p[i, j] for i labelled j)`` (k,).

    A class nobody labelled gets ``t_j = inf``: nothing is confidently counted into it."""
    y, p = _check(labels, pred_probs)
    k = p.shape[1]
    sums = np.bincount(y, weights=p[np.arange(y.size), y], minlength=k)
    counts = np.bincount(y, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.inf)


def confident_joint(labels, pred_probs, calibrate: bool = True) -> np.ndarray:
    """The confident joint ``C (k, k)``: ``C[i, j]`` estimates how many items labelled ``i``
    truly belong to ``j``.

    An item counts toward ``C[y, j]`` when ``p[j] >= t_j`` (``class_thresholds``); with several
    such ``j`` the most probable wins; items above no threshold are not counted. With
    ``calibrate`` each row is rescaled so it sums to the number of items labelled ``i`` (the
    counts then estimate the joint of given and true labels over the whole dataset).
    """
    y, p = _check(labels, pred_probs)
    k = p.shape[1]
    t = class_thresholds(y, p)
    above = p >= t[None, :]
    masked = np.where(above, p, -1.0)
    true_j = masked.argmax(axis=1)
    counted = above.any(axis=1)
    joint = np.zeros((k, k))
    np.add.at(joint, (y[counted], true_j[counted]), 1.0)
    if calibrate:
        given = np.bincount(y, minlength=k).astype(np.float64)
        row = joint.sum(axis=1)
        scale = np.divide(given, row, out=np.zeros(k), where=row > 0)
        joint *= scale[:, None]
    return joint


def label_issues(labels, pred_probs, *, min_margin: float = 0.0) -> np.ndarray:
    """Boolean mask ``(n,)`` of likely label errors (confident learning, prune by noise rate).

    For every off-diagonal cell ``(i, j)`` of the calibrated confident joint, the
    ``round(C[i, j])`` items labelled ``i`` with the largest margin ``p[j] - p[i]`` are flagged.
    An item whose most probable class IS its given label is never flagged, nor one whose margin
    is below ``min_margin``.
    """
    y, p = _check(labels, pred_probs)
    k = p.shape[1]
    joint = confident_joint(y, p)
    rows = np.arange(y.size)
    given_p = p[rows, y]
    mask = np.zeros(y.size, dtype=bool)
    for i in range(k):
        members = np.flatnonzero(y == i)
        if members.size == 0:
            continue
        for j in range(k):
            n_err = round(joint[i, j])
            if j == i or n_err == 0:
                continue
            margin = p[members, j] - given_p[members]
            top = members[np.argsort(-margin, kind="stable")[:n_err]]
            mask[top] = True
    mask &= p.argmax(axis=1) != y
    if min_margin > 0:
        mask &= (p.max(axis=1) - given_p) >= min_margin
    return mask


def systematic_confusions(
    labels, pred_probs, *, min_count: int = 5, min_share: float = 0.05, min_lift: float = 2.0
) -> list[dict]:
    """Class pairs ``given -> likely true`` whose label errors are concentrated.

    From the calibrated confident joint ``C``, for each given class ``i`` and other class ``j``:
    ``count = C[i, j]``, ``share = count / n_i`` (of all items labelled ``i``),
    ``concentration = count / sum_{j' != i} C[i, j']`` (of class ``i``'s estimated errors) and
    ``lift = concentration * (k - 1)`` (1 = what uniform, random noise would give). A pair is
    reported as systematic when ``count >= min_count``, ``share >= min_share`` and
    ``lift >= min_lift`` (the lift test is skipped for k = 2, where it is always 1).

    Returns a list of dicts ``{"given", "likely_true", "count", "share", "concentration",
    "lift"}`` sorted by count, largest first. Empty when errors look random or absent.
    """
    y, p = _check(labels, pred_probs)
    k = p.shape[1]
    joint = confident_joint(y, p)
    n_given = np.bincount(y, minlength=k)
    found = []
    for i in range(k):
        off = joint[i].copy()
        off[i] = 0.0
        total = off.sum()
        if total <= 0:
            continue
        for j in np.flatnonzero(off > 0):
            count = float(off[j])
            share = count / n_given[i]
            concentration = count / total
            lift = concentration * (k - 1)
            if count >= min_count and share >= min_share and (k == 2 or lift >= min_lift):
                found.append(
                    {
                        "given": int(i),
                        "likely_true": int(j),
                        "count": round(count, 2),
                        "share": float(share),
                        "concentration": float(concentration),
                        "lift": float(lift),
                    }
                )
    found.sort(key=lambda d: -d["count"])
    return found
