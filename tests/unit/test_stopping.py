import math

import numpy as np
import pytest

from scoring import cohens_kappa, fit_learning_curve, stopping_rule


def test_fit_recovers_a_known_power_law():
    n = np.array([50, 100, 200, 400, 800, 1600])
    y = 0.92 - 0.8 * n**-0.5
    curve = fit_learning_curve(n, y)
    assert curve.a == pytest.approx(0.92, abs=2e-3)
    assert curve.c == pytest.approx(0.5, rel=0.05)
    np.testing.assert_allclose(curve.predict(n), y, atol=1e-3)
    assert curve.gain(1600) == pytest.approx(0.8 * 0.5 * 1600**-1.5, rel=0.1)


def test_stop_and_continue_and_labels_worth_buying():
    n = np.array([50, 100, 200, 400, 800])
    y = 0.9 - 0.5 * n**-0.5
    stop = stopping_rule(n, y, tau=1e-4)
    assert stop.decision == "STOP"
    assert stop.marginal_gain_per_cost == pytest.approx(0.25 * 800**-1.5, rel=0.1)
    assert stop.labels_worth_buying == 0
    assert "STOP" in stop.explanation and "tau" in stop.explanation
    go = stopping_rule(n, y, tau=1e-6)
    assert go.decision == "CONTINUE"
    # perf'(n*) = tau  <=>  n* = (b c / tau)^(1 / (c + 1)) = (0.25e6)^(2/3) ~ 3968
    assert go.labels_worth_buying == pytest.approx(3968 - 800, rel=0.1)
    # doubling the cost of a label halves the gain per unit cost
    dear = stopping_rule(n, y, tau=1e-6, cost_per_label=2.0)
    assert dear.marginal_gain_per_cost == pytest.approx(go.marginal_gain_per_cost / 2)


def test_noisy_history_does_not_stop_early():
    rng = np.random.default_rng(0)
    n = np.array([20, 40, 60, 80, 100])
    y = 0.95 - 2.0 * n**-0.7 + rng.normal(0, 0.01, n.size)
    d = stopping_rule(n, y, tau=1e-4)  # true gain at n=100 is 5.6e-4
    assert d.gain_interval[0] <= d.marginal_gain_per_cost <= d.gain_interval[1]
    assert d.decision == "CONTINUE"


def test_too_little_history():
    d = stopping_rule([10, 20], [0.5, 0.6])
    assert d.decision == "CONTINUE" and "at least 3" in d.explanation
    assert d.to_dict()["curve"] is None


def test_unstable_predictions_block_stop():
    n = np.array([50, 100, 200, 400, 800])
    y = 0.9 - 0.5 * n**-0.5
    d = stopping_rule(n, y, tau=1e-4, stability_kappa=0.9)
    assert d.decision == "CONTINUE" and "still changing" in d.explanation
    assert stopping_rule(n, y, tau=1e-4, stability_kappa=0.995).decision == "STOP"


def test_validation():
    with pytest.raises(ValueError, match="positive"):
        stopping_rule([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="one length"):
        stopping_rule([1, 2, 3], [0.1, 0.2])
    with pytest.raises(ValueError, match="tau"):
        stopping_rule([1, 2, 3], [0.1, 0.2, 0.3], tau=0)
    with pytest.raises(ValueError, match="finite"):
        stopping_rule([1, 2, 3], [0.1, math.nan, 0.3])


def test_cohens_kappa_hand_computed():
    assert cohens_kappa([0, 1, 2, 1], [0, 1, 2, 1]) == 1.0
    # po = 0.75, pe = (2*1 + 2*3) / 16 = 0.5 -> kappa 0.5
    assert cohens_kappa([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(0.5)
    assert cohens_kappa([1, 1], [1, 1]) == 1.0


def test_plateau_never_exceeds_a_perfect_score():
    # Three early points on a steep rise: an unbounded fit puts the plateau above 1.
    n = np.array([10, 20, 28])
    y = np.array([0.23, 0.71, 0.86])
    curve = fit_learning_curve(n, y)
    assert curve.a <= 1.0
    assert fit_learning_curve(n, y, max_metric=None).a > 1.0
    with pytest.raises(ValueError, match="max_metric"):
        fit_learning_curve(n, y * 2)
