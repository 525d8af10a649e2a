"""Shared benchmark plumbing: a throwaway store, a city source in its own process, peak RSS."""

from __future__ import annotations

import gc
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Self

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get("MINYI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def die_with_parent() -> None:
    """`preexec_fn` of every stand-in the benchmarks start: SIGTERM when the benchmark's process dies.

    Why: a benchmark killed by hand (or by a timeout) left its source server and SMS gateway running, and the
    next run measured beside them. Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op.
    """
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    """A loopback port nobody listens on right now, for a stand-in started in another process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib() -> float:
    """This process's peak resident set (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TreeProbe:
    """Peak memory of this process's tree while the `with` block runs, read by `benchmarks.rss_probe` in its
    own process (see there why not a thread of this one).

    `peak_mib`: the summed resident sets of this process and its descendants, the `exclude` pids (the
    benchmark's stand-ins) left out; `server_peak_mib`: a temporary Prefect server's, apart;
    `marked_peak_mib`: the largest peak (VmHWM) of a child whose command line holds `marker`, `marked`
    how many such children were seen.
    """

    def __init__(self, exclude: set[int], marker: str = "", interval: float = 0.05) -> None:
        self.args = [str(os.getpid()), "--interval", str(interval), "--marker", marker, "--exclude", *map(str, exclude)]
        self.peak_mib = self.server_peak_mib = self.marked_peak_mib = 0.0
        self.marked = 0  # how many marked children were seen
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.rss_probe", *self.args],
            preexec_fn=die_with_parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        out, _ = self._proc.communicate(timeout=60)  # closing its stdin makes it report
        figures = json.loads(out)
        self.peak_mib = figures["tree_kib"] / 1024
        self.server_peak_mib = figures["server_kib"] / 1024
        self.marked_peak_mib = figures["marked_hwm_kib"] / 1024
        self.marked = figures["marked"]


class GcPauses:
    """The cyclic garbage collector's passes in this process while the block runs, by generation.

    Why a benchmark figure: every pass holds the GIL, so in the loop's process it stops the relay's and
    the stages' threads alike; a full pass walks every tracked object (tasks/heap.py).
    """

    def __init__(self) -> None:
        self.passes: Counter[int] = Counter()
        self.seconds: Counter[int] = Counter()
        self._started = 0.0

    def _record(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.passes[info["generation"]] += 1
            self.seconds[info["generation"]] += time.perf_counter() - self._started

    def __enter__(self) -> Self:
        gc.callbacks.append(self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._record)

    def figures(self) -> dict[str, list[float]]:
        return {str(g): [self.passes[g], round(self.seconds[g], 2)] for g in sorted(self.passes)}


@contextmanager
def throwaway_store(db: str) -> Iterator[str]:
    """A fresh SQLite file or PostgreSQL database, dropped afterwards."""
    if db == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    name = f"minyi_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        from minyi.tasks.store.engine import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def city_source(
    records: int, day: date, page_size: int = 5000, shape: str = "city", pids: set[int] | None = None
) -> Iterator[str]:
    """The synthetic city served from a separate process, every page rendered before we start timing.

    `shape` "city" splits the day over the city's six sources; "one" serves it all from one (a province's
    110 platform: one source whose cursor paging is sequential). The server's pid is added to `pids`.
    """
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "minyi.sim.source_server",
            "--records",
            str(records),
            "--date",
            day.isoformat(),
            "--page-size",
            str(page_size),
            "--shape",
            shape,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,
    )
    if pids is not None:
        pids.add(proc.pid)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("source server did not start")
        yield url
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(30)
