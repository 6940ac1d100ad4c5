"""A calibrated classifier head on frozen embeddings, and its versioned on-disk store.

Shapes: ``embeddings (n, d)`` float, ``labels (n,)`` int in ``[0, n_classes)``, probabilities
``(n, n_classes)`` with rows summing to 1.

The head is a multinomial logistic regression (scikit-learn, lbfgs) on L2-normalised embeddings
with ``class_weight="balanced"`` (rare classes are not drowned), followed by temperature scaling
fitted on out-of-fold logits (one scalar T minimising the negative log-likelihood of held-out
predictions). Classes with no training example get probability exactly 0.

Cold start: with no labels, or labels of only one class, there is nothing to discriminate.
:meth:`ClassifierHead.fit` then raises :class:`ColdStart` instead of producing fake
predictions; the caller ranks by embedding structure alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold
from threadpoolctl import threadpool_limits

from scoring.multilabel import multilabel_decisions

__all__ = [
    "ClassifierHead",
    "ColdStart",
    "ModelStore",
    "MultiLabelHead",
    "StoredHead",
    "expected_calibration_error",
    "l2_normalize",
]

_FORMAT = 1
_MULTILABEL = "multilabel"
_T_BOUNDS = (0.02, 50.0)


class ColdStart(RuntimeError):
    """Not enough labels to train a discriminative head (zero labels or a single class)."""


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero); float64 copy."""
    x = np.array(embeddings, dtype=np.float64, copy=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def _check_embeddings(embeddings: Any, n_features: int | None = None) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, d), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"embeddings must be real numbers, got dtype {x.dtype}")
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(f"embeddings have {x.shape[1]} features, the head expects {n_features}")
    if x.size and not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    return l2_normalize(x)


def _check_labels(labels: Any, n: int, n_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.mod(y, 1) == 0):
            raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if int(n_classes) < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be in [0, {n_classes}), got range [{y.min()}, {y.max()}]")
    return y


def _cold_start_reason(y: np.ndarray) -> str | None:
    if y.size == 0:
        return "cold start: no labelled examples yet"
    present = np.unique(y)
    if present.size < 2:
        return (
            f"cold start: all {y.size} labelled examples are class {int(present[0])}; "
            "at least two classes are needed"
        )
    return None


def blas_threads() -> int:
    """BLAS threads for fitting a head: ``SMARTSIZE_BLAS_THREADS``, default 1.

    Measured on the 2-core development machine (BENCHMARKS.md): with OpenBLAS's default of one
    thread per core, fitting on 2,000 x 1280 embeddings took 3x longer than with one thread on
    an idle machine, and 17-23x longer whenever other processes (Label Studio, a torch forward
    pass, another worker) wanted the cores, because OpenBLAS threads spin-wait for each other.
    """
    from ls_backend.config import parse_int_env

    return parse_int_env(os.environ, "SMARTSIZE_BLAS_THREADS", 1, low=1)


def _fit_linear(
    x: np.ndarray, y: np.ndarray, c: float, max_iter: int, class_weight: str | None, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W (m, d), b (m,), classes (m,)) of a softmax model over the m classes present in y."""
    model = LogisticRegression(
        C=c,
        max_iter=max_iter,
        class_weight=class_weight,
        random_state=seed,
        solver="lbfgs",
        tol=1e-3,  # measured: same accuracy as 1e-4 on Fashion-MNIST embeddings, ~25% faster
    )
    with warnings.catch_warnings(), threadpool_limits(limits=blas_threads(), user_api="blas"):
        warnings.filterwarnings("ignore", message=".*lbfgs failed to converge.*")
        warnings.filterwarnings("ignore", message=".*ConvergenceWarning.*")
        model.fit(x, y)
    classes = model.classes_.astype(np.int64)
    coef = model.coef_.astype(np.float64)
    intercept = model.intercept_.astype(np.float64)
    if classes.size == 2 and coef.shape[0] == 1:  # binary: sigmoid(z) == softmax([-z/2, z/2])
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef, intercept, classes


def _full_logits(
    x: np.ndarray, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, n_classes: int
) -> np.ndarray:
    logits = np.full((x.shape[0], n_classes), -np.inf)
    logits[:, classes] = x @ coef.T + intercept
    return logits


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Scalar T minimising the mean NLL of softmax(logits / T) (T = 1 if too little data)."""
    if y.size < 2:
        return 1.0
    rows = np.arange(y.size)

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y].mean())

    lo, hi = np.log(_T_BOUNDS[0]), np.log(_T_BOUNDS[1])
    result = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    best = float(result.x)
    return float(np.exp(best)) if nll(best) <= nll(0.0) else 1.0


