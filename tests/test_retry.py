from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from claude_magic.errors import (
    APIConnectionError,
    BadRequestError,
    OverloadedError,
    RateLimitError,
    ServerError,
    SpendLimitReached,
)
from claude_magic.retry import RetryPolicy, parse_retry_after, should_retry


def test_retry_after_ms_wins_over_seconds() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25


def test_retry_after_seconds_has_no_60s_ceiling() -> None:
    assert parse_retry_after({"retry-after": "120"}) == 120.0
    assert RetryPolicy().delay(0, {"retry-after": "3600"}) == 3600.0


def test_retry_after_http_date() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after({"retry-after": formatdate(now + 30, usegmt=True)}, now=now) == pytest.approx(30)
    assert parse_retry_after({"retry-after": formatdate(now - 30, usegmt=True)}, now=now) == 0.0


@pytest.mark.parametrize("headers", [None, {}, {"retry-after": "soon"}, {"retry-after-ms": "x"}])
def test_unreadable_or_absent_retry_after_is_none(headers) -> None:
    assert parse_retry_after(headers) is None


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(initial=0.5, max_backoff=8.0, rng=random.Random(1))
    for attempt in range(10):
        ceiling = min(8.0, 0.5 * 2**attempt)
        samples = [policy.backoff(attempt) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8 and min(samples) < ceiling * 0.2  # spread over the whole range


def err(cls, status):
    return cls("x", status=status)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_retryable_statuses(status) -> None:
    assert should_retry(err(ServerError, status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_final_statuses(status) -> None:
    assert not should_retry(err(BadRequestError, status))


def test_x_should_retry_overrides_status_and_spend_cap_never_retries() -> None:
    assert not should_retry(err(OverloadedError, 529), {"x-should-retry": "false"})
    assert should_retry(err(BadRequestError, 400), {"x-should-retry": "true"})
    assert not should_retry(err(SpendLimitReached, 429))
    assert should_retry(err(RateLimitError, 429))
    assert should_retry(APIConnectionError("cut"))
    assert not should_retry(ValueError("x"))
