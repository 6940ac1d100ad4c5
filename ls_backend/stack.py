"""``smartsize demo``: the whole stack on one machine, on real data.

Starts (or reuses) a headless Label Studio 1.23.2 from its own venv, redis when installed (else
the in-process queue), the smartsize backend and a worker; creates a demo project of real
Fashion-MNIST images with a rare class, connects the backend, lets a simulated annotator label
the tasks Label Studio's own label stream serves next (so you can watch the priorities work),
and prints where to click. Ctrl-C stops everything it started; the data stays in ``--workdir``
and the next run picks it up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from ls_backend import localstack
from ls_backend.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist
from ls_backend.demo_project import choice_result, choices_label_config, fashion_tasks
from ls_backend.label_studio import LabelStudioClient
from ls_backend.state import load_state

DEMO_TITLE = "smartsize demo: Fashion-MNIST"
DEMO_USER = ("smartsize", "demo-backend-pass")  # basic auth between Label Studio and backend


def say(msg: str) -> None:
    print(f"\033[1m[demo]\033[0m {msg}", flush=True)


def _port(wanted: int) -> int:
    if localstack.port_is_free(wanted):
        return wanted
    port = localstack.free_port()
    say(f"port {wanted} is busy; using {port}")
    return port


def start_label_studio(workdir: Path, port: int) -> localstack.LabelStudioProcess:
    data = workdir / "label-studio"
    creds_path = workdir / "credentials.json"
    if not creds_path.exists():
        say("creating Label Studio's data from the pre-migrated template (first run)")
        shutil.rmtree(data, ignore_errors=True)
        server = localstack.start_label_studio_from_template(
            data, port=port, log_path=workdir / "ls.log"
        )
        creds = {
            "username": server.username,
            "password": server.password,
            "legacy_token": server.legacy_token,
            "pat": server.pat,
        }
        creds_path.write_text(json.dumps(creds, indent=1))
        os.chmod(creds_path, 0o600)
        return server
    creds = json.loads(creds_path.read_text())
    server = localstack.start_label_studio(
        data,
        port,
        creds["username"],
        creds["password"],
        creds["legacy_token"],
        log_path=workdir / "ls.log",
    )
    server.pat = creds["pat"]
    return server


def ensure_project(client: LabelStudioClient, n_tasks: int, seed: int) -> dict:
    """The demo project (created once)."""
    for project in client.request("GET", "/api/projects", params={"page_size": 1000}).get(
        "results", []
    ):
        if project.get("title") == DEMO_TITLE:
            return project
    # Sneaker (7) is the rare, critical class: 3% of what the others have.
    tasks, _, names = fashion_tasks(n_tasks, tuple(range(10)), rare={7: 0.03}, seed=seed)
    project = client.create_project(
        DEMO_TITLE,
        choices_label_config(names),
        description="Fashion-MNIST photos. Sneaker is rare and critical: find every one.",
        show_instruction=False,
    )
    ids = client.import_tasks(project["id"], tasks)
    say(f"created project {project['id']} with {len(ids)} real Fashion-MNIST images")
    return project


def true_labels(client: LabelStudioClient, project_id: int) -> dict[int, str]:
    """The dataset's own label of each demo task (for the simulated annotator only)."""
    labels = load_fashion_mnist().labels
    return {
        t["id"]: FASHION_MNIST_CLASSES[labels[t["data"]["fmnist_index"]]]
        for t in client.iter_tasks(project_id)
        if "fmnist_index" in t.get("data", {})
    }


def wait_cycle(status_url: str, after: str | None, timeout: float = 900) -> dict:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s = requests.get(status_url, auth=DEMO_USER, timeout=5).json()
        except (requests.RequestException, ValueError):
            s = {}
        rep = s.get("last_report") or {}
        queue = s.get("queue") or {}
        if (
            rep.get("finished_at")
            and rep["finished_at"] != after
            and not queue.get("running")
            and not queue.get("pending")
        ):
            return rep
        time.sleep(1)
    raise RuntimeError(f"no cycle finished within {timeout:.0f} s; see the logs")


