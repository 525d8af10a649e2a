"""The one delivery engine of the notifications outbox (SPEC §7, §13), whatever the vendor.

Every channel post is first a row in `notifications` (`tasks.outbox.enqueue`);
this module only delivers pending rows, through the one `Notifier` the runtime chose.

- **Claim with owner and expiry.** A row is claimed (`pending → sending`, `claimed_by`
  = this pass, `claimed_at` = the wall clock) by one UPDATE before it is posted, so two
  concurrent runs (the daily loop and the hourly sweep) never post the same row. A claim
  older than `claim_timeout` belongs to a holder that died; the next pass takes it over
  (again one guarded UPDATE, so two passes cannot both take it) and reconciles it.
- **Reconcile.** A vendor that can look a post up (Slack: `find`) is asked whether the
  dead holder's post arrived: found → `sent`; searched completely and not found →
  posted again. When the vendor cannot tell (an error, a missing `channels:history`
  scope, more messages since the claim than the search window holds), the row becomes
  `unconfirmed`: never posted again on a guess, never left `sending`, counted as stuck,
  and the centre is told (`minyi resend --key …` posts it on purpose). The robots cannot
  look anything up (SPEC §13): their abandoned rows are posted again (at most one repeat).
- **Retry with back-off.** A failed post goes back to `pending` with `attempts + 1` and
  `last_error`. A rate-limited one (WeCom 45009, DingTalk 130101) is retried after an
  exponential back-off in the same pass while the pass's wait budget lasts, else by the
  next run; it is never dropped. An unreachable vendor stops the pass.
- **Rate limits.** A notifier's `per_minute` (the robots: 20 per webhook) is kept per
  channel with a sliding minute; a wait beyond the budget leaves the rest for the next run.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from minyi.tasks.adapters.notify.base import DeliveryError, FindError, Message, Notifier, Post
from minyi.tasks.errors import InputError
from minyi.tasks.rules.masking import mask_text
from minyi.tasks.store.engine import instant_param

# A post that failed this many times is still pending; it is reported, not dropped.
STUCK_AFTER_ATTEMPTS = 5
RATE_WINDOW_SECONDS = 60.0

# Injectable for tests (a fake clock shared with the loopback robots); nothing else reads them.
_monotonic = time.monotonic
_sleep = time.sleep


@dataclass
class DeliverySummary:
    """What one delivery pass did; `pending` is what is left for the next run."""

    poster: str
    sent: int = 0
    failed: int = 0
    waiting: int = 0
    deferred: int = 0
    pending: int = 0
    stuck: int = 0
    unconfirmed: int = 0
    rate_limited: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Pace:
    """Per-channel sliding minute and the pass's wait budget (seconds it may still sleep)."""

    per_minute: int | None
    budget: float
    sent: dict[str, deque[float]] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)

    def wait(self, seconds: float) -> bool:
        """Sleep `seconds` if the budget allows; False (and no sleep) otherwise."""
        if seconds <= 0:
            return True
        if seconds > self.budget:
            return False
        self.budget -= seconds
        _sleep(seconds)
        return True

    def admit(self, channel: str, n: int = 1) -> bool:
        """True once `n` more requests to `channel` fit its rate; False when waiting would exceed the budget."""
        if self.per_minute is None:
            return True
        n = max(1, min(n, self.per_minute))
        window = self.sent.setdefault(channel, deque())
        while True:
            now = _monotonic()
            while window and window[0] <= now - RATE_WINDOW_SECONDS:
                window.popleft()
            if len(window) + n <= self.per_minute:
                return True
            if not self.wait(window[len(window) + n - self.per_minute - 1] + RATE_WINDOW_SECONDS - now):
                return False

    def record(self, channel: str, n: int = 1) -> None:
        if self.per_minute is not None:
            now = _monotonic()
            self.sent.setdefault(channel, deque()).extend([now] * max(n, 0))


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Wait after the `attempt`-th rate-limited answer (1-based): base·2^(n−1), capped."""
    return min(cap, base * (2 ** max(attempt - 1, 0)))


def _as_instant(value: Any) -> datetime | None:
    from minyi.schemas.types import UtcDateTime

    return UtcDateTime().process_result_value(value, None)  # type: ignore[arg-type]


_COLUMNS = (
    "n.id, n.key, n.kind, n.channel, n.title, n.text, n.attachment, n.parent_key, n.created_at, n.claimed_at, "
    "p.remote_id AS parent_remote_id, p.status AS parent_status"
)


def _post(row: Any, parent_remote_id: str | None) -> Post:
    created = _as_instant(row.created_at)
    assert created is not None
    return Post(
        id=row.id,
        key=row.key,
        kind=row.kind,
        channel=row.channel,
        title=mask_text(row.title or ""),
        body=mask_text(row.text),
        image=row.attachment,
        parent_remote_id=parent_remote_id,
        created_at=created,
        claimed_at=_as_instant(row.claimed_at),
    )


def _mark_sent(engine: Engine, row_id: int, remote_id: str, as_of: datetime, owner: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE notifications SET status = 'sent', remote_id = :rid, sent_at = :now, attempts = attempts + 1, "
                "last_error = NULL WHERE id = :id AND claimed_by = :owner"
            ),
            {"id": row_id, "rid": remote_id, "now": instant_param(conn.dialect.name, as_of), "owner": owner},
        )


def _release(engine: Engine, row_id: int, owner: str, error: str | None, count: bool = True) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE notifications SET status = 'pending', attempts = attempts + :n, "
                "last_error = COALESCE(:e, last_error) WHERE id = :id AND claimed_by = :owner AND status = 'sending'"
            ),
            {"id": row_id, "e": error, "n": 1 if count else 0, "owner": owner},
        )


def reconcile_abandoned(
    engine: Engine, notifier: Notifier, as_of: datetime, claim_timeout: float, owner: str
) -> tuple[int, int]:
    """Take over rows a dead holder left `sending` and settle them; returns (settled, newly unconfirmed)."""
    from minyi.tasks.rules.days import now as wall_clock

    dialect = engine.dialect.name
    now = wall_clock()
    cutoff = instant_param(dialect, now - timedelta(seconds=claim_timeout))
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM notifications n LEFT JOIN notifications p ON p.key = n.parent_key "
                "WHERE n.status = 'sending' AND (n.claimed_at IS NULL OR n.claimed_at <= :cut) ORDER BY n.id"
            ),
            {"cut": cutoff},
        ).all()
    settled = unconfirmed = 0
    for row in rows:
        with engine.begin() as conn:
            taken = conn.execute(
                text(
                    "UPDATE notifications SET claimed_by = :owner, claimed_at = :now WHERE id = :id "
                    "AND status = 'sending' AND (claimed_at IS NULL OR claimed_at <= :cut)"
                ),
                {"id": row.id, "owner": owner, "now": instant_param(dialect, now), "cut": cutoff},
            ).rowcount
        if not taken:
            continue  # another pass took it over first
        settled += 1
        if not notifier.can_find:
            _release(engine, row.id, owner, None, count=False)  # SPEC §13: may be repeated once
            continue
        try:
            found = notifier.find(_post(row, row.parent_remote_id))
        except FindError as exc:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE notifications SET status = 'unconfirmed', last_error = :e "
                        "WHERE id = :id AND claimed_by = :owner"
                    ),
                    {"id": row.id, "owner": owner, "e": mask_text(f"reconcile: {exc}")[:500]},
                )
            unconfirmed += 1
            continue
        if found:
            _mark_sent(engine, row.id, found, as_of, owner)
        else:
            _release(engine, row.id, owner, None, count=False)
    return settled, unconfirmed


def _load_pending(conn: Connection, limit: int | None) -> list[Any]:
    sql = (
        f"SELECT {_COLUMNS} FROM notifications n LEFT JOIN notifications p ON p.key = n.parent_key "
        "WHERE n.status = 'pending' ORDER BY n.id"
    )
    if limit:
        sql += f" LIMIT {int(limit)}"
    return list(conn.execute(text(sql)).all())


def deliver(
    engine: Engine,
    notifier: Notifier,
    as_of: datetime,
    limit: int | None = None,
    claim_timeout: float = 300.0,
    max_wait: float = 120.0,
    backoff: tuple[float, float] = (1.0, 30.0),
    alert_channel: str | None = None,
) -> DeliverySummary:
    """Post every pending outbox row in order; store each remote id; failures stay pending for the next run.

    A reply waits until its parent has a remote id (normally posted earlier in the
    same pass). `max_wait` is what this pass may sleep for rate limits and back-offs
    in total; `backoff` is (base, cap) seconds. When reconcile leaves rows
    `unconfirmed`, one alert per day goes to `alert_channel`.
    """
    from minyi.tasks import texts
    from minyi.tasks.rules.days import now as wall_clock
    from minyi.tasks.store.outbox import enqueue

    owner = uuid.uuid4().hex
    summary = DeliverySummary(poster=notifier.name)
    _, summary.unconfirmed = reconcile_abandoned(engine, notifier, as_of, claim_timeout, owner)
    if summary.unconfirmed and alert_channel:
        with engine.begin() as conn:
            enqueue(conn, [texts.outbox_unconfirmed(alert_channel, as_of, summary.unconfirmed)], as_of)
    with engine.connect() as conn:
        rows = _load_pending(conn, limit)
    pace = _Pace(notifier.per_minute, max_wait)
    remote_ids: dict[str, str] = {}
    stop = False
    for row in rows:
        if stop:
            break
        parent_remote_id = None
        if row.parent_key:
            parent_remote_id = remote_ids.get(row.parent_key) or (
                row.parent_remote_id if row.parent_status == "sent" else None
            )
            if parent_remote_id is None:
                summary.waiting += 1
                continue
        post = _post(row, parent_remote_id)
        if row.channel in pace.blocked or not pace.admit(row.channel, notifier.cost(post)):
            pace.blocked.add(row.channel)
            summary.deferred += 1
            continue
        attempt = 0
        while True:
            cost = notifier.cost(post)
            with engine.begin() as conn:
                claimed = conn.execute(
                    text(
                        "UPDATE notifications SET status = 'sending', claimed_at = :claimed, claimed_by = :owner "
                        "WHERE id = :id AND status = 'pending'"
                    ),
                    {"id": row.id, "claimed": instant_param(conn.dialect.name, wall_clock()), "owner": owner},
                ).rowcount
            if not claimed:
                break  # another run took it
            try:
                remote_id = notifier.post(post)
            except DeliveryError as exc:
                error = mask_text(str(exc))[:500]
                _release(engine, row.id, owner, error)
                pace.record(row.channel, cost - notifier.cost(post) + 1)
                if exc.rate_limited:
                    summary.rate_limited += 1
                    attempt += 1
                    if pace.wait(backoff_seconds(attempt, *backoff)) and pace.admit(row.channel, notifier.cost(post)):
                        continue  # the same post again, after the back-off, in this pass
                    pace.blocked.add(row.channel)
                summary.failed += 1
                summary.errors.append(f"{row.key}: {error}")
                stop = exc.transport and not exc.rate_limited
                break
            except BaseException:
                _release(engine, row.id, owner, None, count=False)
                raise
            pace.record(row.channel, cost)
            _mark_sent(engine, row.id, remote_id, as_of, owner)
            remote_ids[row.key] = remote_id
            summary.sent += 1
            break
    with engine.begin() as conn:
        notifier.finish(conn)
        summary.pending = conn.execute(
            text("SELECT COUNT(*) FROM notifications WHERE status IN ('pending', 'sending')")
        ).scalar_one()
        summary.stuck = conn.execute(
            text(
                "SELECT COUNT(*) FROM notifications "
                "WHERE (status = 'pending' AND attempts >= :n) OR status = 'unconfirmed'"
            ),
            {"n": STUCK_AFTER_ATTEMPTS},
        ).scalar_one()
    return summary


def select_for_resend(
    conn: Connection,
    keys: Iterable[str] = (),
    kind: str | None = None,
    channel: str | None = None,
    since: datetime | None = None,
) -> list[str]:
    """Keys of the messages an operator chose to post again; at least one filter is required."""
    keys = [k for k in keys if k]
    if not keys and not kind and not channel and since is None:
        raise InputError("resend: name the messages (keys, kind, channel or since); refusing to resend everything")
    clauses, params = ["status IN ('sent', 'sending', 'unconfirmed')"], {}
    if keys:
        names = {f"k{i}": k for i, k in enumerate(keys)}
        clauses.append(f"key IN ({', '.join(':' + n for n in names)})")
        params.update(names)
    if kind:
        clauses.append("kind = :kind")
        params["kind"] = kind
    if channel:
        clauses.append("channel = :channel")
        params["channel"] = channel
    if since is not None:
        clauses.append("created_at >= :since")
        params["since"] = instant_param(conn.dialect.name, since)
    found = [
        r[0]
        for r in conn.execute(text(f"SELECT key FROM notifications WHERE {' AND '.join(clauses)} ORDER BY id"), params)
    ]
    missing = sorted(set(keys) - set(found))
    if missing:
        raise InputError(f"resend: no sent message with key {missing[0]!r}")
    if not found:
        raise InputError("resend: no sent message matches")
    return found


def mark_for_resend(conn: Connection, keys: list[str]) -> int:
    """Put chosen messages back in the queue; the next delivery posts them again (a new remote id replaces the old)."""
    names = {f"k{i}": k for i, k in enumerate(keys)}
    if not names:
        return 0
    return conn.execute(
        text(
            "UPDATE notifications SET status = 'pending', last_error = :note "
            f"WHERE key IN ({', '.join(':' + n for n in names)})"
        ),
        {"note": "resend requested", **names},
    ).rowcount


__all__ = ["DeliverySummary", "Message", "deliver", "mark_for_resend", "reconcile_abandoned", "select_for_resend"]