class _LinearHead:
    """What both heads share: the logistic-regression hyper-parameters, their validation and
    their (pickle-free) array form."""

    def __init__(
        self,
        C: float = 10.0,
        max_iter: int = 1000,
        calibrate: bool = True,
        n_folds: int = 5,
        class_weight: str | None = "balanced",
    ) -> None:
        if C <= 0 or max_iter < 1 or n_folds < 2:
            raise ValueError("C must be > 0, max_iter >= 1, n_folds >= 2")
        self.C = float(C)
        self.max_iter = int(max_iter)
        self.calibrate = bool(calibrate)
        self.n_folds = int(n_folds)
        self.class_weight = class_weight
        self.coef_: np.ndarray | None = None
        self.intercept_: np.ndarray | None = None
        self.n_classes_: int | None = None
        self.n_features_: int | None = None
        self.oof_proba_: np.ndarray | None = None

    @property
    def is_ready(self) -> bool:
        """True once fitted (predictions are meaningful)."""
        return self.coef_ is not None

    def _require_fitted(self) -> None:
        if not self.is_ready:
            raise ColdStart("the head is not fitted (cold start): rank by embeddings alone")

    def _common_arrays(self) -> dict[str, np.ndarray]:
        return {
            "format": np.array(_FORMAT),
            "coef": np.asarray(self.coef_),
            "intercept": np.asarray(self.intercept_),
            "hyper": np.array([self.C, self.max_iter, float(self.calibrate), self.n_folds]),
            "balanced": np.array(self.class_weight == "balanced"),
        }

    @classmethod
    def _from_common_arrays(cls, arrays: dict[str, np.ndarray]):
        fmt = int(arrays["format"])
        if fmt != _FORMAT:
            raise ValueError(f"unsupported head format {fmt} (this code reads {_FORMAT})")
        c, max_iter, calibrate, n_folds = (float(v) for v in arrays["hyper"])
        head = cls(
            C=c,
            max_iter=int(max_iter),
            calibrate=bool(calibrate),
            n_folds=int(n_folds),
            class_weight="balanced" if bool(arrays["balanced"]) else None,
        )
        head.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        head.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        head.n_features_ = int(head.coef_.shape[1])
        return head


