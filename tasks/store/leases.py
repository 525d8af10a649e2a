"""Run leases in the store (SPEC §6): one holder per key, renewed while it lives, taken over after expiry.

Why in the store and not in Prefect: a Prefect global-concurrency lease lives in the
server's memory, so a restarted server (or a killed `minyi run` with its temporary
server) left a date blocked for good. The store is what every run of a date shares,
with or without a Prefect server, and it outlives them all.

- `take_lease`: one conditional write (INSERT … ON CONFLICT DO UPDATE … WHERE the
  old lease has expired). It succeeds when nobody holds the key or the holder's
  lease has expired; otherwise nothing changes and it answers False.
- `renew_lease`: the holder's heartbeat pushes `expires_at` forward; False when the
  lease was lost (it expired and another run took it).
- `release_lease`: the holder deletes its row when the run ends, however it ends.

Expiry is on the wall clock (the lease is about a process being alive), never `as_of`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Engine

from minyi.tasks.store.engine import instant_param

log = logging.getLogger("minyi.leases")

_TAKE = (
    "INSERT INTO run_leases (key, holder, acquired_at, expires_at) VALUES (:key, :holder, :now, :until) "
    "ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at, "
    "expires_at = excluded.expires_at WHERE run_leases.expires_at < excluded.acquired_at"
)
_RENEW = "UPDATE run_leases SET expires_at = :until WHERE key = :key AND holder = :holder"
_RELEASE = "DELETE FROM run_leases WHERE key = :key AND holder = :holder"


def new_holder(label: str = "") -> str:
    """Who holds a lease, for the operator reading run_leases: host, pid, and the flow run if any."""
    base = f"{socket.gethostname()[:48]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return f"{label[:60]}@{base}" if label else base


def _wall(engine: Engine, ahead: float = 0.0) -> object:
    return instant_param(engine.dialect.name, datetime.now(UTC) + timedelta(seconds=ahead))


def take_lease(engine: Engine, key: str, holder: str, seconds: float) -> bool:
    with engine.begin() as conn:
        taken = conn.execute(
            text(_TAKE), {"key": key, "holder": holder, "now": _wall(engine), "until": _wall(engine, seconds)}
        ).rowcount
    return taken == 1


def renew_lease(engine: Engine, key: str, holder: str, seconds: float) -> bool:
    with engine.begin() as conn:
        kept = conn.execute(text(_RENEW), {"key": key, "holder": holder, "until": _wall(engine, seconds)}).rowcount
    return kept == 1


def release_lease(engine: Engine, key: str, holder: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(_RELEASE), {"key": key, "holder": holder})


@contextmanager
def held(engine: Engine, key: str, holder: str, seconds: float) -> Iterator[bool]:
    """Yield whether `key` was taken; while the block runs a heartbeat thread renews it every seconds/3."""
    if not take_lease(engine, key, holder, seconds):
        yield False
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(seconds / 3):
            try:
                if not renew_lease(engine, key, holder, seconds):
                    log.error("lease %s: lost (expired and taken by another run); this run goes on", key)
                    return
            except Exception as exc:  # the store may be back by the next beat, well before expiry
                log.warning("lease %s: renewal failed: %s", key, str(exc).splitlines()[0] if str(exc) else exc)

    thread = threading.Thread(target=beat, name=f"lease-{key}", daemon=True)
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join()
        release_lease(engine, key, holder)
