"""Per-project state under ``MODEL_DIR/projects/<id>/``: the learning-curve history, the
version Label Studio serves, the last cycle's report. Written atomically (temp + rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def project_dir(model_dir: Path, project_id: int) -> Path:
    return Path(model_dir) / "projects" / str(int(project_id))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(model_dir: Path, project_id: int) -> dict[str, Any]:
    """The project's state dict (empty defaults when there is none yet or it is unreadable)."""
    path = project_dir(model_dir, project_id) / "state.json"
    state: dict[str, Any] = {}
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        # A torn file cannot happen with atomic writes; a hand-edited one might: start over
        # rather than fail every cycle, but keep the bad file for inspection.
        path.replace(path.with_suffix(".corrupt"))
    state.setdefault("project_id", int(project_id))
    state.setdefault("history", [])
    state.setdefault("versions", [])
    state.setdefault("current_version", None)
    state.setdefault("annotation_count", 0)
    state.setdefault("last_report", None)
    return state


def save_state(model_dir: Path, project_id: int, state: dict[str, Any]) -> None:
    path = project_dir(model_dir, project_id) / "state.json"
    atomic_write_bytes(path, json.dumps(state, indent=1, default=str).encode())
