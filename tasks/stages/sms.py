"""The SMS outbox relay (SPEC §4): queued follow-ups to the gateway (`tasks/adapters/sms.py`), once each.

Why an outbox: the follow-up row *is* the message (`sms_status = 'queued'`,
written by planning in the same statement that decides eligibility). The relay
claims queued rows a batch at a time — one row of `sms_claims` holding the
batch's id range, written in the transaction that reads the batch — sends them
with their deterministic `message_id`, and records the gateway's answer (the
only write to each follow-up) while dropping the claim. Two runs at once (a
daily loop and a sweep) claim disjoint batches, so neither posts a message the
other is sending. A run killed after the gateway received a batch but before its
answer was stored leaves that batch claimed; once the claim expires the next run
sends the same ids again and the gateway answers `duplicate`, which counts as
sent. So each message reaches the citizen once.

Why a range and not a mark on each row (as before migration 0008): stamping
each follow-up with its claim and clearing it with the answer wrote every row
twice more inside write transactions. At 1M messages the relay went 27.7 → 23.3 s on
SQLite and 62.7 → 35.5 s on PostgreSQL with this and the partial queued index
(docs/performance.md, session 4).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from minyi.tasks.adapters.sms import OutgoingSms, SendResult, SmsGateway, SmsGatewayError
from minyi.tasks.config import MinyiConfig
from minyi.tasks.rules.days import local_date
from minyi.tasks.rules.masking import mask_text
from minyi.tasks.stages.eligibility import sms_text, when_words
from minyi.tasks.store.engine import instant_param, raw_transaction

log = logging.getLogger("minyi.sms")


def in_send_window(as_of: datetime, cfg: MinyiConfig) -> bool:
    """SMS leave only inside [send_from, send_until) local time of as_of."""
    local = as_of.astimezone(cfg.tz).time()
    return cfg.followup.send_from <= local < cfg.followup.send_until


class FlushSummary(BaseModel):
    """What the relay did this run; `queued` is what still waits (held gates, outside the window, failures)."""

    window_open: bool
    sent: int = 0
    duplicate: int = 0
    rejected: int = 0
    opted_out: int = 0
    stale: int = 0
    queued: int = 0
    held: int = 0
    batches: int = 0
    seconds: float = 0.0
    error: str | None = None


_HELD = (
    "EXISTS (SELECT 1 FROM source_gates g WHERE g.source = f.source "
    "AND g.business_date = f.business_date AND g.gate = 'held')"
)


def withdraw_unsendable(conn: Connection, as_of: datetime, cfg: MinyiConfig) -> tuple[int, int]:
    """Queued messages that may no longer leave become skipped: the phone opted out, or the record went stale.

    Why here and not only at planning: a message held by a quality gate, or waiting
    for the window, may outlive the citizen's TD or max_age_days; SPEC §4 and §8
    say such a phone/record never gets an SMS.
    """
    opted = conn.execute(
        text(
            "UPDATE followups SET plan = 'skipped', skip_reason = 'opted_out', sms_status = NULL "
            "WHERE sms_status = 'queued' AND phone_norm IN (SELECT phone_norm FROM opt_outs)"
        )
    ).rowcount
    oldest: date = local_date(as_of, cfg.tz) - timedelta(days=cfg.followup.max_age_days)
    stale = conn.execute(
        text(
            "UPDATE followups SET plan = 'skipped', skip_reason = 'stale', sms_status = NULL "
            "WHERE sms_status = 'queued' AND business_date < :oldest"
        ),
        {"oldest": oldest},
    ).rowcount
    return max(opted or 0, 0), max(stale or 0, 0)


def _waiting(conn: Connection) -> tuple[int, int]:
    queued = conn.execute(text("SELECT COUNT(*) FROM followups WHERE sms_status = 'queued'")).scalar_one()
    held = conn.execute(
        text(f"SELECT COUNT(*) FROM followups f WHERE f.sms_status = 'queued' AND {_HELD}")
    ).scalar_one()
    return queued, held


# Raw DBAPI (placeholders filled per dialect): a million rows a day are read here, and
# SQLAlchemy's Row objects cost more than the query.
# The claim: the next batch of queued, releasable follow-ups that no live claim covers (an expired claim's holder
# died: its rows are taken over), read with what the messages need; its id range is then written to sms_claims in
# the same transaction. Claimers are serialised: SQLite runs it in a write transaction (BEGIN IMMEDIATE),
# PostgreSQL takes a transaction-scoped advisory lock first (READ COMMITTED: the SELECT's snapshot is taken after
# it, so it sees every claim committed before). Only claimers take that lock: storing answers, renewing and
# releasing claims never wait for it (a LOCK TABLE on sms_claims made each claim wait for the answers' commit).
_LIVE_CLAIM = (
    "EXISTS (SELECT 1 FROM sms_claims c WHERE c.expires_at >= {p} AND f.id >= c.first_id AND f.id <= c.last_id)"
)
# The batch is chosen from follow-ups alone, then joined to its records and units: written as one join, the
# plan depended on PostgreSQL knowing that each follow-up has exactly one record. Without the foreign key that
# told it so (migration 0010) it joined records before filtering out other relays' claims, and then went
# parallel: the 1M relay took 52-75 s against 39-40 s (docs/performance.md, session 9).
_CLAIMABLE_BATCH = (
    "SELECT f.id, f.message_id, f.phone_norm, f.business_date, r.matter, u.name FROM ("
    "SELECT f.id, f.record_pk, f.message_id, f.phone_norm, f.business_date, f.unit_code FROM followups f "
    f"WHERE f.sms_status = 'queued' AND f.id > {{p}} AND NOT {_HELD} AND NOT {_LIVE_CLAIM} "
    "ORDER BY f.id LIMIT {p}"
    ") f JOIN records r ON r.id = f.record_pk LEFT JOIN units u ON u.code = f.unit_code ORDER BY f.id"
)
_CLAIM_LOCK = {"postgresql": "SELECT pg_advisory_xact_lock(4740001)", "sqlite": None}  # any fixed key: "sms claims"
_CLAIM_INSERT = "INSERT INTO sms_claims (owner, first_id, last_id, expires_at) VALUES ({p}, {p}, {p}, {p}) RETURNING id"
# Batches on the wire at once: while the gateway handles some, the next is stored, claimed and composed.
# 4, not 2: a little faster at 1M messages on SQLite (15.6-16.6 s against 16.0-16.9 s, interleaved runs;
# docs/performance.md, session 7): the relay is bound by this process's CPU, not by the wire.
IN_FLIGHT = 4
# Relays side by side in one run, each with its own connection, sharing IN_FLIGHT. PostgreSQL: two, because
# one relay there waits on the server for each serial step (claim, store, commit) and leaves both the server
# and this process partly idle: 1M messages 28.8, 27.8 s with one, 21.9, 20.2 s with two, ~20 s with three
# or four (interleaved runs, docs/performance.md session 8). SQLite: one; it has one writer, and two
# relays gave nothing (11.3 s against 11.0 s).
LANES = {"postgresql": 2, "sqlite": 1}


class MessageTexts:
    """The SMS text of each queued follow-up, composed as it leaves (SPEC §4's example).

    Why at send time: "昨日" must be true on the day the citizen reads it, and a message
    held by a quality gate may leave days after its business date. A day's million
    messages share a few hundred (date, unit, matter) texts, so each is built once.
    """

    def __init__(self, cfg: MinyiConfig, as_of: datetime) -> None:
        self._cfg = cfg
        self._as_of = as_of
        self._texts: dict[tuple[date, str | None, str | None], str] = {}

    def __call__(self, business_date: date | str, unit_name: str | None, matter: str | None) -> str:
        day = business_date if isinstance(business_date, date) else date.fromisoformat(business_date)
        key = (day, unit_name, matter)
        composed = self._texts.get(key)
        if composed is None:
            when = when_words(day, self._as_of, self._cfg)
            composed = self._texts[key] = sms_text(self._cfg.sms.signature, when, unit_name or None, matter)
        return composed


# One batch's answers: (claim id, ids sent, [(error, id)] rejected, every message answered).
_Answers = tuple[int, list[int], list[tuple[str, int]], bool]
# The answers' statements, raw DBAPI like the claim: SQLAlchemy's expanding IN of 500 ids and its execution
# context cost more Python than SQLite's own work on the rows (~2.5 ms a batch alone), in the thread that
# shares the GIL with the senders.
_MARK_SENT = {
    "sqlite": "UPDATE followups SET sms_status = 'sent', sent_at = ? WHERE id IN ({ids}) AND sms_status = 'queued'",
    "postgresql": "UPDATE followups SET sms_status = 'sent', sent_at = %s WHERE id = ANY(%s) AND sms_status = 'queued'",
}
_MARK_REJECTED = (
    "UPDATE followups SET sms_status = 'rejected', gateway_error = {p} WHERE id = {p} AND sms_status = 'queued'"
)
# In the answers' transaction: a claimer sees the batch either still queued and claimed, or sent and free.
_SETTLED = "DELETE FROM sms_claims WHERE id = {p}"
# A claim is released when its batch's answer was lost (the run stopped on a gateway error) or only partly
# given: the next run may send it again at once, and the gateway answers `duplicate` for what it already had.
_RELEASE = text("DELETE FROM sms_claims WHERE owner = :owner")
_PURGE = text("DELETE FROM sms_claims WHERE expires_at < :now")
# Only a live claim is renewed: one that expired may have been taken over already.
_RENEW = text("UPDATE sms_claims SET expires_at = :until WHERE owner = :owner AND expires_at >= :now")


def _store_answers(cur: Any, dialect: str, now: Any, answers: _Answers) -> None:
    """One batch's answers (rejected: (error, follow-up id)), and its claim dropped when every message was answered."""
    claim, sent_ids, rejected, settled = answers
    p = "?" if dialect == "sqlite" else "%s"
    if sent_ids and dialect == "sqlite":  # one statement per batch: the common case costs one round trip
        cur.execute(_MARK_SENT["sqlite"].format(ids=",".join("?" * len(sent_ids))), (now, *sent_ids))
    elif sent_ids:
        cur.execute(_MARK_SENT["postgresql"], (now, sent_ids))
    if rejected:
        cur.executemany(_MARK_REJECTED.format(p=p), rejected)
    if settled:
        cur.execute(_SETTLED.format(p=p), (claim,))


def flush_outbox(engine: Engine, cfg: MinyiConfig, client: SmsGateway, as_of: datetime, log: Any = log) -> FlushSummary:
    """Send every queued, releasable message in batches, if as_of is inside the send window.

    Each batch's answers are stored in their own transaction, with `sent_at` = as_of
    (the run's instant, never the wall clock). A gateway failure stops the relay;
    what is still queued leaves with the next run.
    """
    started = time.perf_counter()
    window = in_send_window(as_of, cfg)
    summary = FlushSummary(window_open=window)
    with engine.begin() as conn:
        summary.opted_out, summary.stale = withdraw_unsendable(conn, as_of, cfg)
    if window:
        lanes = LANES.get(engine.dialect.name, 1)
        compose, now = MessageTexts(cfg, as_of), instant_param(engine.dialect.name, as_of)
        halt = threading.Event()  # a gateway failure in one lane stops every lane's claims, as with one relay
        relays = [_Relay(engine, client, compose, now, log, max(IN_FLIGHT // lanes, 1), halt) for _ in range(lanes)]
        for relay in relays:
            relay.claim_seconds = cfg.sms.claim_seconds
        _side_by_side(relays, summary)
    with engine.connect() as conn:
        summary.queued, summary.held = _waiting(conn)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _side_by_side(relays: list[_Relay], summary: FlushSummary) -> None:
    """Run the relays in threads of their own (their claims are disjoint), and add up what each did; one runs here."""
    if len(relays) == 1:
        relays[0].run(summary)
        return
    parts = [FlushSummary(window_open=True) for _ in relays]
    failures: list[BaseException] = []

    def lane(relay: _Relay, part: FlushSummary) -> None:
        try:
            relay.run(part)
        except BaseException as exc:  # raised again below, once every lane has settled or released its claims
            relay.halt.set()  # the other lanes stop claiming, as one relay would have stopped
            failures.append(exc)

    threads = [
        threading.Thread(target=lane, args=(r, part), name=f"sms-lane-{i}")
        for i, (r, part) in enumerate(zip(relays, parts, strict=True))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for part in parts:
        summary.sent += part.sent
        summary.duplicate += part.duplicate
        summary.rejected += part.rejected
        summary.batches += part.batches
        summary.error = summary.error or part.error
    if failures:
        raise failures[0]


class _Relay:
    """One pass over the queued messages: claim and read, compose, send and store, overlapped.

    Why overlapped: the gateway is another process. While it handles batch k, batch
    k+1 is claimed, read, composed and sent on a second connection (at most
    IN_FLIGHT on the wire). Why one transaction for the database's part of a step
    (the answers of the batch just answered, then the next claims): SQLite has one
    writer, and a claim and a store on two connections waited for each other in
    SQLite's busy handler (it sleeps 1, 2, 5… ms): at 1M messages the store took
    ~5 ms a batch beside the claims, ~1 ms alone (docs/performance.md, session 7).
    Batches are disjoint (each is claimed by this run before it is read, as an id
    range in sms_claims), so their order does not matter, and another run at the same
    time claims other rows. A batch's claim goes with its answers; every send and
    store has finished (or raised) before `run` returns, and claims this run could not
    settle (a gateway error, a partial answer) are released then. A run killed in
    between leaves at most IN_FLIGHT + its LANES claimed batches that the gateway may already
    have: after `claim_seconds` the next run sends them again with the same message
    ids, and the gateway answers `duplicate` (counted as sent).
    """

    claim_seconds: float = 300.0

    def __init__(
        self,
        engine: Engine,
        client: SmsGateway,
        compose: MessageTexts,
        now: Any,
        log: Any,
        in_flight: int = IN_FLIGHT,
        halt: threading.Event | None = None,
    ) -> None:
        self.engine, self.client, self.compose, self.now, self.log = engine, client, compose, now, log
        self.in_flight = in_flight
        self.halt = halt or threading.Event()
        self.dialect = engine.dialect.name
        p = "?" if self.dialect == "sqlite" else "%s"
        self.lock_sql = _CLAIM_LOCK[self.dialect]
        self.batch_sql = _CLAIMABLE_BATCH.format(p=p)
        self.insert_sql = _CLAIM_INSERT.format(p=p)
        self.owner = f"sms:{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.last_id = 0

    def _wall(self, ahead: float = 0.0) -> Any:
        """Claims expire on the wall clock: they are about a process being alive, not about as_of."""
        return instant_param(self.dialect, datetime.now(UTC) + timedelta(seconds=ahead))

    def _step(self, answers: _Answers | None, want: int) -> list[tuple[int, list[tuple[Any, ...]]]]:
        """Store one batch's answers, then claim up to `want` batches, in one transaction: [(claim id, rows)].

        Fewer than `want` batches back means nothing claimable is left.
        """
        claimed: list[tuple[int, list[tuple[Any, ...]]]] = []
        # Without waiting for the WAL flush: a crash that loses the last steps' claims and answers leaves those
        # messages queued, and the next run sends them again under the same ids, answered `duplicate` (the case
        # of a run killed between sending and storing, above).
        with raw_transaction(self.engine, wait_for_flush=False) as dbapi:
            cur = dbapi.cursor()
            try:
                if answers is not None:
                    _store_answers(cur, self.dialect, self.now, answers)
                if want and self.lock_sql:
                    cur.execute(self.lock_sql)
                for _ in range(want):
                    cur.execute(self.batch_sql, (self.last_id, self._wall(), self.client.batch_size))
                    rows = cur.fetchall()
                    if not rows:
                        break
                    first, last = rows[0][0], rows[-1][0]  # ORDER BY f.id
                    cur.execute(self.insert_sql, (self.owner, first, last, self._wall(self.claim_seconds)))
                    claimed.append((cur.fetchone()[0], rows))
                    self.last_id = last
            finally:
                cur.close()
        return claimed

    def _heartbeat(self, stop: threading.Event) -> None:
        """Keep this run's claims alive while a slow gateway (retries, timeouts) holds a batch."""
        while not stop.wait(max(self.claim_seconds / 3, 0.05)):
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        _RENEW, {"owner": self.owner, "until": self._wall(self.claim_seconds), "now": self._wall()}
                    )
            except Exception as exc:  # a missed renewal only risks a re-send after expiry, answered duplicate
                self.log.warning("sms relay: claim renewal failed: %s", mask_text(str(exc).splitlines()[0]))

    def _release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(_RELEASE, {"owner": self.owner})

    def _messages(self, rows: list[tuple[Any, ...]]) -> list[OutgoingSms]:
        compose = self.compose
        return [OutgoingSms(mid, phone, compose(day, unit, matter)) for _, mid, phone, day, matter, unit in rows]

    def run(self, summary: FlushSummary) -> None:
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(stop,), name="sms-claims", daemon=True)
        beat.start()
        try:
            with self.engine.begin() as conn:  # claims of runs that died: already ignored, now gone
                conn.execute(_PURGE, {"now": self._wall()})
            self._run(summary)
        finally:
            stop.set()
            beat.join()
            self._release()  # what this run claimed and could not settle waits for the next run

    def _run(self, summary: FlushSummary) -> None:
        sending: deque[tuple[int, list[tuple[Any, ...]], Future[list[SendResult]]]] = deque()
        answered: _Answers | None = None  # the last batch's answers, stored with the next step's claims
        exhausted = False
        with ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix="sms-send") as senders:
            try:
                while True:
                    stopping = exhausted or summary.error is not None or self.halt.is_set()
                    want = 0 if stopping else self.in_flight - len(sending)
                    if answered is not None or want:
                        storing, answered = answered, None  # tried once: a failed step leaves its batch claimed
                        claimed = self._step(storing, want)
                        exhausted = exhausted or len(claimed) < want
                        for claim, rows in claimed:
                            sending.append((claim, rows, senders.submit(self.client.send_batch, self._messages(rows))))
                    if not sending:
                        break
                    claim, rows, answer = sending.popleft()
                    try:
                        results = answer.result()
                    except SmsGatewayError as exc:
                        if summary.error is None:  # stop claiming; batches already on the wire are still settled
                            summary.error = mask_text(str(exc))
                            self.halt.set()
                            self.log.error("sms relay stopped: %s", summary.error)
                        continue
                    summary.batches += 1
                    sent_ids, rejected = self._settle(rows, results, summary)
                    answered = (claim, sent_ids, rejected, len(sent_ids) + len(rejected) == len(rows))
            finally:
                for _, _, answer in sending:  # only after an unexpected error: let nothing run on unrecorded
                    answer.cancel()
                if answered is not None:
                    self._step(answered, 0)

    def _settle(
        self, rows: list[tuple[Any, ...]], results: list[SendResult], summary: FlushSummary
    ) -> tuple[list[int], list[tuple[str, int]]]:
        """The batch's answers as ids to mark sent and (error, id) to mark rejected; counted into `summary`."""
        ids = {row[1]: row[0] for row in rows}
        sent_ids: set[int] = set()
        rejected: list[tuple[str, int]] = []
        answered: set[int] = set()
        for res in results:
            fid = ids.get(res.message_id)
            if fid is None or fid in answered:
                continue  # an answer for a message we did not send in this batch, or a second one: ignore it
            answered.add(fid)
            if res.status == "rejected":
                rejected.append((mask_text(res.error or "rejected")[:500], fid))
            else:
                sent_ids.add(fid)
                summary.duplicate += res.status == "duplicate"
        summary.sent += len(sent_ids)
        summary.rejected += len(rejected)
        if len(answered) < len(rows):
            self.log.warning("sms gateway answered %d of %d messages; the rest stay queued", len(answered), len(rows))
        return sorted(sent_ids), rejected
