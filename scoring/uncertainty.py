"""Model uncertainty from predicted class probabilities."""

from __future__ import annotations

import numpy as np

from scoring._validation import as_probs

UNCERTAINTY_METHODS = ("entropy", "margin", "least_confidence")


def uncertainty(pred_probs, method: str = "entropy") -> np.ndarray:
    """Per-item uncertainty in ``[0, 1]``; 1 = most uncertain.

    Parameters
    ----------
    pred_probs : array (n, k)
        Class probabilities, rows summing to 1.
    method : {"entropy", "margin", "least_confidence"}
        - ``entropy``: ``-sum_j p_j log p_j / log k`` (0 for a one-hot row, 1 for uniform).
        - ``margin``: ``1 - (p_(1) - p_(2))``, one minus the gap between the two largest.
        - ``least_confidence``: ``(1 - p_(1)) * k / (k - 1)``, scaled so uniform gives 1.

    Returns
    -------
    array (n,) float64 in ``[0, 1]``.
    """
    p = as_probs(pred_probs)
    k = p.shape[1]
    if method == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(p), 0.0)
        out = -plogp.sum(axis=1) / np.log(k)
    elif method == "margin":
        top2 = np.partition(p, k - 2, axis=1)[:, -2:]
        out = 1.0 - (top2[:, 1] - top2[:, 0])
    elif method == "least_confidence":
        out = (1.0 - p.max(axis=1)) * k / (k - 1)
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {UNCERTAINTY_METHODS}")
    return np.clip(out, 0.0, 1.0)
