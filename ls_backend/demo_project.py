"""Demo and test projects built from real Fashion-MNIST images (Debian's dataset package).

Images travel as PNG ``data:`` URLs inside task data, so a project needs no file storage.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np

from ls_backend.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist

# Real multi-label attributes of Fashion-MNIST items: attribute -> the classes that have it.
# An item can carry several (a coat is a "top" with "long sleeves").
FASHION_ATTRIBUTES = {
    "footwear": (5, 7, 9),
    "top": (0, 2, 4, 6),
    "long sleeves": (2, 4, 6),
    "ankle-high": (9,),
    "bag": (8,),
}


def fashion_attributes(classes: np.ndarray) -> np.ndarray:
    """``(n, 5)`` 0/1 matrix of :data:`FASHION_ATTRIBUTES` for Fashion-MNIST class indices."""
    classes = np.asarray(classes)
    return np.column_stack([np.isin(classes, c) for c in FASHION_ATTRIBUTES.values()]).astype(int)


def choices_label_config(
    classes: Sequence[str],
    from_name: str = "label",
    to_name: str = "image",
    multiple: bool = False,
) -> str:
    """An image-classification label config (one Image, one Choices; single choice unless
    ``multiple``)."""
    from xml.sax.saxutils import quoteattr

    choices = "".join(f"<Choice value={quoteattr(c)}/>" for c in classes)
    kind = "multiple" if multiple else "single"
    return (
        f'<View><Image name="{to_name}" value="$image"/>'
        f'<Choices name="{from_name}" toName="{to_name}" choice="{kind}">{choices}'
        "</Choices></View>"
    )


def png_data_url(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def choice_result(
    label: str | Sequence[str], from_name: str = "label", to_name: str = "image"
) -> list[dict]:
    """The ``result`` of an annotation choosing ``label`` (or several labels)."""
    labels = [label] if isinstance(label, str) else list(label)
    return [
        {
            "from_name": from_name,
            "to_name": to_name,
            "type": "choices",
            "value": {"choices": labels},
        }
    ]


def fashion_tasks(
    n: int, classes: Sequence[int] = tuple(range(10)), rare: dict | None = None, seed: int = 0
) -> tuple[list[dict], np.ndarray, tuple[str, ...]]:
    """``n`` Fashion-MNIST training images of the given class indices, as Label Studio tasks.

    ``rare`` maps a class index to the fraction of the others' count it should have (e.g.
    ``{7: 0.05}`` makes Sneaker rare). Returns ``(tasks, true_label_index (n,), class_names)``
    where labels index into ``class_names`` (the chosen classes, in the order given).
    Each task's data holds ``image`` (data URL) and ``fmnist_index`` (row in the dataset).
    """
    ds = load_fashion_mnist()
    rng = np.random.default_rng(seed)
    rare = rare or {}
    weights = np.array([rare.get(c, 1.0) for c in classes], dtype=np.float64)
    counts = np.floor(n * weights / weights.sum()).astype(int)
    counts[np.argmax(weights)] += n - counts.sum()
    rows, labels = [], []
    for j, (c, m) in enumerate(zip(classes, counts, strict=True)):
        pick = rng.choice(np.flatnonzero(ds.labels == c), int(m), replace=False)
        rows.extend(pick.tolist())
        labels.extend([j] * int(m))
    order = rng.permutation(len(rows))
    rows = np.asarray(rows)[order]
    labels = np.asarray(labels)[order]
    tasks = [{"data": {"image": png_data_url(ds.images[r]), "fmnist_index": int(r)}} for r in rows]
    return tasks, labels, tuple(FASHION_MNIST_CLASSES[c] for c in classes)
