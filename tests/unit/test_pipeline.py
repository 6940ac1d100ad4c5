import numpy as np
import pytest

from scoring.pipeline import ScoringConfig, score_round


def blobs(n_per=(200, 200, 200, 10), d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(n_per), d)) * 3
    x = np.vstack([c + rng.normal(size=(m, d)) for c, m in zip(centers, n_per, strict=True)])
    y = np.concatenate([np.full(m, j) for j, m in enumerate(n_per)])
    return x, y


def model_probs(x, y, k, temperature=1.0):
    """A nearest-centroid 'model' fitted on the true labels: a stand-in head for pure tests."""
    centroids = np.stack([x[y == j].mean(axis=0) for j in range(k)])
    logits = -((x[:, None, :] - centroids[None]) ** 2).sum(-1) / (x.shape[1] * temperature)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def test_cold_start_covers_clusters_with_typical_items():
    x, y = blobs()
    res = score_round(x, np.full(len(y), -1), n_classes=4, config=ScoringConfig(batch_size=3))
    assert res.cold_start and res.uncertainty is None
    assert len(set(y[res.batch].tolist())) == 3  # three different clusters
    assert not res.escalate.any() and not res.label_issue.any()
    assert np.argmax(res.queue) == res.batch[0]


def test_warm_round_queue_batch_audit_and_escalation():
    x, y = blobs(seed=1)
    k = 4
    p = model_probs(x, y, k)
    labels = np.full(len(y), -1)
    rng = np.random.default_rng(2)
    lab = rng.choice(len(y), 300, replace=False)
    labels[lab] = y[lab]
    flipped = lab[y[lab] == 0][:15]
    labels[flipped] = 1  # a systematic 0 -> 1 labelling error
    cfg = ScoringConfig(batch_size=20, critical_classes=(3,))
    res = score_round(x, labels, pred_probs=p, oof_probs=p, class_names=list("abcd"), config=cfg)
    assert not res.cold_start
    unl = labels < 0
    assert np.all(res.queue[~unl] == 0) and np.all(unl[res.batch])
    order = np.argsort(-res.queue)
    assert order[: len(res.batch)].tolist() == res.batch.tolist()
    found = set(np.flatnonzero(res.label_issue).tolist())
    assert found <= set(flipped.tolist()) and len(found) >= 12  # CL is conservative, precise
    assert "labelled 'b' but the model" in res.label_issue_reason[min(found)]
    assert res.confusions[0]["given"] == 1 and res.confusions[0]["likely_true"] == 0
    assert res.confusions[0]["given_name"] == "b"
    assert all(bool(r) == e for r, e in zip(res.escalation_reason, res.escalate, strict=True))


def test_rare_class_items_rank_high_once_warm():
    x, y = blobs(seed=3)
    p = model_probs(x, y, 4)
    labels = np.full(len(y), -1)
    for j in range(4):
        labels[np.flatnonzero(y == j)[: 2 if j == 3 else 30]] = j
    res = score_round(x, labels, pred_probs=p, config=ScoringConfig(batch_size=10, diversity=0))
    rare_unlabelled = np.flatnonzero((y == 3) & (labels < 0))
    top = np.argsort(-res.queue)[:10]
    assert len(set(top.tolist()) & set(rare_unlabelled.tolist())) >= 5


def test_input_checks():
    x, y = blobs()
    with pytest.raises(ValueError, match="rows"):
        score_round(x, y[:-1])
    with pytest.raises(ValueError, match="rows"):
        score_round(x, y, pred_probs=np.full((3, 4), 0.25))


def test_escalations_are_capped_to_the_most_severe():
    x, y = blobs(seed=4)
    p = model_probs(x, y, 4, temperature=50.0)  # a flat, doubtful model: everything ambiguous
    labels = np.full(len(y), -1)
    labels[:100] = y[:100]
    many = score_round(x, labels, pred_probs=p, config=ScoringConfig(max_escalations=0))
    capped = score_round(x, labels, pred_probs=p, config=ScoringConfig(max_escalations=7))
    assert many.escalate.sum() > 7 and capped.escalate.sum() == 7
    assert set(np.flatnonzero(capped.escalate)) <= set(np.flatnonzero(many.escalate))
    assert all(bool(r) == e for r, e in zip(capped.escalation_reason, capped.escalate, strict=True))
    margin_gap = np.sort(p, axis=1)[:, -1] - np.sort(p, axis=1)[:, -2]
    kept = np.flatnonzero(capped.escalate)
    dropped = np.setdiff1d(np.flatnonzero(many.escalate), kept)
    assert margin_gap[kept].max() <= margin_gap[dropped].min() + 1e-12
