"""One run at a time per key (e.g. one daily loop per business date), guarded by a lease in the store (SPEC §6).

Why in the store: it is the one thing every run of a date shares, across processes
and machines, with or without a Prefect server, and it outlives them all. The lease
row (`run_leases`: key, holder, expires_at) is taken with one conditional write,
renewed by a heartbeat while the run lives, deleted when it ends, and taken over by
the next run once it has expired (its holder was killed, its machine lost, its
Prefect server restarted): `[guard] lease_seconds`, at most 300 (5 minutes).

A run that finds the key held does not wait and does not redo the work: it raises
`AlreadyRunning`, and the flow turns that into a Cancelled state whose message says
which key was busy (exit code 4 from the CLI). The store's own idempotency (upserts,
outbox keys, message ids, send claims) still protects anything that gets past this,
e.g. a re-run after the first finished, which is allowed and safe.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from minyi.tasks.errors import MinyiError
from minyi.tasks.runtime import load_runtime
from minyi.tasks.store.leases import held, new_holder


class AlreadyRunning(MinyiError):
    """Another run holds this key right now; this one did nothing."""

    exit_code = 4


@contextmanager
def exclusive(key: str, holder: str | None = None) -> Iterator[None]:
    """Hold the lease of `key` for the duration of the block, or raise AlreadyRunning at once."""
    rt = load_runtime()
    with held(rt.engine, key, holder or new_holder(), rt.config.guard.lease_seconds) as taken:
        if not taken:
            raise AlreadyRunning(f"{key} is already running in another run; this run did nothing")
        yield


def current_flow_run_holder() -> str:
    """The running flow run (if any) as the lease's holder, so an operator reading run_leases sees who holds it."""
    from prefect.runtime import flow_run

    run_id = flow_run.id
    return new_holder(f"flow_run:{run_id}" if run_id else "")
