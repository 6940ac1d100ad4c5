"""The persistent embedding cache: round trips, newest wins, crash safety, several processes."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ls_backend.cache import EmbeddingCache, content_hash

DIM = 8


def _vec(task_id: int, version: int = 0) -> np.ndarray:
    """A vector that encodes its task id and version, so any mix-up shows."""
    return np.arange(DIM, dtype=np.float32) + 1000.0 * task_id + 0.5 * version


def _vecs(ids, version: int = 0) -> np.ndarray:
    return np.stack([_vec(i, version) for i in ids]) if len(ids) else np.zeros((0, DIM), "f4")


def test_content_hash_is_stable_and_key_order_free():
    a = content_hash({"image": "/data/upload/1/a.png", "meta": {"x": 1, "y": [1, 2]}})
    b = content_hash({"meta": {"y": [1, 2], "x": 1}, "image": "/data/upload/1/a.png"})
    assert a == b and len(a) == 64
    assert content_hash({"image": "/data/upload/1/b.png"}) != a
    assert content_hash({"text": "café"}) == content_hash({"text": "café"})


def test_round_trip_in_key_order_with_missing_rows(tmp_path: Path):
    cache = EmbeddingCache(tmp_path, "tf_efficientnet_lite0-offline-96", DIM)
    assert len(cache) == 0
    ids = list(range(10, 60))
    cache.put([(i, f"h{i}") for i in ids], _vecs(ids))
    cache.put([(7, "h7")], _vecs([7]))
    assert len(cache) == 51

    query = [(33, "h33"), (999, "h999"), (7, "h7"), (10, "h10"), (59, "wrong-hash")]
    found, vectors = cache.get(query)
    assert found.tolist() == [True, False, True, True, False]
    assert vectors.dtype == np.float32 and vectors.shape == (5, DIM)
    np.testing.assert_array_equal(vectors[[0, 2, 3]], _vecs([33, 7, 10]))
    assert not vectors[[1, 4]].any()

    # A fresh instance (another worker, a restart) sees the same data.
    again = EmbeddingCache(tmp_path, "tf_efficientnet_lite0-offline-96", DIM)
    found2, vectors2 = again.get(query)
    assert found2.tolist() == found.tolist()
    np.testing.assert_array_equal(vectors2, vectors)
    empty_found, empty_vectors = again.get([])
    assert empty_found.shape == (0,) and empty_vectors.shape == (0, DIM)


def test_newest_wins_and_old_hash_is_a_miss(tmp_path: Path):
    cache = EmbeddingCache(tmp_path, "ns", DIM)
    cache.put([(1, "old"), (2, "b")], _vecs([1, 2], version=0))
    cache.put([(1, "new")], _vecs([1], version=1))
    found, vectors = cache.get([(1, "new"), (1, "old"), (2, "b")])
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(vectors[0], _vec(1, 1))
    assert len(cache) == 2
    # Within one put, a repeated task id keeps its last vector.
    cache.put([(3, "x"), (3, "y")], np.stack([_vec(3, 0), _vec(3, 1)]))
    found, vectors = cache.get([(3, "y"), (3, "x")])
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(vectors[0], _vec(3, 1))


def test_namespaces_and_dims_are_separate(tmp_path: Path):
    a = EmbeddingCache(tmp_path, "model-a-96", DIM)
    b = EmbeddingCache(tmp_path, "model-a-224", DIM)
    a.put([(1, "h")], _vecs([1]))
    assert b.get([(1, "h")])[0].tolist() == [False]
    with pytest.raises(ValueError, match="8-d"):
        EmbeddingCache(tmp_path, "model-a-96", DIM + 1)
    # Odd characters in a namespace never escape the root.
    odd = EmbeddingCache(tmp_path, "../evil/ns", DIM)
    assert odd.path.parent == tmp_path


def test_bad_input_is_refused(tmp_path: Path):
    cache = EmbeddingCache(tmp_path, "ns", DIM)
    with pytest.raises(ValueError, match="shape"):
        cache.put([(1, "h")], np.zeros((1, DIM + 1), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        cache.put([(1, "h")], np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(ValueError, match="task_id"):
        cache.get([("1", "h")])
    assert len(cache) == 0


def test_compact_keeps_live_rows_and_removes_garbage(tmp_path: Path):
    cache = EmbeddingCache(tmp_path, "ns", DIM)
    for start in range(0, 100, 10):
        ids = list(range(start, start + 10))
        cache.put([(i, "v0") for i in ids], _vecs(ids, 0))
    cache.put([(i, "v1") for i in range(0, 100, 2)], _vecs(list(range(0, 100, 2)), 1))
    (cache.shard_dir / "orphan.npy").write_bytes(b"left by a killed writer")
    stats = cache.compact()
    assert stats["rows"] == 100 and stats["shards_after"] == 1
    assert len(list(cache.shard_dir.iterdir())) == 1
    keys = [(i, "v1" if i % 2 == 0 else "v0") for i in range(100)]
    found, vectors = EmbeddingCache(tmp_path, "ns", DIM).get(keys)
    assert found.all()
    np.testing.assert_array_equal(vectors, np.stack([_vec(i, 1 - i % 2) for i in range(100)]))


_KILLED_WRITER = """
import os, signal, sys
import numpy as np
import ls_backend.cache as c

