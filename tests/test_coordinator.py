"""Clients of one account sharing its rate limits: the fair share, the members' heartbeats and leases
(time driven by injected clocks), the scheduler gated by its share, and the store failing."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_magic._coordinator import (
    Beat,
    Coordinator,
    DirStore,
    allowance,
    coordinator_setting,
    group_of,
    open_store,
)
from claude_magic._ratelimit import Allowance, Spend
from claude_magic._scheduler import Priority, Scheduler
from claude_magic.errors import ConfigError

BUCKET = "messages:haiku-5"
RATES = {"requests": 10.0, "tokens": 1000.0}


def member(batch: bool = True, backlog: bool = True, spend: float = 0.0, interactive: float = 0.0,
           tokens: float = 0.0, allowed: dict[str, float] | None = None) -> dict[str, Any]:
    return {"buckets": {BUCKET: {"batch": batch, "backlog": backlog,
                                 "spend": {"requests": spend, "tokens": tokens},
                                 "interactive": {"requests": interactive}, "allowed": allowed}}}


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the fair share -------------------------------------------------------------------------------------


def test_a_member_alone_has_no_limit_but_the_mirror() -> None:
    assert allowance({"a": member()}, "a", BUCKET, RATES) is None
    assert allowance({}, "a", BUCKET, RATES) is None
    # others that only ask interactive questions take no batch share
    assert allowance({"a": member(), "b": member(batch=False, interactive=1.0)}, "a", BUCKET, RATES) is None


def test_backlogged_members_split_every_limit_evenly() -> None:
    third = {"requests": 10.0 / 3, "tokens": 1000.0 / 3}
    members = {"a": member(spend=10.0, tokens=1000.0, allowed=third), "b": member(), "c": member()}
    for me in members:
        share = allowance(members, me, BUCKET, RATES)
        assert share == pytest.approx({"requests": 10.0 / 3, "tokens": 1000.0 / 3})


def test_a_member_that_uses_less_than_its_share_leaves_the_rest_to_the_others() -> None:
    members = {"a": member(), "light": member(backlog=False, spend=1.0, tokens=100.0)}
    assert allowance(members, "a", BUCKET, RATES) == pytest.approx({"requests": 9.0, "tokens": 900.0})
    # and the light one may still take its fair half whenever it wants it
    assert allowance(members, "light", BUCKET, RATES) == pytest.approx({"requests": 5.0, "tokens": 500.0})


def test_interactive_use_comes_off_the_top_before_the_split() -> None:
    members = {"a": member(), "b": member(), "analyst": member(batch=False, interactive=2.0)}
    assert allowance(members, "a", BUCKET, {"requests": 10.0}) == pytest.approx({"requests": 4.0})


def test_a_member_joining_counts_itself_before_the_store_lists_it() -> None:
    share = allowance({"a": member()}, "new", BUCKET, RATES)
    assert share == pytest.approx({"requests": 5.0, "tokens": 500.0})


def test_a_joiner_takes_only_what_the_incumbent_leaves_until_it_publishes_its_smaller_share() -> None:
    # the incumbent was alone: it spends every request a second, and will until its next beat
    incumbent = member(spend=10.0, tokens=200.0)
    assert allowance({"a": incumbent}, "new", BUCKET, RATES) == pytest.approx({"requests": 0.0,
                                                                                "tokens": 500.0})
    # its beat: it sees the joiner, backlogged, and halves its own share...
    members = {"a": incumbent, "new": member(allowed={"requests": 0.0, "tokens": 500.0})}
    halved = allowance(members, "a", BUCKET, RATES)
    assert halved == pytest.approx({"requests": 5.0, "tokens": 500.0})
    # ...which the joiner's next beat reads: now it has half, and the bucket was never overdrawn
    members["a"] = member(spend=10.0, tokens=200.0, allowed=halved)
    assert allowance(members, "new", BUCKET, RATES) == pytest.approx({"requests": 5.0, "tokens": 500.0})


def test_malformed_states_from_the_store_count_for_nothing() -> None:
    members = {"a": member(), "b": {"buckets": "junk"}, "c": {"buckets": {BUCKET: {"batch": True,
                                                                               "spend": "x"}}}}
    share = allowance(members, "a", BUCKET, {"requests": 10.0})
    assert share == pytest.approx({"requests": 10.0})  # c is counted (1/2) but spends nothing: a keeps all


def test_spend_reads_a_steady_rate_as_that_rate() -> None:
    spend = Spend()
    for i in range(200):
        spend.add(i * 0.1, {"requests": 1.0, "tokens": 50.0})
    assert spend.per_second(19.9) == pytest.approx({"requests": 10.0, "tokens": 500.0}, rel=0.03)
    assert spend.per_second(60.0) == {}  # decays to nothing once the member stops


def test_an_allowance_starts_empty_and_paces_starts_at_its_rate() -> None:
    share = Allowance()
    costs = {"requests": 1.0}
    # a share begins when another client joined: no burst on top of what the bucket already gave
    share.set({"requests": 2.0}, costs, now=0.0)
    assert share.delay(0.0, costs) == pytest.approx(0.5)
    assert share.delay(1.0, costs) == 0  # a second later it holds a second's worth: 2 requests
    share.take(1.0, costs)
    share.take(1.0, costs)
    assert share.delay(1.0, costs) == pytest.approx(0.5)
    assert share.delay(5.0, costs) == 0
    share.set({"requests": 1.0}, costs, now=5.0)  # the share halves: the level is capped to the new hold
    share.take(5.0, costs)
    assert share.delay(5.0, costs) == pytest.approx(1.0)
    # a retry-after pause until 10: nothing saved meanwhile is owed after it (no burst into the bucket)
    share.empty(10.0)
    assert share.delay(7.0, costs) == pytest.approx(1.0)  # asked during the pause: nothing refilled
    assert share.delay(10.0, costs) == pytest.approx(1.0)
    assert share.delay(11.0, costs) == 0


# -- settings and the coordination key -------------------------------------------------------------------


def test_the_group_holds_a_hash_of_the_key_never_the_key() -> None:
    group = group_of("API.example.com:443", "sk-ant-secret-value")
    assert "sk-ant-secret-value" not in group and group.startswith("api.example.com:443:")
    assert group != group_of("api.example.com:443", "sk-ant-other-value")
    assert group != group_of("other.example.com:443", "sk-ant-secret-value")


def test_the_setting_takes_auto_none_a_directory_or_a_redis_url(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    assert coordinator_setting(None) == "auto"
    monkeypatch.setenv("CLAUDE_MAGIC_COORDINATOR", "NONE")
    assert coordinator_setting(None) == "none"
    assert coordinator_setting("redis://h:6379/0") == "redis://h:6379/0"
    assert coordinator_setting(tmp_path) == str(tmp_path)
    assert open_store("none") is None
    store = open_store("auto", tmp_path / "cache")
    assert isinstance(store, DirStore) and store.path == tmp_path / "cache" / "coordination"
    with pytest.raises(ConfigError, match=r"^coordinator must be .* got 'https://<redacted>@h/'$"):
        coordinator_setting("https://user:pw-secret@h/")


def test_a_client_shares_through_its_cache_directory_by_default(emu: Any, tmp_path: Path) -> None:
    from canary import TEST_KEY

    from claude_magic.client import Client

    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "c") as client:
        coordinator = client.scheduler.coordinator
        assert coordinator is not None and coordinator.where == str(tmp_path / "c" / "coordination")
    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "c", coordinator="none") as client:
        assert client.scheduler.coordinator is None


# -- heartbeats and leases -------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pair(tmp_path: Path, clock: Clock) -> Iterator[tuple[Coordinator, Coordinator]]:
    """Two members of one group, in one store directory, on the test's clock."""
    a = Coordinator(DirStore(tmp_path / "store", clock), "g")
    b = Coordinator(DirStore(tmp_path / "store", clock), "g")
    yield a, b
    a.close()
    b.close()


