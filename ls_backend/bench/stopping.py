"""Stopping benchmark: sweep tau of ``scoring.stopping_rule`` over orders of magnitude.

One ALO project per seed runs to the largest budget with the head retrained every round. A
validation set held out of the pool (what a project would keep to watch its model) gives the
metric history the rule sees; the test split is only used to score the outcome. After every
round, and for every tau, the rule decides CONTINUE or STOP from the history so far (with
and without the prediction-stability gate: Cohen's kappa of successive models on an
unlabelled stop set >= 0.99). Reported per tau: labels bought at the first STOP, the test
macro-F1 there, and the oracle's stop: the first round whose test macro-F1 is within 1 point
of the final one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ls_backend.bench.simulate import (
    Prepared,
    label_schedule,
    log,
    log_x_axis,
    parse_float_list,
    prepare_from_args,
    simulate,
)


def run_stopping(args) -> int:
    from sklearn.metrics import f1_score

    from scoring import cohens_kappa, stopping_rule

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    taus = sorted(parse_float_list(args.taus), reverse=True)
    if len(taus) < 1 or any(t <= 0 for t in taus):
        raise ValueError("--taus must be positive numbers")
    data = prepare_from_args(args)
    k = data.n_classes
    rng = np.random.default_rng(1234)
    perm = rng.permutation(data.y.size)
    n_val = min(args.val_size, data.y.size // 4)
    val, rest = perm[:n_val], perm[n_val:]
    stop_set = rest[: min(args.stop_set, rest.size)]  # unlabelled: predictions only
    pool = Prepared(data.x[rest], data.y[rest], data.x_test, data.y_test, data.class_names)
    n = rest.size
    top = max(k + 1, round(args.max_budget * n))
    seed_size = min(args.seed_size or 2 * k, top)
    schedule = label_schedule(seed_size, [top], args.growth, n)
    log(
        f"pool {n}, validation {n_val}, stop set {stop_set.size}, test {data.y_test.size}; "
        f"schedule {schedule}"
    )

    per_seed = []
    for seed in range(args.seeds):
        t0 = time.time()
        val_f1, kappa, prev = [], [], [None]

        def on_round(i, point, head, labels, prev=prev, val_f1=val_f1, kappa=kappa):
            if head is None:
                pv = np.zeros(n_val, dtype=np.int64)
                ps = np.zeros(stop_set.size, dtype=np.int64)
            else:
                pv = head.predict(data.x[val])
                ps = head.predict(data.x[stop_set])
            val_f1.append(
                float(
                    f1_score(
                        data.y[val], pv, labels=list(range(k)), average="macro", zero_division=0
                    )
                )
            )
            kappa.append(None if prev[0] is None else cohens_kappa(prev[0], ps))
            prev[0] = ps

        points = simulate(pool, "alo", seed, schedule, on_round=on_round)
        n_lab = [p["n_labels"] for p in points]
        test_f1 = [p["macro_f1"] for p in points]
        final = test_f1[-1]
        oracle = next(i for i, f in enumerate(test_f1) if f >= final - 0.01)
        gains, intervals = [], []
        for r in range(len(n_lab)):
            d = stopping_rule(n_lab[: r + 1], val_f1[: r + 1], tau=taus[0])
            gains.append(d.marginal_gain_per_cost)
            intervals.append(list(d.gain_interval) if d.gain_interval else None)
        sweep = []
        for tau in taus:
            entry = {"tau": tau}
            for gate in ("kappa", "no_kappa"):
                stop = None
                for r in range(len(n_lab)):
                    kap = kappa[r] if gate == "kappa" else None
                    if gate == "kappa" and kap is None:
                        continue
                    d = stopping_rule(n_lab[: r + 1], val_f1[: r + 1], tau=tau, stability_kappa=kap)
                    if d.decision == "STOP":
                        stop = r
                        break
                r = stop if stop is not None else len(n_lab) - 1
                entry[gate] = {
                    "stopped": stop is not None,
                    "labels_bought": n_lab[r],
                    "test_macro_f1": test_f1[r],
                    "test_accuracy": points[r]["accuracy"],
                    "shortfall_vs_final": final - test_f1[r],
                    "labels_vs_oracle": n_lab[r] - n_lab[oracle],
                }
            sweep.append(entry)
        per_seed.append(
            {
                "seed": seed,
                "n_labels": n_lab,
                "val_macro_f1": val_f1,
                "test_macro_f1": test_f1,
                "test_accuracy": [p["accuracy"] for p in points],
                "kappa": kappa,
                "estimated_gain_per_label": gains,
                "gain_interval": intervals,
                "final_test_macro_f1": final,
                "oracle": {
                    "round": oracle,
                    "labels": n_lab[oracle],
                    "test_macro_f1": test_f1[oracle],
                },
                "sweep": sweep,
            }
        )
        log(
            f"seed {seed}: final test macro-F1 {final:.4f} at {n_lab[-1]} labels; oracle stop "
            f"{n_lab[oracle]} labels [{time.time() - t0:.0f}s]"
        )
        for e in sweep:
            words = []
            for gate, name in (("kappa", "with kappa gate"), ("no_kappa", "without")):
                g = e[gate]
                where = "STOP at" if g["stopped"] else "never stops, ran to"
                words.append(f"{where} {g['labels_bought']} (F1 {g['test_macro_f1']:.4f}) {name}")
            log(f"  tau {e['tau']:8.1e}: " + "; ".join(words))
    results = {
        "dataset": args.dataset,
        "taus": taus,
        "schedule": schedule,
        "info": {
            **data.info,
            "n_pool_after_holdout": int(n),
            "n_val": int(n_val),
            "n_stop_set": int(stop_set.size),
        },
        "seeds": per_seed,
        "elapsed_s": round(time.time() - t_all, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot_stopping(results, out / "stopping.png")
    log(f"wrote {out / 'results.json'} and {out / 'stopping.png'}")
    return 0


def plot_stopping(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["seeds"][0]
    n = np.array(s["n_labels"], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    ax = axes[0]
    est = np.array([np.nan if g is None else g for g in s["estimated_gain_per_label"]])
    ax.plot(n, est, "o-", ms=3, label="estimated gain/label (rule, validation)")
    f = np.array(s["test_macro_f1"])
    emp = np.diff(f) / np.diff(n)
    ax.plot(
        n[1:],
        np.where(emp > 0, emp, np.nan),
        "s",
        ms=3,
        alpha=0.6,
        label="observed gain/label (test)",
    )
    for i, tau in enumerate(results["taus"]):
        ax.axhline(
            tau,
            color=plt.get_cmap("viridis")(i / max(1, len(results["taus"]) - 1)),
            lw=0.8,
            ls="--",
        )
    ax.axvline(s["oracle"]["labels"], color="k", lw=1, ls=":", label="oracle stop")
    log_x_axis(ax)
    ax.set_yscale("log")
    ax.set_xlabel("labels bought (cost)")
    ax.set_ylabel("marginal macro-F1 per label")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.plot(n, s["test_macro_f1"], "-", label="test macro-F1")
    ax.plot(n, s["val_macro_f1"], "-", alpha=0.6, label="validation macro-F1")
    for i, e in enumerate(s["sweep"]):
        r = e["kappa"]
        ax.plot(
            r["labels_bought"],
            r["test_macro_f1"],
            "v",
            ms=7,
            color=plt.get_cmap("viridis")(i / max(1, len(s["sweep"]) - 1)),
            label=f"stop, tau={e['tau']:.0e}",
        )
    ax.axvline(s["oracle"]["labels"], color="k", lw=1, ls=":")
    log_x_axis(ax)
    ax.set_xlabel("labels bought")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    fig.suptitle(f"{results['dataset']}: stopping rule sweep (seed 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
