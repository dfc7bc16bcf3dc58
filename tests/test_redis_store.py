"""The coordinator's Redis store against a real redis-server (the ``redis_server`` fixture, skipped
where redis-server or redis-py is missing): leases by the store's clock, readings, corrupt values,
passwords, a server that refuses, one that never answers, and one that restarts. What both stores
promise is tested on DirStore and RedisStore alike, so the two backends cannot drift apart. Expiry
is driven by a clock the test moves: nothing here sleeps."""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import MISSING, RedisServer, free_port

from claude_magic import _secrets
from claude_magic._coordinator import DirStore, Store, describe, open_store
from claude_magic.errors import ConfigError

GROUP = "api.anthropic.com:0123456789abcdef"
PASSWORD = "s3cret-pw-4711"
STATE = {"buckets": {"b": {"batch": True}}, "jobs": []}


class Clock:
    """The store's clock, moved by the test."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def redis_store(url: str, clock: Callable[[], float] | None = None) -> Any:
    pytest.importorskip("redis", reason="redis-py is not installed: pip install 'claude_magic[redis]'")
    from claude_magic._redis_store import RedisStore

    return RedisStore(url, clock=clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["dir", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Callable[[], Store]]:
    """Stores of one shared place (each one a client, as on another host) on the test's clock."""
    server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    made: list[Store] = []

    def make() -> Store:
        store = DirStore(tmp_path / "coordination", clock=clock) if server is None else redis_store(
            server.url, clock)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


# -- what both stores promise -----------------------------------------------------------------------

def test_a_beat_renews_the_lease_and_lists_the_member(make_store: Callable[[], Store], clock: Clock) -> None:
    store = make_store()
    beat = store.beat(GROUP, "a", STATE, 3.0, {})
    assert beat.now == pytest.approx(clock.now)
    assert beat.members == {"a": {**STATE, "expires": pytest.approx(clock.now + 3.0)}}
    clock.now += 2.0
    assert store.beat(GROUP, "a", STATE, 3.0, {}).members["a"]["expires"] == pytest.approx(clock.now + 3.0)


def test_two_clients_of_one_store_see_each_other(make_store: Callable[[], Store]) -> None:
    one, two = make_store(), make_store()
    one.beat(GROUP, "a", {"n": 1}, 3.0, {})
    beat = two.beat(GROUP, "b", {"n": 2}, 3.0, {})
    assert {m: s["n"] for m, s in beat.members.items()} == {"a": 1, "b": 2}
    assert set(one.beat(GROUP, "a", {"n": 1}, 3.0, {}).members) == {"a", "b"}
    assert one.beat("another:group", "c", {}, 3.0, {}).members.keys() == {"c"}


def test_a_lease_not_renewed_expires_and_a_read_does_not_join(make_store: Callable[[], Store],
                                                             clock: Clock) -> None:
    one, two = make_store(), make_store()
    one.beat(GROUP, "a", STATE, 3.0, {})
    clock.now += 2.999
    assert set(two.beat(GROUP, "b", None, 3.0, {}).members) == {"a"}
    clock.now += 0.001  # the lease ran out: expires == now is gone
    assert two.beat(GROUP, "b", None, 3.0, {}).members == {}
    assert one.beat(GROUP, "a", None, 3.0, {}).members == {}  # reading again still joins nobody


def test_the_fresher_reading_wins_and_a_stale_one_is_kept_out(make_store: Callable[[], Store]) -> None:
    one, two = make_store(), make_store()
    fresh = {"headers": {"anthropic-ratelimit-requests-remaining": "7"}, "sent": 100.5}
    stale = {"headers": {"anthropic-ratelimit-requests-remaining": "9"}, "sent": 99.0}
    assert one.beat(GROUP, "a", STATE, 3.0, {"b": fresh}).readings == {"b": fresh}
    assert two.beat(GROUP, "b", STATE, 3.0, {"b": stale}).readings == {"b": fresh}
    fresher = {**fresh, "sent": 101.0}
    assert two.beat(GROUP, "b", None, 3.0, {"b": fresher, "c": stale}).readings == {"b": fresher, "c": stale}


