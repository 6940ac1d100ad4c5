"""Persistent embedding cache: one namespace per embedder (``embedder.cache_id``).

Layout under ``root/<namespace>/``::

    index.sqlite        (task_id -> content_hash, shard, row); WAL mode, one row per task
    shards/<id>.npy     float32 (rows, dim) arrays, written once, never modified

Writes: the vectors go to a temp file, are fsync'd, then - holding sqlite's write lock - renamed
to their final shard name and indexed in one transaction. A writer killed at any point leaves at
worst a temp file or a shard that no committed index row points at; readers only read rows that
the committed index references, so such leftovers are invisible (``compact()`` deletes them).

Reads: the index is queried, then the referenced rows are read from memory-mapped shards.

A task whose content hash changed is re-embedded by the caller and ``put`` again: the newest
vector replaces the index row (newest wins); ``get`` with the old hash reports it missing.

Safe with several processes (sqlite serialises writers; shards are immutable) and several
threads (one connection per process, guarded by a lock).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: How many shard memory maps a cache keeps open at once.
MAX_OPEN_SHARDS = 64
#: Temp files older than this (seconds) are considered abandoned by ``compact()``.
STALE_TEMP_SECONDS = 3600
#: Rows per shard written by ``compact()``.
COMPACT_SHARD_ROWS = 262_144

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    task_id INTEGER PRIMARY KEY,
    content_hash TEXT NOT NULL,
    shard TEXT NOT NULL,
    row INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS vectors_shard ON vectors (shard);
"""


