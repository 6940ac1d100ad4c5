"""A multiple-choice image project (choice="multiple") through real cycles in Label Studio 1.23.2:
real Fashion-MNIST images tagged with real attributes (a coat is a "top" with "long sleeves"),
annotated through the API, with a few planted annotation errors."""

import numpy as np
import pytest

from ls_backend.config import Settings
from ls_backend.cycle import run_cycle
from ls_backend.demo_project import (
    FASHION_ATTRIBUTES,
    choice_result,
    choices_label_config,
    fashion_attributes,
    fashion_tasks,
)
from ls_backend.label_studio import LabelStudioClient
from ls_backend.model import SmartsizeModel, check_label_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_TASKS = 160
N_LABELLED = 70
NAMES = list(FASHION_ATTRIBUTES)


def test_multilabel_project_cycles_prelabels_and_audit(label_studio, tmp_path):
    tasks, classes, _ = fashion_tasks(N_TASKS, seed=3)
    truth = fashion_attributes(classes)
    config = choices_label_config(NAMES, multiple=True)
    assert check_label_config(config) is None
    client = LabelStudioClient(label_studio.url, label_studio.pat)
    pid = client.create_project("smartsize multi-label", config)["id"]
    ids = client.import_tasks(pid, tasks)
    settings = Settings(
        label_studio_url=label_studio.url, label_studio_api_key=label_studio.pat, model_dir=tmp_path
    )

    # Cold start: no labels, no made-up predictions; typical items are served first.
    report = run_cycle(pid, settings, force=True)
    assert report["status"] == "ok", report.get("error")
    assert report["cold_start"] and report["n_predictions"] == N_TASKS
    tasks_now = {t["id"]: t for t in client.iter_tasks(pid, fields=None)}
    assert all(
        p["result"] == []
        for t in tasks_now.values()
        for p in t.get("predictions", [])
        if p["model_version"] == report["model_version"]
    )

    # Annotate; on 6 footwear items the annotator left 'footwear' off (a systematic slip).
    footwear = NAMES.index("footwear")
    labelled = list(range(N_LABELLED))
    planted = [i for i in labelled if truth[i, footwear]][:6]
    given = truth.copy()
    given[planted, footwear] = 0
    for i in labelled:
        chosen = [NAMES[j] for j in np.flatnonzero(given[i])]
        client.create_annotation(ids[i], choice_result(chosen))
    report = run_cycle(pid, settings, force=True)
    assert report["status"] == "ok", report.get("error")
    assert not report["cold_start"] and report["n_labeled"] == N_LABELLED
    assert report["class_counts"]["top"] == int(given[labelled, NAMES.index("top")].sum())
    assert report["n_predictions"] == N_TASKS - N_LABELLED
    assert 0 <= report["metric"] <= 1  # out-of-fold macro-F1 over labels

    # Pre-labels: one result per task with every attribute the model finds likely.
    version = report["model_version"]
    assert client.get_project(pid)["model_version"] == version
    predicted = np.zeros_like(truth)
    seen = 0
    tags = {}
    for task in client.iter_tasks(pid, fields=None):
        i = ids.index(task["id"])
        tags[i] = task["data"]
        preds = [p for p in task.get("predictions", []) if p["model_version"] == version]
        if i in labelled:
            continue
        assert len(preds) == 1
        for item in preds[0]["result"]:
            assert (item["from_name"], item["to_name"], item["type"]) == (
                "label",
                "image",
                "choices",
            )
            for name in item["value"]["choices"]:
                predicted[i, NAMES.index(name)] = 1
        seen += 1
    assert seen == N_TASKS - N_LABELLED
    unl = np.arange(N_LABELLED, N_TASKS)
    accuracy = (predicted[unl] == truth[unl]).mean(axis=0)
    print("per-attribute pre-label accuracy", dict(zip(NAMES, accuracy.round(3), strict=True)))
    assert accuracy.mean() > 0.85
    assert (predicted[unl].sum(axis=1) >= 2).any()  # it does predict several labels at once

    # The audit names the label the annotator missed, on the planted items.
    flagged = [i for i in planted if tags[i].get("label_issue")]
    print("planted footwear slips flagged:", len(flagged), "of", len(planted))
    assert flagged
    assert "[footwear]" in tags[flagged[0]]["label_issue_reason"]

    # /predict answers with the same shape, from the stored multi-label head.
    model = SmartsizeModel(settings)
    out = model.predict(
        [{"id": ids[i], "data": tasks[i]["data"]} for i in unl[:5]],
        project_id=pid,
        label_config=config,
    )
    assert [o["model_version"] for o in out] == [version] * 5
    assert all(0.0 <= o["score"] <= 1.0 for o in out)
    assert any(len(o["result"][0]["value"]["choices"]) >= 2 for o in out if o["result"])
    client.close()
