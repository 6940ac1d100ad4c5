"""Pool-based active learning on frozen embeddings: the label-efficiency benchmark.

One simulated project per (strategy, seed): a small random seed set is labelled, then rounds
alternate "retrain the head on what is labelled" and "buy the next batch chosen by the
strategy", until the largest budget. Labels are revealed from the ground truth (a perfect
annotator). The head is the service's own :class:`~ls_backend.head.ClassifierHead` and the
embeddings come from the service's own :class:`~ls_backend.embedding.ImageEmbedder`, cached
on disk so every strategy, seed and rerun shares them.

Strategies:

- ``random``: uniform over the unlabelled pool.
- ``entropy`` / ``margin``: top-b most uncertain by normalised entropy / 1 - (p1 - p2).
- ``coreset``: k-center greedy (``scoring.select_batch`` with ``diversity=1``).
- ``typiclust``: ``scoring.select_typical`` every round.
- ``alo``: the ``batch`` of :func:`scoring.pipeline.score_round` with default settings, i.e.
  exactly what the service writes to Label Studio (TypiClust while in cold start, then
  uncertainty + uniqueness + rarity with a diverse batch).

Metrics on the untouched test split: accuracy, macro-F1, recall of each rare class and their
mean, and the area under the learning curve (mean metric over the budget range).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ls_backend.state import atomic_write_bytes

STRATEGIES = ("random", "entropy", "margin", "coreset", "typiclust", "alo")
DEFAULT_CACHE_DIR = Path(os.environ.get("SMARTSIZE_BENCH_CACHE", ".work/bench-cache"))


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


@dataclass
class BenchData:
    """A dataset as images plus the key naming it in the embedding cache."""

    key: str
    images: np.ndarray
    labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def _check_images(images: np.ndarray, labels: np.ndarray, what: str) -> None:
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(
            f"{what}: images must be uint8 (n,h,w) or (n,h,w,3); got {images.dtype} {images.shape}"
        )
    if images.ndim == 4 and images.shape[3] != 3:
        raise ValueError(f"{what}: colour images must have 3 channels; got {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{what}: labels must be (n,) matching images; got {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{what}: labels must be >= 0")


def load_dataset(spec: str, split_seed: int = 0) -> BenchData:
    """``fashion-mnist``, ``digits`` or a path to an ``.npz`` (``images``, ``labels``, optional
    ``test_images``/``test_labels``/``class_names``; without a test split a stratified 25%
    split is made with ``split_seed``)."""
    from ls_backend.datasets import load_digits_dataset, load_fashion_mnist

    if spec == "fashion-mnist":
        ds = load_fashion_mnist()
        return BenchData(spec, ds.images, ds.labels, ds.test_images, ds.test_labels, ds.class_names)
    if spec == "digits":
        ds = load_digits_dataset()
        return BenchData(spec, ds.images, ds.labels, ds.test_images, ds.test_labels, ds.class_names)
    path = Path(spec)
    if path.suffix != ".npz" or not path.is_file():
        raise FileNotFoundError(f"dataset {spec!r}: use fashion-mnist, digits or an existing .npz")
    with np.load(path, allow_pickle=False) as data:
        if "images" not in data.files or "labels" not in data.files:
            raise ValueError(f"{path}: needs arrays 'images' and 'labels'")
        images = np.asarray(data["images"])
        labels = np.asarray(data["labels"]).astype(np.int64)
        has_test = "test_images" in data.files and "test_labels" in data.files
        test_images = np.asarray(data["test_images"]) if has_test else None
        test_labels = np.asarray(data["test_labels"]).astype(np.int64) if has_test else None
        names = [str(s) for s in data["class_names"]] if "class_names" in data.files else None
    _check_images(images, labels, str(path))
    key = f"{path.stem}-{_file_digest(path)}"
    if test_images is None:
        from sklearn.model_selection import train_test_split

        idx = np.arange(labels.size)
        tr, te = train_test_split(idx, test_size=0.25, stratify=labels, random_state=split_seed)
        images, test_images = images[tr], images[te]
        labels, test_labels = labels[tr], labels[te]
        key += f"-split{split_seed}"
    _check_images(test_images, test_labels, f"{path} (test)")
    k = int(max(labels.max(), test_labels.max())) + 1
    if names is None or len(names) < k:
        names = [str(i) for i in range(k)]
    return BenchData(key, images, labels, test_images, test_labels, tuple(names))


class EmbeddingStore:
    """Embeddings of one dataset split, cached row by row in ``cache_dir``.

    ``<key>-<split>-<backbone>-<size>.npy`` holds a float32 ``(n, d)`` array (memory-mapped)
    and ``.done.npy`` a boolean mask of the rows computed so far; only missing rows are ever
    embedded, so a benchmark on a 10k subset of Fashion-MNIST and a later one on 20k share
    the first 10k. ``.json`` records the embedder's ``cache_id``; a different id is an error.
    """

    def __init__(self, cache_dir: Path, backbone: str, image_size: int, batch_size: int = 64):
        self.cache_dir = Path(cache_dir)
        self.backbone = backbone
        self.image_size = int(image_size)
        self.batch_size = batch_size
        self._embedder = None

    def embedder(self):
        if self._embedder is None:
            from ls_backend.embedding import ImageEmbedder

            self._embedder = ImageEmbedder(
                backbone=self.backbone, image_size=self.image_size, batch_size=self.batch_size
            )
        return self._embedder

    def get(self, key: str, split: str, images: np.ndarray, indices=None) -> np.ndarray:
        """Embeddings ``(len(indices), d)`` of ``images[indices]`` (all rows by default)."""
        n = images.shape[0]
        idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        stem = self.cache_dir / f"{key}-{split}-{self.backbone}-{self.image_size}"
        arr_path, done_path, meta_path = (
            stem.with_suffix(".npy"),
            stem.with_suffix(".done.npy"),
            stem.with_suffix(".json"),
        )
        done = np.load(done_path) if done_path.exists() and arr_path.exists() else None
        if done is not None and done.shape != (n,):
            raise ValueError(f"{arr_path}: cached for {done.shape[0]} rows, dataset has {n}")
        missing = idx if done is None else idx[~done[idx]]
        missing = np.unique(missing)
        if missing.size:
            emb = self.embedder()
            if meta_path.exists():
                cached_id = json.loads(meta_path.read_text())["cache_id"]
                if cached_id != emb.cache_id:
                    raise ValueError(
                        f"{arr_path} holds embeddings of {cached_id}, not {emb.cache_id}; "
                        "delete it or use another --cache-dir"
                    )
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            if done is None:
                done = np.zeros(n, dtype=bool)
                arr = np.lib.format.open_memmap(arr_path, "w+", np.float32, (n, emb.dim))
                meta_path.write_text(json.dumps({"cache_id": emb.cache_id, "rows": n}))
            else:
                arr = np.load(arr_path, mmap_mode="r+")
            log(f"embedding {missing.size} {split} images of {key} with {emb.cache_id} ...")
            t0 = time.time()
            chunk = 2048
            for start in range(0, missing.size, chunk):
                rows = missing[start : start + chunk]
                arr[rows] = emb.embed(images[rows], progress=False)
                arr.flush()
                done[rows] = True
                _atomic_save(done_path, done)
                rate = (start + rows.size) / max(time.time() - t0, 1e-9)
                log(f"  {start + rows.size}/{missing.size} ({rate:.0f} img/s)")
            del arr
        arr = np.load(arr_path, mmap_mode="r")
        return np.asarray(arr[idx], dtype=np.float32)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


@dataclass
class Prepared:
    """Embedded pool and test split of one benchmark, plus what was done to make them."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    info: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def parse_int_list(text: str | None) -> list[int]:
    if not text:
        return []
    return [int(t) for t in str(text).split(",") if t.strip()]


