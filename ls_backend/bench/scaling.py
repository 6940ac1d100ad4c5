"""Scaling benchmark: uniqueness on n x d embeddings, smartsize against the brute-force
reference (scikit-learn ``NearestNeighbors(metric="cosine", algorithm="brute")``, the
search FiftyOne Brain runs beyond 15k items), in one run, as ratios.

Data: clustered Gaussian embeddings (``--clusters`` centres, unit noise), float32, seeded.
Each measurement runs in a fresh child process so that its peak memory (Linux ``VmHWM``
reset through ``/proc/self/clear_refs``, falling back to ``ru_maxrss``) is its own; the
figure reported is the peak resident memory above the input array. recall@k of smartsize's
neighbour lists (exact up to 50,000 rows, IVF above) is measured against exact neighbours of
``--recall-queries`` random rows (exact search of those rows against all rows), so it is
available even where the full brute-force reference is too slow to run.

Not covered here (service level, needs the running service): embedding-pipeline overhead,
``/webhook`` latency and the 10k-task cycle.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np

from ls_backend.bench.simulate import log, parse_int_list


def make_embeddings(n: int, d: int, clusters: int, seed: int) -> np.ndarray:
    """Clustered float32 embeddings, generated in chunks (no float64 n x d copy)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    x = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 65536):
        m = min(65536, n - start)
        assign = rng.integers(0, clusters, m)
        x[start : start + m] = centres[assign] + rng.standard_normal((m, d), dtype=np.float32)
    return x


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_kib() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _rss_kib() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reference_uniqueness(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FiftyOne-Brain-style uniqueness: mean-centred, sklearn brute cosine kNN with k + 1
    results, column 0 dropped, weighted mean of the k distances (0.6, 0.3, 0.1 for k = 3,
    else 1/j), divided by its max. Returns (scores, neighbour indices (n, k))."""
    from sklearn.neighbors import NearestNeighbors

    xc = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(xc)
    dist, idx = nn.kneighbors(xc)
    dist, idx = dist[:, 1:], idx[:, 1:]
    w = np.array([0.6, 0.3, 0.1]) if k == 3 else 1.0 / np.arange(1, k + 1)
    w = w / w.sum()
    score = dist @ w
    return score / max(score.max(), 1e-12), idx


def exact_neighbors(x: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact cosine k nearest OTHER rows of ``x[queries]`` (mean-centred), (q, k)."""
    from scoring import normalize

    xn = normalize(x, center=True)
    out = np.empty((queries.size, k), dtype=np.int64)
    for start in range(0, queries.size, 256):
        q = queries[start : start + 256]
        sims = xn[q] @ xn.T
        sims[np.arange(q.size), q] = -np.inf
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1)
        out[start : start + q.size] = np.take_along_axis(part, order, 1)
    return out


def _child(
    method: str, n: int, d: int, k: int, clusters: int, seed: int, n_queries: int, queue
) -> None:
    try:
        x = make_embeddings(n, d, clusters, seed)
        rng = np.random.default_rng(seed + 1)
        queries = np.sort(rng.choice(n, min(n_queries, n), replace=False))
        base = _rss_kib()
        exact_peak = _reset_peak()
        t0 = time.perf_counter()
        if method == "smartsize":
            from scoring import knn, uniqueness

            nb = knn(x, k, center=True, seed=seed)
            score = uniqueness(x, k, neighbors=nb)
            idx, exact_index = nb.indices, nb.exact
        else:
            score, idx = reference_uniqueness(x, k)
            exact_index = True
        seconds = time.perf_counter() - t0
        peak = _peak_kib()
        result = {
            "method": method,
            "n": n,
            "d": d,
            "seconds": seconds,
            "peak_extra_mib": max(0, peak - base) / 1024,
            "input_mib": x.nbytes / 2**20,
            "peak_exact": exact_peak,
            "exact_index": bool(exact_index),
        }
        truth = exact_neighbors(x, queries, k)
        found = idx[queries]
        hits = sum(np.intersect1d(found[i], truth[i]).size for i in range(queries.size))
        result["recall_at_k"] = hits / truth.size
        result["recall_queries"] = int(queries.size)
        queue.put((result, score.astype(np.float32)))
    except BaseException as exc:  # report, never hang the parent
        queue.put(({"method": method, "n": n, "d": d, "error": repr(exc)}, None))


def measure(
    method: str, n: int, d: int, k: int, clusters: int, seed: int, n_queries: int, timeout: float
) -> tuple[dict, np.ndarray | None]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(method, n, d, k, clusters, seed, n_queries, queue))
    proc.start()
    try:
        result, score = queue.get(timeout=timeout)
    except Exception:
        proc.kill()
        proc.join()
        return {"method": method, "n": n, "d": d, "error": f"timed out after {timeout:.0f}s"}, None
    proc.join()
    return result, score


