"""The adaptive window (claude_magic.batch._pacing) and the rate-limit mirror (claude_magic._ratelimit)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from claude_magic._ratelimit import ADMIT_LAG, MAX_ADMIT_LAG, Bucket, Mirror
from claude_magic.batch._pacing import _Window
from claude_magic.reply import Reply, Usage

MODEL = "claude-haiku-5-5"


def test_window_slow_starts_then_halves_once_per_round_trip() -> None:
    w = _Window(cap=64, start=4)
    for _ in range(10):
        w.success()
    assert w.limit == 14  # slow start: +1 per success
    t0 = time.monotonic()
    w.congestion(started_at=t0)
    assert w.limit == 7
    w.congestion(started_at=t0)  # began before the cut: same congestion event
    assert w.limit == 7
    for _ in range(7):
        w.success()  # congestion avoidance: +1/size per success, about +1 per window
    assert w.limit == 7  # 7 + 1/7 + 1/7.14 + ... = 7.95
    w.success()
    assert w.limit == 8
    for _ in range(3000):
        w.success()
    assert w.limit == 64  # the cap holds


def test_bucket_waits_for_refill_and_counts_what_is_in_flight() -> None:
    b = Bucket("requests")
    assert b.delay(0.0, 1.0) == 0.0  # nothing known yet: no pacing
    b.read({"requests-limit": "600", "requests-remaining": "3", "at": 100.0}, in_flight=2)
    assert b.delay(100.0, 1.0) == 0.0  # 3 left, 2 of them maybe taken by requests in flight
    b.take(1, now=100.0)
    assert b.delay(100.0, 1.0) == pytest.approx(0.1)  # 10 a second refill
    assert b.delay(100.1, 1.0) == pytest.approx(0.0)


def _reading(remaining: int, received: float, limit: int = 600) -> dict[str, Any]:
    return {"requests-limit": str(limit), "requests-remaining": str(remaining), "at": received}


def _paced(lag: float = 0.0) -> Mirror:
    pacer = Mirror()
    pacer.lag = lag
    pacer.observe(_reading(50, 99.0))  # 10 a second; the bucket holds 50 at least
    pacer.requests.views.clear()
    return pacer


def test_a_reading_is_dated_when_its_request_left_and_replayed_over_what_it_did_not_count() -> None:
    # A non-streamed answer carries the reading the server made when it admitted the request,
    # a whole latency ago: meanwhile the bucket refilled and later requests spent from it.
    pacer = _paced()
    first, second, third = pacer.take(100.0), pacer.take(100.1), pacer.take(100.2)
    for mark, left in ((first, 100.0), (second, 100.1), (third, 100.2)):
        pacer.sent(mark, left)
    # the first request's answer arrives at 100.3: 5 left when the server admitted it
    pacer.observe(_reading(5, 100.3), mark=first)
    # replayed: +1 by 100.1, -1; +1 by 100.2, -1; +1 by 100.3 = 6 (dated at receipt: 5 - 2 in flight)
    assert pacer.requests.available(100.3) == pytest.approx(6)


def test_the_replay_follows_the_order_requests_left_in_not_the_order_they_started() -> None:
    # A burst: the first start waits for a new connection, the second leaves at once on an open
    # one and is admitted first; its reading has not counted the first start, so the replay must.
    pacer = _paced()
    slow, fast = pacer.take(100.0), pacer.take(100.0)
    pacer.sent(fast, 100.0)
    pacer.sent(slow, 100.1)
    pacer.observe(_reading(5, 100.3), mark=fast)
    assert pacer.requests.available(100.3) == pytest.approx(5 + 3 - 1)
    # a start that has not left yet was not counted by any reading either
    pacer.requests.views.clear()
    waiting = pacer.take(100.3)
    pacer.observe(_reading(5, 100.31), mark=fast)
    assert pacer.requests.available(100.3) == pytest.approx(5 + 3 - 2)
    # a request that never left (its reading, if any, cannot be dated) is read prudently
    pacer.requests.views.clear()
    pacer.observe(_reading(5, 100.32), mark=waiting, in_flight=3)
    assert pacer.requests.available(100.32) == pytest.approx(5 - 3)


def test_the_mirror_is_the_lowest_of_its_recent_readings() -> None:
    # The server's threads race too: a reading that counted a request the replay thinks it did
    # not shows one more than it should. The lower reading holds; a lower one wins at once.
    pacer = _paced()
    a, b = pacer.take(100.0), pacer.take(100.0)
    pacer.sent(a, 100.0)
    pacer.sent(b, 100.0)  # left together: each reading may or may not count the other
    pacer.observe(_reading(5, 100.3), mark=a)   # replayed as 5 - 1 (b uncounted) + 3
    pacer.observe(_reading(6, 100.31), mark=b)  # 6 - 1 + 3: it raced, and is not believed
    assert pacer.requests.available(100.3) == pytest.approx(7)
    pacer.observe(_reading(1, 100.32), mark=b)  # someone else spends from the same account
    assert pacer.requests.available(100.3) == pytest.approx(3)


def test_starts_are_forgotten_once_no_reading_to_come_can_have_missed_them() -> None:
    pacer = _paced()
    marks = [pacer.take(100.0 + i) for i in range(5)]
    for i, mark in enumerate(marks):
        pacer.sent(mark, 100.0 + i + 0.01)
    pacer.forget(marks[2:])  # the first two finished; the rest started after they left
    assert list(pacer.starts) == marks[2:]
    pacer.forget([])
    assert not pacer.starts
    # a start that never left (refused before sending) is dropped once finished, even first in line,
    # and does not hold back the ones after it
    pacer.take(200.0)  # never leaves
    left, waiting = pacer.take(200.1), pacer.take(200.2)
    pacer.sent(left, 200.15)
    pacer.forget([waiting])
    assert list(pacer.starts) == [waiting]


def test_congestion_makes_the_mirror_date_readings_later() -> None:
    # The way to the server is unknown: a 429 despite the mirror means readings were made later
    # after the request left than assumed; each cut doubles that lag, within a bound.
    pacer = _paced(ADMIT_LAG)
    first = pacer.take(100.0)
    pacer.sent(first, 100.0)
    pacer.take(100.05)
    pacer.observe(_reading(5, 100.3), mark=first)
    before = pacer.requests.available(100.3)
    pacer.congested()
    pacer.requests.views.clear()
    pacer.observe(_reading(5, 100.31), mark=first)
    assert pacer.lag == pytest.approx(2 * ADMIT_LAG)
    assert pacer.requests.available(100.3) == pytest.approx(before - 10 * ADMIT_LAG)  # 10/s less refill
    for _ in range(50):
        pacer.congested()
    assert pacer.lag == MAX_ADMIT_LAG


def test_every_bucket_the_api_reports_paces_the_starts() -> None:
    pacer = Mirror()
    pacer.learn(Reply("x", [], "end_turn", None, Usage(30, 10), MODEL, "m"))
    assert pacer.cost("tokens") == 40 and pacer.cost("output-tokens") == 10
    pacer.observe({"requests-limit": "6000", "requests-remaining": "99", "tokens-limit": "12000",
                   "tokens-remaining": "100", "at": 100.0})
    assert pacer.spare(100.0) == pytest.approx(2.5)  # tokens bind: 100 / 40, not 99 requests
    assert pacer.delay(100.0) == 0
    pacer.take(100.0)
    pacer.take(100.0)
    assert pacer.delay(100.0) == pytest.approx((40 - 20) / 200)  # 200 tokens a second refill


def test_token_readings_rounded_to_the_thousand_are_taken_at_their_lowest() -> None:
    # The API rounds token remaining to the nearest thousand: "2000" may be 1,500.
    b = Bucket("input-tokens")
    b.read({"input-tokens-limit": "600000", "input-tokens-remaining": "2000", "at": 100.0})
    assert b.available(100.0) == 1500
    b.views.clear()
    b.read({"input-tokens-limit": "600000", "input-tokens-remaining": "2345", "at": 100.0})
    assert b.available(100.0) == 2345  # not a multiple of a thousand: exact
    r = Bucket("requests")
    r.read({"requests-limit": "600000", "requests-remaining": "2000", "at": 100.0})
    assert r.available(100.0) == 2000  # requests are exact


def test_the_rate_limit_mirror_never_promises_more_than_the_bucket_was_seen_to_hold() -> None:
    # A second run starts from the client's last reading; an old reading must not allow a burst
    # the server would refuse (its bucket holds at least the most ever seen remaining, maybe no more).
    bucket = Bucket("requests")
    bucket.read({"requests-limit": "600", "requests-remaining": "8", "at": 100.0})
    assert bucket.rate == 10.0 and bucket.available(100.0) == 8
    assert bucket.available(1_000.0) == 8  # an hour-old reading: still at most what was seen
    bucket.take(8, now=100.0)
    assert bucket.available(100.0) == 0
    assert bucket.available(100.5) == 5  # spent tokens refill like the server's (not frozen by the cap)
    assert bucket.available(200.0) == 8
    bucket.views.clear()  # (the mirror is the lowest of its recent readings: start afresh)
    bucket.read({"requests-limit": "600", "requests-remaining": "3", "at": 101.0}, in_flight=2)
    assert bucket.available(101.0) == 1 and bucket.available(101.2) == pytest.approx(3)
    bucket.take(1, now=101.2)
    assert bucket.available(101.2) == pytest.approx(2)
