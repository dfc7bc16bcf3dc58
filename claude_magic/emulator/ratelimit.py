"""Requests-per-minute and tokens-per-minute limits as token buckets (api-notes §3).

Each bucket holds up to ``capacity`` units and refills continuously at ``per_minute / 60`` a second.
A request is admitted when the requests bucket holds one unit and the tokens bucket holds the
request's tokens (input + output; a request larger than the capacity waits for a full bucket and
leaves the bucket in debt). Otherwise it is answered 429 with ``retry-after`` in whole seconds.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timezone


def rfc3339(wall: float) -> str:
    """RFC 3339 UTC with milliseconds, as the ``*-reset`` headers use."""
    stamp = datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class Bucket:
    def __init__(self, per_minute: float, capacity: float | None = None) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, capacity if capacity is not None else self.rate)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` (at most the capacity) is available; 0 if it is now."""
        need = min(amount, self.capacity) - self.level
        return max(0.0, need / self.rate) if self.rate > 0 else math.inf

    def headers(self, prefix: str, now: float, nearest: int = 1) -> dict[str, str]:
        """``remaining`` rounded down, or to the nearest ``nearest`` (the API rounds token counts
        to the nearest thousand, api-notes §3)."""
        full_in = max(0.0, (self.capacity - self.level) / self.rate) if self.rate > 0 else 0.0
        wall = time.time() + full_in
        level = max(0.0, self.level)
        remaining = math.floor(level) if nearest == 1 else math.floor(level / nearest + 0.5) * nearest
        return {
            f"{prefix}-limit": str(int(self.limit)),
            f"{prefix}-remaining": str(remaining),
            f"{prefix}-reset": rfc3339(wall),
        }


class RateLimiter:
    """The limits of one server. ``rpm``/``tpm`` None = unlimited (and no headers for it)."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None,
                 burst: float | None = None) -> None:
        self._lock = threading.Lock()
        self.requests = Bucket(rpm, burst) if rpm else None
        self.tokens = Bucket(tpm) if tpm else None

    def admit(self, cost_tokens: int) -> tuple[float, dict[str, str]]:
        """Take one request and ``cost_tokens``; returns (0, headers) or (seconds to wait, headers)."""
        now = time.monotonic()
        with self._lock:
            for bucket in (self.requests, self.tokens):
                if bucket is not None:
                    bucket.refill(now)
            wait = max(self.requests.wait_for(1) if self.requests else 0.0,
                       self.tokens.wait_for(cost_tokens) if self.tokens else 0.0)
            if wait <= 0:
                if self.requests:
                    self.requests.level -= 1
                if self.tokens:
                    self.tokens.level -= cost_tokens
            return wait, self._headers(now)

    def headers(self) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            for bucket in (self.requests, self.tokens):
                if bucket is not None:
                    bucket.refill(now)
            return self._headers(now)

    def _headers(self, now: float) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.requests:
            out.update(self.requests.headers("anthropic-ratelimit-requests", now))
        if self.tokens:
            # one bucket limits input and output together; the split headers show that same bucket
            for prefix in ("tokens", "input-tokens", "output-tokens"):
                out.update(self.tokens.headers(f"anthropic-ratelimit-{prefix}", now, nearest=1000))
        return out
