import numpy as np
import pytest

from scoring import (
    annotator_model_disagreement,
    confident_joint,
    consensus,
    label_issues,
    label_quality,
    systematic_confusions,
    vote_stats,
)


def test_label_quality_hand_computed():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    y = np.array([0, 1])
    np.testing.assert_allclose(label_quality(y, p), [0.7, 0.3])
    np.testing.assert_allclose(
        label_quality(y, p, "normalized_margin"), [(0.7 - 0.2 + 1) / 2, (0.3 - 0.6 + 1) / 2]
    )
    np.testing.assert_allclose(annotator_model_disagreement(y, p), [0.3, 0.7])
    with pytest.raises(ValueError, match="only k=3"):
        label_quality([0, 3], p)
    with pytest.raises(ValueError, match="3 rows but 2"):
        label_quality([0, 1, 2], p)


def noisy_problem(n=3000, k=5, seed=0, sharp=6.0):
    """True labels, model probabilities that know the truth (imperfectly)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), true] += sharp * rng.uniform(0.5, 1.0, n)
    p = np.exp(logits)
    return true, p / p.sum(axis=1, keepdims=True)


def test_confident_joint_counts_hand_example():
    # 3 items labelled 0; thresholds t0 = mean(0.9, 0.8, 0.1) = 0.6, t1 = mean(0.8, 0.7) = 0.75
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    y = np.array([0, 0, 0, 1, 1])
    joint = confident_joint(y, p, calibrate=False)
    # item 2 (labelled 0, p1=0.9 >= 0.75) counts as 0->1; item 4 (p1=0.7 < t1, p0=0.3 < t0)
    # is not counted
    np.testing.assert_array_equal(joint, [[2, 1], [0, 1]])
    assert label_issues(y, p).tolist() == [False, False, True, False, False]


def test_systematic_flip_is_found_and_named():
    true, p = noisy_problem()
    given = true.copy()
    rng = np.random.default_rng(1)
    flip = np.flatnonzero(true == 2)
    flip = rng.choice(flip, int(0.25 * flip.size), replace=False)
    given[flip] = 4  # 25% of class 2 systematically labelled as 4
    mask = label_issues(given, p)
    errors = given != true
    precision = (mask & errors).sum() / mask.sum()
    recall = (mask & errors).sum() / errors.sum()
    # Confident learning is conservative: the calibrated joint undercounts a one-sided flip.
    assert precision > 0.9 and recall > 0.7, (precision, recall)
    found = systematic_confusions(given, p)
    assert found and (found[0]["given"], found[0]["likely_true"]) == (4, 2)
    assert found[0]["count"] == pytest.approx(flip.size, rel=0.25)


def test_random_noise_is_not_called_systematic():
    true, p = noisy_problem(seed=3)
    rng = np.random.default_rng(4)
    given = true.copy()
    noisy = rng.random(true.size) < 0.1
    given[noisy] = (true[noisy] + rng.integers(1, 5, noisy.sum())) % 5
    assert label_issues(given, p).sum() > 0.7 * noisy.sum()
    assert systematic_confusions(given, p) == []


def test_clean_labels_give_few_issues():
    true, p = noisy_problem(seed=5)
    assert label_issues(true, p).mean() < 0.01


def test_vote_stats_hand_computed():
    a = np.array([[0, 0, -1], [0, 1, -1], [2, 2, 1], [1, -1, -1]])
    v = vote_stats(a, n_classes=3)
    assert v.n_votes.tolist() == [2, 2, 3, 1]
    assert v.majority.tolist() == [0, 0, 2, 1]
    np.testing.assert_allclose(v.agreement, [1, 0.5, 2 / 3, 1])
    h3 = -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3)) / np.log(3)
    np.testing.assert_allclose(v.disagreement, [0, 1, h3, 0])
    with pytest.raises(ValueError, match="n_classes=2"):
        vote_stats(a, n_classes=2)


def test_consensus_downweights_a_bad_annotator():
    rng = np.random.default_rng(6)
    n, k = 600, 4
    true = rng.integers(0, k, n)
    good = [np.where(rng.random(n) < 0.95, true, rng.integers(0, k, n)) for _ in range(2)]
    bad = np.where(rng.random(n) < 0.3, true, rng.integers(0, k, n))
    a = np.stack([good[0], good[1], bad], axis=1)
    a[rng.random(n) < 0.3, 1] = -1  # annotator 1 skipped some items
    c = consensus(a, n_classes=k)
    assert c.annotator_weights[2] < 0.5 * min(c.annotator_weights[:2])
    assert np.mean(c.labels == true) > 0.95
    majority = vote_stats(a, k).majority
    assert np.mean(c.labels == true) >= np.mean(majority == true)
    np.testing.assert_allclose(c.posterior.sum(axis=1), 1)


def test_consensus_with_model_breaks_ties_and_covers_unlabelled():
    p = np.array([[0.2, 0.8], [0.9, 0.1], [0.6, 0.4]])
    a = np.array([[0, 1], [0, -1], [-1, -1]])
    c = consensus(a, pred_probs=p)
    assert c.labels.tolist()[:2] == [1, 0]
    assert c.labels[2] == -1 and c.quality[2] > 0
    with pytest.raises(ValueError, match="no label at all"):
        consensus(np.full((3, 2), -1), n_classes=2)
