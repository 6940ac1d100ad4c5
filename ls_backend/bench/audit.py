"""Label-audit benchmark: systematic label errors inflate validation accuracy; does the audit
find them?

The labelled pool is split into train and validation. Errors are injected into BOTH:

- ``systematic``: a share ``rate`` of class A is labelled B. ``--systematic-mode nearest``
  (default) flips the A items that look most like B (cosine to the B centroid minus cosine to
  the A centroid of the true classes), the way annotators confuse the ambiguous cases; a model
  can learn such errors, which is what inflates validation accuracy. ``random`` flips A items
  uniformly.
- ``random``: the same number of wrong labels spread over all classes, each to a uniformly
  drawn other class (non-systematic noise, for contrast).

For each condition: the validation accuracy the project would report (against its noisy
labels) versus the true test accuracy, the audit (``scoring.label_issues`` and
``scoring.systematic_confusions`` on out-of-fold probabilities of every labelled item, as the
service computes them) against the injected errors, cleanlab's ``find_label_issues`` on the
same probabilities, and the accuracies after dropping what the audit flagged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ls_backend.bench.simulate import evaluate, log, parse_float_list, prepare_from_args


def _cleanlab():
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return None
    return find_label_issues


def most_confused_pair(x, y, n_classes: int, seed: int = 0) -> tuple[int, int]:
    """(A, B): the class A whose items a clean out-of-fold model most often calls B."""
    from ls_backend.head import ClassifierHead

    oof = ClassifierHead(calibrate=False).out_of_fold_proba(x, y, n_classes, seed=seed)
    pred = oof.argmax(axis=1)
    cm = np.zeros((n_classes, n_classes))
    np.add.at(cm, (y, pred), 1)
    np.fill_diagonal(cm, 0)
    a, b = np.unravel_index(np.argmax(cm), cm.shape)
    return int(a), int(b)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(np.linalg.norm(v), 1e-12)


def inject(
    y: np.ndarray,
    x: np.ndarray,
    kind: str,
    rate: float,
    pair: tuple[int, int],
    n_classes: int,
    rng: np.random.Generator,
    mode: str = "nearest",
    centroids=None,
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, mask of flipped items)."""
    a, b = pair
    noisy = y.copy()
    members = np.flatnonzero(y == a)
    n_flip = round(rate * members.size)
    flipped = np.zeros(y.size, bool)
    if n_flip == 0:
        return noisy, flipped
    if kind == "systematic":
        if mode == "nearest":
            xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            ca, cb = centroids
            lean = xn[members] @ cb - xn[members] @ ca
            chosen = members[np.argsort(-lean, kind="stable")[:n_flip]]
        elif mode == "random":
            chosen = rng.choice(members, n_flip, replace=False)
        else:
            raise ValueError(f"unknown --systematic-mode {mode!r}")
        noisy[chosen] = b
    elif kind == "random":
        chosen = rng.choice(y.size, n_flip, replace=False)
        shift = rng.integers(1, n_classes, n_flip)
        noisy[chosen] = (y[chosen] + shift) % n_classes
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    flipped[chosen] = True
    return noisy, flipped