def parse_float_list(text: str | None) -> list[float]:
    if not text:
        return []
    return [float(t) for t in str(text).split(",") if t.strip()]


def prepare(
    dataset: str,
    *,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    backbone: str = "tf_efficientnet_lite0",
    image_size: int = 96,
    pool_size: int | None = None,
    test_size: int | None = None,
    rare_classes=(),
    rare_fraction: float | None = None,
    data_seed: int = 0,
) -> Prepared:
    """Load, make the rare classes rare in the pool (the test split is untouched), subsample
    the pool / test split (uniformly, so rarity is preserved), and embed (cached)."""
    data = load_dataset(dataset)
    k = len(data.class_names)
    rng = np.random.default_rng(data_seed)
    pool = np.arange(data.labels.size)
    for c in rare_classes:
        if not 0 <= c < k:
            raise ValueError(f"rare class {c} is not in [0, {k})")
    if rare_fraction is not None:
        if not 0 < rare_fraction <= 1:
            raise ValueError("--rare-fraction must be in (0, 1]")
        keep = np.ones(pool.size, bool)
        for c in rare_classes:
            members = np.flatnonzero(data.labels == c)
            n_keep = max(1, round(rare_fraction * members.size))
            drop = rng.permutation(members)[n_keep:]
            keep[drop] = False
        pool = pool[keep]
    if pool_size is not None and pool_size < pool.size:
        # A prefix of one permutation: a smaller pool is a subset of a larger one (cache hits).
        pool = np.sort(rng.permutation(pool)[:pool_size])
    test = np.arange(data.test_labels.size)
    if test_size is not None and test_size < test.size:
        test = np.sort(np.random.default_rng(data_seed + 1).permutation(test)[:test_size])
    store = EmbeddingStore(cache_dir, backbone, image_size)
    x = store.get(data.key, "train", data.images, pool)
    x_test = store.get(data.key, "test", data.test_images, test)
    y, y_test = data.labels[pool], data.test_labels[test]
    info = {
        "dataset": dataset,
        "n_pool": int(pool.size),
        "n_test": int(test.size),
        "pool_class_counts": np.bincount(y, minlength=k).tolist(),
        "embedder": f"{backbone}@{image_size}px",
        "embedding_dim": int(x.shape[1]),
        "data_seed": data_seed,
    }
    return Prepared(x, y, x_test, y_test, data.class_names, info)


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