def run_demo(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started: list = []
    try:
        ls = start_label_studio(workdir, _port(args.ls_port))
        started.append(ls)
        say(f"Label Studio is up at {ls.url} ({ls.startup_seconds:.1f} s)")
        settings = {
            "SMARTSIZE_IMAGE_SIZE": str(args.image_size),
            "SMARTSIZE_CRITICAL_CLASSES": "Sneaker",
            "SMARTSIZE_CRITICALITY": "Sneaker=3",
            "SMARTSIZE_BATCH_SIZE": "20",
        }
        redis_url = None
        if shutil.which("redis-server") and not args.no_redis:
            redis = localstack.start_redis(_port(args.redis_port), workdir / "redis")
            started.append(redis)
            redis_url = redis.url
            say(f"redis is up at {redis.url}")
        else:
            say("redis-server not found: cycles run in the backend's own worker thread")
        port = _port(args.port)
        env = localstack.smartsize_env(
            ls.url, ls.pat, workdir / "model", auth=DEMO_USER, redis_url=redis_url, **settings
        )
        backend = localstack.start_smartsize(
            ["serve", "--host", "127.0.0.1", "--port", str(port)], env, workdir / "backend.log"
        )
        started.append(backend)
        backend_url = f"http://127.0.0.1:{port}"
        if redis_url:
            started.append(localstack.start_smartsize(["worker"], env, workdir / "worker.log"))
        _wait_http(f"{backend_url}/health", backend)
        say(f"smartsize is up at {backend_url} (logs in {workdir})")

        client = LabelStudioClient(ls.url, ls.pat)
        pid = ensure_project(client, args.n_tasks, args.seed)["id"]
        status_url = f"{backend_url}/status/{pid}"
        if not [b for b in client.list_ml_backends(pid) if b.get("url") == backend_url]:
            for old in client.list_ml_backends(pid):  # a backend from an earlier run's port
                client.request("DELETE", f"/api/ml/{old['id']}")
            client.connect_ml_backend(pid, backend_url, "smartsize", basic_auth=DEMO_USER)
            say("connected the backend to the project (webhook with basic auth)")
        ml = next(b for b in client.list_ml_backends(pid) if b.get("url") == backend_url)
        last = (load_state(workdir / "model", pid).get("last_report") or {}).get("finished_at")
        say("pressing Train: a first cycle embeds every image (cached for later cycles)")
        client.train(ml["id"])
        report = wait_cycle(status_url, last)
        _print_report(report)
        if args.simulate > 0:
            truth = true_labels(client, pid)
            say(
                f"a simulated annotator now labels the {args.simulate} tasks Label Studio serves "
                "next (true labels), as a person clicking 'Label All Tasks' would"
            )
            for _ in range(args.simulate):
                task = client.next_task(pid)
                if task is None:
                    break
                client.create_annotation(task["id"], choice_result(truth[task["id"]]))
            client.train(ml["id"])
            report = wait_cycle(status_url, report["finished_at"])
            _print_report(report)
        print(
            f"""
  Label Studio   {ls.url}/projects/{pid}/data
                 login {ls.username} / {ls.password}
  Label stream   press "Label All Tasks": the highest-priority task comes first
  SME / audit    the "SME escalation" and "Label audit" tabs of the project
  Status (JSON)  {status_url}   (basic auth {DEMO_USER[0]} / {DEMO_USER[1]})
  API token      {ls.pat[:12]}... (full token in {workdir / "credentials.json"})
""",
            flush=True,
        )
        if args.no_wait:
            return 0 if report.get("status") == "ok" else 1
        say("running; press Ctrl-C to stop everything this demo started")
        while all(getattr(p, "is_running", lambda: True)() for p in started):
            time.sleep(1)
        say("a service stopped unexpectedly; see the logs in " + str(workdir))
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in reversed(started):
            proc.stop()
        if started:
            say("stopped Label Studio, redis and smartsize; your data stays in " + str(workdir))


def _wait_http(url: str, proc, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, auth=DEMO_USER, timeout=1)
            return
        except requests.RequestException:
            if not proc.is_running():
                break
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up; log tail:\n{proc.log_tail()}")


def _print_report(rep: dict) -> None:
    if rep.get("status") != "ok":
        say(f"cycle {rep.get('status')}: {rep.get('error') or rep.get('reason')}")
        return
    t = rep.get("timings", {})
    say(
        f"cycle done in {rep.get('duration_s', 0):.1f} s "
        f"(sync {t.get('sync_s', 0):.1f}, embed {t.get('embed_s', 0):.1f}, "
        f"fit {t.get('fit_s', 0):.1f}, score {t.get('score_s', 0):.1f}, "
        f"write {t.get('write_s', 0):.1f}): {rep['n_labeled']} labels, "
        f"{rep['n_predictions']} priorities written, {rep['n_escalated']} SME escalations, "
        f"{rep['n_label_issues']} label issues; version {rep['model_version']}"
    )
    stop = rep.get("stopping") or {}
    if stop.get("explanation"):
        say(stop["explanation"])
    for row in rep.get("top", [])[:3]:
        say(f"  next: task {row['task']} - {row['reason']}")
