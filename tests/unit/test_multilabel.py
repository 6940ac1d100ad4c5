"""Multi-label Choices: the binary-view scores (scoring.multilabel), the multi-label round
(scoring.pipeline.score_round_multilabel) and the one-vs-rest head (ls_backend.head)."""

import numpy as np
import pytest

from ls_backend.head import ColdStart, ModelStore, MultiLabelHead
from scoring.multilabel import (
    as_label_matrix,
    label_counts,
    multilabel_uncertainty,
    multilabel_votes,
)
from scoring.pipeline import ScoringConfig, score_round_multilabel

NAMES = ["cat", "dog", "outdoor", "night"]


def attribute_blobs(n=600, d=16, seed=0):
    """Items in 6 clusters; each cluster has a fixed set of the 4 labels (some two at once)."""
    sets = np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0]]
    )
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(len(sets), d)) * 3
    cluster = rng.integers(0, len(sets), n)
    return centers[cluster] + rng.normal(size=(n, d)), sets[cluster], cluster


def stand_in_probs(y_true, confidence=4.0, noise=1.0, seed=0):
    """Per-label probabilities of a decent model that knows the true labels (pure tests)."""
    z = (
        confidence * (2 * y_true - 1)
        + np.random.default_rng(seed).normal(size=y_true.shape) * noise
    )
    return 1 / (1 + np.exp(-z))