def prepare_from_args(args, **extra) -> Prepared:
    """:func:`prepare` with the data options every benchmark command shares."""
    return prepare(
        args.dataset,
        cache_dir=Path(args.cache_dir),
        backbone=args.backbone,
        image_size=args.image_size,
        pool_size=args.pool_size,
        test_size=args.test_size,
        data_seed=getattr(args, "data_seed", 0),
        **extra,
    )


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, rare=()) -> dict:
    from sklearn.metrics import f1_score, recall_score

    labels = list(range(n_classes))
    recalls = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    out = {
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "rare_recall": float(np.mean([recalls[c] for c in rare])) if len(rare) else None,
        "class_recall": [float(r) for r in recalls],
    }
    return out


def area_under_curve(fractions, values) -> float | None:
    """Mean of the learning curve over its budget range (trapezoids; in metric units)."""
    f = np.asarray(fractions, dtype=float)
    v = np.asarray(values, dtype=float)
    if f.size == 0 or np.any(~np.isfinite(v)):
        return None
    if f.size == 1:
        return float(v[0])
    order = np.argsort(f)
    f, v = f[order], v[order]
    return float(np.sum((f[1:] - f[:-1]) * (v[1:] + v[:-1]) / 2) / (f[-1] - f[0]))


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


def label_schedule(seed_size: int, checkpoints, growth: float, n_pool: int) -> list[int]:
    """Label counts at which the head is retrained: geometric steps of ``growth`` from the
    seed set, plus every checkpoint exactly."""
    if growth <= 1:
        raise ValueError("--growth must be > 1")
    top = min(max(checkpoints), n_pool)
    counts = {int(seed_size), *(int(c) for c in checkpoints if c <= top)}
    marks = sorted(c for c in counts if seed_size <= c <= top)
    for lo, hi in itertools.pairwise(marks):
        steps = max(1, math.ceil(math.log(hi / lo) / math.log(growth) - 1e-9))
        counts.update(round(lo * (hi / lo) ** (s / steps)) for s in range(1, steps))
    return sorted(c for c in counts if seed_size <= c <= top)


def fit_head(x, y, n_classes, seed, calibrate: bool = True):
    """The service's head fitted on (x, y), or None in cold start (fewer than 2 classes).
    ``calibrate=False`` skips the out-of-fold temperature (same argmax, 6x cheaper)."""
    from ls_backend.head import ClassifierHead, ColdStart

    try:
        return ClassifierHead(calibrate=calibrate).fit(x, y, n_classes, seed=seed)
    except ColdStart:
        return None


