"""Ingest over real HTTP (SPEC §3): paging, retries, failure isolation, upserts, quarantine."""

from __future__ import annotations

from datetime import date

import pytest

from minyi.sim.source_server import Fault, SourceServer, StaticFeed
from tests.support import Env, at, config_toml, make_record

DAY = date(2026, 11, 21)
AS_OF = at("2026-11-22 09:00")


@pytest.fixture
def feed() -> StaticFeed:
    return StaticFeed()


@pytest.fixture
def server(feed: StaticFeed) -> SourceServer:
    with SourceServer(feed) as srv:
        yield srv


def run_ingest(env: Env, server: SourceServer, names: list[str], **sections: dict) -> object:
    from minyi.flows.ingest import ingest

    env.write_config(config_toml({n: server.url_for(n) for n in names}, sections=sections or None))
    return ingest(business_date=DAY, as_of=AS_OF)


def test_a_multi_page_source_is_pulled_to_the_end(
    env: Env, server: SourceServer, feed: StaticFeed, prefect_harness: None
) -> None:
    feed.data[("police110", DAY)] = [make_record(i, DAY) for i in range(250)]
    summary = run_ingest(env, server, ["police110"])
    assert env.scalar("SELECT COUNT(*) FROM records") == 250
    assert summary.sources[0].pages == 3
    cursors = [q.get("cursor") for _, _, q, _ in server.requests]
    assert cursors == [None, "100", "200"]


def test_two_server_errors_then_success_loads_the_page(
    env: Env, server: SourceServer, feed: StaticFeed, prefect_harness: None
) -> None:
    feed.data[("police110", DAY)] = [make_record(i, DAY) for i in range(20)]
    server.fail("police110", Fault(500), Fault(503))
    summary = run_ingest(env, server, ["police110"])
    assert summary.sources[0].status == "ok"
    assert env.scalar("SELECT COUNT(*) FROM records") == 20
    assert len(server.requests) == 3


def test_429_waits_at_least_retry_after_before_asking_again(
    env: Env, server: SourceServer, feed: StaticFeed, prefect_harness: None
) -> None:
    feed.data[("police110", DAY)] = [make_record(i, DAY) for i in range(5)]
    server.fail("police110", Fault(429, headers={"Retry-After": "1"}))
    run_ingest(env, server, ["police110"])
    (t0, *_), (t1, *_) = server.requests
    assert t1 - t0 >= 1.0
    assert env.scalar("SELECT COUNT(*) FROM records") == 5