class ClassifierHead(_LinearHead):
    """Multinomial logistic regression on L2-normalised embeddings, temperature-calibrated.

    Args:
        C: inverse L2 regularisation strength (scikit-learn's ``C``).
        max_iter: lbfgs iterations.
        calibrate: fit the temperature on out-of-fold logits (else T = 1).
        n_folds: folds for the out-of-fold logits used by calibration.
        class_weight: ``"balanced"`` (default) or None.

    Fitted attributes: ``coef_ (m, d)``, ``intercept_ (m,)``, ``classes_ (m,)`` (the m classes
    present in training), ``n_classes_``, ``n_features_``, ``temperature_``, and
    ``oof_proba_ (n, n_classes)``: the calibrated out-of-fold probabilities of the training rows
    (None when ``calibrate=False``), equal to what :meth:`out_of_fold_proba` would return with
    the same seed, so a cycle need not compute them twice.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.classes_: np.ndarray | None = None
        self.temperature_: float = 1.0

    @staticmethod
    def cold_start_reason(labels: Any) -> str | None:
        """Why ``labels`` cannot train a head (a message), or None if they can."""
        return _cold_start_reason(np.asarray(labels).reshape(-1))

    # -------------------------------------------------------------- training

    def fit(self, embeddings: Any, labels: Any, n_classes: int, seed: int = 0) -> ClassifierHead:
        """Fit on ``embeddings (n, d)`` and integer ``labels (n,)``; returns self.

        Raises:
            ColdStart: no labels, or a single distinct class.
            ValueError: malformed inputs.
        """
        x = _check_embeddings(embeddings)
        y = _check_labels(labels, x.shape[0], n_classes)
        reason = _cold_start_reason(y)
        if reason:
            raise ColdStart(reason)
        coef, intercept, classes = _fit_linear(x, y, self.C, self.max_iter, self.class_weight, seed)
        temperature, oof = 1.0, None
        if self.calibrate:
            oof_logits, usable = self._oof_logits(x, y, int(n_classes), self.n_folds, seed)
            temperature = _fit_temperature(oof_logits[usable], y[usable])
            oof = softmax(oof_logits / temperature, axis=1)
        self.coef_, self.intercept_, self.classes_ = coef, intercept, classes
        self.n_classes_, self.n_features_ = int(n_classes), int(x.shape[1])
        self.temperature_ = temperature
        self.oof_proba_ = oof
        return self

    def _oof_logits(
        self, x: np.ndarray, y: np.ndarray, n_classes: int, n_folds: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold logits (n, k) (-inf for classes absent from a fold's training part) and
        a mask of rows whose fold model saw >= 2 classes including the row's own class."""
        n = y.size
        logits = np.full((n, n_classes), -np.inf)
        usable = np.zeros(n, dtype=bool)
        # A row whose fold saw a single class gets that fold's class prior (stored as a logit).
        counts = np.bincount(y, minlength=n_classes)
        n_splits = min(n_folds, int(counts.max()))
        if n_splits >= 2:
            splitter: Any = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        else:  # every class is a singleton: plain k-fold (at most leave-one-out)
            splitter = KFold(n_splits=min(n_folds, n), shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*least populated class.*")
            splits = list(splitter.split(x, y))
        for train, test in splits:
            train_classes = np.unique(y[train])
            if train_classes.size < 2:
                logits[np.ix_(test, train_classes)] = 0.0
                continue
            coef, intercept, classes = _fit_linear(
                x[train], y[train], self.C, self.max_iter, self.class_weight, seed
            )
            logits[test] = _full_logits(x[test], coef, intercept, classes, n_classes)
            usable[test] = np.isin(y[test], classes)
        return logits, usable

    def out_of_fold_proba(
        self, embeddings: Any, labels: Any, n_classes: int, n_folds: int = 5, seed: int = 0
    ) -> np.ndarray:
        """Calibrated out-of-fold probabilities (n, n_classes) of the labelled rows.

        Stratified k-fold (k = ``n_folds``, fewer when the largest class is smaller); each row
        is predicted by a model that never saw it. A class absent from a fold's training part
        gets probability 0 for that fold's rows (so a singleton class always looks
        mislabelled: downstream audits should require a minimum class size). The temperature
        is fitted on these same out-of-fold logits when ``calibrate`` is on.

        Raises:
            ColdStart: no labels, or a single distinct class.
        """
        x = _check_embeddings(embeddings)
        y = _check_labels(labels, x.shape[0], n_classes)
        reason = _cold_start_reason(y)
        if reason:
            raise ColdStart(reason)
        if n_folds < 2:
            raise ValueError(f"n_folds must be >= 2, got {n_folds}")
        logits, usable = self._oof_logits(x, y, int(n_classes), int(n_folds), seed)
        temperature = _fit_temperature(logits[usable], y[usable]) if self.calibrate else 1.0
        return softmax(logits / temperature, axis=1)

    # -------------------------------------------------------------- inference

    def decision_function(self, embeddings: Any) -> np.ndarray:
        """Uncalibrated logits (n, n_classes); -inf for classes never seen in training."""
        self._require_fitted()
        assert self.coef_ is not None and self.intercept_ is not None
        assert self.classes_ is not None and self.n_classes_ is not None
        x = _check_embeddings(embeddings, self.n_features_)
        return _full_logits(x, self.coef_, self.intercept_, self.classes_, self.n_classes_)

    def predict_proba(self, embeddings: Any) -> np.ndarray:
        """Calibrated probabilities (n, n_classes); unseen classes get exactly 0."""
        logits = self.decision_function(embeddings)
        if logits.shape[0] == 0:
            return np.zeros_like(logits)
        return softmax(logits / self.temperature_, axis=1)

    def predict(self, embeddings: Any) -> np.ndarray:
        """Most probable class index per row (n,)."""
        return np.argmax(self.predict_proba(embeddings), axis=1)

    # -------------------------------------------------------------- persistence

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays describing the fitted head (no pickle)."""
        self._require_fitted()
        return {
            **self._common_arrays(),
            "classes": np.asarray(self.classes_),
            "n_classes": np.array(self.n_classes_),
            "temperature": np.array(self.temperature_),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ClassifierHead:
        """Inverse of :meth:`to_arrays`."""
        head = cls._from_common_arrays(arrays)
        head.classes_ = np.asarray(arrays["classes"], dtype=np.int64)
        head.n_classes_ = int(arrays["n_classes"])
        head.temperature_ = float(arrays["temperature"])
        if head.coef_.shape[0] != head.classes_.size or head.intercept_.size != head.classes_.size:
            raise ValueError("corrupt head: coefficient and class shapes disagree")
        return head


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Expected calibration error of top-1 confidence: sum over equal-width confidence bins of
    (bin share) * |accuracy - mean confidence|. 0 is perfect; range [0, 1]."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (n, k), got shape {p.shape}")
    y = _check_labels(labels, p.shape[0], max(p.shape[1], 2))
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    if p.shape[0] == 0:
        return 0.0
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


# ------------------------------------------------------------------ persistence

_VERSION_RE = re.compile(r"^smartsize-\d{8}T\d{12}Z-[0-9a-f]{8}$")
_STALE_TMP_S = 3600.0


def _binary_logit(x: np.ndarray, y: np.ndarray, c: float, max_iter: int, cw, seed: int):
    """``(w (d,), b)`` of label-applies logits ``x @ w + b`` for 0/1 labels ``y``. A label
    that is always (or never) chosen in ``y`` gets ``w = 0`` and the log-odds of its smoothed
    rate, so it predicts its prior instead of failing."""
    positives = int(y.sum())
    if 0 < positives < y.size:
        coef, intercept, _ = _fit_linear(x, y, c, max_iter, cw, seed)
        return coef[1] - coef[0], float(intercept[1] - intercept[0])
    rate = (positives + 0.5) / (y.size + 1.0)
    return np.zeros(x.shape[1]), float(np.log(rate / (1.0 - rate)))


def _fit_platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` minimising the NLL of ``sigmoid(a z + b)`` for 0/1 labels ``y``, with
    ``a`` in the temperature bounds; the identity ``(1, 0)`` unless it does better (and always
    for a label whose rows are all 0 or all 1, which carry no calibration information)."""
    if y.size < 2 or y.min() == y.max():
        return 1.0, 0.0
    sign = 2.0 * y - 1.0

    def nll(params: np.ndarray) -> float:
        return float(np.logaddexp(0.0, -sign * (params[0] * logits + params[1])).mean())

    bounds = [(1.0 / _T_BOUNDS[1], 1.0 / _T_BOUNDS[0]), (-20.0, 20.0)]
    result = minimize(nll, np.array([1.0, 0.0]), method="L-BFGS-B", bounds=bounds)
    if result.success and nll(result.x) < nll(np.array([1.0, 0.0])):
        return float(result.x[0]), float(result.x[1])
    return 1.0, 0.0


def _check_label_matrix(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 2 or y.shape[0] != n or y.shape[1] < 1:
        raise ValueError(f"label matrix must have shape ({n}, k) with k >= 1, got {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("label matrix must hold only 0 (label not chosen) and 1 (chosen)")
    return y.astype(np.int64)


class MultiLabelHead(_LinearHead):
    """Multi-label head: one binary logistic regression per label (one-vs-rest) on
    L2-normalised embeddings, ``class_weight="balanced"`` within each label, and one
    Platt scaling per label (``P = sigmoid(a_j z + b_j)``) fitted on out-of-fold logits: a
    temperature alone cannot undo the intercept shift that class balancing puts into a rare
    label's logits.

    ``fit(embeddings (n, d), labels (n, k) 0/1)``; probabilities are ``(n, k)``, independent per
    label (rows do not sum to 1); :meth:`predict` chooses every label with P >= 0.5.
    Cold start: no labelled rows, or no label that is chosen on some rows and not on others.
    Fitted attributes mirror :class:`ClassifierHead`: ``coef_ (k, d)``, ``intercept_ (k,)``,
    ``scale_ (k,)`` and ``shift_ (k,)`` (Platt), ``n_classes_`` (= k), ``n_features_``,
    ``oof_proba_ (n, k)``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scale_: np.ndarray | None = None
        self.shift_: np.ndarray | None = None

    @staticmethod
    def cold_start_reason(labels: Any) -> str | None:
        """Why a 0/1 label matrix ``(n, k)`` cannot train a head (a message), or None."""
        y = np.asarray(labels)
        if y.ndim != 2 or y.shape[0] == 0:
            return "cold start: no labelled examples yet"
        if not np.any(y.min(axis=0) != y.max(axis=0)):
            return (
                f"cold start: all {y.shape[0]} labelled examples carry the same set of labels; "
                "at least two different sets are needed"
            )
        return None

    def _fit_all(self, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        fits = [
            _binary_logit(x, y[:, j], self.C, self.max_iter, self.class_weight, seed)
            for j in range(y.shape[1])
        ]
        return np.stack([w for w, _ in fits]), np.array([b for _, b in fits])

    def fit(self, embeddings: Any, labels: Any, seed: int = 0) -> MultiLabelHead:
        """Fit on ``embeddings (n, d)`` and a 0/1 label matrix ``(n, k)``; returns self.

        Raises:
            ColdStart: see the class docstring.
            ValueError: malformed inputs.
        """
        x = _check_embeddings(embeddings)
        y = _check_label_matrix(labels, x.shape[0])
        reason = self.cold_start_reason(y)
        if reason:
            raise ColdStart(reason)
        coef, intercept = self._fit_all(x, y, seed)
        k = y.shape[1]
        scale, shift = np.ones(k), np.zeros(k)
        oof = None
        if self.calibrate:
            logits = np.zeros(y.shape)
            splitter = KFold(
                n_splits=min(self.n_folds, y.shape[0]), shuffle=True, random_state=seed
            )
            for train, test in splitter.split(x):
                w, b = self._fit_all(x[train], y[train], seed)
                logits[test] = x[test] @ w.T + b
            for j in range(k):
                scale[j], shift[j] = _fit_platt(logits[:, j], y[:, j])
            oof = expit(logits * scale + shift)
        self.coef_, self.intercept_ = coef, intercept
        self.scale_, self.shift_ = scale, shift
        self.n_classes_, self.n_features_ = int(k), int(x.shape[1])
        self.oof_proba_ = oof
        return self

    def decision_function(self, embeddings: Any) -> np.ndarray:
        """Uncalibrated per-label logits ``(n, k)``."""
        self._require_fitted()
        assert self.coef_ is not None and self.intercept_ is not None
        x = _check_embeddings(embeddings, self.n_features_)
        return x @ self.coef_.T + self.intercept_

    def predict_proba(self, embeddings: Any) -> np.ndarray:
        """Calibrated probability that each label applies, ``(n, k)``."""
        return expit(self.decision_function(embeddings) * self.scale_ + self.shift_)

    def predict(self, embeddings: Any) -> np.ndarray:
        """0/1 choices ``(n, k)``: every label with P >= 0.5 (``multilabel_decisions``)."""
        return multilabel_decisions(self.predict_proba(embeddings))

    def to_arrays(self) -> dict[str, np.ndarray]:
        self._require_fitted()
        return {
            **self._common_arrays(),
            "kind": np.array(_MULTILABEL),
            "platt": np.stack([np.asarray(self.scale_), np.asarray(self.shift_)]),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> MultiLabelHead:
        if str(arrays.get("kind")) != _MULTILABEL:
            raise ValueError("not a multi-label head")
        head = cls._from_common_arrays(arrays)
        platt = np.asarray(arrays["platt"], dtype=np.float64)
        k = head.coef_.shape[0]
        if head.intercept_.shape != (k,) or platt.shape != (2, k):
            raise ValueError("corrupt head: coefficient, intercept and Platt shapes disagree")
        head.scale_, head.shift_ = platt[0], platt[1]
        head.n_classes_ = int(k)
        return head


def head_from_arrays(arrays: dict[str, np.ndarray]) -> ClassifierHead | MultiLabelHead:
    """Load either kind of head from its :meth:`to_arrays` form."""
    if "kind" in arrays and str(arrays["kind"]) == _MULTILABEL:
        return MultiLabelHead.from_arrays(arrays)
    return ClassifierHead.from_arrays(arrays)


class StoredHead(NamedTuple):
    """A head loaded from a :class:`ModelStore`."""

    version: str
    head: ClassifierHead | MultiLabelHead
    meta: dict[str, Any]


class ModelStore:
    """Versioned head artefacts in one directory (use one directory per project).

    Each version is a single ``<version>.npz`` (coefficients plus the JSON meta as bytes;
    loaded with ``allow_pickle=False``), written to a temporary file in the same directory and
    renamed into place, so readers see whole files only. Version ids sort chronologically:
    ``smartsize-<UTC YYYYmmddTHHMMSSffffff>Z-<8 hex of the content hash>``. The newest ``keep``
    versions are kept.
    """

    def __init__(self, model_dir: str | os.PathLike[str], keep: int = 5) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.model_dir = Path(model_dir)
        self.keep = int(keep)

    def _path(self, version: str) -> Path:
        if not _VERSION_RE.match(version):
            raise ValueError(f"not a smartsize version id: {version!r}")
        return self.model_dir / f"{version}.npz"

    def versions(self) -> list[str]:
        """Stored version ids, oldest first."""
        if not self.model_dir.is_dir():
            return []
        found = (p.name[: -len(".npz")] for p in self.model_dir.glob("smartsize-*.npz"))
        return sorted(v for v in found if _VERSION_RE.match(v))

    def latest(self) -> str | None:
        """The newest version id, or None."""
        versions = self.versions()
        return versions[-1] if versions else None

    def save(
        self, head: ClassifierHead | MultiLabelHead, meta: dict[str, Any] | None = None
    ) -> str:
        """Store ``head`` with JSON-serialisable ``meta``; returns the new version id."""
        arrays = head.to_arrays()
        meta = dict(meta or {})
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        digest = hashlib.sha256()
        for key in sorted(arrays):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(arrays[key]).tobytes())
        meta_core = json.dumps(meta, sort_keys=True, allow_nan=False)
        digest.update(meta_core.encode())
        version = f"smartsize-{stamp}-{digest.hexdigest()[:8]}"
        meta.update(version=version, saved_at=stamp)
        meta_bytes = json.dumps(meta, sort_keys=True, allow_nan=False).encode("utf-8")
        arrays["meta_json"] = np.frombuffer(meta_bytes, dtype=np.uint8)

        self.model_dir.mkdir(parents=True, exist_ok=True)
        final = self._path(version)
        fd, tmp = tempfile.mkstemp(dir=self.model_dir, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self._fsync_dir()
        self._prune(protect=version)
        return version

    def load(self, version: str | None = None) -> StoredHead:
        """Load ``version`` (default: the newest). FileNotFoundError if absent."""
        if version is None:
            version = self.latest()
            if version is None:
                raise FileNotFoundError(f"no stored head in {self.model_dir}")
        path = self._path(version)
        if not path.is_file():
            raise FileNotFoundError(f"head version {version} not found in {self.model_dir}")
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.array(data[key]) for key in data.files}
        meta = json.loads(arrays.pop("meta_json").tobytes().decode("utf-8"))
        return StoredHead(version=version, head=head_from_arrays(arrays), meta=meta)

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.model_dir, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _prune(self, protect: str) -> None:
        versions = self.versions()
        for old in versions[: max(len(versions) - self.keep, 0)]:
            if old == protect:
                continue
            try:
                self._path(old).unlink()
            except FileNotFoundError:  # another worker pruned it first
                pass
        now = time.time()
        for tmp in self.model_dir.glob(".tmp-*.npz"):  # left by crashed writers
            try:
                if now - tmp.stat().st_mtime > _STALE_TMP_S:
                    tmp.unlink()
            except FileNotFoundError:
                pass