def beat(coordinator: Coordinator, state: dict[str, Any] | None = None,
         readings: dict[str, Any] | None = None) -> Beat | None:
    seen: list[Beat | None] = []
    result = asyncio.run(coordinator.beat_once(lambda: dict(state or {}), lambda: dict(readings or {}),
                                               seen.append))
    assert seen == [result]
    return result


def test_a_member_that_stops_beating_is_gone_once_its_lease_runs_out(
        pair: tuple[Coordinator, Coordinator], clock: Clock) -> None:
    a, b = pair
    beat(a, member())
    seen = beat(b, member())
    assert seen is not None and set(seen.members) == {a.member, b.member}
    assert allowance(seen.members, a.member, BUCKET, RATES) == pytest.approx({"requests": 5.0,
                                                                              "tokens": 500.0})
    clock.now += a.ttl - 0.1  # b beats, a does not (a kernel killed with SIGKILL)
    seen = beat(b, member())
    assert seen is not None and a.member in seen.members
    clock.now += 0.2
    seen = beat(b, member())
    assert seen is not None and set(seen.members) == {b.member}
    assert allowance(seen.members, b.member, BUCKET, RATES) is None  # its share came back


def test_a_member_that_closes_leaves_at_once(pair: tuple[Coordinator, Coordinator]) -> None:
    a, b = pair
    beat(a, member())
    beat(b, member())
    a.close()
    assert set(b.members()) == {b.member}


