"""The job queue: one coalesced ALO cycle per project.

A burst of webhook events gives at most one RUNNING and one PENDING cycle per project: the
pending cycle starts after the running one and reads everything annotated until then.

- ``InProcessQueue``: a worker thread inside the web process (one machine, no redis).
- ``RedisQueue``: rq on redis (``REDIS_URL``); run ``smartsize worker`` processes anywhere. A
  redis lock per project keeps two workers off the same project. When redis is down, requests
  are kept in a local spool and re-sent by a background thread, so no event is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

RQ_QUEUE_NAME = "smartsize"
PENDING_KEY = "smartsize:pending:{project}"
RUNNING_KEY = "smartsize:running:{project}"
LOCK_KEY = "smartsize:lock:{project}"
LOCK_TIMEOUT_S = 3 * 3600
# The project lock and the "running" flag live this long unless the running job renews them
# (every LOCK_RENEW_S): a worker killed mid-cycle (kill -9, OOM, lost machine) blocks the
# project for at most LOCK_TTL_S, not for LOCK_TIMEOUT_S.
LOCK_TTL_S = 30
LOCK_RENEW_S = 5
CycleRunner = Callable[[int, bool], Any]  # (project_id, force) -> report


class InProcessQueue:
    """Coalescing queue served by one daemon thread calling ``runner(project_id, force)``."""

    def __init__(self, runner: CycleRunner):
        self._runner = runner
        self._cond = threading.Condition()
        self._order: deque[int] = deque()
        self._pending: dict[int, bool] = {}  # project -> force
        self._running: set[int] = set()
        self._closed = False
        self.completed = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._work, name="smartsize-cycles", daemon=True)
        self._thread.start()

    def request(self, project_id: int, force: bool = False) -> str:
        with self._cond:
            if project_id in self._pending:
                self._pending[project_id] = self._pending[project_id] or force
                return "coalesced"
            self._pending[project_id] = force
            self._order.append(project_id)
            self._cond.notify()
            return "queued"

    def state(self, project_id: int) -> dict:
        with self._cond:
            return {
                "running": project_id in self._running,
                "pending": project_id in self._pending,
                "backend": "in-process",
            }

    def wait_idle(self, timeout: float = 600) -> bool:
        """Block until nothing is pending or running (tests, CLI)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._order and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                project = self._order.popleft()
                force = self._pending.pop(project)
                self._running.add(project)
            try:
                self._runner(project, force)
                self.completed += 1
            except Exception:  # a failed cycle must not kill the worker
                self.failed += 1
                log.exception("cycle for project %s failed", project)
            finally:
                with self._cond:
                    self._running.discard(project)
                    self._cond.notify_all()