def test_a_reading_without_a_date_is_never_stored(make_store: Callable[[], Store]) -> None:
    store = make_store()
    for undated in ({"headers": {}}, {"headers": {}, "sent": None}, {"headers": {}, "sent": "soon"},
                    {"headers": {}, "sent": float("nan")}):
        assert store.beat(GROUP, "a", STATE, 3.0, {"b": undated}).readings == {}


def test_leave_removes_the_member_at_once(make_store: Callable[[], Store]) -> None:
    one, two = make_store(), make_store()
    one.beat(GROUP, "a", STATE, 3.0, {})
    two.beat(GROUP, "b", STATE, 3.0, {})
    one.leave(GROUP, "a")
    assert set(two.beat(GROUP, "b", None, 3.0, {}).members) == {"b"}
    one.leave(GROUP, "never-joined")  # nothing to do, and no error


# -- Redis only: keys, corrupt values, the server's clock -------------------------------------------

def keys(group: str = GROUP) -> list[str]:
    return [f"claude_magic:{{{group}}}:{name}" for name in ("members", "states", "readings")]


def test_the_group_keys_expire_an_hour_after_the_last_write(redis_server: RedisServer, clock: Clock) -> None:
    store, r = redis_store(redis_server.url, clock), redis_server.client()
    store.beat(GROUP, "a", None, 3.0, {})
    assert r.exists(*keys()) == 0  # a read writes nothing
    store.beat(GROUP, "a", STATE, 3.0, {"b": {"headers": {}, "sent": 1.0}})
    assert [0 < r.pttl(k) <= 3_600_000 for k in keys()] == [True, True, True]
    store.close()
    r.close()


def test_an_expired_members_state_is_deleted_with_its_lease(redis_server: RedisServer, clock: Clock) -> None:
    store, r = redis_store(redis_server.url, clock), redis_server.client()
    store.beat(GROUP, "a", STATE, 3.0, {})
    clock.now += 10
    store.beat(GROUP, "b", STATE, 3.0, {})
    assert r.zrange(keys()[0], 0, -1) == [b"b"] and r.hkeys(keys()[1]) == [b"b"]
    store.leave(GROUP, "b")
    assert r.exists(keys()[0], keys()[1]) == 0
    store.close()
    r.close()


def test_a_corrupt_value_is_ignored_and_the_beat_goes_on(redis_server: RedisServer, clock: Clock) -> None:
    store, r = redis_store(redis_server.url, clock), redis_server.client()
    members, states, readings = keys()
    r.zadd(members, {"broken": (clock.now + 60) * 1000, "listy": (clock.now + 60) * 1000,
                     "stateless": (clock.now + 60) * 1000})
    r.hset(states, mapping={"broken": "{not json", "listy": "[1, 2]"})
    r.hset(readings, mapping={"b": "\xff{{", "c": '{"sent": "never"}', "d": '{"headers": {}, "sent": 5}'})
    reading = {"headers": {"x": "1"}, "sent": 1.0}
    beat = store.beat(GROUP, "a", STATE, 3.0, {"b": reading, "c": reading})
    assert set(beat.members) == {"a"}
    assert beat.readings == {"b": reading, "c": reading, "d": {"headers": {}, "sent": 5}}
    store.close()
    r.close()


def test_without_a_clock_the_store_dates_leases_by_the_servers_time(redis_server: RedisServer) -> None:
    store, r = redis_store(redis_server.url), redis_server.client()
    before = float("{}.{:06d}".format(*r.time()))
    beat = store.beat(GROUP, "a", STATE, 3.0, {})
    after = float("{}.{:06d}".format(*r.time()))
    assert before <= beat.now <= after
    assert beat.members["a"]["expires"] == pytest.approx(beat.now + 3.0)
    store.close()
    r.close()


# -- URLs, passwords, failures ----------------------------------------------------------------------

