"""The marginal-utility stopping rule: stop buying labels when the gain per unit cost < tau.

The learning curve is modelled as an inverse power law ``perf(n) = a - b * n**(-c)``
(``b >= 0``, ``0 < c <= 3``): performance rises with diminishing returns toward the plateau
``a``. Its slope ``perf'(n) = b c n**(-c-1)`` is the marginal gain of one more label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

C_GRID = np.geomspace(0.02, 3.0, 80)


@dataclass(frozen=True)
class LearningCurve:
    """``perf(n) = a - b * n**(-c)`` fitted to (labels, metric) points."""

    a: float
    b: float
    c: float
    rmse: float

    def predict(self, n) -> np.ndarray:
        return self.a - self.b * np.power(np.asarray(n, dtype=np.float64), -self.c)

    def gain(self, n) -> np.ndarray:
        """Marginal gain of one more label at ``n`` labels: ``b c n**(-c-1)``."""
        return self.b * self.c * np.power(np.asarray(n, dtype=np.float64), -self.c - 1)

    def labels_for_gain(self, gain: float) -> float:
        """The label count at which the marginal gain falls to ``gain``."""
        if gain <= 0:
            return math.inf
        if self.b <= 0:
            return 0.0
        return (self.b * self.c / gain) ** (1.0 / (self.c + 1.0))


def _check_history(n_labels, metric) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(n_labels, dtype=np.float64)
    y = np.asarray(metric, dtype=np.float64)
    if n.ndim != 1 or y.shape != n.shape:
        raise ValueError(f"n_labels and metric must be 1-D of one length; got {n.shape}, {y.shape}")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(y))):
        raise ValueError("n_labels and metric must be finite")
    if n.size and n.min() <= 0:
        raise ValueError("n_labels must be positive")
    return n, y


def fit_learning_curve(n_labels, metric, max_metric: float | None = 1.0) -> LearningCurve:
    """Least-squares fit of ``a - b n^-c``: for each ``c`` on a grid the model is linear in
    ``(a, b)`` and solved exactly (with ``b >= 0`` and ``a <= max_metric``, the best score the
    metric allows: 1 for accuracy or F1; None for no bound); the ``c`` with the lowest error
    wins. Deterministic, no iterative optimiser to fail. Needs >= 3 points with >= 2
    distinct n."""
    n, y = _check_history(n_labels, metric)
    if n.size < 3 or np.unique(n).size < 2:
        raise ValueError("a learning curve needs at least 3 points with 2 distinct label counts")
    if max_metric is not None and y.max() > max_metric:
        raise ValueError(f"metric values exceed max_metric={max_metric}")
    best = None
    for c in C_GRID:
        x = np.power(n, -c)
        xm, ym = x.mean(), y.mean()
        var = np.sum((x - xm) ** 2)
        slope = np.sum((x - xm) * (y - ym)) / var if var > 0 else 0.0
        b = max(0.0, -slope)  # perf rises with n <=> negative slope in x = n^-c
        a = ym + b * xm
        if max_metric is not None and a > max_metric:
            # the plateau cannot beat a perfect score: fix a there, refit b alone
            a = max_metric
            b = max(0.0, float(np.sum(x * (a - y)) / np.sum(x * x)))
        sse = float(np.sum((y - (a - b * x)) ** 2))
        if best is None or sse < best[0] - 1e-15:
            best = (sse, a, b, c)
    sse, a, b, c = best
    return LearningCurve(float(a), float(b), float(c), math.sqrt(sse / n.size))


def cohens_kappa(pred_a, pred_b) -> float:
    """Cohen's kappa between two label vectors (e.g. successive models' predictions on an
    unlabelled stop set): 1 = identical, 0 = agreement no better than chance."""
    a = np.asarray(pred_a)
    b = np.asarray(pred_b)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError("pred_a and pred_b must be non-empty 1-D arrays of one length")
    classes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    ia, ib = inv[: a.size], inv[a.size :]
    po = np.mean(ia == ib)
    pe = (
        float(
            np.sum(
                np.bincount(ia, minlength=classes.size) * np.bincount(ib, minlength=classes.size)
            )
        )
        / a.size**2
    )
    return 1.0 if pe >= 1.0 else float((po - pe) / (1.0 - pe))


@dataclass(frozen=True)
class StoppingDecision:
    """What the stopping rule decided and why. ``decision`` is "CONTINUE" or "STOP";
    gains are in metric units per unit of labelling cost; ``explanation`` is for people."""

    decision: str
    explanation: str
    labels_used: int
    tau: float
    cost_per_label: float
    marginal_gain_per_cost: float | None = None
    gain_interval: tuple[float, float] | None = None
    labels_worth_buying: int | None = None
    plateau: float | None = None
    stability_kappa: float | None = None
    curve: LearningCurve | None = None
    history: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {
            k: getattr(self, k)
            for k in (
                "decision",
                "explanation",
                "labels_used",
                "tau",
                "cost_per_label",
                "marginal_gain_per_cost",
                "labels_worth_buying",
                "plateau",
                "stability_kappa",
            )
        }
        out["gain_interval"] = list(self.gain_interval) if self.gain_interval else None
        out["curve"] = (
            None
            if self.curve is None
            else {"a": self.curve.a, "b": self.curve.b, "c": self.curve.c, "rmse": self.curve.rmse}
        )
        out["history"] = self.history
        return out


def stopping_rule(
    n_labels,
    metric,
    *,
    tau: float = 1e-4,
    cost_per_label: float = 1.0,
    stability_kappa: float | None = None,
    kappa_threshold: float = 0.99,
    n_bootstrap: int = 200,
    interval: float = 0.8,
    max_metric: float | None = 1.0,
    seed: int = 0,
    metric_name: str = "macro-F1",
) -> StoppingDecision:
    """Decide CONTINUE or STOP from the history of (labels used, validation metric).

    The marginal gain per unit cost at the current label count is ``perf'(n_now) / cost``
    from :func:`fit_learning_curve`; its ``interval`` band comes from a bootstrap over the
    history points. STOP when the UPPER end of that band is below ``tau`` (so noise alone does
    not stop a project that is still learning) and, when ``stability_kappa`` (Cohen's kappa of
    successive models on a stop set) is given, it is at least ``kappa_threshold``. The
    plateau is capped at ``max_metric`` (1 for F1 or accuracy).
    ``labels_worth_buying`` is how many more labels the fitted curve says still return at
    least ``tau`` each: ``n* - n_now`` with ``perf'(n*) = tau * cost``.
    """
    n, y = _check_history(n_labels, metric)
    if tau <= 0 or cost_per_label <= 0:
        raise ValueError("tau and cost_per_label must be positive")
    if not 0 < interval < 1:
        raise ValueError("interval must be in (0, 1)")
    history = {"n_labels": n.astype(int).tolist(), "metric": y.tolist()}
    used = int(n.max()) if n.size else 0
    common = dict(
        labels_used=used,
        tau=tau,
        cost_per_label=cost_per_label,
        stability_kappa=stability_kappa,
        history=history,
    )
    if n.size < 3 or np.unique(n).size < 3:
        return StoppingDecision(
            "CONTINUE",
            f"CONTINUE: {n.size} measurement(s) so far; the stopping rule needs at least 3 "
            "cycles at different label counts before it can estimate the gain per label.",
            **common,
        )

    curve = fit_learning_curve(n, y, max_metric)
    gain = float(curve.gain(used)) / cost_per_label
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_bootstrap):
        pick = rng.integers(0, n.size, n.size)
        if np.unique(n[pick]).size < 2:
            continue
        refit = fit_learning_curve(n[pick], y[pick], max_metric)
        boot.append(float(refit.gain(used)) / cost_per_label)
    lo_q, hi_q = (1 - interval) / 2, 1 - (1 - interval) / 2
    lo, hi = np.quantile(boot, [lo_q, hi_q]) if boot else (gain, gain)
    lo, hi = float(min(lo, gain)), float(max(hi, gain))
    target = curve.labels_for_gain(tau * cost_per_label)
    worth = int(max(0, math.ceil(target - used))) if math.isfinite(target) else None

    small_gain = hi < tau
    stable = stability_kappa is None or stability_kappa >= kappa_threshold
    decision = "STOP" if small_gain and stable else "CONTINUE"
    pct = round(interval * 100)
    words = [
        f"{decision}: each extra label now adds about {gain:.2g} {metric_name} per unit "
        f"cost ({pct}% interval {lo:.2g} to {hi:.2g}); tau is {tau:g}."
    ]
    if small_gain:
        words.append("Even the optimistic end of that interval is below tau.")
    else:
        words.append("The gain per label is still at or above tau, or too uncertain to rule out.")
    words.append(
        f"The fitted curve levels off at {curve.a:.3f} {metric_name}; {used} labels "
        f"used so far"
        + (f", about {worth} more would still be worth their cost." if worth is not None else ".")
    )
    if stability_kappa is not None:
        words.append(
            f"Successive models agree with kappa {stability_kappa:.3f} on the stop set"
            + (
                " (stable)."
                if stable
                else f", below {kappa_threshold}: predictions are still changing."
            )
        )
    return StoppingDecision(
        decision,
        " ".join(words),
        marginal_gain_per_cost=gain,
        gain_interval=(lo, hi),
        labels_worth_buying=worth,
        plateau=curve.a,
        curve=curve,
        **common,
    )
