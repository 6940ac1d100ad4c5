import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring import (
    EscalationThresholds,
    class_rarity,
    cold_start_labels,
    priority,
    queue_priority,
    select_batch,
    select_typical,
    sme_escalation,
)


def test_class_rarity_hand_computed():
    np.testing.assert_allclose(class_rarity([99, 99, 4, 0]), [0, 0, 0.95, 0.99])
    with pytest.raises(ValueError):
        class_rarity([1])


def test_priority_weighted_mean_and_reasons():
    unc = np.array([0.9, 0.1, 0.1])
    uniq = np.array([0.1, 0.9, 0.1])
    weights = {"uncertainty": 0.5, "uniqueness": 0.2}
    res = priority(uncertainty=unc, uniqueness=uniq, weights=weights)
    # weights 0.5 and 0.2 renormalised to 5/7 and 2/7
    np.testing.assert_allclose(res.score, 5 / 7 * unc + 2 / 7 * uniq)
    assert list(res.reason) == ["model uncertain", "unlike anything labelled", "model uncertain"]


def test_rarity_and_criticality():
    p = np.array([[0.9, 0.1], [0.1, 0.9]])
    res = priority(
        uncertainty=np.array([0.3, 0.3]),
        pred_probs=p,
        class_counts=[100, 3],
        class_names=["ok", "defect"],
    )
    assert res.score[1] > res.score[0]
    assert res.reason[1] == "likely rare class 'defect'"
    crit = priority(uncertainty=np.array([0.5, 0.5]), pred_probs=p, criticality=[1, 4])
    np.testing.assert_allclose(crit.criticality, [0.9 * 0.25 + 0.1, 0.1 * 0.25 + 0.9])
    np.testing.assert_allclose(crit.score, 0.5 * crit.criticality)


def test_priority_validation():
    with pytest.raises(ValueError, match="at least one signal"):
        priority()
    with pytest.raises(ValueError, match="unknown priority weights"):
        priority(uncertainty=[0.5], weights={"bogus": 1})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        priority(uncertainty=[1.5])
    with pytest.raises(ValueError, match="2 rows but 1"):
        priority(uncertainty=[0.5], uniqueness=[0.5, 0.5])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(0, 1000))
def test_priority_bounds_and_permutation(n, seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(3), n)
    sig = {k: rng.random(n) for k in ("uncertainty", "uniqueness", "disagreement")}
    res = priority(**sig, pred_probs=p, class_counts=[10, 5, 1], criticality=[1, 1, 3])
    assert np.all((res.score >= 0) & (res.score <= 1))
    perm = rng.permutation(n)
    res2 = priority(
        **{k: v[perm] for k, v in sig.items()},
        pred_probs=p[perm],
        class_counts=[10, 5, 1],
        criticality=[1, 1, 3],
    )
    np.testing.assert_allclose(res2.score, res.score[perm])


def test_select_batch_avoids_near_duplicates():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(5, 16))
    # 20 near-copies of one item with the highest scores, and 4 other distinct items
    x = np.vstack([base[0] + 1e-3 * rng.normal(size=(20, 16)), base[1:]])
    scores = np.r_[np.full(20, 0.95), np.full(4, 0.6)]
    plain = select_batch(x, scores, 5, diversity=0.0)
    assert np.all(plain < 20)
    diverse = select_batch(x, scores, 5, diversity=0.5)
    assert len(set(diverse.tolist()) & set(range(20))) == 1
    assert set(range(20, 24)) <= set(diverse.tolist())


def test_select_batch_respects_labeled_and_size():
    x = np.random.default_rng(1).normal(size=(30, 4))
    lab = np.zeros(30, bool)
    lab[:25] = True
    got = select_batch(x, np.full(30, 0.5), 10, labeled=lab)
    assert sorted(got.tolist()) == [25, 26, 27, 28, 29]
    with pytest.raises(ValueError, match="diversity"):
        select_batch(x, np.full(30, 0.5), 3, diversity=2)


def test_select_typical_covers_clusters_with_typical_points():
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(4, 8)) * 5
    x = np.vstack([c + 0.3 * rng.normal(size=(50, 8)) for c in centers])
    x[0] = centers[0] + 4 * rng.normal(size=8)  # an outlier in cluster 0
    got = select_typical(x, 4, seed=0)
    assert sorted(got // 50) == [0, 1, 2, 3]  # one from each cluster
    assert 0 not in got.tolist()


def test_queue_priority_orders_batch_first():
    q = queue_priority(np.array([0.1, 0.9, 0.5, 0.7]), batch=[2, 0])
    assert np.argsort(-q).tolist() == [2, 0, 1, 3]
    assert q.max() == 1.0 and q.min() == 0.0
    with pytest.raises(ValueError, match="distinct"):
        queue_priority(np.array([0.1, 0.2]), batch=[1, 1])


def test_cold_start_threshold():
    assert cold_start_labels(10) == 50 and cold_start_labels(2) == 10


def test_escalation_rules_and_reasons():
    p = np.array([[0.48, 0.47, 0.05], [0.9, 0.05, 0.05], [0.6, 0.1, 0.3], [0.02, 0.96, 0.02]])
    labels = np.array([-1, 1, -1, 1])
    esc, why = sme_escalation(
        pred_probs=p,
        labels=labels,
        vote_disagreement=np.array([0, 1.0, 0, 0]),
        model_disagreement=1 - p[np.arange(4), np.maximum(labels, 0)],
        critical_classes=[2],
        class_names=["ok", "scratch", "crack"],
    )
    assert esc.tolist() == [True, True, True, False]
    assert why[0].startswith("ambiguous: model torn between 'ok' (0.48) and 'scratch' (0.47)")
    assert "contested" in why[1] and "model disagrees with the label 'scratch'" in why[1]
    assert why[2] == "critical: possible 'crack' (P=0.30)"
    assert why[3] == ""


def test_escalation_threshold_validation():
    with pytest.raises(ValueError, match="ambiguous_margin"):
        EscalationThresholds(ambiguous_margin=2)
    with pytest.raises(ValueError, match="at least one signal"):
        sme_escalation()
    with pytest.raises(ValueError, match="needs labels"):
        sme_escalation(model_disagreement=np.array([0.5]))
