"""One attempt at a request: the message (a dict) it answered, or one translated error.

An attempt sends one request over the client's connection pool, reads the answer within bounds and
notes what every answer carries: the ``anthropic-ratelimit-*`` reading and the request id. Its
failures reach the layer above as the package's errors only (``_http`` translates the transport's
exceptions once, as httpx maps httpcore's at its transport), plus two of this layer's own:

- ``StreamBroken``: a stream that started (HTTP 200) and broke before ``message_stop``. It carries
  what was assembled so far, so that the driver above (``_driver``) can resume from it.
- ``OutOfTime``: the attempt passed its call's time budget (see ``_call``): final, never retried.
  A ``_Watchdog`` enforces the budget: one timer per attempt, re-armed lazily as content moves the
  deadline, nothing per token.

Nothing here retries, sleeps or decides what is worth another attempt: that is ``_driver``'s job.
Below: ``_http`` (the key at the transport, bounded reads, transport errors) and ``_wire`` (the
JSON, the stream's events).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource

from . import _http, _httpcore_fix, _wire
from ._call import READ_TIMEOUT_BASE, Call, read_timeout
from ._wire import StreamError, TextDelta, ThinkingDelta
from .errors import APIConnectionError, APIError, ClaudeError, MalformedResponseError

__all__ = ["CONNECT_TIMEOUT", "Attempts", "OutOfTime", "StreamBroken"]

T = TypeVar("T")

CONNECT_TIMEOUT = 5.0
CONTENT_TICK = 0.25  # s: how often a producing stream settles its clocks (see _call), not per token


class OutOfTime(Exception):
    """An attempt passed its call's time budget (see ``_call``): final, never retried."""


class StreamBroken(Exception):
    """A stream that started (HTTP 200) and broke before ``message_stop``."""

    def __init__(self, asm: _wire.MessageAssembler, error: ClaudeError | OutOfTime) -> None:
        self.asm = asm
        self.error = error
        super().__init__(str(error))


