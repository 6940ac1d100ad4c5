"""The ``smartsize`` command line.

Each subcommand lives in the module that owns its subject; this file only wires them up, and
imports heavy modules (torch, Label Studio SDK) lazily so ``smartsize --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys

from ls_backend import __version__


def _cmd_demo(args: argparse.Namespace) -> int:
    from ls_backend.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartsize",
        description="Smart-sizing (Adaptive Label Optimization) ML backend for Label Studio.",
    )
    parser.add_argument("--version", action="version", version=f"smartsize {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="score a real dataset end to end and print what ALO does")
    demo.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "digits"])
    demo.add_argument("--n-pool", type=int, default=6000, help="unlabeled pool size")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="out/demo", help="folder for plots and results")
    demo.set_defaults(func=_cmd_demo)

    # --- subcommands added by other modules (keep one block per module) ---
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
    except (ValueError, FileNotFoundError) as exc:
        # Expected user errors: one clear line, no traceback.
        print(f"smartsize: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
