"""Ingest over real HTTP (SPEC §3): paging, retries, failure isolation, upserts, quarantine."""

from __future__ import annotations

from datetime import date

import pytest

from minyi.sim.source_server import SourceServer, StaticFeed
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
