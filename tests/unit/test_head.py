"""Classifier head, calibration, cold start and the model store (ls_backend.head)."""

import os

import numpy as np
import pytest

from ls_backend.head import (
    ClassifierHead,
    ColdStart,
    ModelStore,
    expected_calibration_error,
)


def blobs(n, d=32, k=3, sep=3.0, seed=0, weights=None):
    """Gaussian blobs around fixed class means (same means for every seed)."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(1234).normal(size=(k, d)) * sep
    y = rng.choice(k, size=n, p=weights)
    return means[y] + rng.normal(size=(n, d)), y


def test_separable_problem_is_learned():
    x, y = blobs(300)
    xt, yt = blobs(500, seed=1)
    head = ClassifierHead().fit(x, y, n_classes=3)
    assert head.is_ready
    proba = head.predict_proba(xt)
    assert proba.shape == (500, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert (proba.argmax(axis=1) == yt).mean() > 0.97
    assert np.array_equal(head.predict(xt), proba.argmax(axis=1))


def test_rare_class_is_not_drowned():
    x, y = blobs(400, sep=0.8, weights=[0.9, 0.07, 0.03], seed=2)
    xt, yt = blobs(3000, sep=0.8, weights=[0.34, 0.33, 0.33], seed=3)
    balanced = ClassifierHead(calibrate=False).fit(x, y, 3).predict(xt)
    plain = ClassifierHead(calibrate=False, class_weight=None).fit(x, y, 3).predict(xt)
    recall = lambda pred: (pred[yt == 2] == 2).mean()  # noqa: E731
    assert recall(balanced) > recall(plain)


def test_unseen_classes_get_zero_probability():
    x, y = blobs(120, k=3)
    y = np.where(y == 2, 0, y)  # class 2 never labelled; classes 3, 4 exist only in the config
    head = ClassifierHead().fit(x, y, n_classes=5)
    proba = head.predict_proba(blobs(50, seed=5)[0])
    assert proba.shape == (50, 5)
    assert np.all(proba[:, 2:] == 0.0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)


def test_binary_problem():
    x, y = blobs(100, k=2)
    head = ClassifierHead().fit(x, y, 2)
    proba = head.predict_proba(x)
    assert proba.shape == (100, 2)
    assert (proba.argmax(1) == y).mean() > 0.95


@pytest.mark.parametrize("labels", [[], [1], [2, 2, 2, 2]])
def test_cold_start(labels):
    x = np.random.default_rng(0).normal(size=(len(labels), 8))
    head = ClassifierHead()
    assert head.cold_start_reason(labels) is not None
    with pytest.raises(ColdStart, match="cold start"):
        head.fit(x, labels, n_classes=3)
    with pytest.raises(ColdStart):
        head.out_of_fold_proba(x, labels, n_classes=3)
    assert not head.is_ready
    with pytest.raises(ColdStart):
        head.predict_proba(np.zeros((2, 8)))
    assert ClassifierHead.cold_start_reason([0, 1]) is None


def test_out_of_fold_shape_and_quality():
    x, y = blobs(200)
    head = ClassifierHead()
    oof = head.out_of_fold_proba(x, y, n_classes=4, n_folds=5, seed=0)
    assert oof.shape == (200, 4)
    np.testing.assert_allclose(oof.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(oof[:, 3] == 0.0)
    assert (oof.argmax(1) == y).mean() > 0.95
    # fit() keeps the same out-of-fold probabilities for the caller
    head.fit(x, y, n_classes=4, seed=0)
    np.testing.assert_allclose(head.oof_proba_, oof)


def test_out_of_fold_with_tiny_classes_does_not_crash():
    x, y = blobs(23, k=3, seed=4)
    y[:] = 0
    y[0], y[1], y[2] = 1, 1, 2  # class 1 has 2 members, class 2 a single one
    oof = ClassifierHead().out_of_fold_proba(x, y, n_classes=3, n_folds=5)
    assert oof.shape == (23, 3) and np.isfinite(oof).all()
    np.testing.assert_allclose(oof.sum(axis=1), 1.0, atol=1e-9)
    assert oof[2, 2] == 0.0  # the singleton's class was absent from its fold's training part
    # two examples of two classes: every fold trains on a single class
    oof2 = ClassifierHead().out_of_fold_proba(x[:2], [0, 1], n_classes=2)
    assert oof2.shape == (2, 2) and np.isfinite(oof2).all()
    ClassifierHead().fit(x[:2], [0, 1], n_classes=2)  # and fitting still works


def test_temperature_scaling_reduces_ece_on_overconfident_model():
    # weakly separated classes, few examples, weak regularisation: raw softmax is overconfident
    x, y = blobs(200, d=64, sep=0.2, seed=0)
    xt, yt = blobs(3000, d=64, sep=0.2, seed=1)
    raw = ClassifierHead(C=100.0, calibrate=False).fit(x, y, 3)
    cal = ClassifierHead(C=100.0).fit(x, y, 3)
    ece_raw = expected_calibration_error(raw.predict_proba(xt), yt)
    ece_cal = expected_calibration_error(cal.predict_proba(xt), yt)
    assert cal.temperature_ > 1.5  # it softened the overconfident logits
    assert ece_raw > 0.15
    assert ece_cal < 0.5 * ece_raw and ece_cal < 0.1
    # argmax is unchanged by a temperature
    assert np.array_equal(raw.predict(xt), cal.predict(xt))


def test_expected_calibration_error():
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, [0, 1]) == 0.0
    assert expected_calibration_error(perfect, [1, 0]) == pytest.approx(1.0)
    half = np.full((4, 2), 0.5)
    assert expected_calibration_error(half, [0, 0, 1, 1]) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([[0.9, 0.1]] * 10), [0] * 5 + [1] * 5) == (
        pytest.approx(0.4)
    )
    with pytest.raises(ValueError):
        expected_calibration_error(np.ones(3), [0, 1, 2])


def test_input_validation():
    head = ClassifierHead()
    with pytest.raises(ValueError):
        head.fit(np.ones((3, 2)), [0, 1], 2)
    with pytest.raises(ValueError):
        head.fit(np.ones((2, 2)), [0, 5], 2)
    with pytest.raises(ValueError):
        head.fit(np.array([[np.nan, 1.0], [1.0, 1.0]]), [0, 1], 2)
    head.fit(*blobs(30, k=2), 2)
    with pytest.raises(ValueError, match="features"):
        head.predict_proba(np.ones((2, 5)))


def test_model_store_round_trip_and_versions(tmp_path):
    x, y = blobs(120)
    xt = blobs(20, seed=9)[0]
    store = ModelStore(tmp_path / "project-3", keep=3)
    assert store.versions() == [] and store.latest() is None
    with pytest.raises(FileNotFoundError):
        store.load()

    first = ClassifierHead().fit(x, y, 3)
    v1 = store.save(first, {"labels": ["cat", "dog", "bird"], "n_annotated": 120})
    assert v1.startswith("smartsize-") and len(v1.split("-")) == 3
    second = ClassifierHead(C=0.5).fit(x[:60], y[:60], 3)
    v2 = store.save(second, {"labels": ["cat", "dog", "bird"], "n_annotated": 60})
    assert store.versions() == [v1, v2] and v2 > v1

    latest = store.load()
    assert latest.version == v2 and latest.meta["n_annotated"] == 60
    assert latest.meta["version"] == v2
    np.testing.assert_allclose(latest.head.predict_proba(xt), second.predict_proba(xt))
    previous = store.load(v1)  # the previous version stays loadable
    np.testing.assert_allclose(previous.head.predict_proba(xt), first.predict_proba(xt))
    assert previous.meta["labels"] == ["cat", "dog", "bird"]
    assert previous.head.temperature_ == first.temperature_

    # only finished files, no temp files left; the format is not pickle
    names = sorted(os.listdir(store.model_dir))
    assert names == [f"{v1}.npz", f"{v2}.npz"]
    with np.load(store.model_dir / names[0], allow_pickle=False) as data:
        assert "coef" in data.files and "meta_json" in data.files

    for _ in range(3):
        store.save(first, {})
    versions = store.versions()
    assert len(versions) == 3 and v1 not in versions and v2 not in versions
    with pytest.raises(FileNotFoundError):
        store.load(v1)
    with pytest.raises(ValueError, match="version id"):
        store.load("../../etc/passwd")


def test_model_store_failed_write_leaves_nothing(tmp_path, monkeypatch):
    store = ModelStore(tmp_path)
    head = ClassifierHead().fit(*blobs(40, k=2), 2)
    v1 = store.save(head, {"ok": True})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.save(head, {"ok": False})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [f"{v1}.npz"]
    assert store.load().meta["ok"] is True
    with pytest.raises(ValueError):
        store.save(head, {"bad": float("nan")})
    with pytest.raises(ColdStart):
        store.save(ClassifierHead(), {})