def run_scaling(args) -> int:
    from scipy.stats import spearmanr

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = parse_int_list(args.sizes)
    dims = parse_int_list(args.dims)
    if not sizes or not dims or min(sizes) <= args.k + 1:
        raise ValueError("--sizes and --dims must be positive integers, sizes > k + 1")
    rows = []
    t_all = time.time()
    for d in dims:
        for n in sizes:
            entry = {"n": n, "d": d}
            gib = n * d * 4 / 2**30
            if gib > args.max_gb:
                entry["skipped"] = f"input {gib:.1f} GiB exceeds --max-gb {args.max_gb}"
                log(f"n={n} d={d}: skipped ({entry['skipped']})")
                rows.append(entry)
                continue
            ours, s_ours = measure(
                "smartsize",
                n,
                d,
                args.k,
                args.clusters,
                args.seed,
                args.recall_queries,
                args.timeout,
            )
            entry["smartsize"] = ours
            if n <= args.reference_max:
                ref, s_ref = measure(
                    "sklearn_brute",
                    n,
                    d,
                    args.k,
                    args.clusters,
                    args.seed,
                    args.recall_queries,
                    args.timeout,
                )
                entry["sklearn_brute"] = ref
                if "error" not in ref and "error" not in ours:
                    entry["speedup"] = ref["seconds"] / ours["seconds"]
                    entry["memory_ratio"] = ours["peak_extra_mib"] / max(
                        ref["peak_extra_mib"], 1e-9
                    )
                    entry["spearman_vs_reference"] = float(spearmanr(s_ours, s_ref).statistic)
            else:
                entry["sklearn_brute"] = {"skipped": f"n > --reference-max {args.reference_max}"}
            rows.append(entry)
            ref = entry.get("sklearn_brute", {})
            log(
                f"n={n:>8d} d={d:>5d}: smartsize {_s(ours.get('seconds'))} "
                f"(recall@{args.k} {ours.get('recall_at_k', float('nan')):.4f}, peak +"
                f"{ours.get('peak_extra_mib', float('nan')):.0f} MiB) | sklearn brute "
                f"{_s(ref.get('seconds'))} (peak +{ref.get('peak_extra_mib', float('nan')):.0f}"
                f" MiB) | speedup {entry.get('speedup', float('nan')):.1f}x "
                + ("" if "error" not in ours else ours["error"])
            )
    _extrapolate(rows)
    results = {
        "k": args.k,
        "clusters": args.clusters,
        "seed": args.seed,
        "recall_queries": args.recall_queries,
        "rows": rows,
        "targets": _targets(rows),
        "not_covered": "embedding-pipeline overhead, /webhook latency and the 10k-task service "
        "cycle are service-level benchmarks, not part of this command",
        "elapsed_s": round(time.time() - t_all, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    log("targets: " + json.dumps(results["targets"]))
    log(f"wrote {out / 'results.json'}")
    return 0


def _s(v) -> str:
    return "   n/a" if v is None else f"{v:7.2f}s"


def _extrapolate(rows: list[dict]) -> None:
    """Where the reference was not run, estimate its time as t(n0) (n/n0)^2 from the largest
    measured size of the same d (brute force is quadratic); marked as an estimate."""
    for row in rows:
        ref = row.get("sklearn_brute")
        if not isinstance(ref, dict) or "seconds" in ref or "smartsize" not in row:
            continue
        measured = [
            r for r in rows if r["d"] == row["d"] and "seconds" in (r.get("sklearn_brute") or {})
        ]
        if not measured or "seconds" not in row["smartsize"]:
            continue
        base = max(measured, key=lambda r: r["n"])
        est = base["sklearn_brute"]["seconds"] * (row["n"] / base["n"]) ** 2
        ref["estimated_seconds"] = est
        ref["estimated_from_n"] = base["n"]
        row["estimated_speedup"] = est / row["smartsize"]["seconds"]


def _targets(rows: list[dict]) -> dict:
    t = {}
    for row in rows:
        ours = row.get("smartsize") or {}
        if row["n"] == 100_000 and "speedup" in row:
            t[f"100k_d{row['d']}_speedup_ge_30x"] = bool(row["speedup"] >= 30)
            t[f"100k_d{row['d']}_recall_ge_0.95"] = bool(ours.get("recall_at_k", 0) >= 0.95)
        if row["n"] == 1_000_000 and row["d"] == 256 and "seconds" in ours:
            t["1M_d256_under_60s"] = bool(ours["seconds"] < 60)
    return t
