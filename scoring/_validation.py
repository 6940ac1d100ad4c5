"""Input validation shared by every scoring function (scikit-learn style: fail early, say why)."""

from __future__ import annotations

import numpy as np

PROB_SUM_ATOL = 1e-3


def as_probs(pred_probs, name: str = "pred_probs") -> np.ndarray:
    """Validate an ``(n, k)`` matrix of class probabilities; returns float64."""
    p = np.asarray(pred_probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, k); got shape {p.shape}")
    n, k = p.shape
    if n == 0:
        raise ValueError(f"{name} is empty (0 rows)")
    if k < 2:
        raise ValueError(f"{name} needs at least 2 classes; got k={k}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if p.min() < -1e-9 or p.max() > 1 + 1e-9:
        raise ValueError(f"{name} must lie in [0, 1]; got range [{p.min():.4g}, {p.max():.4g}]")
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1) > PROB_SUM_ATOL)
    if bad.size:
        raise ValueError(
            f"{name} rows must sum to 1; {bad.size} rows do not "
            f"(e.g. row {bad[0]} sums to {sums[bad[0]]:.6g})"
        )
    return np.clip(p, 0.0, 1.0)


def as_embeddings(embeddings, name: str = "embeddings", min_rows: int = 1) -> np.ndarray:
    """Validate an ``(n, d)`` float matrix; returns C-contiguous float32 (what faiss needs)."""
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d); got shape {x.shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows; got {x.shape[0]}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has 0 columns")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"{name} must be real numbers; got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def as_labels(
    labels,
    n: int | None = None,
    k: int | None = None,
    name: str = "labels",
    allow_missing: bool = False,
) -> np.ndarray:
    """Validate integer class labels ``(n,)`` in ``[0, k)`` (``-1`` = missing when allowed)."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,); got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"{name} is empty")
    y = as_int64(y, name, "integer class indices")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} rows but {n} were expected")
    low = -1 if allow_missing else 0
    if y.min() < low:
        raise ValueError(f"{name} contains {y.min()}; classes must be >= {low}")
    if k is not None and y.max() >= k:
        raise ValueError(f"{name} contains class {y.max()} but there are only k={k} classes")
    return y


def as_int64(values: np.ndarray, name: str, what: str, kinds: str = "iu") -> np.ndarray:
    """``values`` as int64 when they are integers (of dtype kind in ``kinds``, or whole finite
    floats); ``ValueError`` saying ``name must be <what>`` otherwise."""
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ValueError(f"{name} must be {what}")
    elif values.dtype.kind not in kinds:
        raise ValueError(f"{name} must be {what}; got dtype {values.dtype}")
    return values.astype(np.int64)


def as_unit_scores(values, n: int | None = None, name: str = "scores") -> np.ndarray:
    """Validate a ``(n,)`` vector of scores in ``[0, 1]``; returns float64."""
    s = np.asarray(values, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,); got shape {s.shape}")
    if s.size == 0:
        raise ValueError(f"{name} is empty")
    if n is not None and s.shape[0] != n:
        raise ValueError(f"{name} has {s.shape[0]} rows but {n} were expected")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if s.min() < -1e-9 or s.max() > 1 + 1e-9:
        raise ValueError(f"{name} must lie in [0, 1]; got range [{s.min():.4g}, {s.max():.4g}]")
    return np.clip(s, 0.0, 1.0)


def check_k(k: int, n: int, name: str = "k") -> int:
    """A neighbour count must be a positive int smaller than the number of rows."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {k!r}")
    if k < 1:
        raise ValueError(f"{name} must be >= 1; got {k}")
    if k >= n:
        raise ValueError(f"{name}={k} must be smaller than the number of items n={n}")
    return int(k)
