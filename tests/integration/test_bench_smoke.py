"""Tiny versions of every ``smartsize bench`` benchmark, so they never rot.

Real embeddings of scikit-learn's digits (a few hundred images), one seed, two budgets, small
sizes; each run goes through the CLI into a temporary folder and its results.json is checked
for the documented schema and sane values. Not a measurement: BENCHMARKS.md has those.
"""

from __future__ import annotations

import json
import math

import pytest

from ls_backend.cli import main

pytestmark = pytest.mark.slow

RUN_KEYS = {
    "strategy",
    "budget",
    "seed",
    "n_labels",
    "accuracy",
    "macro_f1",
    "rare_recall",
    "rare_labelled",
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("bench-cache"))


def _unit(v) -> bool:
    return isinstance(v, float) and 0.0 <= v <= 1.0 and math.isfinite(v)


def test_label_efficiency_smoke(tmp_path, cache_dir):
    out = tmp_path / "le"
    strategies = ["random", "entropy", "margin", "coreset", "typiclust", "alo"]
    rc = main(
        ["bench", "label-efficiency", "--dataset", "digits", "--pool-size", "300",
         "--test-size", "200", "--rare-classes", "3,7", "--budgets", "0.1,0.2", "--seeds", "1",
         "--seed-size", "30", "--growth", "2", "--strategies", ",".join(strategies),
         "--cache-dir", cache_dir, "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"] == "digits"
    assert set(res["full"]) == {"accuracy", "macro_f1", "rare_recall"}
    assert res["full"]["accuracy"] > 0.8  # real embeddings separate digits
    assert all(_unit(v) for v in res["full"].values())
    assert len(res["runs"]) == len(strategies) * 2
    for run in res["runs"]:
        assert set(run) == RUN_KEYS
        assert run["strategy"] in strategies and run["seed"] == 0
        assert run["n_labels"] == round(run["budget"] * 300)
        assert _unit(run["accuracy"]) and _unit(run["macro_f1"]) and _unit(run["rare_recall"])
    assert set(res["summary"]["aulc"]) == set(strategies)
    assert (out / "learning_curves.png").stat().st_size > 1000


def test_audit_smoke(tmp_path, cache_dir):
    out = tmp_path / "audit"
    rc = main(
        ["bench", "audit", "--dataset", "digits", "--pool-size", "400", "--test-size", "200",
         "--rates", "0.25", "--cache-dir", cache_dir, "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    kinds = [c["noise"] for c in res["conditions"]]
    assert kinds == ["clean", "systematic", "random"]
    for c in res["conditions"]:
        assert _unit(c["val_accuracy_reported"]) and _unit(c["test_accuracy"])
        assert _unit(c["after_audit"]["test_accuracy"])
    noisy = [c for c in res["conditions"] if c["noise"] != "clean"]
    assert all(c["n_flipped"] > 0 for c in noisy)
    random_noise = noisy[1]
    assert random_noise["smartsize"]["recall"] > 0
    assert random_noise["cleanlab"] is None or "precision" in random_noise["cleanlab"]
    assert (out / "audit.png").exists()


def test_stopping_smoke(tmp_path, cache_dir):
    out = tmp_path / "stop"
    rc = main(
        ["bench", "stopping", "--dataset", "digits", "--pool-size", "300", "--test-size", "200",
         "--val-size", "60", "--stop-set", "100", "--max-budget", "0.5", "--growth", "1.8",
         "--taus", "1e-2,1e-3,1e-4", "--cache-dir", cache_dir, "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    seed = res["seeds"][0]
    assert [e["tau"] for e in seed["sweep"]] == [1e-2, 1e-3, 1e-4]
    top = seed["n_labels"][-1]
    for e in seed["sweep"]:
        for gate in ("kappa", "no_kappa"):
            assert 0 < e[gate]["labels_bought"] <= top
            assert _unit(e[gate]["test_macro_f1"])
    # A larger tau never buys more labels than a smaller one.
    bought = [e["no_kappa"]["labels_bought"] for e in seed["sweep"]]
    assert bought == sorted(bought)
    assert (out / "stopping.png").exists()


def test_scaling_smoke(tmp_path):
    out = tmp_path / "scale"
    rc = main(
        ["bench", "scaling", "--sizes", "1500", "--dims", "32", "--recall-queries", "100",
         "--clusters", "10", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    (row,) = res["rows"]
    assert row["smartsize"]["recall_at_k"] == 1.0  # exact search below 50k rows
    assert row["sklearn_brute"]["seconds"] > 0 and row["speedup"] > 0
    assert row["spearman_vs_reference"] > 0.8


def test_embedding_overhead_smoke(tmp_path):
    out = tmp_path / "embedding"
    rc = main(["bench", "embedding", "--n", "70", "--repeats", "1", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["n_images"] == 70 and res["repeats"] == 1
    assert set(res["median_s"]) == {"bare", "array", "pipeline", "cached"}
    assert all(v > 0 for v in res["median_s"].values())
    # the second pass reads every row from the cache: far cheaper than embedding
    assert res["cached_over_first"] < 0.5
