"""The ``smartsize`` command line.

Each subcommand lives in the module that owns its subject; this file only wires them up, and
imports heavy modules (torch, Label Studio SDK) lazily so ``smartsize --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys

from ls_backend import __version__


def _cmd_demo(args: argparse.Namespace) -> int:
    from ls_backend.stack import run_demo

    return run_demo(args)


def _settings():
    from ls_backend.config import Settings

    return Settings.from_env()


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    settings = _settings()  # fail fast, with a clear message, on bad configuration
    if not settings.redis_url and args.workers > 1:
        raise ValueError("--workers > 1 needs REDIS_URL: the in-process queue lives in one process")
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{args.host}:{args.port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(args.threads),
        "--timeout",
        "120",
        "--graceful-timeout",
        "30",
        "--access-logfile",
        "-",
        "ls_backend.app:create_app()",
    ]
    print(
        f"smartsize: serving on http://{args.host}:{args.port} "
        f"(queue: {'redis' if settings.redis_url else 'in-process'})",
        flush=True,
    )
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover


def _cmd_worker(args: argparse.Namespace) -> int:
    from ls_backend.queue import run_worker

    settings = _settings()
    if not settings.redis_url:
        raise ValueError("smartsize worker needs REDIS_URL (without it, serve runs cycles itself)")
    settings.require_label_studio()
    run_worker(settings.redis_url, burst=args.burst)
    return 0


def _cmd_cycle(args: argparse.Namespace) -> int:
    import json

    from ls_backend.cycle import run_cycle

    report = run_cycle(args.project, _settings(), force=True, progress=True)
    print(json.dumps(report, indent=1, default=str))
    return 0 if report["status"] in ("ok", "skipped") else 1


def _cmd_connect(args: argparse.Namespace) -> int:
    from ls_backend.cycle import ensure_views
    from ls_backend.label_studio import LabelStudioClient

    settings = _settings()
    settings.require_label_studio()
    auth = (settings.basic_auth_user, settings.basic_auth_pass) if settings.auth_enabled else None
    with LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key) as client:
        backends = [
            b
            for b in client.list_ml_backends(args.project)
            if b.get("url", "").rstrip("/") == args.url.rstrip("/")
        ]
        if backends:
            print(f"already connected: ML backend {backends[0]['id']} -> {args.url}")
        else:
            ml = client.connect_ml_backend(args.project, args.url, args.title, basic_auth=auth)
            print(
                f"connected ML backend {ml['id']} -> {args.url}"
                + (" (webhook carries basic auth)" if auth else "")
            )
        views = ensure_views(client, args.project)
        print("views: " + ", ".join(f"{title} (tab {vid})" for title, vid in views.items()))
    print("press Train in the project's model settings to run the first cycle")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartsize",
        description="Smart-sizing (Adaptive Label Optimization) ML backend for Label Studio.",
    )
    parser.add_argument("--version", action="version", version=f"smartsize {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="the whole local stack: Label Studio, redis, smartsize, a demo project"
    )
    demo.add_argument("--workdir", default=".work/demo", help="data kept between runs")
    demo.add_argument("--n-tasks", type=int, default=1000, help="images in the demo project")
    demo.add_argument(
        "--simulate",
        type=int,
        default=40,
        help="tasks a simulated annotator labels in served order (0: none)",
    )
    demo.add_argument("--image-size", type=int, default=96, help="embedding input size")
    demo.add_argument("--ls-port", type=int, default=8080)
    demo.add_argument("--port", type=int, default=9090, help="the backend's port")
    demo.add_argument("--redis-port", type=int, default=6390)
    demo.add_argument("--no-redis", action="store_true", help="use the in-process queue")
    demo.add_argument("--no-wait", action="store_true", help="stop after the first cycles")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)

    serve = sub.add_parser("serve", help="run the ML backend (gunicorn) for Label Studio")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=9090)
    serve.add_argument("--workers", type=int, default=1, help="processes (>1 needs REDIS_URL)")
    serve.add_argument("--threads", type=int, default=8)
    serve.set_defaults(func=_cmd_serve)

    worker = sub.add_parser("worker", help="run queued cycles from redis (REDIS_URL)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.set_defaults(func=_cmd_worker)

    cycle = sub.add_parser("cycle", help="run one ALO cycle for a project now and print it")
    cycle.add_argument("--project", type=int, required=True)
    cycle.set_defaults(func=_cmd_cycle)

    connect = sub.add_parser(
        "connect", help="connect this backend to a Label Studio project (webhook auth, views)"
    )
    connect.add_argument("--project", type=int, required=True)
    connect.add_argument("--url", required=True, help="the backend's URL as Label Studio sees it")
    connect.add_argument("--title", default="smartsize")
    connect.set_defaults(func=_cmd_connect)

    # --- subcommands added by other modules (keep one block per module) ---
    from ls_backend.embed_cli import add_parser as _add_embed

    _add_embed(sub)
    from ls_backend.bench.cli import add_parser as _add_bench

    _add_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # Expected user errors: one clear line, no traceback.
        print(f"smartsize: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
