"""Ingest worker processes: sources pulled in their own interpreters, so intake uses every core.

Why processes: parsing JSON, the intake rules and binding a million rows are
pure Python and hold the GIL, so threads pulling six sources share one core.
A worker pulls whole sources (a source's pages follow one another by cursor)
with its own engine, exactly as the in-process path does (`tasks/pull.py`):
each page is stored with its cursor in one transaction, and a SourceError
fails only that source.

How a worker is started: `python -m minyi.tasks.ingest_worker`, a fresh
interpreter, like multiprocessing's "spawn" but without re-importing the
parent's `__main__` (the CLI, which would bring Prefect along). Never `fork`:
the parent runs Prefect's threads, and a forked copy of a multi-threaded
process can inherit locks held by threads that do not exist in the child.
"forkserver" would also work but re-imports `__main__` in its server.
A worker imports only what a pull needs (no Prefect), ~0.4 s, and the pool
starts its workers when the flow begins, alongside the parent's own set-up.

The protocol is one JSON line per job on the worker's stdin, one per result on
its stdout. A worker reads its stdin in a thread: end of file means the parent
has gone (killed, even with SIGKILL, its end of the pipe is closed by the
kernel), and the worker exits at once, mid-page or not. A page being written
then is rolled back with the dead connection, and the stored cursor still
matches the stored rows, so a re-run resumes exactly there (SPEC §3).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import IO, Any

import orjson


class WorkerCrashed(RuntimeError):
    """A worker died or failed outside the source (the store, a bug); the source's pull fails like in-process."""


# ---------------------------------------------------------------------------------------------- parent


class _Worker:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minyi.tasks.ingest_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def call(self, job: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(orjson.dumps(job) + b"\n")
            stdin.flush()
            line = stdout.readline()
        except OSError as exc:
            raise WorkerCrashed(f"ingest worker {self.proc.pid} is gone: {exc}") from None
        if not line:
            code = self.proc.wait()
            raise WorkerCrashed(f"ingest worker {self.proc.pid} died (exit status {code})")
        return orjson.loads(line)

    def close(self, timeout: float = 10.0) -> None:
        if self.proc.stdin:
            try:
                self.proc.stdin.close()  # end of file: the worker exits
            except OSError:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


class WorkerPool:
    """At most `size` worker processes, shared by the flow's pull tasks (threads); jobs are served in order."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._slots = threading.Semaphore(size)
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._closed = False

    def start(self) -> None:
        """Start every worker now, so their imports overlap with the parent's own work."""
        for _ in range(self.size):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise WorkerCrashed("the ingest worker pool is closed")
            worker = _Worker(dict(os.environ))
            self._workers.append(worker)
            return worker

    def call(self, job: dict[str, Any]) -> dict[str, Any]:
        with self._slots:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                worker = self._spawn()
            try:
                result = worker.call(job)
            except BaseException:
                worker.close(timeout=1.0)  # a worker that broke its protocol is not reused
                raise
            self._idle.put(worker)
        if "crash" in result:
            raise WorkerCrashed(result["crash"])
        return result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()


_POOLS: dict[str, WorkerPool] = {}


@contextmanager
def worker_pool(size: int) -> Iterator[str | None]:
    """A started pool of `size` workers for one flow run, named by a key the tasks pass on; None if size < 2."""
    if size < 2:
        yield None
        return
    pool = WorkerPool(size)
    key = uuid.uuid4().hex
    _POOLS[key] = pool
    try:
        pool.start()
        yield key
    finally:
        _POOLS.pop(key, None)
        pool.close()


def pool_for(key: str | None) -> WorkerPool | None:
    """The pool named by `key`, if it belongs to this process (a task run elsewhere pulls in-process)."""
    return _POOLS.get(key) if key else None


def pull_job(
    database_url: str, config_path: str, source: str, business_date: date, as_of: datetime, token: str | None
) -> dict[str, Any]:
    """A job for a worker: everything it needs, resolved by the parent (a Prefect Secret token included)."""
    return {
        "database_url": database_url,
        "config": config_path,
        "source": source,
        "business_date": business_date.isoformat(),
        "as_of": as_of.isoformat(),
        "token": token,
    }


# ---------------------------------------------------------------------------------------------- worker


def _run(job: dict[str, Any]) -> dict[str, Any]:
    from minyi.tasks.config import load_config
    from minyi.tasks.pull import pull_source_day
    from minyi.tasks.store import get_engine

    return pull_source_day(
        get_engine(job["database_url"]),
        load_config(job["config"]),
        job["source"],
        date.fromisoformat(job["business_date"]),
        datetime.fromisoformat(job["as_of"]),
        token=job["token"],
    )


def _serve(jobs_in: IO[bytes], results_out: IO[bytes]) -> None:
    from minyi.tasks.masking import mask_text

    jobs: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        for line in jobs_in:
            jobs.put(line)
        # The parent closed our stdin: it is done with us, or it died. Stop now, mid-page or not.
        results_out.flush()
        os._exit(0)

    threading.Thread(target=read, name="parent-watch", daemon=True).start()
    while True:
        job = orjson.loads(jobs.get())
        try:
            result = _run(job)
        except BaseException as exc:  # reported to the parent, which raises it there
            result = {"crash": mask_text(f"{type(exc).__name__}: {exc}")[:4000]}
        results_out.write(orjson.dumps(result) + b"\n")
        results_out.flush()


def main() -> None:
    import logging

    from minyi.tasks.masking import install_log_masking

    install_log_masking()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s | %(name)s | %(message)s")
    import minyi.tasks.pull  # noqa: F401 - imported now, while the parent sets up, not when the first job comes

    # stdout is the result channel: keep it to ourselves, and send any stray print to stderr.
    results_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(sys.stdin.buffer, results_out)


if __name__ == "__main__":
    main()