def acquire(
    strategy: str,
    x: np.ndarray,
    labels: np.ndarray,
    head,
    b: int,
    n_classes: int,
    rng: np.random.Generator,
    seed: int,
    class_names=None,
    alo_config: dict | None = None,
) -> np.ndarray:
    """Indices of the next ``b`` items to label (``labels``: -1 = unlabelled).
    ``alo_config`` overrides :class:`ScoringConfig` fields for ``alo`` (tuning runs only)."""
    from scoring import select_batch, select_typical, uncertainty
    from scoring.pipeline import ScoringConfig, score_round

    labeled = labels >= 0
    unl = np.flatnonzero(~labeled)
    b = min(b, unl.size)
    if b <= 0:
        return np.zeros(0, dtype=np.int64)
    if strategy == "random":
        return rng.choice(unl, b, replace=False)
    if strategy in ("entropy", "margin"):
        if head is None:
            return rng.choice(unl, b, replace=False)
        u = uncertainty(head.predict_proba(x[unl]), strategy)
        return unl[np.argsort(-u, kind="stable")[:b]]
    if strategy == "coreset":
        return select_batch(x, np.zeros(x.shape[0]), b, labeled=labeled, diversity=1.0)
    if strategy == "typiclust":
        return select_typical(x, b, labeled=labeled, seed=seed)
    if strategy == "alo":
        probs = oof = None
        if head is not None:
            probs = head.predict_proba(x)
            if head.oof_proba_ is not None:
                oof = probs.copy()
                oof[labeled] = head.oof_proba_
        rs = score_round(
            x,
            labels,
            pred_probs=probs,
            oof_probs=oof,
            n_classes=n_classes,
            class_names=class_names,
            config=ScoringConfig(**{**(alo_config or {}), "batch_size": b, "seed": seed}),
        )
        return np.asarray(rs.batch[:b], dtype=np.int64)
    raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


def simulate(
    data: Prepared,
    strategy: str,
    seed: int,
    schedule: list[int],
    rare=(),
    on_round=None,
    alo_config: dict | None = None,
) -> list[dict]:
    """One simulated project. Returns one dict per schedule point: ``n_labels`` and the test
    metrics of the head trained on that many labels (plus ``pred`` for ``on_round``)."""
    k = data.n_classes
    n = data.y.size
    labels = np.full(n, -1, dtype=np.int64)
    start = np.random.default_rng(seed).choice(n, schedule[0], replace=False)
    labels[start] = data.y[start]
    rng = np.random.default_rng(seed + 1000)
    points = []
    head = None
    for i, target in enumerate(schedule):
        have = int((labels >= 0).sum())
        if have < target:  # buy the difference, chosen with the previous round's head
            pick = acquire(
                strategy,
                data.x,
                labels,
                head,
                target - have,
                k,
                rng,
                seed,
                data.class_names,
                alo_config,
            )
            labels[pick] = data.y[pick]
        lab = np.flatnonzero(labels >= 0)
        head = fit_head(data.x[lab], labels[lab], k, seed)
        if head is None:
            majority = np.bincount(labels[lab], minlength=k).argmax()
            pred = np.full(data.y_test.size, majority)
        else:
            pred = head.predict(data.x_test)
        point = {"n_labels": int(lab.size), **evaluate(data.y_test, pred, k, rare)}
        if len(rare):  # how many of the pool's rare items the strategy has found so far
            point["rare_labelled"] = int(np.isin(labels[lab], list(rare)).sum())
        points.append(point)
        if on_round is not None:
            on_round(i, point, head, labels)
    return points