class RedisQueue:
    """rq-backed coalescing queue; see the module docstring."""

    def __init__(self, redis_url: str, retry_every_s: float = 2.0):
        import redis
        from rq import Queue

        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._queue = Queue(RQ_QUEUE_NAME, connection=self._redis)
        self._spool: dict[int, bool] = {}
        self._spool_lock = threading.Lock()
        self._retry_every_s = retry_every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="smartsize-spool", daemon=True)
        self._thread.start()

    def _send(self, project_id: int, force: bool) -> str:
        if not self._redis.set(
            PENDING_KEY.format(project=project_id),
            "1" if force else "0",
            nx=True,
            ex=LOCK_TIMEOUT_S,
        ):
            if force:
                self._redis.set(PENDING_KEY.format(project=project_id), "1", xx=True)
            return "coalesced"
        self._queue.enqueue(
            "ls_backend.queue.run_queued_cycle",
            project_id,
            job_timeout=LOCK_TIMEOUT_S,
            result_ttl=3600,
            failure_ttl=86400,
        )
        return "queued"

    def request(self, project_id: int, force: bool = False) -> str:
        import redis

        try:
            return self._send(project_id, force)
        except redis.RedisError as exc:
            with self._spool_lock:
                self._spool[project_id] = self._spool.get(project_id, False) or force
            log.warning(
                "redis unavailable (%s); cycle for project %s kept in the local spool",
                type(exc).__name__,
                project_id,
            )
            return "deferred"

    def _drain(self) -> None:
        import redis

        while not self._stop.wait(self._retry_every_s):
            with self._spool_lock:
                items = list(self._spool.items())
            for project_id, force in items:
                try:
                    self._send(project_id, force)
                except redis.RedisError:
                    break
                with self._spool_lock:
                    self._spool.pop(project_id, None)
                log.info("redis is back: spooled cycle for project %s sent", project_id)

    def spooled(self) -> list[int]:
        with self._spool_lock:
            return sorted(self._spool)

    def state(self, project_id: int) -> dict:
        import redis

        try:
            return {
                "running": bool(self._redis.exists(RUNNING_KEY.format(project=project_id))),
                "pending": bool(self._redis.exists(PENDING_KEY.format(project=project_id)))
                or project_id in self.spooled(),
                "backend": "redis",
            }
        except redis.RedisError as exc:
            return {
                "running": None,
                "pending": project_id in self.spooled(),
                "backend": "redis",
                "error": f"redis unavailable: {type(exc).__name__}",
            }

    def close(self) -> None:
        self._stop.set()


def run_queued_cycle(project_id: int) -> Any:
    """The rq job: take the project lock, clear the pending flag, run one cycle.

    The pending flag is cleared only once the lock is held, so while another worker runs this
    project, later events still coalesce into this one waiting job."""
    import redis
    from rq import get_current_job

    from ls_backend.cycle import run_cycle_from_env

    conn = get_current_job().connection
    running = RUNNING_KEY.format(project=project_id)
    lock = conn.lock(
        LOCK_KEY.format(project=project_id), timeout=LOCK_TTL_S, blocking_timeout=LOCK_TIMEOUT_S
    )
    if not lock.acquire():
        raise RuntimeError(f"project {project_id} stayed locked for {LOCK_TIMEOUT_S} s")
    done = threading.Event()

    def keep_alive() -> None:
        while not done.wait(LOCK_RENEW_S):
            try:
                lock.extend(LOCK_TTL_S, replace_ttl=True)
                conn.set(running, "1", ex=LOCK_TTL_S)
            except redis.RedisError as exc:  # redis down or restarted: the cycle goes on
                log.warning("project %s: lock not renewed (%s)", project_id, type(exc).__name__)

    renewer = threading.Thread(target=keep_alive, name="smartsize-lock", daemon=True)
    try:
        force = conn.get(PENDING_KEY.format(project=project_id)) == b"1"
        conn.delete(PENDING_KEY.format(project=project_id))
        conn.set(running, "1", ex=LOCK_TTL_S)
        renewer.start()
        report = run_cycle_from_env(project_id, force=force)
    finally:
        done.set()
        if renewer.is_alive():
            renewer.join()
        try:
            conn.delete(running)
            lock.release()
        except redis.RedisError as exc:  # lost with a redis restart: it expires by itself
            log.warning("project %s: lock not released (%s)", project_id, type(exc).__name__)
    return report


def run_worker(redis_url: str, burst: bool = False) -> None:
    """``smartsize worker``: serve the queue until stopped (``burst`` returns when empty).

    A SimpleWorker runs jobs in-process, so the embedding model stays loaded between cycles."""
    import redis
    from rq import Queue, SimpleWorker

    conn = redis.Redis.from_url(redis_url)
    worker = SimpleWorker([Queue(RQ_QUEUE_NAME, connection=conn)], connection=conn)
    worker.work(burst=burst, with_scheduler=False)


def make_queue(redis_url: str | None, runner: CycleRunner):
    """Redis + rq when ``REDIS_URL`` is set, else the in-process worker thread."""
    return RedisQueue(redis_url) if redis_url else InProcessQueue(runner)
