"""``smartsize bench service``: the service under load, against a real Label Studio.

1. ``/webhook`` acknowledgement latency (p50/p99/max) under a burst of events from concurrent
   clients, against the real gunicorn-served backend.
2. One full cycle on an N-task project (default 10,000 real Fashion-MNIST images), first with
   every task to embed, then again on unchanged tasks (embeddings from the cache), with the
   share of each stage (sync, embed, fit, score, write back).
Starts its own Label Studio (from the pre-migrated template), redis-less backend, on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def webhook_burst(
    url: str, project_id: int, n_events: int, n_clients: int, auth: tuple[str, str]
) -> dict:
    """Send ``n_events`` ANNOTATION_CREATED events from ``n_clients`` threads; latencies in ms."""
    import requests

    latencies: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    body = {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project_id},
        "annotation": {"id": 1, "result": []},
        "task": {"id": 1},
    }

    def client(count: int) -> None:
        with requests.Session() as s:
            for _ in range(count):
                t0 = time.perf_counter()
                r = s.post(f"{url}/webhook", json=body, auth=auth, timeout=5)
                dt = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(dt)
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1

    per = [n_events // n_clients + (i < n_events % n_clients) for i in range(n_clients)]
    threads = [threading.Thread(target=client, args=(c,)) for c in per]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies)
    return {
        "events": int(lat.size),
        "clients": n_clients,
        "wall_s": round(wall, 2),
        "status_codes": codes,
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(lat.max()), 1),
        "over_1s": int((lat > 1000).sum()),
    }


def run_service_bench(args: argparse.Namespace) -> int:
    from ls_backend import localstack
    from ls_backend.config import Settings
    from ls_backend.cycle import run_cycle
    from ls_backend.demo_project import choice_result, choices_label_config, fashion_tasks
    from ls_backend.label_studio import LabelStudioClient

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="smartsize-bench-service-"))
    results: dict = {
        "n_tasks": args.n_tasks,
        "n_labels": args.n_labels,
        "image_size": args.image_size,
        "machine_cpus": os.cpu_count(),
    }
    ls = localstack.start_label_studio_from_template(work / "ls", log_path=work / "ls.log")
    procs: list = [ls]
    try:
        client = LabelStudioClient(ls.url, ls.pat, timeout=600)
        tasks, truth, names = fashion_tasks(args.n_tasks, seed=0)
        pid = client.create_project("bench service", choices_label_config(names))["id"]
        t0 = time.perf_counter()
        ids = client.import_tasks(pid, tasks)
        results["import_tasks_s"] = round(time.perf_counter() - t0, 2)
        rng = np.random.default_rng(0)
        for i in rng.choice(len(ids), args.n_labels, replace=False):
            client.create_annotation(ids[i], choice_result(names[truth[i]]))
        settings = Settings(
            label_studio_url=ls.url,
            label_studio_api_key=ls.pat,
            model_dir=work / "model",
            embedder={"image_size": args.image_size},
        )
        for name in ("first_cycle", "second_cycle_cached"):
            print(f"[bench service] {name} on {args.n_tasks} tasks ...", flush=True)
            report = run_cycle(pid, settings, force=True, progress=True)
            if report["status"] != "ok":
                raise RuntimeError(f"{name} failed: {report.get('error')}")
            timings = report["timings"]
            total = report["duration_s"]
            results[name] = {
                "total_s": total,
                **timings,
                "n_embedded_new": report["n_embedded_new"],
                "share": {k.removesuffix("_s"): round(v / total, 3) for k, v in timings.items()},
            }
            print(json.dumps(results[name]), flush=True)
        results["second_over_first"] = round(
            results["second_cycle_cached"]["total_s"] / results["first_cycle"]["total_s"], 3
        )

        port = localstack.free_port()
        auth = ("bench", "bench-pass")
        env = localstack.smartsize_env(
            ls.url, ls.pat, work / "model-burst", auth=auth, SMARTSIZE_MIN_NEW_ANNOTATIONS="1000000"
        )
        backend = localstack.start_smartsize(
            ["serve", "--host", "127.0.0.1", "--port", str(port)], env, work / "backend.log"
        )
        procs.append(backend)
        _wait(f"http://127.0.0.1:{port}/health", auth)
        results["webhook_burst"] = webhook_burst(
            f"http://127.0.0.1:{port}", pid, args.events, args.clients, auth
        )
        print(json.dumps(results["webhook_burst"]), flush=True)
    finally:
        for p in reversed(procs):
            p.stop()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"[bench service] wrote {out / 'results.json'}")
    return 0


def _wait(url: str, auth, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, auth=auth, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def add_service_parser(bsub) -> None:
    p = bsub.add_parser("service", help="webhook latency under a burst; one cycle on N tasks")
    p.add_argument("--n-tasks", type=int, default=10_000)
    p.add_argument("--n-labels", type=int, default=200)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--out", required=True)
    p.set_defaults(func=run_service_bench)