def _prf(flagged: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((flagged & truth).sum())
    n_flag, n_true = int(flagged.sum()), int(truth.sum())
    return {
        "flagged": n_flag,
        "precision": tp / n_flag if n_flag else None,
        "recall": tp / n_true if n_true else None,
    }


def run_audit(args) -> int:
    from ls_backend.head import ClassifierHead
    from scoring import label_issues, systematic_confusions

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    data = prepare_from_args(args)
    k = data.n_classes
    names = data.class_names
    rates = parse_float_list(args.rates)
    kinds = [s.strip() for s in args.noise.split(",") if s.strip()]
    if any(not 0 <= r < 1 for r in rates):
        raise ValueError("--rates must be in [0, 1)")
    from sklearn.model_selection import train_test_split

    idx = np.arange(data.y.size)
    tr, va = train_test_split(
        idx, test_size=args.val_fraction, stratify=data.y, random_state=args.seed
    )
    x_tr, x_va = data.x[tr], data.x[va]
    if args.flip == "auto":
        pair = most_confused_pair(x_tr, data.y[tr], k, seed=args.seed)
    else:
        a, b = (int(t) for t in args.flip.split(":"))
        if not (0 <= a < k and 0 <= b < k and a != b):
            raise ValueError(f"--flip must be A:B with two different classes in [0, {k})")
        pair = (a, b)
    a, b = pair
    log(
        f"pool {data.y.size} (train {tr.size}, validation {va.size}), test {data.y_test.size}; "
        f"systematic pair: '{names[a]}' labelled as '{names[b]}'"
    )
    xn = data.x / np.maximum(np.linalg.norm(data.x, axis=1, keepdims=True), 1e-12)
    centroids = (
        _unit(xn[data.y == a].mean(axis=0)),
        _unit(xn[data.y == b].mean(axis=0)),
    )
    find_cl = _cleanlab()
    if find_cl is None:
        log("cleanlab is not installed: its column is skipped (pip install cleanlab)")

    def train_eval(x_fit, y_fit):
        head = ClassifierHead(calibrate=False).fit(x_fit, y_fit, k, seed=args.seed)
        return head.predict(x_va), head.predict(data.x_test)

    conditions = [("clean", 0.0)] + [(kind, r) for r in rates for kind in kinds if r > 0]
    rows = []
    for kind, rate in conditions:
        t0 = time.time()
        rng = np.random.default_rng(args.seed + round(rate * 1000))
        if kind == "clean":
            y_all, flipped = data.y.copy(), np.zeros(data.y.size, bool)
        else:
            # The same number of wrong labels for both kinds at one rate.
            y_all, flipped = inject(
                data.y, data.x, kind, rate, pair, k, rng, args.systematic_mode, centroids
            )
        y_tr, y_va = y_all[tr], y_all[va]
        pred_va, pred_te = train_eval(x_tr, y_tr)
        test = evaluate(data.y_test, pred_te, k)
        row = {
            "noise": kind,
            "rate": rate,
            "n_flipped": int(flipped.sum()),
            "n_flipped_train": int(flipped[tr].sum()),
            "n_flipped_val": int(flipped[va].sum()),
            "val_accuracy_reported": float(np.mean(pred_va == y_va)),
            "val_accuracy_true": float(np.mean(pred_va == data.y[va])),
            "test_accuracy": test["accuracy"],
            "test_macro_f1": test["macro_f1"],
            "test_recall_A": test["class_recall"][a],
        }
        row["inflation"] = row["val_accuracy_reported"] - row["test_accuracy"]
        # The audit: out-of-fold probabilities of every labelled item (train + validation).
        oof = ClassifierHead().out_of_fold_proba(data.x, y_all, k, seed=args.seed)
        flag = label_issues(y_all, oof)
        conf = systematic_confusions(y_all, oof)
        row["smartsize"] = _prf(flag, flipped) if kind != "clean" else {"flagged": int(flag.sum())}
        row["confusions"] = [
            {**c, "given_name": names[c["given"]], "likely_true_name": names[c["likely_true"]]}
            for c in conf
        ]
        row["names_flipped_pair"] = any(c["given"] == b and c["likely_true"] == a for c in conf)
        row["n_confusions"] = len(conf)
        if find_cl is not None:
            cl_flag = np.asarray(find_cl(labels=y_all, pred_probs=oof), dtype=bool)
            row["cleanlab"] = (
                _prf(cl_flag, flipped) if kind != "clean" else {"flagged": int(cl_flag.sum())}
            )
        else:
            row["cleanlab"] = None
        # After the audit: drop the flagged items from train and validation, retrain.
        keep_tr, keep_va = ~flag[tr], ~flag[va]
        head = ClassifierHead(calibrate=False).fit(x_tr[keep_tr], y_tr[keep_tr], k, args.seed)
        pred_va2 = head.predict(x_va[keep_va])
        test2 = evaluate(data.y_test, head.predict(data.x_test), k)
        row["after_audit"] = {
            "val_accuracy_reported": float(np.mean(pred_va2 == y_va[keep_va])),
            "test_accuracy": test2["accuracy"],
            "test_recall_A": test2["class_recall"][a],
            "flipped_left": int((flipped & ~flag).sum()),
        }
        row["after_audit"]["inflation"] = (
            row["after_audit"]["val_accuracy_reported"] - test2["accuracy"]
        )
        row["elapsed_s"] = round(time.time() - t0, 1)
        rows.append(row)
        sm = row["smartsize"]
        cl = row["cleanlab"] or {}
        log(
            f"{kind:10s} {rate:4.0%}: val reported {row['val_accuracy_reported']:.4f} vs test "
            f"{row['test_accuracy']:.4f} (inflation {row['inflation']:+.4f}); smartsize "
            f"P {_f(sm.get('precision'))} R {_f(sm.get('recall'))}; cleanlab "
            f"P {_f(cl.get('precision'))} R {_f(cl.get('recall'))}; pair named: "
            f"{row['names_flipped_pair']} ({len(conf)} reported) [{row['elapsed_s']:.0f}s]"
        )
    results = {
        "dataset": args.dataset,
        "pair": {"A": a, "B": b, "A_name": names[a], "B_name": names[b]},
        "systematic_mode": args.systematic_mode,
        "info": {**data.info, "n_train": int(tr.size), "n_val": int(va.size)},
        "cleanlab_available": find_cl is not None,
        "conditions": rows,
        "elapsed_s": round(time.time() - t_all, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot_audit(results, out / "audit.png")
    log(f"wrote {out / 'results.json'} and {out / 'audit.png'}")
    return 0


def _f(v) -> str:
    return " n/a " if v is None else f"{v:.3f}"


def plot_audit(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["conditions"]
    labels = [f"{r['noise']}\n{r['rate']:.0%}" if r["rate"] else "clean" for r in rows]
    xs = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), dpi=80)
    w = 0.2
    ax = axes[0]
    ax.bar(xs - 1.5 * w, [r["val_accuracy_reported"] for r in rows], w, label="val (reported)")
    ax.bar(xs - 0.5 * w, [r["test_accuracy"] for r in rows], w, label="test (true)")
    ax.bar(
        xs + 0.5 * w,
        [r["after_audit"]["val_accuracy_reported"] for r in rows],
        w,
        label="val after audit",
    )
    ax.bar(
        xs + 1.5 * w, [r["after_audit"]["test_accuracy"] for r in rows], w, label="test after audit"
    )
    lo = min(min(r["test_accuracy"], r["val_accuracy_reported"]) for r in rows)
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_title("accuracy: reported vs true")
    ax.legend(fontsize=6)
    ax = axes[1]
    noisy = [r for r in rows if r["noise"] != "clean"]
    xs2 = np.arange(len(noisy))
    for j, (tool, key) in enumerate([("smartsize", "smartsize"), ("cleanlab", "cleanlab")]):
        for m, (metric, hatch) in enumerate([("precision", ""), ("recall", "//")]):
            vals = [((r[key] or {}).get(metric) or 0.0) for r in noisy]
            ax.bar(
                xs2 + (2 * j + m - 1.5) * w,
                vals,
                w,
                hatch=hatch,
                label=f"{tool} {metric}",
                color=f"C{j}",
                alpha=0.5 + 0.5 * m,
            )
    ax.set_xticks(xs2, labels[1:], fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title("finding the injected errors")
    ax.legend(fontsize=6)
    fig.suptitle(
        f"{results['dataset']}: '{results['pair']['A_name']}' labelled as "
        f"'{results['pair']['B_name']}' ({results['systematic_mode']})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