class _Watchdog:
    """Cancels the current task when its call's deadline passes; the deadline may move later as
    content arrives (one timer, re-armed lazily: nothing per token)."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.task = asyncio.current_task()
        self.loop = asyncio.get_running_loop()
        self.fired = False
        self.handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> _Watchdog:
        self._check()
        return self

    def _check(self) -> None:
        left = self.call.deadline() - time.monotonic()
        if left > 0:
            self.handle = self.loop.call_later(left, self._check)
        elif self.task is not None:
            self.fired = True
            self.task.cancel()

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            self.handle.cancel()

    def expired(self, base_url: str) -> OutOfTime:
        uncancel = getattr(self.task, "uncancel", None)
        if uncancel is not None:
            uncancel()
        return OutOfTime(self.call.expired_reason(base_url))


class Attempts:
    """Single attempts at ``base_url``, over one connection pool (opened on first use, on the loop
    that uses it). ``auth`` adds the key at the transport; ``transport`` is an httpx async transport
    (``httpx.MockTransport`` in tests).

    ``ratelimit`` is the newest ``anthropic-ratelimit-*`` reading of any answer (``{}`` before the
    first); a message attempt also leaves its answer's reading and request id on its ``Call``.
    """

    def __init__(
        self, base_url: str, auth: httpx.Auth, *, api_version: str,
        transport: httpx.AsyncBaseTransport | None = None, max_connections: int = 100,
    ) -> None:
        self.base_url = base_url
        self._auth = auth
        self._api_version = api_version
        self._transport = transport
        self._max_connections = max_connections
        self._pool: httpx.AsyncClient | None = None
        self.ratelimit: dict[str, Any] = {}

    def _http(self) -> httpx.AsyncClient:
        if self._pool is None:
            _httpcore_fix.apply()
            self._pool = httpx.AsyncClient(
                base_url=self.base_url,
                transport=self._transport,
                auth=self._auth,
                timeout=httpx.Timeout(READ_TIMEOUT_BASE, connect=CONNECT_TIMEOUT, pool=None),
                limits=httpx.Limits(
                    max_connections=self._max_connections, max_keepalive_connections=self._max_connections
                ),
                headers={"anthropic-version": self._api_version, "user-agent": "claude_magic"},
            )
        return self._pool

    @property
    def opened(self) -> bool:
        """Whether the connection pool was opened (and so has to be closed, by ``aclose``)."""
        return self._pool is not None

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    # -- the three kinds of attempt ----------------------------------------------------------------

    async def message(self, call: Call, headers: dict[str, str]) -> dict[str, Any]:
        """POST ``call.sending`` to ``/v1/messages`` and read the whole answer, bounded by the read
        timeout its ``max_tokens`` allows."""
        limit = read_timeout(call.body["max_tokens"])
        request = self._http().build_request(
            "POST", "/v1/messages", json=call.sending, headers=headers,
            timeout=httpx.Timeout(limit, connect=CONNECT_TIMEOUT, pool=None),
            extensions=_http.sent_hook(call.sent),
        )
        return await self._whole(call, self._post_exchange(call, request), limit + CONNECT_TIMEOUT)

    async def stream(self, call: Call, headers: dict[str, str], idle_timeout: float) -> dict[str, Any]:
        """Stream ``call.sending`` from ``/v1/messages``, handing text and thinking to ``call`` as they
        arrive; the assembled message, or ``StreamBroken`` once the stream has started.
        ``idle_timeout``: the longest silence between two events."""
        asm = _wire.MessageAssembler()
        request = self._http().build_request(
            "POST",
            "/v1/messages",
            json={**call.sending, "stream": True},
            headers={**headers, "accept": "text/event-stream"},
            timeout=httpx.Timeout(idle_timeout, connect=CONNECT_TIMEOUT, pool=None),
            extensions=_http.sent_hook(call.sent),
        )
        call.begin_attempt()
        try:
            with _Watchdog(call) as watchdog:
                try:
                    return await self._stream_exchange(call, request, asm, idle_timeout)
                except asyncio.CancelledError:
                    if watchdog.fired:
                        call.end_attempt()
                        raise StreamBroken(asm, watchdog.expired(self.base_url)) from None
                    raise
        finally:
            call.end(produced=False)

    async def json(
        self, call: Call, method: str, path: str, *, body: Any, params: dict[str, Any] | None,
        headers: dict[str, str], lines: bool, files: dict[str, Any] | None = None,
    ) -> Any:
        """One JSON (or, with ``lines``, JSON lines) exchange with another endpoint; ``files``: a
        multipart upload instead of a JSON body (httpx's ``files=``)."""
        content = {"files": files, "data": body} if files is not None else {"json": body}
        request = self._http().build_request(method, path, params=params, headers=headers,
                                             extensions=_http.sent_hook(call.sent), **content)
        limit = READ_TIMEOUT_BASE + CONNECT_TIMEOUT
        return await self._whole(call, self._json_exchange(request, lines), limit)

    # -- what every answer goes through ------------------------------------------------------------

    def _note_headers(self, headers: httpx.Headers, call: Call | None = None) -> None:
        """Keep the answer's ``anthropic-ratelimit-*`` reading: the call's, and the newest."""
        rl = _http.ratelimit_of(headers)
        if rl is not None:
            self.ratelimit = rl
            if call is not None:
                call.ratelimit = rl
                if call.on_reading is not None:
                    call.on_reading(rl)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._http().send(request, stream=True)
        except httpx.TransportError as exc:
            timeout = request.extensions.get("timeout", {}).get("read")
            raise _http.transport_error(exc, self.base_url, answered=False, timeout=timeout) from None

    async def _error_of(self, response: httpx.Response) -> APIError:
        """The error a non-200 answer stands for, its body read up to a bound."""
        try:
            content, _ = await _http.read_capped(response, _http.ERROR_BODY_LIMIT)
        except httpx.TransportError:
            content = b""
        return _http.api_error(response, content, self.base_url)

    async def _answered(self, call: Call, response: httpx.Response) -> None:
        """Note what every answer carries (rate-limit reading, request id); raise a non-200's error."""
        self._note_headers(response.headers, call)
        call.request_id = response.headers.get("request-id")
        if response.status_code != 200:
            raise await self._error_of(response)

    async def _whole(self, call: Call, exchange: Awaitable[T], seconds: float) -> T:
        """One attempt whose answer comes whole (not streamed), bounded by ``seconds``: its time
        counts as producing if it succeeds, as idle if it fails (see ``_call``)."""
        call.begin_attempt(deadline=time.monotonic() + seconds)
        produced = False
        try:
            with _Watchdog(call) as watchdog:
                try:
                    result = await exchange
                except asyncio.CancelledError:
                    if watchdog.fired:
                        raise watchdog.expired(self.base_url) from None
                    raise
            produced = True
            return result
        finally:
            call.end(produced)

    # -- the exchanges -----------------------------------------------------------------------------

    async def _post_exchange(self, call: Call, request: httpx.Request) -> dict[str, Any]:
        response = await self._send(request)
        try:
            await self._answered(call, response)
            try:
                content, too_long = await _http.read_capped(response, _http.REPLY_LIMIT)
            except httpx.TransportError as exc:
                raise _http.transport_error(exc, self.base_url, answered=True) from None
            if too_long:
                raise _http.malformed(f"the answer from {self.base_url} is larger than "
                                      f"{_http.REPLY_LIMIT // 2**20} MB", response)
            _http.check_content_type(response, "application/json", self.base_url, content)
            try:
                return _wire.parse_message(content, self.base_url)
            except MalformedResponseError as exc:
                exc.request_id = call.request_id
                raise
        finally:
            await response.aclose()

    async def _stream_exchange(self, call: Call, request: httpx.Request, asm: _wire.MessageAssembler,
                               idle_timeout: float) -> dict[str, Any]:
        response = await self._send(request)
        try:
            await self._answered(call, response)
            try:
                _http.check_content_type(response, "text/event-stream", self.base_url)
            except MalformedResponseError as exc:
                raise StreamBroken(asm, exc) from None
            await self._read_events(call, asm, response, idle_timeout)
        finally:
            await response.aclose()
        return {**asm.message, "content": asm.content(), "usage": asm.usage}

    async def _read_events(self, call: Call, asm: _wire.MessageAssembler, response: httpx.Response,
                           idle_timeout: float) -> None:
        stopped = False
        try:
            monotonic = time.monotonic
            async for sse in EventSource(response).aiter_sse():
                event = asm.feed(sse.event, sse.data)
                # Content arrived: settle the clocks, at most every CONTENT_TICK s (not per token).
                if sse.event not in ("ping", "message_start") and (
                        not call.attempt_content or monotonic() - call.mark > CONTENT_TICK):
                    call.content()
                if event is None:
                    continue
                if isinstance(event, TextDelta):
                    call.text(event.text)
                elif isinstance(event, ThinkingDelta):
                    call.think(event.text)
                elif isinstance(event, StreamError):
                    raise StreamBroken(asm, _wire.error_from_event(event.data, call.request_id))
                else:
                    stopped = True
                    break
        except httpx.TransportError as exc:
            error = _http.transport_error(exc, self.base_url, answered=True, timeout=idle_timeout)
            raise StreamBroken(asm, error) from None
        except MalformedResponseError as exc:
            exc.request_id = call.request_id
            raise StreamBroken(asm, exc) from None
        if not stopped:
            raise StreamBroken(
                asm,
                APIConnectionError(f"the stream from {self.base_url} ended before message_stop (truncated)"),
            )
        call.end_attempt()

    async def _json_exchange(self, request: httpx.Request, lines: bool) -> Any:
        response = await self._send(request)
        try:
            self._note_headers(response.headers)
            if response.status_code != 200:
                raise await self._error_of(response)
            try:
                # results of a Message Batch may be large; anything else is small
                content, too_long = await _http.read_capped(response, 2**31 if lines else _http.REPLY_LIMIT)
            except httpx.TransportError as exc:
                raise _http.transport_error(exc, self.base_url, answered=True) from None
            if too_long:
                raise _http.malformed(f"the answer from {self.base_url} is too large", response)
            if lines:
                return [_wire.parse_json(line, self.base_url)
                        for line in content.splitlines() if line.strip()]
            _http.check_content_type(response, "application/json", self.base_url, content)
            return _wire.parse_json(content, self.base_url)
        finally:
            await response.aclose()
