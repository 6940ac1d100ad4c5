"""`smartsize demo` (the README's main job), end to end on a small project, run twice: the
second run reuses the data and the project instead of creating them again."""

import json
import subprocess
import sys

import pytest

from ls_backend import localstack
from ls_backend.label_studio import LabelStudioClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_demo(workdir, ports):
    argv = [
        sys.executable,
        "-m",
        "ls_backend.cli",
        "demo",
        "--workdir",
        str(workdir),
        "--n-tasks",
        "120",
        "--simulate",
        "15",
        "--image-size",
        "64",
        "--no-wait",
        "--ls-port",
        str(ports[0]),
        "--port",
        str(ports[1]),
        "--redis-port",
        str(ports[2]),
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900)


def test_demo_runs_and_reuses_its_data(label_studio, tmp_path):
    # label_studio: makes sure the template exists (and the LS venv), as make demo's set-up does
    ports = [localstack.free_port() for _ in range(3)]
    first = run_demo(tmp_path / "demo", ports)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert "created project" in out and "connected the backend" in out
    assert out.count("cycle done") == 2 and "15 labels" in out
    assert 'press "Label All Tasks"' in out and "stopped Label Studio" in out

    second = run_demo(tmp_path / "demo", ports)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "created project" not in second.stdout and "30 labels" in second.stdout
    creds = json.loads((tmp_path / "demo" / "credentials.json").read_text())
    with localstack.start_label_studio(
        tmp_path / "demo" / "label-studio",
        ports[0],
        creds["username"],
        creds["password"],
        creds["legacy_token"],
    ) as ls:
        client = LabelStudioClient(ls.url, creds["pat"])
        projects = client.request("GET", "/api/projects").get("results", [])
        assert [p["title"] for p in projects] == ["smartsize demo: Fashion-MNIST"]
        assert projects[0]["task_number"] == 120
        client.close()