def run_label_efficiency(args) -> int:
    rare = parse_int_list(args.rare_classes)
    budgets = parse_float_list(args.budgets)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for s in strategies:
        if s not in STRATEGIES:
            raise ValueError(f"unknown strategy {s!r}; choose from {', '.join(STRATEGIES)}")
    if not budgets or any(not 0 < b <= 1 for b in budgets):
        raise ValueError("--budgets must be fractions in (0, 1]")
    if args.seeds < 1:
        raise ValueError("--seeds must be >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    data = prepare_from_args(
        args,
        rare_classes=rare,
        rare_fraction=args.rare_fraction,
    )
    n = data.y.size
    k = data.n_classes
    checkpoints = sorted({max(1, round(b * n)) for b in budgets})
    seed_size = args.seed_size or min(2 * k, checkpoints[0])
    seed_size = min(seed_size, checkpoints[0])
    schedule = label_schedule(seed_size, checkpoints, args.growth, n)
    log(
        f"pool {n} x {data.x.shape[1]}, test {data.y_test.size}, {k} classes, pool counts "
        f"{data.info['pool_class_counts']}; rare {rare}; schedule {schedule}"
    )

    t0 = time.time()
    full_head = fit_head(data.x, data.y, k, 0, calibrate=False)
    full = evaluate(data.y_test, full_head.predict(data.x_test), k, rare)
    log(
        f"full ({n} labels): accuracy {full['accuracy']:.4f} macro-F1 {full['macro_f1']:.4f} "
        f"rare recall {_fmt(full['rare_recall'])} [{time.time() - t0:.0f}s]"
    )
    from scoring.pipeline import ScoringConfig

    alo_config = {} if args.diversity is None else {"diversity": args.diversity}
    runs, curves = [], []

    def write(complete: bool) -> dict:
        summary = summarize(runs, strategies, budgets, full)
        results = {
            "dataset": args.dataset,
            "complete": complete,
            "full": {k_: full[k_] for k_ in ("accuracy", "macro_f1", "rare_recall")},
            "runs": runs,
            "rare_classes": rare,
            "rare_class_names": [data.class_names[c] for c in rare],
            "budgets": budgets,
            "strategies": strategies,
            "seeds": args.seeds,
            "schedule": schedule,
            "alo_diversity": alo_config.get("diversity", ScoringConfig().diversity),
            "info": data.info,
            "summary": summary,
            "curves": curves,
            "elapsed_s": round(time.time() - t_all, 1),
        }
        atomic_write_bytes(out / "results.json", json.dumps(results, indent=1).encode())
        return results

    for seed in range(args.seeds):
        for strategy in strategies:
            t0 = time.time()
            points = simulate(data, strategy, seed, schedule, rare, alo_config=alo_config)
            curves.append({"strategy": strategy, "seed": seed, "points": points})
            for b, c in zip(budgets, [max(1, round(b * n)) for b in budgets], strict=True):
                p = next(p for p in points if p["n_labels"] == c)
                runs.append(
                    {
                        "strategy": strategy,
                        "budget": b,
                        "seed": seed,
                        "n_labels": c,
                        "accuracy": p["accuracy"],
                        "macro_f1": p["macro_f1"],
                        "rare_recall": p["rare_recall"],
                        "rare_labelled": p.get("rare_labelled"),
                    }
                )
            last = points[-1]
            log(
                f"seed {seed} {strategy:9s}: {last['n_labels']} labels macro-F1 "
                f"{last['macro_f1']:.4f} rare recall {_fmt(last['rare_recall'])} "
                f"[{time.time() - t0:.0f}s]"
            )
            # Written after every project so a long run that is stopped keeps what it measured.
            write(complete=False)
    results = write(complete=True)
    plot_learning_curves(results, out / "learning_curves.png")
    print_summary(results)
    log(f"wrote {out / 'results.json'} and {out / 'learning_curves.png'}")
    return 0


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _mean_std(values):
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v))