def content_hash(data: Any) -> str:
    """Stable sha256 hex digest of a task's ``data`` (JSON with sorted keys, UTF-8)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _safe_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not namespace.strip():
        raise ValueError("namespace must be a non-empty string")
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", namespace.strip())
    if clean != namespace or clean in (".", ".."):
        # Different spellings must not collide: add a short digest of the exact namespace.
        clean = f"{clean.strip('.') or 'ns'}-{hashlib.sha256(namespace.encode()).hexdigest()[:8]}"
    return clean


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _enable_wal(conn: sqlite3.Connection, timeout: float = 60.0) -> None:
    """Switch the index to WAL (persistent; a no-op once done). Changing the journal mode
    needs a moment alone with the file and sqlite does not always wait for it (a second
    process opening the cache at the same time got "database is locked"), so retry."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class EmbeddingCache:
    """Embeddings keyed by ``(task_id, content_hash)`` in one namespace of dimension ``dim``."""

    def __init__(self, root: str | os.PathLike[str], namespace: str, dim: int) -> None:
        if int(dim) != dim or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.namespace = namespace
        self.dim = int(dim)
        self.path = Path(root) / _safe_namespace(namespace)
        self.shard_dir = self.path / "shards"
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._maps: OrderedDict[str, np.ndarray] = OrderedDict()
        with self._lock:
            conn = self._connection()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT value FROM meta WHERE key='dim'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta VALUES ('dim', ?)", (str(self.dim),))
                    conn.execute("INSERT INTO meta VALUES ('namespace', ?)", (namespace,))
                elif int(row[0]) != self.dim:
                    raise ValueError(
                        f"embedding cache {self.path} holds {row[0]}-d vectors, not {self.dim}-d"
                    )

    # -- plumbing --------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        # One connection per process: a connection inherited through fork must not be reused.
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(
                self.path / "index.sqlite",
                timeout=120,
                isolation_level=None,  # explicit BEGIN/COMMIT below
                check_same_thread=False,
            )
            conn.execute("PRAGMA busy_timeout=120000")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
            self._pid = os.getpid()
            self._maps = OrderedDict()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            self._maps.clear()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _shard(self, name: str) -> np.ndarray | None:
        mm = self._maps.get(name)
        if mm is not None:
            self._maps.move_to_end(name)
            return mm
        try:
            mm = np.load(self.shard_dir / f"{name}.npy", mmap_mode="r")
        except (FileNotFoundError, ValueError, OSError) as exc:
            log.warning("embedding cache %s: shard %s unreadable (%s)", self.path, name, exc)
            return None
        if mm.ndim != 2 or mm.shape[1] != self.dim or mm.dtype != np.float32:
            log.warning("embedding cache %s: shard %s has shape %s", self.path, name, mm.shape)
            return None
        self._maps[name] = mm
        while len(self._maps) > MAX_OPEN_SHARDS:
            self._maps.popitem(last=False)
        return mm

    def _garbage(self, keep: set[str]) -> list[Path]:
        now = time.time()
        out = []
        for f in self.shard_dir.iterdir():
            if f.name in keep:
                continue
            if f.name.startswith(".tmp-"):
                try:
                    if now - f.stat().st_mtime < STALE_TEMP_SECONDS:
                        continue  # maybe a live writer's; it renames under the lock later
                except FileNotFoundError:
                    continue
            out.append(f)
        return out

    def _write_shard(self, vectors: np.ndarray) -> tuple[str, Path]:
        """Write ``vectors`` to a fsync'd temp file; return (shard name, temp path)."""
        name = uuid.uuid4().hex
        tmp = self.shard_dir / f".tmp-{name}-{os.getpid()}.npy"
        with open(tmp, "wb") as fh:
            np.lib.format.write_array(fh, vectors, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        return name, tmp

    # -- public API ------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def get(self, keys: Sequence[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
        """Look up ``(task_id, content_hash)`` keys.

        Returns ``found`` bool ``(n,)`` and ``vectors`` float32 ``(n, dim)`` (zeros where not
        found), in key order. A key whose task is cached under another hash is not found.
        """
        task_ids, hashes = _split_keys(keys)
        n = len(task_ids)
        found = np.zeros(n, dtype=bool)
        vectors = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return found, vectors
        for attempt in range(2):
            todo = np.flatnonzero(~found)
            if todo.size == 0:
                break
            missing_shard = self._fill(todo, task_ids, hashes, found, vectors)
            if not missing_shard:
                break
            # A shard vanished between the index read and the open (a concurrent compact()):
            # the index now points elsewhere, so ask it once more.
            if attempt == 0:
                time.sleep(0.01)
        return found, vectors

    def _fill(
        self,
        positions: np.ndarray,
        task_ids: np.ndarray,
        hashes: list[str],
        found: np.ndarray,
        vectors: np.ndarray,
    ) -> bool:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS q (pos INTEGER PRIMARY KEY, tid INT)")
                conn.execute("DELETE FROM q")
                conn.executemany(
                    "INSERT INTO q VALUES (?, ?)",
                    zip(positions.tolist(), task_ids[positions].tolist(), strict=True),
                )
                rows = conn.execute(
                    "SELECT q.pos, v.content_hash, v.shard, v.row "
                    "FROM q JOIN vectors v ON v.task_id = q.tid"
                ).fetchall()
                conn.execute("DELETE FROM q")
            finally:
                conn.execute("COMMIT")
            by_shard: dict[str, tuple[list[int], list[int]]] = {}
            for pos, chash, shard, row in rows:
                if chash == hashes[pos]:
                    dest, src = by_shard.setdefault(shard, ([], []))
                    dest.append(pos)
                    src.append(row)
            missing_shard = False
            for shard, (dest, src) in by_shard.items():
                mm = self._shard(shard)
                src_arr = np.asarray(src, dtype=np.int64)
                if mm is None or (src_arr.size and int(src_arr.max()) >= mm.shape[0]):
                    missing_shard = True
                    continue
                dest_arr = np.asarray(dest, dtype=np.int64)
                order = np.argsort(src_arr, kind="stable")  # sequential reads from the map
                vectors[dest_arr[order]] = mm[src_arr[order]]
                found[dest_arr] = True
            return missing_shard

    def put(self, keys: Sequence[tuple[int, str]], vectors: np.ndarray) -> None:
        """Store one vector per ``(task_id, content_hash)``; replaces what a task had before.

        Within one call a task id given twice keeps its last vector.
        """
        task_ids, hashes = _split_keys(keys)
        arr = np.asarray(vectors)
        if arr.ndim != 2 or arr.shape != (len(task_ids), self.dim):
            raise ValueError(
                f"vectors must have shape ({len(task_ids)}, {self.dim}), got {arr.shape}"
            )
        if len(task_ids) == 0:
            return
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ValueError("vectors contain NaN or infinity")
        name, tmp = self._write_shard(arr)
        try:
            with self._lock:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")  # the write lock: no compact() runs meanwhile
                try:
                    os.replace(tmp, self.shard_dir / f"{name}.npy")
                    _fsync_dir(self.shard_dir)
                    conn.executemany(
                        "INSERT OR REPLACE INTO vectors (task_id, content_hash, shard, row) "
                        "VALUES (?, ?, ?, ?)",
                        zip(
                            task_ids.tolist(),
                            hashes,
                            [name] * len(hashes),
                            range(len(hashes)),
                            strict=True,
                        ),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        finally:
            if tmp.exists():
                tmp.unlink(missing_ok=True)

    def compact(self) -> dict[str, int]:
        """Rewrite live rows into few large shards and delete unreferenced files.

        Holds the write lock throughout (other writers wait; readers keep reading). Returns
        counts: ``rows``, ``shards_before``, ``shards_after``, ``files_removed``.
        """
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                live = conn.execute(
                    "SELECT task_id, content_hash, shard, row FROM vectors ORDER BY shard, row"
                ).fetchall()
                before = {r[2] for r in live}
                new_rows: list[tuple[int, str, str, int]] = []
                new_shards: list[str] = []
                for start in range(0, len(live), COMPACT_SHARD_ROWS):
                    chunk = live[start : start + COMPACT_SHARD_ROWS]
                    block = np.zeros((len(chunk), self.dim), dtype=np.float32)
                    keep = np.ones(len(chunk), dtype=bool)
                    for i, (_, _, shard, row) in enumerate(chunk):
                        mm = self._shard(shard)
                        if mm is None or row >= mm.shape[0]:
                            keep[i] = False  # unreadable: drop it, the task is re-embedded
                        else:
                            block[i] = mm[row]
                    chunk = [c for c, k in zip(chunk, keep, strict=True) if k]
                    block = block[keep]
                    if not chunk:
                        continue
                    name, tmp = self._write_shard(block)
                    os.replace(tmp, self.shard_dir / f"{name}.npy")
                    new_shards.append(name)
                    new_rows.extend((t, h, name, i) for i, (t, h, _, _) in enumerate(chunk))
                _fsync_dir(self.shard_dir)
                conn.execute("DELETE FROM vectors")
                conn.executemany("INSERT INTO vectors VALUES (?, ?, ?, ?)", new_rows)
                # Everything not referenced now is garbage (old shards, a killed writer's
                # leftovers). List it while still holding the lock, so that a shard another
                # writer adds right after our commit is never taken for garbage.
                garbage = self._garbage({f"{s}.npy" for s in new_shards})
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._maps.clear()
            for f in garbage:
                f.unlink(missing_ok=True)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return {
                "rows": len(new_rows),
                "shards_before": len(before),
                "shards_after": len(new_shards),
                "files_removed": len(garbage),
            }


def _split_keys(keys: Sequence[tuple[int, str]]) -> tuple[np.ndarray, list[str]]:
    task_ids = np.empty(len(keys), dtype=np.int64)
    hashes: list[str] = []
    for i, key in enumerate(keys):
        try:
            tid, chash = key
        except (TypeError, ValueError):
            raise ValueError(f"keys must be (task_id, content_hash) pairs, got {key!r}") from None
        if isinstance(tid, bool) or not isinstance(tid, (int, np.integer)):
            raise ValueError(f"task_id must be an integer, got {tid!r}")
        if not isinstance(chash, str):
            raise ValueError(f"content_hash must be a string, got {chash!r}")
        task_ids[i] = tid
        hashes.append(chash)
    return task_ids, hashes
