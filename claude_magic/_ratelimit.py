"""A mirror of the account's rate-limit buckets, built from the ``anthropic-ratelimit-*`` headers.

The scheduler keeps one :class:`Mirror` per bucket the API has (per model class for messages;
count_tokens, Message Batches and Files apart) and paces every request by it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from .reply import Reply

__all__ = ["ADMIT_LAG", "MAX_ADMIT_LAG", "SENT_SLACK", "Allowance", "Bucket", "Mirror", "Spend"]

ADMIT_LAG = 0.01                      # s: from a request leaving to its reading (first guess)
SENT_SLACK = 0.002                    # s: requests that left this much earlier may arrive later
MAX_ADMIT_LAG = 1.0


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class Bucket:
    """The account's token bucket for one limit (``anthropic-ratelimit-<name>-*``), mirrored.

    The server reads its bucket when it admits a request and sends that reading with the
    answer; for a non-streamed answer that is a whole latency later, and meanwhile the bucket
    refilled and other requests spent from it. So a reading is dated when its request left and
    replayed like the server would: refill (capped at the most ever seen remaining), minus each
    request the reading did not count (see :meth:`Mirror.observe`). Dated at receipt instead,
    the mirror would lag by rate x latency requests, and the server's bucket would idle that
    full for the whole run.

    The mirror is the lowest of the last ``KEEP`` replayed readings: one reading that counted
    a request the replay thinks it did not (the server's threads race too) cannot promise a
    start the server would refuse.
    """

    KEEP = 8

    def __init__(self, name: str) -> None:
        self.name = name
        self.rate: float | None = None
        # The most ever seen remaining: the bucket holds at least that much, and the mirror never
        # refills beyond it (an old reading must not promise a burst the server will refuse).
        self.ceiling = 0.0
        self.views: deque[list[float]] = deque(maxlen=self.KEEP)  # [level, at] per replayed reading

    def _refilled(self, level: float, since: float, now: float) -> float:
        assert self.rate is not None
        level += self.rate * max(0.0, now - since)
        return min(self.ceiling, level) if self.ceiling >= 1 else level

    def read(self, ratelimit: Mapping[str, Any], *, at: float | None = None, uncounted: Iterable[float] = (),
             cost: float = 1.0, in_flight: int = 0) -> None:
        """Take a reading the server made at ``at`` (our clock), before the requests that left at
        the times ``uncounted`` (ascending), each of which spends ``cost``.

        Without ``at`` (a retried request: which attempt's reading is it?) the reading is dated
        at receipt less ``in_flight`` requests: everything in flight may be uncounted.
        """
        limit = _number(ratelimit.get(f"{self.name}-limit"))
        remaining = _number(ratelimit.get(f"{self.name}-remaining"))
        received = _number(ratelimit.get("at"))
        if limit is None or remaining is None or received is None or limit <= 0:
            return
        if self.name != "requests" and remaining % 1000 == 0:
            remaining -= 500  # token counts are rounded to the nearest thousand: maybe up by 500
        self.rate = limit / 60.0
        self.ceiling = max(self.ceiling, remaining)
        if at is None:
            self.views.append([remaining - in_flight * cost, received])
            return
        level = remaining
        for left in uncounted:
            level = self._refilled(level, at, left) - cost
            at = max(at, left)
        self.views.append([level, at])

    def available(self, now: float) -> float | None:
        if self.rate is None or not self.views:
            return None
        return min(self._refilled(level, at, now) for level, at in self.views)

    def delay(self, now: float, cost: float, keep: float = 0.0) -> float:
        """Seconds until ``cost`` can be spent leaving at least ``keep`` in the bucket."""
        available = self.available(now)
        if available is None or cost <= 0 or self.rate is None:
            return 0.0
        if self.ceiling >= 1:  # the mirror never holds more than that: keeping more would wait forever
            keep = min(keep, max(0.0, self.ceiling - cost))
        need = cost + keep
        return 0.0 if available >= need else (need - available) / self.rate

    def headroom(self, cost: float) -> float:
        """What batch work leaves in the bucket so that an interactive request of ``cost`` is
        admitted at once: two such requests (three for the requests bucket: the mirror may be a
        request off), but never more than half the bucket nor, for requests, more than a second of
        refill beyond three. It is a
        level, not a rate: the batch loses it once, not per second."""
        if self.rate is None:
            return 0.0
        if self.name == "requests":
            return max(3.0, min(0.1 * self.ceiling, self.rate))
        return min(0.5 * self.ceiling, 2.0 * cost)

    def take(self, cost: float, now: float) -> None:
        """Spend ``cost`` now, in every view as the server would (refill capped, then spent)."""
        if self.rate is not None:
            for view in self.views:
                view[0] = self._refilled(view[0], view[1], now) - cost
                view[1] = now


class Mirror:
    """Request starts paced by every bucket the API reports: requests, and the tokens ones
    (``input-tokens``, ``output-tokens``, and ``tokens`` for both), each spent by what an
    average request of this run costs it."""

    NAMES = ("requests", "input-tokens", "output-tokens", "tokens")

    def __init__(self) -> None:
        self.buckets = {name: Bucket(name) for name in self.NAMES}
        self.interactive_tokens = (0.0, 0.0)  # (input, output) of an interactive request, averaged
        self.requests = self.buckets["requests"]
        self.seen_at: Any = None
        self.input_tokens = 0.0   # per request, a moving average (prompts of a run are alike, not equal)
        self.output_tokens = 0.0
        # How long after it left a request is admitted (and its reading made). Guessed short; a
        # longer way to the server shows as a 429 despite the mirror: then doubled.
        self.lag = ADMIT_LAG
        # Every start not yet forgotten: mark -> [started, left] (left = inf until it has).
        self.starts: dict[int, list[float]] = {}
        self.mark = 0

    def cost(self, name: str) -> float:
        return {"requests": 1.0, "input-tokens": self.input_tokens, "output-tokens": self.output_tokens,
                "tokens": self.input_tokens + self.output_tokens}[name]

    def take(self, now: float) -> int:
        """Spend one request's worth from every bucket; returns the start's mark."""
        for name, bucket in self.buckets.items():
            bucket.take(self.cost(name), now)
        self.mark += 1
        self.starts[self.mark] = [now, math.inf]
        return self.mark

    def sent(self, mark: int, at: float) -> None:
        """The request of ``mark`` left (again, for a retry) at ``at``."""
        if (start := self.starts.get(mark)) is not None:
            start[1] = at

    def forget(self, in_flight: Iterable[int]) -> None:
        """Drop the finished starts no reading to come can have missed: those that left (a little)
        before every request still in flight started, and those that never left (refused before
        a byte went out: no server counts them)."""
        alive = set(in_flight)
        floor = min((self.starts[m][0] for m in alive if m in self.starts), default=math.inf) - SENT_SLACK
        gone = [m for m, (_, left) in self.starts.items()
                if m not in alive and (left < floor or left == math.inf)]
        for mark in gone:
            del self.starts[mark]

    def observe(self, ratelimit: Mapping[str, Any], *, mark: int | None = None, in_flight: int = 0) -> None:
        """Read the headers of the answer to the start ``mark``: the server counted the requests
        that reached it first, i.e. (give or take ``SENT_SLACK``) that left before this one; the
        rest are replayed. Without ``mark`` (or if it never left), dated at receipt, less
        ``in_flight`` requests."""
        received = ratelimit.get("at")
        if received is None or received == self.seen_at:
            return
        self.seen_at = received
        start = self.starts.get(mark) if mark is not None else None
        at: float | None = None
        uncounted: list[float] = []
        if start is not None and start[1] < math.inf:
            left = start[1]
            at = left + self.lag
            uncounted = sorted(min(s, w) if w == math.inf else w for m, (s, w) in self.starts.items()
                               if m != mark and w > left - SENT_SLACK)
        for name, bucket in self.buckets.items():
            bucket.read(ratelimit, at=at, uncounted=uncounted, cost=self.cost(name), in_flight=in_flight)

    def left(self, mark: int) -> float | None:
        """When the request of ``mark`` left (None: it has not, or is forgotten)."""
        start = self.starts.get(mark)
        return start[1] if start is not None and start[1] < math.inf else None

    def adopt(self, ratelimit: Mapping[str, Any], at: float, now: float) -> None:
        """Take a reading another client made at ``at`` (our clock): only this client's own starts
        since are replayed (the others are paced by their share)."""
        uncounted = sorted(min(s, w) if w == math.inf else w for s, w in self.starts.values()
                           if w > at - SENT_SLACK)
        reading = {**ratelimit, "at": now}
        for name, bucket in self.buckets.items():
            bucket.read(reading, at=at, uncounted=uncounted, cost=self.cost(name))

    def costs(self) -> dict[str, float]:
        """What an average request of this run spends from each bucket."""
        return {name: self.cost(name) for name in self.NAMES}

    def rates(self) -> dict[str, float]:
        """Each known bucket's refill per second."""
        return {name: bucket.rate for name, bucket in self.buckets.items() if bucket.rate}

    def congested(self) -> None:
        self.lag = min(MAX_ADMIT_LAG, self.lag * 2)

    def learn(self, reply: Reply, interactive: bool = False) -> None:
        def average(old: float, new: float) -> float:
            return new if not old else 0.9 * old + 0.1 * new

        if interactive:
            old_in, old_out = self.interactive_tokens
            self.interactive_tokens = (average(old_in, reply.usage.total_input),
                                       average(old_out, reply.usage.output_tokens))
            return
        self.input_tokens = average(self.input_tokens, reply.usage.total_input)
        self.output_tokens = average(self.output_tokens, reply.usage.output_tokens)

    def _interactive_cost(self, name: str) -> float:
        tokens_in = max(self.interactive_tokens[0], self.input_tokens)
        tokens_out = max(self.interactive_tokens[1], self.output_tokens)
        return {"requests": 1.0, "input-tokens": tokens_in, "output-tokens": tokens_out,
                "tokens": tokens_in + tokens_out}[name]

    def delay(self, now: float, headroom: bool = False, unseen: Mapping[str, float] | None = None) -> float:
        """Seconds until a request can start; with ``headroom``, one that must leave room in every
        bucket for interactive requests (see :meth:`Bucket.headroom`), plus ``unseen``: what other
        clients spend that no reading of ours has counted yet (their starts since our last one)."""
        unseen = unseen or {}
        return max(bucket.delay(now, self.cost(name),
                                bucket.headroom(self._interactive_cost(name)) + unseen.get(name, 0.0)
                                if headroom else 0.0)
                   for name, bucket in self.buckets.items())

    def spare(self, now: float) -> float | None:
        """How many more requests the buckets hold now (None: no bucket known yet)."""
        counts = [level / cost for name, bucket in self.buckets.items()
                  if (cost := self.cost(name)) > 0 and (level := bucket.available(now)) is not None]
        return min(counts) if counts else None


class Spend:
    """What a client spends per second from each bucket: an exponentially decaying sum of its
    starts' costs (time constant ``TAU``), so a steady ``r`` requests a second reads ``r``."""

    TAU = 2.0

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.at = 0.0

    def _decay(self, now: float) -> float:
        return math.exp(-max(0.0, now - self.at) / self.TAU)

    def add(self, now: float, costs: Mapping[str, float]) -> None:
        factor = self._decay(now)
        for name, cost in costs.items():
            self.values[name] = self.values.get(name, 0.0) * factor + cost / self.TAU
        for name in self.values.keys() - costs.keys():
            self.values[name] *= factor
        self.at = now

    def per_second(self, now: float) -> dict[str, float]:
        factor = self._decay(now)
        return {name: value * factor for name, value in self.values.items() if value * factor > 1e-3}


class Allowance:
    """A client's share of a bucket shared with other clients: per limit, a token bucket refilled at
    the share's rate and holding ``HOLD`` seconds of it (at least one request's cost). Batch starts
    wait for it as well as for the mirror of the bucket itself."""

    HOLD = 1.0
    NONE = 60.0  # s: the wait a share of nothing gives (until the next beat changes it)

    def __init__(self) -> None:
        self.rates: dict[str, float] = {}
        self.levels: dict[str, float] = {}
        self.costs: dict[str, float] = {}
        self.at: float | None = None

    def _capacity(self, name: str) -> float:
        return max(self.costs.get(name, 0.0), self.rates[name] * self.HOLD)

    def _refill(self, now: float) -> None:
        if self.at is not None and now <= self.at:
            return  # before the end of a pause it was emptied for: nothing refills yet
        if self.at is not None:
            for name, rate in self.rates.items():
                refilled = self.levels.get(name, 0.0) + rate * (now - self.at)
                self.levels[name] = min(self._capacity(name), refilled)
        self.at = now

    def set(self, rates: Mapping[str, float], costs: Mapping[str, float], now: float) -> None:
        """A new share (per second of each limit). A new limit starts empty: a share begins when
        another client joined the bucket, which its mirror has not seen spend yet, so no burst."""
        self._refill(now)
        self.rates = {name: max(0.0, rate) for name, rate in rates.items()}
        self.costs = dict(costs)
        for name in self.rates:
            self.levels[name] = min(self.levels.get(name, 0.0), self._capacity(name))

    def delay(self, now: float, costs: Mapping[str, float]) -> float:
        """Seconds until a start costing ``costs`` fits the share."""
        self._refill(now)
        waits = [(costs[name] - self.levels.get(name, 0.0)) / rate if rate > 0 else self.NONE
                 for name, rate in self.rates.items() if costs.get(name, 0.0) > self.levels.get(name, 0.0)]
        return max(waits, default=0.0)

    def empty(self, at: float) -> None:
        """Nothing saved up to ``at`` (the end of a pause): the share refills from then."""
        self.levels = dict.fromkeys(self.rates, 0.0)
        self.at = max(self.at or at, at)

    def take(self, now: float, costs: Mapping[str, float]) -> None:
        self._refill(now)
        for name in self.rates:
            self.levels[name] = self.levels.get(name, 0.0) - costs.get(name, 0.0)