def test_readings_are_shared_in_the_stores_clock(pair: tuple[Coordinator, Coordinator]) -> None:
    a, _ = pair
    first = beat(a, member())
    assert first is not None
    sent = a.store_time(5.0)
    assert a.local_time(sent) == pytest.approx(5.0)
    seen = beat(a, member(), {BUCKET: {"headers": {"requests-limit": "600"}, "sent": sent}})
    assert seen is not None and seen.readings[BUCKET]["sent"] == sent
    older = beat(a, member(), {BUCKET: {"headers": {"requests-limit": "1"}, "sent": sent - 1}})
    assert older is not None and older.readings[BUCKET]["headers"] == {"requests-limit": "600"}


def test_the_store_never_sees_the_key_a_prompt_or_a_template(emu: Any, tmp_path: Path) -> None:
    import pandas as pd
    from canary import TEST_KEY

    from claude_magic.batch import run_batch
    from claude_magic.client import Client

    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "c", max_tokens=8) as client:
        job = run_batch("Secret-template {x}", pd.DataFrame({"x": ["private-row-1", "private-row-2"]}),
                        client=client, background=True)
        coordinator = client.scheduler.coordinator
        assert coordinator is not None
        job.result(timeout=60)
        stored = coordinator.members()
    text = json.dumps(stored) + "".join(p.read_bytes().decode("latin-1")
                                        for p in (tmp_path / "c" / "coordination").rglob("*") if p.is_file())
    for secret in (TEST_KEY, "Secret-template", "private-row"):
        assert secret not in text


# -- the scheduler, gated by its share ------------------------------------------------------------------


def headers(remaining: float, at: float) -> dict[str, Any]:
    return {"requests-limit": "600", "requests-remaining": str(remaining), "at": at}


def test_a_scheduler_with_a_backlogged_rival_starts_batch_requests_at_half_the_rate(
        pair: tuple[Coordinator, Coordinator], clock: Clock) -> None:
    rival, coordinator = pair
    scheduler = Scheduler(coordinator)

    async def run() -> None:
        mirror = scheduler.mirror(BUCKET)
        mirror.observe(headers(600, 0.0))  # 10 requests a second, a full bucket
        await rival.beat_once(lambda: member(spend=10.0, allowed={"requests": 5.0}), dict, lambda _: None)
        seen = await coordinator.beat_once(scheduler._publish, scheduler._readings, scheduler._apply)
        assert seen is not None and len(seen.members) == 2
        state = scheduler._buckets[BUCKET]
        assert state.allowance is not None and state.allowance.rates == pytest.approx({"requests": 5.0})
        assert state.share == pytest.approx(0.5)
        # the rival's starts our mirror has not read yet are kept as headroom too: 0.3 s of 10 a second
        assert state.unseen == pytest.approx({"requests": 3.0})
        # the share starts empty and refills at 5 a second: one start, then a fifth of a second to the next
        assert scheduler._share_delay(state, time.monotonic()) == pytest.approx(0.2, abs=0.02)
        tickets = [await asyncio.wait_for(scheduler.admit(BUCKET, Priority.BATCH, None), 5)]
        assert scheduler._share_delay(state, tickets[-1].admitted) == pytest.approx(0.2, abs=0.02)
        # an interactive request never waits for a share
        interactive = await asyncio.wait_for(scheduler.admit(BUCKET, Priority.INTERACTIVE), 1)
        assert interactive.queued < 0.1
        published = scheduler._publish()["buckets"][BUCKET]
        assert published["batch"] is True and published["share"] == pytest.approx(0.5)
        assert published["spend"]["requests"] == pytest.approx(1 / Spend.TAU, rel=0.05)
        assert published["interactive"]["requests"] == pytest.approx(1 / Spend.TAU, rel=0.05)
        for ticket in [*tickets, interactive]:
            scheduler.done(ticket)
        # the rival's lease runs out: the share is gone with it
        clock.now += rival.ttl + 1
        await coordinator.beat_once(scheduler._publish, scheduler._readings, scheduler._apply)
        assert state.allowance is None and state.share is None and state.unseen == {}

    asyncio.run(run())


