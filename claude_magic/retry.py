"""Which failures are retried, and how long to wait before the next attempt.

The shape follows the official SDK (``x-should-retry`` first, then the status;
``retry-after-ms``, then ``retry-after`` as seconds or as an HTTP date, RFC 9110
§10.2.3; otherwise exponential backoff) with three changes its users asked for:
no ceiling on a server-given ``retry-after``, full jitter (AWS architecture
blog, "Exponential Backoff and Jitter") and a total wait budget instead of a
fixed count of retries.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from .errors import APIConnectionError, APIError, SpendLimitReached

__all__ = ["RETRYABLE_STATUS", "RetryPolicy", "parse_retry_after", "should_retry"]

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, or None when it did not say."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def should_retry(error: BaseException, headers: Mapping[str, str] | None = None) -> bool:
    """Whether another attempt can succeed where this one failed."""
    if isinstance(error, APIConnectionError):
        return True
    if not isinstance(error, APIError):
        return False
    hint = (headers or {}).get("x-should-retry")
    if hint == "true":
        return True
    if hint == "false" or isinstance(error, SpendLimitReached):
        return False
    return error.status in RETRYABLE_STATUS


@dataclass
class RetryPolicy:
    """How long to wait between attempts.

    ``max_wait`` bounds the total time one call spends waiting (seconds); a
    ``retry-after`` longer than what is left ends the call at once rather than
    sleeping in vain. ``max_connect_retries`` bounds retries of refused
    connections, which mostly mean a wrong URL rather than a passing fault.
    """

    max_wait: float = 600.0
    initial: float = 0.5
    max_backoff: float = 32.0
    max_connect_retries: int = 3
    rng: Any = random

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform between 0 and the exponential ceiling for this attempt."""
        ceiling = min(self.max_backoff, self.initial * 2 ** min(attempt, 60))  # 2**1024 overflows
        return float(self.rng.uniform(0, ceiling))

    def delay(self, attempt: int, headers: Mapping[str, str] | None = None) -> float:
        after = parse_retry_after(headers)
        return after if after is not None else self.backoff(attempt)