# ---------------------------------------------------------------------------- scoring.multilabel
def test_uncertainty_is_mean_binary_uncertainty():
    p = np.array([[0.5, 0.5], [0.0, 1.0], [0.5, 1.0]])
    np.testing.assert_allclose(multilabel_uncertainty(p), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(multilabel_uncertainty(p, "margin"), [1.0, 0.0, 0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        multilabel_uncertainty([[0.2, 1.5]])


def test_label_matrix_rows_are_all_known_or_all_unknown():
    assert as_label_matrix([[1, 0], [-1, -1]]).dtype == np.int64
    with pytest.raises(ValueError, match="mix -1"):
        as_label_matrix([[1, -1]])
    with pytest.raises(ValueError, match="only -1"):
        as_label_matrix([[2, 0]])
    with pytest.raises(ValueError, match="2-D"):
        as_label_matrix([1, 0])
    np.testing.assert_array_equal(label_counts([[1, 0], [1, 1], [0, 0]]), [2, 1])


def test_votes_merge_per_label_and_measure_splits():
    a = [[1, 0, 1], [1, 1, 0], [-1, -1, -1]]  # item 0: annotator 2 did not label
    b = [[1, 0, 0], [1, 1, 0], [-1, -1, -1]]
    votes = np.array([[a[0], b[0]], [a[1], b[1]], [a[2], b[2]]])
    merged = multilabel_votes(votes)
    np.testing.assert_array_equal(merged.labels[1], [1, 1, 0])  # unanimous
    assert merged.labels[0, 2] == 0  # a 1:1 tie leaves the label off
    assert merged.disagreement[0, 2] == pytest.approx(1.0)  # and is fully contested
    assert merged.disagreement[0, :2].max() == 0.0
    np.testing.assert_array_equal(merged.labels[2], [-1, -1, -1])
    np.testing.assert_array_equal(merged.n_votes, [2, 2, 0])
    with pytest.raises(ValueError, match="mix -1"):
        multilabel_votes(np.array([[[1, -1, 0]]]))


# ------------------------------------------------------------------------ score_round_multilabel
def test_cold_start_serves_typical_items_and_escalates_nothing():
    x, y, cluster = attribute_blobs()
    labels = np.full(y.shape, -1)
    res = score_round_multilabel(x, labels, config=ScoringConfig(batch_size=6))
    assert res.cold_start and res.uncertainty is None
    assert len(set(cluster[res.batch].tolist())) >= 5
    assert not res.escalate.any() and not res.label_issue.any()


def test_warm_round_audits_each_label_and_names_it():
    x, y, _ = attribute_blobs(seed=1)
    n = y.shape[0]
    rng = np.random.default_rng(3)
    lab = rng.choice(n, 300, replace=False)
    labels = np.full(y.shape, -1)
    labels[lab] = y[lab]
    # annotators forgot 'outdoor' on 20 of the labelled outdoor items
    forgot = lab[y[lab, 2] == 1][:20]
    labels[forgot, 2] = 0
    p = stand_in_probs(y, seed=4)
    res = score_round_multilabel(
        x, labels, pred_probs=p, oof_probs=p, class_names=NAMES, config=ScoringConfig()
    )
    assert not res.cold_start
    assert res.queue[lab].max() == 0 and res.queue.max() > 0
    found = np.flatnonzero(res.label_issue)
    # confident learning counts only those above the class threshold (as cleanlab does)
    assert len(set(forgot) & set(found)) >= 10
    assert len(found) <= 25  # precise: the other labelled items are right
    assert res.label_issue_reason[forgot[0]].startswith("[outdoor] labelled 'not outdoor'")
    pair = [c for c in res.confusions if c["label"] == 2]
    assert pair and pair[0]["given_name"] == "not outdoor"
    assert pair[0]["likely_true_name"] == "outdoor"
    # the model disagreeing with those labels escalates them, naming the label
    assert res.escalate[forgot].all()
    assert "[outdoor] model disagrees" in res.escalation_reason[forgot[0]]


def test_uncertain_and_rare_label_items_come_first():
    x, y, _ = attribute_blobs(seed=2)
    n = y.shape[0]
    labels = np.full(y.shape, -1)
    labelled = np.arange(200)
    labels[labelled] = y[labelled]
    labels[labelled, 3] = 0  # nobody has labelled 'night' yet: the rarest label
    p = stand_in_probs(y, seed=5)
    doubtful = 300
    p[doubtful] = 0.5
    res = score_round_multilabel(x, labels, pred_probs=p, class_names=NAMES)
    unl = np.arange(200, n)
    order = unl[np.argsort(-res.score[unl])]
    assert doubtful in order[:5]
    night = unl[y[unl, 3] == 1]
    top = order[: len(night)]
    assert np.isin(top, night).mean() > 0.5
    rare_reasons = [r for r in res.reason[night] if "rare" in r]
    assert rare_reasons and "'night'" in rare_reasons[0]


def test_critical_labels_and_contested_votes_escalate():
    x, y, _ = attribute_blobs(seed=3)
    n, k = y.shape
    labels = np.full(y.shape, -1)
    labels[:100] = y[:100]
    p = stand_in_probs(y, confidence=6.0, noise=0.1, seed=6)
    p[150, 3] = 0.4  # possibly 'night', not clear-cut
    votes = np.full((n, 2, k), -1)
    votes[:100, 0] = y[:100]
    votes[:100, 1] = y[:100]
    votes[7, 1, 0] = 1 - y[7, 0]  # the two annotators split on 'cat' for item 7
    cfg = ScoringConfig(critical_classes=(3,))
    res = score_round_multilabel(
        x, labels, pred_probs=p, votes=votes, class_names=NAMES, config=cfg
    )
    assert res.escalate[150] and "[night] critical: possible 'night'" in res.escalation_reason[150]
    assert res.escalate[7] and "contested" in res.escalation_reason[7]
    assert "[cat]" in res.escalation_reason[7]
    assert res.escalate.sum() <= 5


def test_multilabel_round_input_checks():
    x, y, _ = attribute_blobs(n=50)
    with pytest.raises(ValueError, match="labels"):
        score_round_multilabel(x, y[:, 0])
    with pytest.raises(ValueError, match="pred_probs has 3 labels"):
        score_round_multilabel(x, y, pred_probs=np.full((50, 3), 0.5))
    with pytest.raises(ValueError, match="class_names"):
        score_round_multilabel(x, y, class_names=["a"])


# ------------------------------------------------------------------------------- the head
def test_multilabel_head_learns_every_label_and_round_trips(tmp_path):
    x, y, _ = attribute_blobs(n=800, seed=4)
    head = MultiLabelHead().fit(x[:500], y[:500])
    pred = head.predict(x[500:])
    assert pred.shape == (300, 4)
    assert (pred == y[500:]).mean(axis=0).min() > 0.95
    assert head.oof_proba_.shape == (500, 4)
    assert ((head.oof_proba_ >= 0.5) == y[:500]).mean() > 0.95  # held out, still right
    store = ModelStore(tmp_path)
    version = store.save(head, {"labels": NAMES})
    loaded = store.load(version).head
    assert isinstance(loaded, MultiLabelHead)
    np.testing.assert_allclose(loaded.predict_proba(x[500:]), head.predict_proba(x[500:]))


def test_multilabel_head_cold_start_and_constant_labels():
    x, y, _ = attribute_blobs(n=100, seed=5)
    with pytest.raises(ColdStart, match="no labelled"):
        MultiLabelHead().fit(x[:0], y[:0])
    same = np.tile([1, 0, 0, 0], (20, 1))
    with pytest.raises(ColdStart, match="same set of labels"):
        MultiLabelHead().fit(x[:20], same)
    y2 = y.copy()
    y2[:, 3] = 0  # 'night' never chosen: predicted with its (low) prior, not an error
    head = MultiLabelHead().fit(x, y2)
    assert head.predict_proba(x)[:, 3].max() < 0.05
    with pytest.raises(ValueError, match="only 0"):
        MultiLabelHead().fit(x[:3], [[0, 2], [1, 0], [0, 1]])


# ------------------------------------------------------------------ Label Studio task JSON
def test_read_tasks_multilabel_votes_empty_choice_and_skips():
    from ls_backend.cycle import read_tasks
    from ls_backend.label_config import parse_label_config

    config = parse_label_config(
        '<View><Image name="image" value="$image"/><Choices name="label" toName="image" '
        'choice="multiple"><Choice value="cat"/><Choice value="dog"/><Choice value="outdoor"/>'
        "</Choices></View>"
    )

    def ann(who, choices, cancelled=False):
        result = [
            {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": c}}
            for c in ([choices] if choices is not None else [])
        ]
        return {"completed_by": who, "was_cancelled": cancelled, "result": result}

    tasks = [
        {"id": 1, "data": {"image": "a"}, "annotations": [ann(1, ["cat", "outdoor"])]},
        {"id": 2, "data": {"image": "b"}, "annotations": [ann(1, []), ann(2, ["dog"])]},
        {"id": 3, "data": {"image": "c"}, "annotations": [ann(1, ["dog"], cancelled=True)]},
        {"id": 4, "data": {"image": "d"}, "annotations": [ann(2, None)]},  # submitted, no choice
        {"id": 5, "data": {"image": "e"}},
        # only a choice that was renamed since: stale, not "none apply"
        {"id": 6, "data": {"image": "f"}, "annotations": [ann(1, ["kitten"])]},
    ]
    table = read_tasks(tasks, config)
    assert table.annotations.shape == (6, 2, 3)
    np.testing.assert_array_equal(table.labels[0], [1, 0, 1])
    assert table.labels[1, 1] == 0  # 1 of 2 annotators chose 'dog': a tie leaves it off
    np.testing.assert_array_equal(table.labels[3], [0, 0, 0])  # "none apply" is a label
    np.testing.assert_array_equal(table.labelled, [True, True, False, True, False, False])
    assert table.n_annotations == 4


def test_a_label_confused_both_ways_is_noise_not_a_systematic_confusion():
    x, y, _ = attribute_blobs(seed=6)
    labels = y.copy()
    rng = np.random.default_rng(7)
    both = rng.choice(len(y), 60, replace=False)
    labels[both, 0] = 1 - labels[both, 0]  # 'cat' flipped at random, in both directions
    p = stand_in_probs(y, seed=8)
    res = score_round_multilabel(x, labels, pred_probs=p, oof_probs=p, class_names=NAMES)
    assert res.label_issue[both].mean() > 0.5  # the items are still flagged one by one
    assert not [c for c in res.confusions if c["label"] == 0]


def test_predict_gives_no_prelabels_from_a_head_of_the_other_kind(tmp_path):
    from ls_backend.config import Settings
    from ls_backend.demo_project import choices_label_config
    from ls_backend.model import SmartsizeModel
    from ls_backend.state import project_dir, save_state

    x, y, _ = attribute_blobs(n=60)
    store = ModelStore(project_dir(tmp_path, 1) / "heads")
    version = store.save(MultiLabelHead().fit(x, y), {"labels": NAMES, "multi_label": True})
    save_state(tmp_path, 1, {"current_head": version, "current_version": "smartsize-v1"})
    model = SmartsizeModel(Settings(model_dir=tmp_path))
    tasks = [{"id": 1, "data": {"image": "data:image/png;base64,AAAA"}}]
    single = choices_label_config(NAMES)  # the project switched to single choice
    out = model.predict(tasks, project_id=1, label_config=single)
    assert out == [{"result": [], "score": 0.0, "model_version": "smartsize-v1"}]