def summarize(runs: list[dict], strategies, budgets, full: dict) -> dict:
    """Means over seeds per (strategy, budget), AULC, and the issue's targets."""
    table = {}
    for s in strategies:
        table[s] = {}
        for b in budgets:
            rows = [r for r in runs if r["strategy"] == s and r["budget"] == b]
            entry = {}
            for m in ("accuracy", "macro_f1", "rare_recall", "rare_labelled"):
                mean, std = _mean_std([r.get(m) for r in rows])
                entry[m] = mean
                entry[m + "_std"] = std
            entry["n_labels"] = rows[0]["n_labels"] if rows else None
            table[s][str(b)] = entry
    aulc = {}
    for s in strategies:
        aulc[s] = {}
        for m in ("macro_f1", "rare_recall", "accuracy"):
            per_seed = []
            for seed in sorted({r["seed"] for r in runs}):
                rows = sorted(
                    (r for r in runs if r["strategy"] == s and r["seed"] == seed),
                    key=lambda r: r["budget"],
                )
                if rows and rows[0][m] is not None:
                    per_seed.append(
                        area_under_curve([r["budget"] for r in rows], [r[m] for r in rows])
                    )
            mean, std = _mean_std(per_seed)
            aulc[s][m] = mean
            aulc[s][m + "_std"] = std
    targets = {}
    measured = {s for s in strategies if all(table[s][str(b)]["n_labels"] for b in budgets)}
    if "alo" in measured:  # a partial run (written after every project) may not have it yet
        b20 = min(budgets, key=lambda b: abs(b - 0.2))
        alo20 = table["alo"][str(b20)]
        targets["budget_for_20pct_check"] = b20
        targets["alo_macro_f1_within_1pt_of_full"] = bool(
            alo20["macro_f1"] >= full["macro_f1"] - 0.01
        )
        if full["rare_recall"] is not None:
            targets["alo_rare_recall_at_least_full"] = bool(
                alo20["rare_recall"] >= full["rare_recall"]
            )
            for other in ("random", "entropy"):
                if other in measured:
                    targets[f"alo_rare_recall_beats_{other}_every_budget"] = bool(
                        all(
                            table["alo"][str(b)]["rare_recall"]
                            > table[other][str(b)]["rare_recall"]
                            for b in budgets
                        )
                    )
    return {"mean_over_seeds": table, "aulc": aulc, "targets": targets}


def print_summary(results: dict) -> None:
    summary = results["summary"]
    budgets = results["budgets"]
    full = results["full"]
    log(
        f"\nfull: accuracy {full['accuracy']:.4f} macro-F1 {full['macro_f1']:.4f} "
        f"rare recall {_fmt(full['rare_recall'])}"
    )
    for metric in ("macro_f1", "rare_recall", "accuracy"):
        if metric == "rare_recall" and full["rare_recall"] is None:
            continue
        log(f"\n{metric} (mean over {results['seeds']} seeds)")
        log("strategy   " + " ".join(f"{b:>8g}" for b in budgets) + "     AULC")
        for s, row in summary["mean_over_seeds"].items():
            vals = " ".join(f"{row[str(b)][metric]:8.4f}" for b in budgets)
            log(f"{s:10s} {vals} {summary['aulc'][s][metric]:8.4f}")
    n_rare = sum(results["info"]["pool_class_counts"][c] for c in results["rare_classes"])
    if n_rare:
        log(f"\nrare items labelled, of the pool's {n_rare} (mean over {results['seeds']} seeds)")
        for s, row in summary["mean_over_seeds"].items():
            cells = [row[str(b)]["rare_labelled"] for b in budgets]
            vals = " ".join("     n/a" if v is None else f"{v:8.1f}" for v in cells)
            log(f"{s:10s} {vals}")
    if summary["targets"]:
        log("\ntargets: " + json.dumps(summary["targets"]))


def log_x_axis(ax) -> None:
    """A log-scaled x axis with major tick labels only (minor labels overlap)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_learning_curves(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("macro_f1", "macro-F1"), ("accuracy", "accuracy")]
    if results["full"]["rare_recall"] is not None:
        metrics.insert(1, ("rare_recall", "rare-class recall"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), dpi=80)
    axes = np.atleast_1d(axes)
    colors = plt.get_cmap("tab10")
    for ax, (metric, title) in zip(axes, metrics, strict=True):
        for i, s in enumerate(results["strategies"]):
            curves = [c for c in results["curves"] if c["strategy"] == s]
            if not curves:
                continue
            n = np.array([p["n_labels"] for p in curves[0]["points"]])
            vals = np.array([[p[metric] for p in c["points"]] for c in curves], dtype=float)
            mean = vals.mean(axis=0)
            lw = 2.2 if s == "alo" else 1.2
            ax.plot(n, mean, label=s, color=colors(i), lw=lw)
            if vals.shape[0] > 1:
                ax.fill_between(n, vals.min(axis=0), vals.max(axis=0), color=colors(i), alpha=0.18)
        ax.axhline(results["full"][metric], color="k", ls="--", lw=1, label="full pool")
        log_x_axis(ax)
        ax.set_xlabel("labels bought")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    n_pool = results["info"]["n_pool"]
    fig.suptitle(
        f"{results['dataset']}: pool {n_pool}, {results['seeds']} seed(s) (band = min-max)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: smartsize bench label-efficiency --help")