def test_a_bucket_never_read_starts_from_the_groups_reading_without_a_probe(
        pair: tuple[Coordinator, Coordinator]) -> None:
    first, second = pair
    scheduler = Scheduler(second)

    async def run() -> None:
        left = time.monotonic() - 0.5
        await first.beat_once(dict, dict, lambda _: None)
        reading = {BUCKET: {"headers": {"requests-limit": "600", "requests-remaining": "3"},
                            "sent": first.store_time(left)}}
        await first.beat_once(dict, lambda: reading, lambda _: None)
        await second.beat_once(scheduler._publish, scheduler._readings, scheduler._apply)
        mirror = scheduler.mirror(BUCKET)
        assert mirror.requests.rate == pytest.approx(10.0)
        # three left half a second ago, refilled by five since (capped by the most ever seen)
        assert mirror.requests.available(time.monotonic()) == pytest.approx(3.0, abs=0.5)
        assert scheduler._buckets[BUCKET].answered  # no probe: the size is known

    asyncio.run(run())


# -- a store that fails ----------------------------------------------------------------------------------


def test_a_corrupt_store_is_one_warning_and_pacing_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                        emu: Any) -> None:
    import pandas as pd
    from canary import TEST_KEY

    from claude_magic.batch import run_batch
    from claude_magic.client import Client

    store = tmp_path / "shared"
    store.mkdir()
    (store / "cache.db").write_bytes(b"this is not an SQLite database" * 100)
    caplog.set_level(logging.WARNING, logger="claude_magic")
    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "c", coordinator=store,
                max_tokens=8) as client:
        result = run_batch("{x}", pd.DataFrame({"x": [f"row {i}" for i in range(12)]}), client=client)
        assert result.summary.succeeded_rows == 12 and result.series.notna().all()
        coordinator = client.scheduler.coordinator
        assert coordinator is not None and coordinator.failure is not None
        assert coordinator.fresh() is None
    warnings = [r.getMessage() for r in caplog.records if "coordinator" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"claude_magic: the coordinator at {store} failed (DatabaseError")
    assert "pacing alone" in warnings[0] and "\n" not in warnings[0]


def test_an_unwritable_store_is_one_warning_and_calls_go_on(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                           emu: Any) -> None:
    from canary import TEST_KEY

    from claude_magic.client import Client

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    caplog.set_level(logging.WARNING, logger="claude_magic")
    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "c", coordinator=blocker / "sub",
                max_tokens=8) as client:
        for i in range(3):
            assert client.complete(f"question {i}").stop_reason in ("end_turn", "max_tokens")
    warnings = [r.getMessage() for r in caplog.records if "coordinator" in r.getMessage()]
    assert len(warnings) <= 1  # the first call may end before the first beat has failed
    assert all("failed (" in w and "pacing alone" in w for w in warnings)


def test_closing_leaves_no_coordinator_thread(emu: Any, tmp_path: Path) -> None:
    import threading

    from canary import TEST_KEY

    from claude_magic.client import Client

    client = Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "c", max_tokens=8)
    client.complete("hello")
    coordinator = client.scheduler.coordinator
    assert coordinator is not None
    client.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("claude_magic-coordinator")]
    assert math.isfinite(coordinator.offset)


def test_a_message_batches_job_holds_no_share_of_the_messages_limits(emu: Any, tmp_path: Path) -> None:
    from canary import TEST_KEY

    from claude_magic.batch import run_batch
    from claude_magic.client import Client

    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "c", max_tokens=8) as client:
        published: list[dict[str, Any]] = []
        scheduler = client.scheduler
        publish = scheduler._publish

        def spy() -> dict[str, Any]:
            published.append(publish())
            return published[-1]

        scheduler._publish = spy  # type: ignore[method-assign]
        job = run_batch("Tag {value}", [f"review {i}" for i in range(12)], client=client,
                        model="claude-haiku-5-5", api="batch", poll_interval=0.05, background=True)
        assert job.result(timeout=60).summary.succeeded_rows == 12
    assert published  # it beat while the job ran
    batch_buckets = {name for state in published for name, entry in state["buckets"].items()
                     if entry["batch"]}
    assert batch_buckets == {"batches"}


def test_a_reading_is_not_adopted_while_another_member_spends_from_the_bucket(
        pair: tuple[Coordinator, Coordinator]) -> None:
    busy, joining = pair
    scheduler = Scheduler(joining)

    async def run() -> None:
        reading = {BUCKET: {"headers": {"requests-limit": "600", "requests-remaining": "599"},
                            "sent": busy.store_time(time.monotonic() - 0.1)}}
        await busy.beat_once(lambda: member(spend=10.0), lambda: reading, lambda _: None)
        await joining.beat_once(scheduler._publish, scheduler._readings, scheduler._apply)
        # taken before the busy member's burst: it would promise what the burst took; the probe reads it
        assert scheduler.mirror(BUCKET).requests.rate is None
        assert not scheduler._buckets[BUCKET].answered

    asyncio.run(run())
