"""``smartsize bench embedding``: what the embedding pipeline costs on top of the model.

Three ways to embed the same ``n`` Fashion-MNIST images, at the same input size, batch size
and thread count, measured side by side in one run and interleaved over ``--repeats`` rounds
(the machine is shared; the median of each is reported):

- ``bare``: the model's forward pass on an already preprocessed batch (repeated to ``n``
  rows), i.e. the floor no pipeline can beat;
- ``array``: :meth:`ImageEmbedder.embed` on the uint8 array (timm preprocessing included);
- ``pipeline``: :func:`ls_backend.cycle.embed_tasks` on PNG ``data:`` URLs, as a cycle runs
  it: media fetch and decode with the safety checks, preprocessing, forward pass and writes
  to a fresh embedding cache;
- ``cached``: ``embed_tasks`` again on the same tasks, every row now a cache hit (what a
  second cycle on unchanged tasks pays).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def run_embedding_bench(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ls_backend.bench.simulate import log
    from ls_backend.cache import EmbeddingCache, content_hash
    from ls_backend.cycle import embed_tasks
    from ls_backend.datasets import load_fashion_mnist
    from ls_backend.demo_project import choices_label_config, png_data_url
    from ls_backend.embedding import ImageEmbedder
    from ls_backend.label_config import parse_label_config
    from ls_backend.media import MediaFetcher

    if args.n < 1 or args.repeats < 1:
        raise ValueError("--n and --repeats must be >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = load_fashion_mnist().images[: args.n]
    n = len(images)
    urls = [png_data_url(im) for im in images]
    ids = np.arange(1, n + 1)
    hashes = [content_hash(u) for u in urls]
    embedder = ImageEmbedder(image_size=args.image_size)
    config = parse_label_config(choices_label_config(["a", "b"]))
    fetcher = MediaFetcher("http://127.0.0.1:9", None)  # data: URLs never leave the process
    model = embedder.model
    batch = embedder.preprocess(images[: embedder.batch_size])

    def bare() -> None:
        with torch.inference_mode():
            for start in range(0, n, embedder.batch_size):
                rows = batch[: min(embedder.batch_size, n - start)]
                model.forward_head(model.forward_features(rows), pre_logits=True)

    def array() -> None:
        embedder.embed(images, progress=False)

    work = Path(tempfile.mkdtemp(prefix="smartsize-bench-embed-"))

    def pipeline(rep: int) -> tuple[float, float]:
        cache = EmbeddingCache(work / f"cache-{rep}", embedder.cache_id, embedder.dim)
        try:
            t0 = time.perf_counter()
            _, ok, errors, n_new = embed_tasks(ids, urls, hashes, config, embedder, cache, fetcher)
            first = time.perf_counter() - t0
            if errors or n_new != n or not ok.all():
                raise RuntimeError(f"pipeline embedded {n_new} of {n}: {list(errors.values())[:3]}")
            t0 = time.perf_counter()
            _, ok, _, n_new = embed_tasks(ids, urls, hashes, config, embedder, cache, fetcher)
            second = time.perf_counter() - t0
            if n_new or not ok.all():
                raise RuntimeError("the second pass re-embedded tasks: the cache missed")
        finally:
            cache.close()
        return first, second

    bare()  # warm-up: first-call allocations are not the pipeline's fault
    times: dict[str, list[float]] = {"bare": [], "array": [], "pipeline": [], "cached": []}
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        bare()
        times["bare"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        array()
        times["array"].append(time.perf_counter() - t0)
        first, second = pipeline(rep)
        times["pipeline"].append(first)
        times["cached"].append(second)
        log(
            f"round {rep + 1}/{args.repeats}: bare {times['bare'][-1]:.2f}s, array "
            f"{times['array'][-1]:.2f}s, pipeline {first:.2f}s, cached {second:.3f}s"
        )
    median = {k: statistics.median(v) for k, v in times.items()}
    results = {
        "n_images": n,
        "image_size": args.image_size,
        "batch_size": embedder.batch_size,
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "seconds": times,
        "median_s": median,
        "array_overhead": median["array"] / median["bare"] - 1,
        "pipeline_overhead": median["pipeline"] / median["bare"] - 1,
        # per-round ratios cancel the drift of a shared machine between rounds
        "array_overhead_paired": _paired(times["array"], times["bare"]),
        "pipeline_overhead_paired": _paired(times["pipeline"], times["bare"]),
        "cached_over_first": median["cached"] / median["pipeline"],
        "images_per_s": {k: n / v for k, v in median.items() if v > 0},
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    log(
        f"{n} images at {args.image_size}px, medians of {args.repeats}: bare {median['bare']:.2f}s,"
        f" array {median['array']:.2f}s (+{100 * results['array_overhead']:.1f}%), pipeline "
        f"{median['pipeline']:.2f}s (+{100 * results['pipeline_overhead']:.1f}%), second pass "
        f"from the cache {median['cached']:.3f}s ({100 * results['cached_over_first']:.2f}% of "
        f"the first); median of per-round ratios: array +"
        f"{100 * results['array_overhead_paired']:.1f}%, pipeline "
        f"+{100 * results['pipeline_overhead_paired']:.1f}%"
    )
    log(f"wrote {out / 'results.json'}")
    return 0


def _paired(slow: list[float], fast: list[float]) -> float:
    """Median over rounds of ``slow_i / fast_i - 1``."""
    return statistics.median(s / f for s, f in zip(slow, fast, strict=True)) - 1


def add_embedding_parser(bsub) -> None:
    p = bsub.add_parser(
        "embedding",
        help="embedding pipeline (media decode + cache + model) vs the bare model forward",
    )
    p.add_argument("--n", type=int, default=2000, help="images (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument(
        "--repeats", type=int, default=3, help="interleaved rounds (default: %(default)s)"
    )
    p.add_argument("--out", required=True)
    p.set_defaults(func=run_embedding_bench)
