"""The retry/resume driver: runs the attempts of one admitted call until one answers, a failure is
final, or the call's clocks (``_call``) run out.

What it decides, after each failed attempt (``_attempt`` raises one translated error):

- **Whether to try again.** ``retry.should_retry`` (``x-should-retry`` first, then 408/409/429/5xx
  and connection failures); a malformed answer once only (not the protocol: once may be a proxy's
  hiccup, twice is not); a connection failure at most ``RetryPolicy.max_connect_retries`` times;
  an attempt that passed its time budget never.
- **How long to wait.** ``RetryPolicy.delay`` (``retry-after``, else backoff with jitter). A
  ``retry-after`` also pauses the request's bucket in the scheduler, so every request of the client
  to it waits (a batch's pause does not hold up an interactive request). A wait that would pass what
  is left of ``max_wait`` is not waited: the call gives up and says so.
- **What to send next.** A stream that broke after it started is resumed, not restarted: the next
  attempt asks for the rest (``Call.resume_body``) and a ``Seam`` joins it onto what was shown. Text
  once shown is never taken back: when the call cannot go on, its error carries the text
  (``StreamInterrupted.partial``).

``Driver.final`` shapes the error a call ends with: the error itself, with what was tried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from . import _wire
from ._attempt import OutOfTime, StreamBroken
from ._call import Call
from ._scheduler import Scheduler, Ticket
from .errors import (
    APIConnectionError,
    APIError,
    ClaudeError,
    MalformedResponseError,
    RateLimitError,
    StreamInterrupted,
)
from .reply import Usage
from .retry import RetryPolicy, should_retry

__all__ = ["Driver"]

log = logging.getLogger("claude_magic")
T = TypeVar("T")


class Driver:
    """Drives the attempts of ``call``, admitted with ``ticket``, under ``policy``; ``scheduler``
    holds the ``retry-after`` pauses of the call's bucket."""

    def __init__(self, call: Call, ticket: Ticket, scheduler: Scheduler, policy: RetryPolicy) -> None:
        self.call = call
        self.ticket = ticket
        self.scheduler = scheduler
        self.policy = policy

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds, the failure is final, or the time budget is spent."""
        call = self.call
        while True:
            await self._respect_pause()
            try:
                return await attempt()
            except OutOfTime as exc:
                raise self.final(APIConnectionError(str(exc)), gave_up=True) from None
            except (APIError, APIConnectionError, StreamBroken) as exc:
                error = exc.error if isinstance(exc, StreamBroken) else exc
                delay = self._delay(error, broken=isinstance(exc, StreamBroken))
                resumed = self._resume(exc.asm) if isinstance(exc, StreamBroken) else None
                call.sending = resumed or call.body
                if resumed is None:
                    call.retries += 1
                log.debug("attempt failed (%s); retrying in %.2f s", error, delay)
                await asyncio.sleep(delay)
                call.waited(delay)

    def _delay(self, error: ClaudeError | OutOfTime, *, broken: bool) -> float:
        """The seconds to wait before the next attempt after ``error``; raises the call's final
        error when there is to be none. ``broken``: the error broke a stream that had started."""
        call = self.call
        call.last_error = error
        if isinstance(error, OutOfTime):
            raise self.final(APIConnectionError(str(error)), gave_up=True) from None
        if isinstance(error, MalformedResponseError):
            call.malformed += 1  # not the protocol: once may be a proxy's hiccup, twice is not
            retry = call.malformed <= 1
        else:
            retry = should_retry(error, getattr(error, "headers", None))
        if not retry:
            raise self.final(error) from None
        if isinstance(error, APIConnectionError) and not broken:
            call.connect_failures += 1
            if call.connect_failures > self.policy.max_connect_retries:
                raise self.final(error, gave_up=True) from None
        delay = self.policy.delay(call.retries, getattr(error, "headers", None))
        if isinstance(error, APIError) and error.retry_after is not None:
            self.scheduler.pause(self.ticket.bucket, time.monotonic() + delay, self.ticket.priority)
        if delay > call.idle_left:
            raise self.final(error, gave_up=True, next_wait=delay) from None
        return delay

    def _resume(self, asm: _wire.MessageAssembler) -> dict[str, Any] | None:
        """Keep what the broken attempt cost and showed; the body that resumes, or None to start over."""
        call = self.call
        call.end_attempt()
        call.usage = call.usage + Usage.from_api(asm.usage)
        if not call.earlier_blocks:
            call.earlier_blocks = asm.content()
        body = call.resume_body(call.body["model"])
        if body is None:
            call.seam = None
            if call.shown:
                raise StreamInterrupted(
                    f"the stream broke too often to resume ({call.resumed + 1} breaks; "
                    f"last: {call.last_error})",
                    partial=call.shown, cause=call.last_error)
        return body

    async def _respect_pause(self) -> None:
        """Wait out a ``retry-after`` pause of the request's bucket (an interactive request waits out
        only a pause an interactive request was given: a batch's pause does not hold a person up)."""
        call, ticket = self.call, self.ticket
        while (wait := self.scheduler.paused(ticket.bucket, ticket.priority)) > 0:
            if wait > call.idle_left:
                pause = RateLimitError("the API asked requests to this model to wait (retry-after)",
                                       status=429, type="rate_limit_error")
                raise self.final(pause, gave_up=True, next_wait=wait)
            await asyncio.sleep(wait)
            call.waited(wait)

    def final(
        self, error: BaseException, *, gave_up: bool = False, next_wait: float | None = None
    ) -> ClaudeError:
        """The error to raise: with what was tried, and the partial text if some was shown."""
        call = self.call
        call.end_attempt()
        if not isinstance(error, ClaudeError):
            error = APIConnectionError(str(error))
        message = str(error)
        if gave_up:
            attempts = call.retries + call.resumed + 1
            message += f" (gave up after {attempts} attempt{'s' if attempts > 1 else ''}"
            if next_wait is not None:
                limit = self.policy.max_wait
                message += f"; the next wait of {next_wait:.0f} s would pass max_wait={limit:g} s"
            message += ")"
        if call.shown:
            return StreamInterrupted(f"incomplete answer: {message}", partial=call.shown, cause=error)
        if message == str(error):
            return error
        if isinstance(error, APIError):
            return type(error)(
                error.message + message[len(str(error)) :],
                status=error.status,
                type=error.type,
                request_id=error.request_id,
                retry_after=error.retry_after,
            )
        return type(error)(message)
