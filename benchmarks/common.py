"""Shared benchmark plumbing: a throwaway store, a city source in its own process, peak RSS."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Self

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get("MINYI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    """A loopback port nobody listens on right now, for a stand-in started in another process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib() -> float:
    """This process's peak resident set (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Sampler:
    """A background thread that samples /proc until the `with` block ends."""

    name = "sampler"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        raise NotImplementedError


class ChildPeakRss(_Sampler):
    """The peak resident set of this process's children whose command line contains `marker`, while it runs.

    Why sampled from /proc: getrusage(RUSAGE_CHILDREN) reports the largest child ever reaped, which here
    is not an ingest worker (Prefect's and the stand-ins' processes count too). VmHWM is each child's own
    peak, read every `interval` seconds until the child is gone.
    """

    name = "child-rss"

    def __init__(self, marker: str, interval: float = 0.1) -> None:
        self.marker = marker.encode()
        self.peaks: dict[int, int] = {}  # pid -> KiB
        super().__init__(interval)

    @property
    def max_mib(self) -> float:
        return max(self.peaks.values(), default=0) / 1024

    def _run(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(self.interval):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    if self.marker not in (proc / "cmdline").read_bytes():
                        continue
                    status = (proc / "status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                if fields.get("PPid", "").strip() == me and "VmHWM" in fields:
                    kib = int(fields["VmHWM"].split()[0])
                    self.peaks[int(proc.name)] = max(self.peaks.get(int(proc.name), 0), kib)


class TreeRss(_Sampler):
    """The peak of the SUMMED resident sets of this process and its descendants, sampled while it runs.

    What a centre's machine must hold at once: the loop plus every worker it starts. The stand-ins the
    benchmark itself starts (source server, SMS gateway) are excluded by pid, and so is a temporary Prefect
    server (its own figure is `server_peak_mib`: a centre runs one server for every run, not one per loop).
    """

    name = "tree-rss"

    def __init__(self, exclude: set[int], interval: float = 0.05) -> None:
        self.exclude = exclude
        self.peak_kib = 0
        self.server_peak_kib = 0
        super().__init__(interval)

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024

    @property
    def server_peak_mib(self) -> float:
        return self.server_peak_kib / 1024

    def _sample(self) -> tuple[int, int]:
        parents: dict[int, int] = {}
        rss: dict[int, int] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                status = (proc / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            pid = int(proc.name)
            parents[pid] = int(fields.get("PPid", "0").strip() or 0)
            rss[pid] = int(fields["VmRSS"].split()[0]) if "VmRSS" in fields else 0
        me = os.getpid()
        tree, frontier, server = {me}, [me], set()
        while frontier:
            frontier = [p for p, pp in parents.items() if pp in frontier and p not in self.exclude]
            for p in list(frontier):
                try:
                    if b"prefect" in (Path("/proc") / str(p) / "cmdline").read_bytes() or parents.get(p) in server:
                        server.add(p)
                except OSError:
                    pass
            tree.update(frontier)
        return sum(rss.get(p, 0) for p in tree - server), sum(rss.get(p, 0) for p in server)

    def _run(self) -> None:
        while True:
            ours, server = self._sample()
            self.peak_kib = max(self.peak_kib, ours)
            self.server_peak_kib = max(self.server_peak_kib, server)
            if self._stop.wait(self.interval):
                return


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
