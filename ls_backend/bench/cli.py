"""``smartsize bench ...``: label-efficiency, audit, stopping and scaling benchmarks.

Only argparse here; the benchmark modules (numpy, scikit-learn, torch) load when a
subcommand runs.
"""

from __future__ import annotations

import argparse


def _data_options(p: argparse.ArgumentParser, pool_default: int | None) -> None:
    p.add_argument(
        "--dataset",
        default="fashion-mnist",
        help="fashion-mnist | digits | PATH.npz (images uint8 (n,h,w[,3]), labels; optional "
        "test_images/test_labels, else a stratified 25%% test split)",
    )
    p.add_argument(
        "--pool-size",
        type=int,
        default=pool_default,
        help="subsample the training pool to this many items (default: %(default)s)",
    )
    p.add_argument(
        "--test-size", type=int, default=None, help="subsample the test split (default: all of it)"
    )
    p.add_argument(
        "--cache-dir",
        default=".work/bench-cache",
        help="embedding cache shared by all benchmarks (default: %(default)s)",
    )
    p.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the pool/test subsampling: another value gives another pool, e.g. to "
        "tune on data the reported run never sees (default: %(default)s)",
    )
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--out", required=True, help="output folder (results.json, PNG plots)")


def _run(name: str):
    def run(args: argparse.Namespace) -> int:
        if name == "label-efficiency":
            from ls_backend.bench.simulate import run_label_efficiency

            return run_label_efficiency(args)
        if name == "audit":
            from ls_backend.bench.audit import run_audit

            return run_audit(args)
        if name == "stopping":
            from ls_backend.bench.stopping import run_stopping

            return run_stopping(args)
        from ls_backend.bench.scaling import run_scaling

        return run_scaling(args)

    return run


def add_parser(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks on real data (label efficiency, audit, ...)")
    bsub = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK")

    def _help(args: argparse.Namespace) -> int:
        bench.print_help()
        return 2

    bench.set_defaults(func=_help)

    le = bsub.add_parser(
        "label-efficiency", help="pool-based active learning: strategies vs labels bought"
    )
    _data_options(le, pool_default=None)
    le.add_argument(
        "--rare-classes",
        default="",
        help="comma-separated classes whose recall is reported, e.g. 3,7",
    )
    le.add_argument(
        "--rare-fraction",
        type=float,
        default=None,
        help="keep only this fraction of each rare class in the pool (test untouched)",
    )
    le.add_argument(
        "--budgets",
        default="0.05,0.1,0.2,0.4",
        help="label budgets as fractions of the pool (default: %(default)s)",
    )
    le.add_argument("--strategies", default="random,entropy,margin,coreset,typiclust,alo")
    le.add_argument("--seeds", type=int, default=3)
    le.add_argument(
        "--seed-size", type=int, default=None, help="random seed set size (default: 2 per class)"
    )
    le.add_argument(
        "--growth",
        type=float,
        default=1.5,
        help="label count grows by this factor per round (default: %(default)s)",
    )
    le.add_argument(
        "--diversity",
        type=float,
        default=None,
        help="batch diversity of the alo strategy (default: the service's, SMARTSIZE_DIVERSITY's "
        "default)",
    )
    le.set_defaults(func=_run("label-efficiency"))

    au = bsub.add_parser("audit", help="systematic vs random label errors: inflation and audit")
    _data_options(au, pool_default=10000)
    au.add_argument(
        "--rates", default="0.1,0.25", help="share of class A flipped to B (default: %(default)s)"
    )
    au.add_argument(
        "--flip",
        default="auto",
        help="A:B (class A labelled as B) or auto = the most confused pair",
    )
    au.add_argument("--noise", default="systematic,random")
    au.add_argument("--systematic-mode", default="nearest", choices=["nearest", "random"])
    au.add_argument("--val-fraction", type=float, default=0.25)
    au.add_argument("--seed", type=int, default=0)
    au.set_defaults(func=_run("audit"))

    st = bsub.add_parser("stopping", help="sweep tau of the marginal-utility stopping rule")
    _data_options(st, pool_default=10000)
    st.add_argument(
        "--taus",
        default="1e-3,3e-4,1e-4,3e-5,1e-5,3e-6,1e-6",
        help="tau values (macro-F1 per label) (default: %(default)s)",
    )
    st.add_argument("--max-budget", type=float, default=0.4)
    st.add_argument("--growth", type=float, default=1.25)
    st.add_argument("--seed-size", type=int, default=None)
    st.add_argument("--val-size", type=int, default=1000)
    st.add_argument("--stop-set", type=int, default=2000)
    st.add_argument("--seeds", type=int, default=1)
    st.set_defaults(func=_run("stopping"))

    sc = bsub.add_parser("scaling", help="uniqueness at scale vs sklearn brute-force kNN")
    sc.add_argument("--sizes", default="10000,100000,1000000")
    sc.add_argument("--dims", default="256,1280")
    sc.add_argument("--k", type=int, default=3)
    sc.add_argument("--clusters", type=int, default=100)
    sc.add_argument(
        "--reference-max",
        type=int,
        default=100000,
        help="run the brute-force reference only up to this n (else estimated)",
    )
    sc.add_argument(
        "--max-gb",
        type=float,
        default=2.0,
        help="skip sizes whose float32 input exceeds this many GiB",
    )
    sc.add_argument("--recall-queries", type=int, default=1000)
    sc.add_argument("--timeout", type=float, default=3600.0, help="per measurement, seconds")
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--out", required=True)
    sc.set_defaults(func=_run("scaling"))

    from ls_backend.bench.embedding import add_embedding_parser
    from ls_backend.bench.service import add_service_parser

    add_service_parser(bsub)
    add_embedding_parser(bsub)