where = sys.argv[2]
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "before-rename":
    c.os.replace = die          # temp file written, never renamed
else:
    c._fsync_dir = die          # shard renamed into place, index never committed
cache = c.EmbeddingCache(sys.argv[1], "ns", 8)
cache.put([(i, "new") for i in range(5)], np.full((5, 8), 7.0, np.float32))
"""


@pytest.mark.parametrize("where", ["before-rename", "after-rename"])
def test_a_killed_writer_leaves_readable_cache(tmp_path: Path, where: str):
    cache = EmbeddingCache(tmp_path, "ns", DIM)
    cache.put([(i, "old") for i in range(3)], _vecs([0, 1, 2]))
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path), where], capture_output=True
    )
    assert proc.returncode == -9, proc.stderr.decode()
    # The writer left a file behind, and more: a partial temp file and a garbage "shard".
    leftovers = list(cache.shard_dir.iterdir())
    assert len(leftovers) == 2
    (cache.shard_dir / ".tmp-partial-1.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr'")
    (cache.shard_dir / "deadbeef.npy").write_bytes(b"\x00" * 10)

    reader = EmbeddingCache(tmp_path, "ns", DIM)
    found, vectors = reader.get([(i, "old") for i in range(3)] + [(i, "new") for i in range(5)])
    assert found.tolist() == [True] * 3 + [False] * 5
    np.testing.assert_array_equal(vectors[:3], _vecs([0, 1, 2]))
    # Writing and compacting carry on normally afterwards.
    reader.put([(9, "h")], _vecs([9]))
    reader.compact()
    found, _ = reader.get([(0, "old"), (9, "h")])
    assert found.all()


def test_a_damaged_committed_shard_reads_as_missing_not_an_error(tmp_path: Path):
    cache = EmbeddingCache(tmp_path, "ns", DIM)
    cache.put([(1, "a")], _vecs([1]))
    cache.put([(2, "b")], _vecs([2]))
    shard_of_2 = max(cache.shard_dir.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    shard_of_2.write_bytes(shard_of_2.read_bytes()[:100])  # truncated after the fact
    found, vectors = EmbeddingCache(tmp_path, "ns", DIM).get([(1, "a"), (2, "b")])
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(vectors[0], _vec(1))


def _concurrent_writer(root: str, worker: int, batches: int, per_batch: int) -> None:
    cache = EmbeddingCache(root, "ns", DIM)
    for b in range(batches):
        ids = [worker * 100_000 + b * per_batch + j for j in range(per_batch)]
        cache.put([(i, f"h{i}") for i in ids], _vecs(ids))
        # Both workers also rewrite one shared task each batch: newest wins, never corrupt.
        cache.put([(-1, f"w{worker}b{b}")], _vecs([-1], version=worker))
        found, _ = cache.get([(ids[0], f"h{ids[0]}")])
        assert found[0]


def test_two_processes_writing_concurrently_keep_every_row(tmp_path: Path):
    batches, per_batch = 15, 40
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_concurrent_writer, args=(str(tmp_path), w, batches, per_batch))
        for w in (1, 2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]

    cache = EmbeddingCache(tmp_path, "ns", DIM)
    ids = [w * 100_000 + k for w in (1, 2) for k in range(batches * per_batch)]
    assert len(cache) == len(ids) + 1
    found, vectors = cache.get([(i, f"h{i}") for i in ids])
    assert found.all()
    np.testing.assert_array_equal(vectors, _vecs(ids))
    last = [(-1, f"w{w}b{batches - 1}") for w in (1, 2)]
    assert cache.get(last)[0].sum() == 1  # exactly one writer's last version survives


def test_scales_to_many_rows_in_one_call(tmp_path: Path):
    n = 50_000
    cache = EmbeddingCache(tmp_path, "ns", DIM)
    ids = np.arange(n)
    vectors = np.random.default_rng(0).standard_normal((n, DIM)).astype(np.float32)
    cache.put([(int(i), "h") for i in ids], vectors)
    order = np.random.default_rng(1).permutation(n)
    found, got = cache.get([(int(i), "h") for i in order])
    assert found.all()
    np.testing.assert_array_equal(got, vectors[order])
