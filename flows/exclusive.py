"""One run at a time per key (e.g. one daily loop per business date), enforced by the Prefect server.

Why on the server and not in the store: two flow runs started by a double click
in the UI land on different workers, possibly on different machines; the only
thing they share before touching the store is the Prefect API. A global
concurrency limit named after the key (`daily-loop:2026-11-21`, limit 1) is
created on demand and held with a lease for the whole run; the lease is renewed
while the run lives and expires on its own if the worker dies, so a crashed run
never blocks the date for longer than `LEASE_SECONDS`.

A run that finds the key held does not wait and does not redo the work: it
raises `AlreadyRunning`, and the flow turns that into a Cancelled state whose
message says which key was busy. The store's own idempotency (upserts, outbox
keys, message ids) still protects anything that gets past this, e.g. a re-run
after the first finished, which is allowed and safe.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from minyi.tasks.errors import MinyiError

LEASE_SECONDS = 300.0


class AlreadyRunning(MinyiError):
    """Another flow run holds this key right now; this one did nothing."""

    exit_code = 4


def ensure_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit `name` unless it exists (a racing creator is fine)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
        except ObjectAlreadyExists:
            pass


@contextmanager
def exclusive(key: str, holder: ConcurrencyLeaseHolder | None = None) -> Iterator[None]:
    """Hold the one slot of `key` for the duration of the block, or raise AlreadyRunning at once."""
    ensure_limit(key)
    with get_client(sync_client=True) as client:
        try:
            response = client.increment_concurrency_slots_with_lease(
                names=[key], slots=1, mode="concurrency", lease_duration=LEASE_SECONDS, holder=holder
            )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 423:  # Locked: the slot is taken
                raise AlreadyRunning(f"{key} is already running in another flow run; this run did nothing") from None
            raise
        lease_id = ConcurrencyLimitWithLeaseResponse.model_validate(response.json()).lease_id
        try:
            with maintain_concurrency_lease(lease_id, LEASE_SECONDS, raise_on_lease_renewal_failure=False):
                yield
        finally:
            client.release_concurrency_slots_with_lease(lease_id)


def current_flow_run_holder() -> ConcurrencyLeaseHolder | None:
    """The running flow run as the lease's holder, so the UI shows who holds the slot."""
    from prefect.runtime import flow_run

    run_id = flow_run.id
    return ConcurrencyLeaseHolder(type="flow_run", id=run_id) if run_id else None