def test_the_password_never_shows_and_the_right_one_works(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="redis-py is not installed: pip install 'claude_magic[redis]'")
    if shutil.which("redis-server") is None:
        pytest.skip(MISSING)
    with RedisServer(tmp_path / "locked", "--requirepass", PASSWORD) as server:
        right = redis_store(f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0")
        assert set(right.beat(GROUP, "a", STATE, 3.0, {}).members) == {"a"}
        wrong = redis_store(f"redis://:{PASSWORD[::-1]}@127.0.0.1:{server.port}/0")
        with pytest.raises(Exception) as caught:  # noqa: B017 - whatever redis-py raises, its text
            wrong.beat(GROUP, "b", STATE, 3.0, {})
        for store in (right, wrong):
            assert store.where == f"redis://<redacted>@127.0.0.1:{server.port}/0"
        texts = [right.where, repr(right), wrong.where, repr(wrong), str(caught.value), repr(caught.value),
                 describe(caught.value)]
        assert not [t for t in texts if PASSWORD in t or PASSWORD[::-1] in t]
        right.close()
        wrong.close()


@pytest.mark.parametrize(("url", "where", "passwords"), [
    ("redis://user:pa%3Ass-word@h:1/0", "redis://<redacted>@h:1/0", ["pa%3Ass-word", "pa:ss-word"]),
    ("redis://h:1/0?password=query-secret&db=1", "redis://h:1/0?password=<redacted>&db=1", ["query-secret"]),
])
def test_where_shows_the_url_without_its_password_and_any_text_loses_it(url: str, where: str,
                                                                       passwords: list[str]) -> None:
    store = redis_store(url)
    assert store.where == where and repr(store) == f"RedisStore({where!r})"
    for password in passwords:  # as written in the URL and as sent to the server
        assert _secrets.scrub(f"echoed {password}.") == "echoed <redacted>."
    store.close()


@pytest.mark.parametrize("url", ["redis://:hunter22pw@h:abc/0", "redis://h:99999/0", "redis://[::1/0",
                                 "redis://h/0?socket_timeout=soon"])
def test_a_malformed_url_is_one_config_error_at_construction(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        redis_store(url)
    text = str(caught.value)
    assert "\n" not in text and "hunter22pw" not in text and "is not a Redis URL" in text


def test_a_refused_connection_raises(clock: Clock) -> None:
    store = redis_store(f"redis://127.0.0.1:{free_port()}/0", clock)
    with pytest.raises(Exception, match="refused|connecting"):
        store.beat(GROUP, "a", STATE, 3.0, {})
    store.close()


def test_a_server_that_never_answers_costs_one_connection_not_retries(clock: Clock) -> None:
    with socket.socket() as listener:  # accepts in the kernel's backlog, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        store = redis_store(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", clock)
        with pytest.raises(Exception, match="[Tt]imeout|timed out"):
            store.beat(GROUP, "a", STATE, 3.0, {})
        store.close()
        listener.setblocking(False)
        attempts = 0
        while True:
            try:
                listener.accept()[0].close()
            except BlockingIOError:
                break
            attempts += 1
    assert attempts == 1


def test_after_a_restart_the_next_beats_recover_without_help(redis_server: RedisServer, clock: Clock) -> None:
    store = redis_store(redis_server.url, clock)
    store.beat(GROUP, "a", STATE, 3.0, {})
    redis_server.restart()
    r = redis_server.client()
    assert r.script_exists(store._beat.sha) == [False]  # the server forgot the script
    try:
        store.beat(GROUP, "a", STATE, 3.0, {})
    except Exception:  # noqa: BLE001 - the pooled connection was cut: one beat may fail
        pass
    assert set(store.beat(GROUP, "a", STATE, 3.0, {}).members) == {"a"}
    assert r.script_exists(store._beat.sha) == [True]
    store.close()
    r.close()


def test_without_redis_py_the_store_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from claude_magic._redis_store import RedisStore

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigError) as caught:
        RedisStore("redis://:hunter22pw@127.0.0.1:6379/0")
    assert str(caught.value) == "the Redis coordinator needs redis-py: pip install 'claude_magic[redis]'"


def test_open_store_gives_a_redis_store_for_a_redis_url() -> None:
    pytest.importorskip("redis", reason="redis-py is not installed: pip install 'claude_magic[redis]'")
    store = open_store("rediss://:hunter22pw@redis.example:6380/2")
    assert store is not None and type(store).__name__ == "RedisStore"
    assert store.where == "rediss://<redacted>@redis.example:6380/2"
