"""Ingest worker processes: pages pulled in their own interpreters, so intake uses every core.

Why processes: parsing JSON, the intake rules and binding a million rows are
pure Python and hold the GIL, so threads pulling six sources share one core.

Who does what: each source's Prefect task (a thread of the flow's process)
walks its cursor chain and asks the pool for one page at a time; a free worker
fetches that page, runs intake and stores it with its cursor in one
transaction, with its own engine (`tasks/pull.SourcePuller`, kept per source
in the worker), and answers with the row count and the next cursor. So the
workers are shared page by page, not source by source, first come first
served: every source moves on at the same pace, and sources of 35% and 3% of
the day keep both workers busy until only the largest is left, whatever their
order and without knowing their sizes. A SourceError is sent back and fails
only that source, exactly as in-process. A source pulled alone holds both
workers and splits each page into `prepare` and `store`, so that one worker
prepares page N+1 while the other stores page N (`pipelined_pages`).

How a worker is started: `python -m minyi.tasks.stages.ingest_worker`, a fresh
interpreter, like multiprocessing's "spawn" but without re-importing the
parent's `__main__` (the CLI, which would bring Prefect along). Never `fork`:
the parent runs Prefect's threads, and a forked copy of a multi-threaded
process can inherit locks held by threads that do not exist in the child.
"forkserver" would also work but re-imports `__main__` in its server.
A worker imports only what a pull needs (no Prefect), ~0.3 s, and the pool
starts its workers when the flow begins, alongside the parent's own set-up.

The protocol is one JSON line per job on the worker's stdin, one per result on
its stdout. A worker reads its stdin in a thread: end of file means the parent
has gone (killed, even with SIGKILL, its end of the pipe is closed by the
kernel), and the worker exits at once, mid-page or not. A page being written
then is rolled back with the dead connection, and the stored cursor still
matches the stored rows, so a re-run resumes exactly there (SPEC §3).
"""

from __future__ import annotations

import itertools
import os
import queue
import subprocess
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime
from functools import partial
from typing import IO, Any

import orjson

from minyi.tasks.errors import SourceError


class WorkerCrashed(RuntimeError):
    """A worker died or failed outside the source (the store, a bug); the source's pull fails like in-process."""


# ---------------------------------------------------------------------------------------------- parent


