"""kill -9 during ModelStore.save and EmbeddingCache.put, at chosen points and at random times:
whatever was committed before still loads, nothing half-written is visible, and writing goes
on afterwards. (tests/unit/test_cache.py kills a cache writer at two fixed points; ModelStore
had only a simulated failure.) Real processes, real SIGKILL; bounded: a few seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ls_backend.cache import EmbeddingCache
from ls_backend.head import ClassifierHead, ModelStore

DIM = 8


def _blobs(n=60, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return rng.normal(size=(n, 4)) + 3 * np.eye(k, 4)[y], y


_KILLED_SAVE = """
import os, signal, sys
import numpy as np
import ls_backend.head as h

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

where = sys.argv[2]
if where == "during-write":
    h.os.fsync = die                       # temp file written, not yet synced or renamed
elif where == "before-rename":
    h.os.replace = die                     # temp file complete, never renamed
else:
    h.ModelStore._fsync_dir = die          # renamed into place, directory not yet synced
rng = np.random.default_rng(1)
y = np.arange(60) % 3
x = rng.normal(size=(60, 4)) + 3 * np.eye(3, 4)[y]
h.ModelStore(sys.argv[1]).save(h.ClassifierHead().fit(x, y, 3), {"run": "killed"})
"""


@pytest.mark.parametrize("where", ["during-write", "before-rename", "after-rename"])
def test_model_store_killed_mid_save(tmp_path: Path, where: str):
    store = ModelStore(tmp_path)
    x, y = _blobs()
    v1 = store.save(ClassifierHead().fit(x, y, 3), {"run": "first"})
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_SAVE, str(tmp_path), where], capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert store.load(v1).meta["run"] == "first"
    versions = store.versions()
    if where == "after-rename":  # the rename is the commit point: the new version is whole
        assert len(versions) == 2 and store.load().meta["run"] == "killed"
    else:
        assert versions == [v1]
        assert len(list(tmp_path.glob(".tmp-*.npz"))) == 1  # invisible leftover
    for v in versions:
        assert store.load(v).head.predict_proba(x).shape == (60, 3)
    v3 = store.save(ClassifierHead().fit(x, y, 3), {"run": "after"})
    assert store.latest() == v3


_SAVE_LOOP = """
import sys
import numpy as np
from ls_backend.head import ClassifierHead, ModelStore
rng = np.random.default_rng(2)
y = np.arange(60) % 3
x = rng.normal(size=(60, 4)) + 3 * np.eye(3, 4)[y]
head = ClassifierHead().fit(x, y, 3)
store = ModelStore(sys.argv[1], keep=3)
print("ready", flush=True)
for i in range(2000):
    store.save(head, {"i": i})
"""

_PUT_LOOP = """
import sys
import numpy as np
from ls_backend.cache import EmbeddingCache
cache = EmbeddingCache(sys.argv[1], "ns", 8)
print("ready", flush=True)
for i in range(5000):
    ids = list(range(i * 4, i * 4 + 4))
    cache.put([(t, f"h{t}") for t in ids], np.repeat(np.array(ids, np.float32)[:, None], 8, 1))
"""


def _kill_at_random(script: str, target: Path, rng: np.random.Generator) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()[-2000:]
        time.sleep(float(rng.uniform(0.02, 0.4)))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_model_store_survives_random_kills(tmp_path: Path):
    rng = np.random.default_rng(0)
    x, _ = _blobs()
    for _round in range(4):
        _kill_at_random(_SAVE_LOOP, tmp_path, rng)
        store = ModelStore(tmp_path, keep=3)
        versions = store.versions()
        assert versions, "at least one save should have completed"
        for v in versions:  # every visible version loads whole
            stored = store.load(v)
            assert stored.meta["version"] == v
            assert np.allclose(stored.head.predict_proba(x).sum(axis=1), 1.0)


def test_embedding_cache_survives_random_kills(tmp_path: Path):
    rng = np.random.default_rng(1)
    for _round in range(4):
        _kill_at_random(_PUT_LOOP, tmp_path, rng)
        with EmbeddingCache(tmp_path, "ns", DIM) as cache:
            n = len(cache)
            assert n > 0 and n % 4 == 0  # puts are all-or-nothing
            keys = [(t, f"h{t}") for t in range(n + 40)]
            found, vectors = cache.get(keys)
            assert found[:n].all() and not found[n:].any()
            assert np.array_equal(vectors[:n, 0], np.arange(n, dtype=np.float32))
    with EmbeddingCache(tmp_path, "ns", DIM) as cache:  # writing and compacting go on
        cache.put([(10**6, "x")], np.ones((1, DIM), np.float32))
        cache.compact()
        assert cache.get([(10**6, "x"), (0, "h0")])[0].all()