@pytest.mark.parametrize("workers", [1, 2])
def test_a_source_that_fails_mid_day_keeps_every_page_before_and_resumes_there(
    env: Env, server: SourceServer, feed: StaticFeed, prefect_harness: None, workers: int
) -> None:
    """One source, in-process or through two workers taking turns: the pages before the failure are all stored."""
    feed.data[("police110", DAY)] = [make_record(i, DAY) for i in range(650)]
    st = server.state("police110")

    def forbid_after_third_page(source: str, start: int) -> None:
        if start == 200:
            st.always = Fault(403, body=b'{"error":"forbidden"}')

    server.on_page = forbid_after_third_page
    summary = run_ingest(env, server, ["police110"], ingest={"workers": workers})
    (pull,) = summary.sources
    assert pull.status == "failed" and "403" in (pull.error or "")
    assert env.scalar("SELECT COUNT(*) FROM records") == 300
    assert env.scalar("SELECT cursor FROM ingest_checkpoints") == "300"

    st.always, server.on_page = None, None
    seen = len(server.requests)
    summary = run_ingest(env, server, ["police110"], ingest={"workers": workers})
    assert summary.sources[0].status == "ok"
    ids = [r[0] for r in env.rows("SELECT record_id FROM records ORDER BY record_id")]
    assert ids == sorted(make_record(i, DAY)["record_id"] for i in range(650))
    assert [q.get("cursor") for _, _, q, _ in server.requests[seen:]] == ["300", "400", "500", "600"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_forbidden_source_fails_alone_and_the_centre_is_told(
    env: Env, server: SourceServer, feed: StaticFeed, prefect_harness: None, workers: int
) -> None:
    feed.data[("police110", DAY)] = [make_record(i, DAY) for i in range(30)]
    feed.data[("window", DAY)] = [make_record(i, DAY, record_id=f"W-{i}", channel="window") for i in range(12)]
    server.state("traffic122").always = Fault(403, body=b'{"error":"forbidden"}')
    summary = run_ingest(env, server, ["police110", "traffic122", "window"], ingest={"workers": workers})
    status = {p.source: p.status for p in summary.sources}
    assert status == {"police110": "ok", "traffic122": "failed", "window": "ok"}
    assert env.scalar("SELECT COUNT(*) FROM records") == 42
    assert len([r for r in server.requests if r[1] == "traffic122"]) == 1  # a 403 is not retried
    (post,) = env.rows("SELECT channel, text FROM notifications WHERE kind = 'source_failed'")
    assert post.channel == "C0CENTER" and "traffic122" in post.text and "403" in post.text


def test_every_quarantine_reason_keeps_the_row_with_its_reasons(
    env: Env, server: SourceServer, feed: StaticFeed, prefect_harness: None
) -> None:
    bad = [
        make_record(1, DAY, record_id=None),
        make_record(2, DAY, channel="weixin"),
        make_record(3, DAY, handled_at="昨天下午"),
        make_record(4, DAY, handled_at="2026-11-19T23:59:00+08:00"),
        make_record(5, DAY, unit_code=""),
        make_record(6, DAY, unit_code=None),
        make_record(7, DAY, channel="fax", unit_code=""),
    ]
    good = [make_record(10, DAY, handled_at="2026-11-20T00:00:00+08:00"), make_record(11, DAY, unit_code="QD-NEW")]
    feed.data[("police110", DAY)] = bad + good
    summary = run_ingest(env, server, ["police110"])
    rows = env.rows("SELECT record_id, reasons, raw FROM quarantine ORDER BY id")
    assert [r.reasons for r in rows] == [
        "missing_record_id",
        "bad_channel",
        "bad_handled_at",
        "handled_at_out_of_window",
        "missing_unit_code",
        "missing_unit_code",
        "bad_channel,missing_unit_code",
    ]
    assert '"channel":"weixin"' in rows[1].raw
    assert env.scalar("SELECT COUNT(*) FROM records") == 2
    assert (summary.sources[0].accepted, summary.sources[0].quarantined) == (2, 7)
    assert summary.unknown_units == [("QD-NEW", 1)]
    assert env.scalar("SELECT known FROM units WHERE code = 'QD-NEW'") in (False, 0)


def test_unknown_units_are_registered_once_and_each_day_counts_its_own_records(
    env: Env, server: SourceServer, feed: StaticFeed, prefect_harness: None
) -> None:
    """A code first seen on an earlier day is still unknown on the next, counted by that day's records only."""
    from minyi.flows.ingest import ingest

    nxt = date(2026, 11, 22)
    feed.data[("police110", DAY)] = [make_record(1, DAY, unit_code="QD-NEW"), make_record(2, DAY)]
    feed.data[("police110", nxt)] = [
        make_record(3, nxt, unit_code="QD-NEW"),
        make_record(4, nxt, unit_code="QD-NEW"),
        make_record(5, nxt, unit_code="QD-ANOTHER"),
        make_record(6, nxt),
    ]
    assert run_ingest(env, server, ["police110"]).unknown_units == [("QD-NEW", 1)]
    again = ingest(business_date=nxt, as_of=at("2026-11-23 09:00"))
    assert again.unknown_units == [("QD-ANOTHER", 1), ("QD-NEW", 2)]
    rows = env.rows("SELECT code, known FROM units WHERE code IN ('QD-NEW', 'QD-ANOTHER') ORDER BY code")
    assert [(r.code, bool(r.known)) for r in rows] == [("QD-ANOTHER", False), ("QD-NEW", False)]


def test_re_pulling_the_same_day_changes_nothing_but_updated_fields(
    env: Env, server: SourceServer, feed: StaticFeed, prefect_harness: None
) -> None:
    from minyi.flows.ingest import ingest

    feed.data[("police110", DAY)] = [make_record(i, DAY) for i in range(150)] + [make_record(999, DAY, channel="x")]
    run_ingest(env, server, ["police110"])
    before = {r.record_id: r for r in env.rows("SELECT * FROM records")}
    feed.data[("police110", DAY)][7]["summary"] = "已调解完毕"
    feed.data[("police110", DAY)][8]["phone"] = "+86 139-0000-0008"
    ingest(business_date=DAY, as_of=at("2026-11-22 15:00"))
    after = {r.record_id: r for r in env.rows("SELECT * FROM records")}
    assert after.keys() == before.keys() and len(after) == 150
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {make_record(7, DAY)["record_id"], make_record(8, DAY)["record_id"]}
    assert after[make_record(7, DAY)["record_id"]].summary == "已调解完毕"
    assert after[make_record(8, DAY)["record_id"]].phone_norm == "13900000008"
    assert {after[k].id for k in after} == {before[k].id for k in before}
    assert env.scalar("SELECT COUNT(*) FROM quarantine") == 1
    assert env.scalar("SELECT fetched FROM ingest_checkpoints") == 2 * 151


def test_the_worker_pool_serves_pages_first_come_first_served() -> None:
    import threading
    import time

    from minyi.tasks.stages.ingest_worker import WorkerPool

    pool = WorkerPool(1)
    got: list[str] = []
    pool._acquire()  # the one worker is busy while the others line up

    def ask(name: str) -> None:
        pool._acquire()
        got.append(name)
        pool._release()

    threads = [threading.Thread(target=ask, args=(n,)) for n in ("a", "b", "c", "d")]
    for t in threads:
        t.start()
        time.sleep(0.05)
    pool._release()
    for t in threads:
        t.join(10)
    assert got == ["a", "b", "c", "d"]