class _Worker:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minyi.tasks.stages.ingest_worker"],
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
    """At most `size` worker processes, shared page by page by the flow's pull tasks (threads)."""

    def __init__(self, size: int, pipelined: bool = False) -> None:
        self.size = size
        self.pipelined = pipelined  # one source: its pages go through `pipelined_pages`
        self._free = size
        self._turn = threading.Condition()
        self._waiting: deque[int] = deque()  # the callers waiting for a worker, by arrival
        self._arrivals = itertools.count()
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
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

    def _acquire(self) -> None:
        with self._turn:
            ticket = next(self._arrivals)
            self._waiting.append(ticket)
            while not (self._free > 0 and self._waiting[0] == ticket):
                self._turn.wait()
            self._waiting.popleft()
            self._free -= 1
            self._turn.notify_all()

    def _release(self) -> None:
        with self._turn:
            self._free += 1
            self._turn.notify_all()

    def _take(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._spawn()

    @staticmethod
    def _run_on(worker: _Worker, job: dict[str, Any]) -> dict[str, Any]:
        """`job` on `worker`; a worker that broke its protocol is closed, not reused."""
        try:
            result = worker.call(job)
        except BaseException:
            worker.close(timeout=1.0)
            raise
        if "crash" in result:
            raise WorkerCrashed(result["crash"])
        return result

    def call(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run `job` on the next free worker, callers served in the order they asked.

        WorkerCrashed if the job failed outside the source (the store, a bug) or the worker died.
        """
        self._acquire()
        try:
            worker = self._take()
            try:
                return self._run_on(worker, job)
            finally:
                if worker.proc.poll() is None and worker.proc.stdin and not worker.proc.stdin.closed:
                    self._idle.put(worker)
        finally:
            self._release()

    @contextmanager
    def pinned(self, n: int) -> Iterator[list[Callable[[dict[str, Any]], dict[str, Any]]]]:
        """`n` workers held by one caller until the block ends, each as a `call(job)` for that worker alone.

        Why: a pipelined pull stores a page on the worker that prepared it.
        """
        held: list[_Worker] = []
        try:
            for _ in range(n):
                self._acquire()
                try:
                    held.append(self._take())
                except BaseException:
                    self._release()
                    raise
            yield [partial(self._run_on, w) for w in held]
        finally:
            for w in held:
                if w.proc.poll() is None and w.proc.stdin and not w.proc.stdin.closed:
                    self._idle.put(w)
                self._release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()


_POOLS: dict[str, WorkerPool] = {}


@contextmanager
def worker_pool(size: int, sources: int = 2) -> Iterator[str | None]:
    """A started pool of `size` workers for one flow run, named by a key the tasks pass on; None if size < 2.

    For one source the pool pipelines its pages (`pipelined_pages`); for several it shares them page by page.
    """
    if size < 2:
        yield None
        return
    pool = WorkerPool(size, pipelined=sources == 1)
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
    """What a worker needs to pull a source's pages; the parent resolves it all (a `prefect-secret:` token needs Prefect)."""
    return {
        "database_url": database_url,
        "config": config_path,
        "source": source,
        "business_date": business_date.isoformat(),
        "as_of": as_of.isoformat(),
        "token": token,
    }


def remote_pages(pool: WorkerPool, job: dict[str, Any]) -> Callable[[str | None], tuple[int, str | None]]:
    """`pull_page` for `pull_source_day`: each page pulled and stored by whichever worker of `pool` is free."""

    def pull_page(cursor: str | None) -> tuple[int, str | None]:
        return _answer(pool.call({**job, "cursor": cursor}))

    return pull_page


def _answer(result: dict[str, Any]) -> tuple[int, str | None]:
    if "source_error" in result:
        raise SourceError(result["source_error"])
    return result["fetched"], result["next_cursor"]


@contextmanager
def pipelined_pages(pool: WorkerPool, job: dict[str, Any]) -> Iterator[Callable[[str | None], tuple[int, str | None]]]:
    """`pull_page` for a source pulled alone: two workers take turns, one prepares page N+1 while the other stores N.

    Why: a source's cursor chain is sequential, and fetching, parsing and intake of a
    page cost as much as storing it; in one process they share one core (the GIL). Each
    worker prepares a page (fetch and intake, `SourcePuller.prepare`) and then stores it
    itself; the next page's cursor is known once a page is prepared, so the other worker
    prepares that page meanwhile. Pages are still stored one at a time, in cursor order,
    each with its cursor (the store of page N+1 is asked for only after page N's has
    returned), so a killed run resumes exactly as with one process, and a failed fetch
    raises its SourceError after the page before it is stored.
    """
    with pool.pinned(2) as calls, ThreadPoolExecutor(1, thread_name_prefix=f"prepare-{job['source']}") as ahead_of:
        ahead: tuple[str, int, Future[dict[str, Any]]] | None = None  # (cursor, worker, its prepare)
        turn = 0

        def pull_page(cursor: str | None) -> tuple[int, str | None]:
            nonlocal ahead, turn
            if ahead is not None and ahead[0] == cursor:
                _, turn, prepared = ahead
                ahead = None
                result = prepared.result()
            else:
                _settle(ahead)
                ahead = None
                result = calls[turn]({**job, "op": "prepare", "cursor": cursor})
            fetched, nxt = _answer(result)
            other = 1 - turn
            if nxt is not None:
                ahead = (nxt, other, ahead_of.submit(calls[other], {**job, "op": "prepare", "cursor": nxt}))
            calls[turn]({**job, "op": "store", "last": nxt is None})
            turn = other
            return fetched, nxt

        try:
            yield pull_page
        finally:
            _settle(ahead)  # the worker finishes its job before it goes back to the pool; its page is dropped


def _settle(ahead: tuple[str, int, Future[dict[str, Any]]] | None) -> None:
    if ahead is not None:
        try:
            ahead[2].result()
        except Exception:  # a page never stored: its cursor is still the stored one
            pass


# ---------------------------------------------------------------------------------------------- worker

_pullers: dict[tuple[str, ...], Any] = {}  # (url, config, source, day, as_of) -> SourcePuller
_instants: dict[tuple[str, ...], dict[str, Any]] = {}  # (url, config, day) -> handled_at cache shared by sources


def _run(job: dict[str, Any]) -> dict[str, Any]:
    from minyi.tasks.config import load_config
    from minyi.tasks.stages.pull import SourcePuller
    from minyi.tasks.store.engine import get_engine

    url, cfg, source, day, as_of = (job[k] for k in ("database_url", "config", "source", "business_date", "as_of"))
    key = (url, cfg, source, day, as_of)
    puller = _pullers.get(key)
    if puller is None:
        puller = SourcePuller(
            get_engine(url),
            load_config(cfg),
            source,
            date.fromisoformat(day),
            datetime.fromisoformat(as_of),
            token=job["token"],
            instants=_instants.setdefault((url, cfg, day), {}),
        )
        _pullers[key] = puller
    op = job.get("op", "pull")  # pull = prepare + store; a pipelined pull sends them apart (`pipelined_pages`)
    try:
        if op == "store":
            puller.store_prepared()
            if job.get("last"):
                _pullers.pop(key).close()
            return {"stored": True}
        if op == "prepare":
            fetched, next_cursor = puller.prepare(job["cursor"])
            return {"fetched": fetched, "next_cursor": next_cursor}
        fetched, next_cursor = puller.pull_page(job["cursor"])
    except SourceError as exc:
        _pullers.pop(key).close()
        return {"source_error": str(exc)}
    except BaseException:
        _pullers.pop(key).close()
        raise
    if next_cursor is None:
        _pullers.pop(key).close()
    return {"fetched": fetched, "next_cursor": next_cursor}


def _serve(jobs_in: IO[bytes], results_out: IO[bytes]) -> None:
    from minyi.tasks.rules.masking import mask_text

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

    from minyi.tasks.rules.masking import install_log_masking

    install_log_masking()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s | %(name)s | %(message)s")
    import minyi.tasks.stages.pull  # noqa: F401 - imported now, while the parent sets up, not when the first job comes

    # stdout is the result channel: keep it to ourselves, and send any stray print to stderr.
    results_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(sys.stdin.buffer, results_out)


if __name__ == "__main__":
    main()
