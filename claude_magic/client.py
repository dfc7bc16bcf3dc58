"""``Client``: one cached, retrying, streaming client for the Messages API.

The client owns one asyncio loop in a daemon thread and one ``httpx.AsyncClient``
on it. ``complete`` (sync) submits a coroutine to that loop and hands streamed
text to the caller's thread through a queue, so display updates happen where the
caller is; ``acomplete`` awaits the same coroutine from any loop, Jupyter's
included. One implementation of the logic, two doors. A cache hit is answered on
the caller's thread without touching the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource

from . import _httpcore_fix, _wire
from .cache import ResponseCache
from .errors import (
    APIConnectionError,
    APIError,
    CacheMiss,
    ClaudeError,
    ConfigError,
    MissingAPIKey,
    StreamInterrupted,
)
from .reply import Reply, Usage
from .retry import RetryPolicy, parse_retry_after, should_retry

__all__ = ["CONTINUE_PROMPT", "Client", "read_timeout"]

log = logging.getLogger("claude_magic")
T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.anthropic.com"
CONNECT_TIMEOUT = 5.0
# Non-streaming read timeout: 60 s for the time to first byte, plus 30 ms per token of
# max_tokens (the official SDK expects 128,000 tokens an hour, 28 ms a token).
READ_TIMEOUT_BASE = 60.0
READ_TIMEOUT_PER_TOKEN = 0.030
# Streaming: the longest silence between two events (the API pings while it thinks).
STREAM_IDLE_TIMEOUT = 90.0
MAX_RESUMES = 8
CONTINUE_PROMPT = (
    "Your previous answer was cut off. Continue exactly where it stopped, mid-sentence or mid-word if "
    "need be, without repeating anything and without any preamble."
)
_DONE = object()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def read_timeout(max_tokens: int) -> float:
    """Read timeout of a non-streaming request (see README: timeouts)."""
    return READ_TIMEOUT_BASE + READ_TIMEOUT_PER_TOKEN * max_tokens


class _Seam:
    """Joins the continuation of a broken stream onto the text already shown.

    ``base`` is what was sent back (the shown text, trailing whitespace stripped as the
    API demands). With ``overlap`` (a follow-up turn) the continuation may repeat the
    end of ``base``: the longest such repeat of at least ``MIN_OVERLAP`` characters is
    dropped. Then whitespace the continuation repeats from the stripped tail is dropped.
    Text is held back only until the seam is decided, then passes straight through.
    """

    MIN_OVERLAP = 4
    WINDOW = 400

    def __init__(self, shown: str, *, overlap: bool) -> None:
        self.base = shown.rstrip()
        self.ws = shown[len(self.base) :]
        self.tail = self.base[-self.WINDOW :]
        self.overlap = overlap
        self.pending = ""
        self.open = True

    def feed(self, delta: str, final: bool = False) -> str:
        if not self.open:
            return delta
        self.pending += delta
        p = self.pending
        k = 0
        if self.overlap:
            if not final and p in self.tail:
                return ""  # the continuation may still be repeating us
            k = next(
                (
                    n
                    for n in range(min(len(p), len(self.tail)), self.MIN_OVERLAP - 1, -1)
                    if self.tail.endswith(p[:n])
                ),
                0,
            )
        rest = p[k:]
        common = 0
        for a, b in zip(rest, self.ws):  # noqa: B905 (stops at the shorter on purpose)
            if a != b:
                break
            common += 1
        if common == len(rest) and common < len(self.ws) and not final:
            return ""  # so far only whitespace we already showed
        self.open = False
        return rest[common:] if common else rest

    def flush(self) -> str:
        return self.feed("", final=True) if self.open and self.pending else ""


class _StreamBroken(Exception):
    """A stream that started (HTTP 200) and broke before ``message_stop``."""

    def __init__(self, asm: _wire.MessageAssembler, error: ClaudeError) -> None:
        self.asm = asm
        self.error = error
        super().__init__(str(error))


class _Call:
    """The state of one ``complete`` across its attempts."""

    def __init__(self, body: dict[str, Any], emit: Callable[[str], Any] | None, started: float,
                 on_sent: Callable[[float], Any] | None = None) -> None:
        self.body = body  # as asked; attempts send ``sending`` (the resumed body after a break)
        self.sending = body
        self.emit = emit
        self.started = started
        self.parts: list[str] = []
        self.seam: _Seam | None = None
        self.retries = 0
        self.resumed = 0
        self.connect_failures = 0
        self.waited = 0.0
        self.usage = Usage()
        self.earlier_blocks: list[dict[str, Any]] = []
        self.ttft: float | None = None
        self.request_id: str | None = None
        self.on_sent = on_sent  # called with time.monotonic() when an attempt's request has left

    @property
    def shown(self) -> str:
        return "".join(self.parts)

    def text(self, delta: str) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.started
        if self.seam is not None:
            delta = self.seam.feed(delta)
        if delta:
            self.parts.append(delta)
            if self.emit is not None:
                self.emit(delta)

    def think(self, delta: str) -> None:
        if self.emit is not None:
            self.emit(_Thought(delta))

    def end_attempt(self) -> None:
        if self.seam is not None and (rest := self.seam.flush()):
            self.parts.append(rest)
            if self.emit is not None:
                self.emit(rest)

    def resume_body(self, model: str) -> dict[str, Any] | None:
        """The body that continues from what was shown, or None to start over."""
        shown = self.shown
        base = shown.rstrip()
        if not base or self.resumed >= MAX_RESUMES:
            return None
        messages = list(self.body["messages"])
        if _wire.accepts_prefill(model):
            last = messages[-1]
            if last["role"] == "assistant" and isinstance(last["content"], str):
                messages[-1] = {"role": "assistant", "content": last["content"] + base}
            else:
                messages.append({"role": "assistant", "content": base})
            self.seam = _Seam(shown, overlap=False)
        else:
            messages += [{"role": "assistant", "content": base}, {"role": "user", "content": CONTINUE_PROMPT}]
            self.seam = _Seam(shown, overlap=True)
        self.resumed += 1
        return {**self.body, "messages": messages}


class _Prepared:
    __slots__ = ("body", "key", "lookup", "store", "stream", "headers", "prompt")

    def __init__(
        self,
        body: dict[str, Any],
        key: str | None,
        lookup: bool,
        store: bool,
        stream: bool,
        headers: dict[str, str],
        prompt: Any,
    ) -> None:
        self.body = body
        self.key = key
        self.lookup = lookup
        self.store = store
        self.stream = stream
        self.headers = headers
        self.prompt = prompt


def _sent_hook(on_sent: Callable[[float], Any] | None) -> dict[str, Any]:
    """httpx extensions that call ``on_sent(time.monotonic())`` when a request's last byte left
    (httpcore's trace): later than the call when a connection had to open first."""
    if on_sent is None:
        return {}

    async def trace(event: str, info: Any) -> None:
        if event.endswith("send_request_body.complete"):
            on_sent(time.monotonic())

    return {"trace": trace}


class Client:
    """A client for the Claude Messages API with a response cache, retries and resumed streams.

    Settings come from the arguments, then the environment (``ANTHROPIC_API_KEY``,
    ``ANTHROPIC_BASE_URL``, ``CLAUDE_MAGIC_CACHE_DIR``, ``CLAUDE_MAGIC_OFFLINE``), then
    defaults. ``cache=False`` turns the response cache off; a ``ResponseCache`` shares one.
    ``transport`` is an httpx async transport (``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        model: str | None = None,
        max_tokens: int = 1024,
        api_version: str | None = None,
        max_wait: float = 600.0,
        cache: ResponseCache | bool | None = None,
        offline: bool | None = None,
        extra_headers: dict[str, str] | None = None,
        max_connections: int = 100,
        stream_idle_timeout: float = STREAM_IDLE_TIMEOUT,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self._api_key = api_key or os.environ.get("ANTHROPIC_API_KEY") or None
        self.base_url = (base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        try:
            self._host = httpx.URL(self.base_url).host
        except Exception as exc:
            raise ConfigError(f"base_url is not a URL: {self.base_url!r}") from exc
        if not self._host:
            raise ConfigError(f"base_url must look like https://api.anthropic.com, got {self.base_url!r}")
        self.model = model or _wire.DEFAULT_MODEL
        self.max_tokens = max_tokens
        self.api_version = api_version or _wire.DEFAULT_API_VERSION
        if self.api_version not in _wire.API_VERSIONS:
            raise ConfigError(
                f"api_version must be one of {', '.join(_wire.API_VERSIONS)}, got {self.api_version!r}"
            )
        if not max_wait >= 0:
            raise ConfigError(f"max_wait must be a number of seconds >= 0, got {max_wait!r}")
        self.retry_policy = retry_policy or RetryPolicy(max_wait=max_wait)
        if retry_policy is None:
            self.retry_policy.max_wait = max_wait
        self.offline = _env_flag("CLAUDE_MAGIC_OFFLINE") if offline is None else offline
        self.extra_headers = dict(extra_headers or {})
        self.stream_idle_timeout = stream_idle_timeout
        self._cache_dir = cache_dir
        self._cache_arg = cache
        self._cache: ResponseCache | None = cache if isinstance(cache, ResponseCache) else None
        self._owns_cache = self._cache is None
        self._transport = transport
        self._max_connections = max_connections
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pause_until = 0.0
        self.history: list[Reply] = []
        self.last_reply: Reply | None = None
        self.ratelimit: dict[str, Any] = {}
        self.closed = False

    # -- configuration -------------------------------------------------------------------------

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return f"Client(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"

    @property
    def has_api_key(self) -> bool:
        return bool(self._api_key)

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache (opened on first use), or None when caching is off."""
        if self._cache is None and self._cache_arg is not False:
            with self._lock:
                if self._cache is None:
                    self._cache = ResponseCache(self._cache_dir, offline=self.offline)
        return self._cache

    def build_body(
        self,
        prompt_or_messages: Any,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """The request body ``complete`` would send (checked; raises ConfigError)."""
        return _wire.build_body(
            prompt_or_messages,
            model=model or self.model,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
            api_version=self.api_version,
            **options,
        )

    def cache_key(self, body: dict[str, Any]) -> str:
        return ResponseCache.key(_wire.cache_fields(body), host=self._host, api_version=self.api_version)

    # -- the event loop thread -----------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self.closed:
            raise ConfigError("this Client is closed: create a new one")
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    ready = threading.Event()

                    def run() -> None:
                        asyncio.set_event_loop(loop)
                        loop.call_soon(ready.set)
                        try:
                            loop.run_forever()
                        finally:
                            _shut_down(loop)

                    self._thread = threading.Thread(target=run, name="claude_magic-loop", daemon=True)
                    self._thread.start()
                    ready.wait()
                    self._loop = loop
        return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the client's loop thread; the caller decides how to wait."""
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    @property
    def paused_until(self) -> float:
        """``time.monotonic()`` until which a server's ``retry-after`` pauses every request."""
        return self._pause_until

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the client's loop and wait for it; Ctrl-C cancels it (within a second)."""
        fut = self.submit(coro)
        try:
            return fut.result()
        except KeyboardInterrupt:
            fut.cancel()
            concurrent.futures.wait([fut], timeout=1.0)
            raise

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            _httpcore_fix.apply()
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                transport=self._transport,
                timeout=httpx.Timeout(READ_TIMEOUT_BASE, connect=CONNECT_TIMEOUT, pool=None),
                limits=httpx.Limits(
                    max_connections=self._max_connections, max_keepalive_connections=self._max_connections
                ),
                headers={"anthropic-version": self.api_version, "user-agent": "claude_magic"},
            )
        return self._http

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        if not self._api_key:
            raise MissingAPIKey()
        return {"x-api-key": self._api_key, **self.extra_headers, **(extra or {})}

    # -- complete --------------------------------------------------------------------------------

    def _prepare(
        self,
        prompt_or_messages: Any,
        *,
        stream: bool,
        cache: bool,
        refresh: bool,
        extra_headers: dict[str, str] | None,
        **options: Any,
    ) -> _Prepared:
        body = self.build_body(prompt_or_messages, **options)
        use_cache = cache and self._cache_arg is not False
        key = self.cache_key(body) if use_cache else None
        return _Prepared(
            body, key, use_cache and not refresh, use_cache, stream, extra_headers or {}, prompt_or_messages
        )

    def _lookup(self, prep: _Prepared) -> Reply | None:
        """The cached reply, or None; in offline mode a miss is an error naming the prompt."""
        if prep.lookup and prep.key is not None and (cache := self.cache) is not None:
            started = time.perf_counter()
            value = cache.get(prep.key)
            if value is not None:
                reply = Reply.from_dict(value)
                reply.extra["saved_cost"] = reply.cost
                reply.cached, reply.cost, reply.retries, reply.resumed = True, 0.0, 0, 0
                reply.latency = reply.ttft = time.perf_counter() - started
                self._record(reply)
                return reply
        if self.offline:
            shown = json.dumps(prep.body["messages"][-1]["content"], ensure_ascii=False)
            raise CacheMiss(
                f"offline mode (CLAUDE_MAGIC_OFFLINE) and no cached answer for {shown[:80]}"
                f"{'…' if len(shown) > 80 else ''}: record it once with an API key, or import "
                "a cassette with %claude_cache import PATH"
            )
        return None

    def _record(self, reply: Reply) -> None:
        self.history.append(reply)
        self.last_reply = reply

    def complete(
        self,
        prompt_or_messages: Any,
        *,
        stream: bool = True,
        on_text: Callable[[str], Any] | None = None,
        cache: bool = True,
        refresh: bool = False,
        extra_headers: dict[str, str] | None = None,
        on_thinking: Callable[[str], Any] | None = None,
        **options: Any,
    ) -> Reply:
        """Ask Claude; return the whole ``Reply``.

        ``prompt_or_messages``: a string, or a list of ``{"role", "content"}`` messages.
        Options: ``model``, ``max_tokens``, ``system``, ``stop_sequences``, ``thinking``,
        ``effort``, ``tools``, ``tool_choice``, ``cache_system``, ``cache_prefix`` and any
        other body field. ``on_text(delta)`` is called on this thread as text arrives, and
        ``on_thinking(delta)`` as thinking does (streamed calls with thinking shown).
        ``cache=False`` neither reads nor writes the response cache; ``refresh=True``
        asks again and overwrites the cached answer.
        """
        prep = self._prepare(
            prompt_or_messages,
            stream=stream,
            cache=cache,
            refresh=refresh,
            extra_headers=extra_headers,
            **options,
        )
        if (hit := self._lookup(prep)) is not None:
            if on_text is not None:
                on_text(hit.text)
            return hit
        headers = self._headers(prep.headers)
        deliver = _route(on_text, on_thinking)
        q: queue.SimpleQueue[Any] | None = queue.SimpleQueue() if deliver is not None else None
        fut = self.submit(self._call(prep, headers, q.put if q is not None else None))
        try:
            if q is not None and deliver is not None:
                fut.add_done_callback(lambda _: q.put(_DONE))
                _pump(q, deliver)
            return fut.result()
        except BaseException:
            fut.cancel()
            concurrent.futures.wait([fut], timeout=1.0)
            raise

    async def acomplete(
        self,
        prompt_or_messages: Any,
        *,
        stream: bool = True,
        on_text: Callable[[str], Any] | None = None,
        cache: bool = True,
        refresh: bool = False,
        extra_headers: dict[str, str] | None = None,
        on_thinking: Callable[[str], Any] | None = None,
        on_sent: Callable[[float], Any] | None = None,
        **options: Any,
    ) -> Reply:
        """``complete`` for async code, from any event loop (Jupyter's, or the client's own).

        ``on_sent(t)``: called on the client's loop with ``time.monotonic()`` each time an
        attempt's request has left whole (what a rate-limit reading can be dated by).
        """
        prep = self._prepare(
            prompt_or_messages,
            stream=stream,
            cache=cache,
            refresh=refresh,
            extra_headers=extra_headers,
            **options,
        )
        if (hit := self._lookup(prep)) is not None:
            if on_text is not None:
                on_text(hit.text)
            return hit
        headers = self._headers(prep.headers)
        return await self._on_loop(lambda emit: self._call(prep, headers, emit, on_sent),
                                   _route(on_text, on_thinking))

    async def _on_loop(
        self,
        make: Callable[[Callable[[str], Any] | None], Awaitable[T]],
        on_text: Callable[[str], Any] | None = None,
    ) -> T:
        """Await ``make(emit)`` on the client's loop, wherever the caller runs."""
        here = asyncio.get_running_loop()
        if here is self._ensure_loop():
            return await make(on_text)
        emit = None
        if on_text is not None:

            def emit(delta: str) -> None:
                here.call_soon_threadsafe(on_text, delta)

        async def job() -> T:
            return await make(emit)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(job(), self._ensure_loop()))

    async def _call(
        self, prep: _Prepared, headers: dict[str, str], emit: Callable[[str], Any] | None,
        on_sent: Callable[[float], Any] | None = None,
    ) -> Reply:
        started = time.perf_counter()
        call = _Call(prep.body, emit, started, on_sent)
        if prep.stream:
            message = await self._retrying(
                call,
                lambda: self._stream_attempt(call, headers),
                on_broken=lambda asm: self._prepare_resume(call, asm),
            )
        else:
            message = await self._retrying(call, lambda: self._post_attempt(call, headers))
            if text := _wire.text_of(message.get("content") or []):
                call.text(text)
        reply = self._reply(call, message, time.perf_counter() - started)
        if prep.store and prep.key is not None and (cache := self.cache) is not None:
            cache.set(prep.key, reply.to_dict())
        self._record(reply)
        return reply

    def _reply(self, call: _Call, message: dict[str, Any], latency: float) -> Reply:
        usage = call.usage + Usage.from_api(message.get("usage"))
        if call.resumed:
            # One text block with everything shown; thinking from the first attempt, tool calls from the last.
            blocks = message.get("content") or []
            message = {**message, "content": (
                [b for b in call.earlier_blocks if b.get("type") != "text"]
                + [{"type": "text", "text": call.shown}]
                + [b for b in blocks if b.get("type") not in ("text", "thinking", "redacted_thinking")]
            )}
        return _wire.reply_from_message(
            message, model=call.body["model"], usage=usage, request_id=call.request_id,
            retries=call.retries, resumed=call.resumed, ttft=call.ttft, latency=latency,
        )

    # -- attempts --------------------------------------------------------------------------------

    def _note_headers(self, headers: httpx.Headers) -> None:
        """Keep the last ``anthropic-ratelimit-*`` reading, with ``at``: ``time.monotonic()`` at receipt."""
        rl: dict[str, Any] = {
            k[len("anthropic-ratelimit-") :]: v
            for k, v in headers.items()
            if k.startswith("anthropic-ratelimit-")
        }
        if rl:
            rl["at"] = time.monotonic()
            self.ratelimit = rl

    def _api_error(self, response: httpx.Response, content: bytes) -> APIError:
        err = _wire.parse_error(response.status_code, content, response.headers)
        err.retry_after = parse_retry_after(response.headers)
        err.headers = {
            k: v
            for k, v in response.headers.items()
            if k in ("x-should-retry", "retry-after", "retry-after-ms")
        }  # type: ignore[attr-defined]
        return err

    def _connection_error(self, exc: Exception, what: str = "could not reach") -> APIConnectionError:
        kind = type(exc).__name__
        detail = str(exc) or kind
        return APIConnectionError(
            f"{what} {self.base_url}: {kind}: {detail}"
            + ("" if "timeout" not in kind.lower() else " (check the network or base_url)")
        )

    async def _post_attempt(self, call: _Call, headers: dict[str, str]) -> dict[str, Any]:
        timeout = httpx.Timeout(read_timeout(call.body["max_tokens"]), connect=CONNECT_TIMEOUT, pool=None)
        try:
            response = await self._client().post(
                "/v1/messages", json=call.sending, headers=headers, timeout=timeout,
                extensions=_sent_hook(call.on_sent),
            )
        except httpx.TransportError as exc:
            raise self._connection_error(exc) from None
        self._note_headers(response.headers)
        call.request_id = response.headers.get("request-id")
        if response.status_code != 200:
            raise self._api_error(response, response.content)
        return response.json()  # type: ignore[no-any-return]

    async def _stream_attempt(self, call: _Call, headers: dict[str, str]) -> dict[str, Any]:
        timeout = httpx.Timeout(self.stream_idle_timeout, connect=CONNECT_TIMEOUT, pool=None)
        asm = _wire.MessageAssembler()
        http = self._client()
        request = http.build_request(
            "POST",
            "/v1/messages",
            json={**call.sending, "stream": True},
            headers={**headers, "accept": "text/event-stream"},
            timeout=timeout,
            extensions=_sent_hook(call.on_sent),
        )
        try:
            response = await http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._connection_error(exc) from None
        try:
            self._note_headers(response.headers)
            call.request_id = response.headers.get("request-id")
            if response.status_code != 200:
                raise self._api_error(response, await response.aread())
            await self._read_events(call, asm, response)
        finally:
            await response.aclose()
        return {**asm.message, "content": asm.content(), "usage": asm.usage}

    async def _read_events(self, call: _Call, asm: _wire.MessageAssembler, response: httpx.Response) -> None:
        try:
            async for sse in EventSource(response).aiter_sse():
                delta = asm.feed(sse.event, sse.data)
                if delta:
                    call.text(delta)
                elif asm.thought:
                    call.think(asm.thought)
                elif asm.error is not None:
                    raise _StreamBroken(asm, _wire.error_from_event(asm.error, call.request_id))
                elif asm.done:
                    break
        except httpx.TransportError as exc:
            raise _StreamBroken(asm, self._connection_error(exc, "the stream broke from")) from None
        except ValueError as exc:  # a data line that is not JSON, or the wrong content type
            raise _StreamBroken(
                asm, APIConnectionError(f"unreadable stream from {self.base_url}: {exc}")
            ) from None
        if not asm.done:
            raise _StreamBroken(
                asm,
                APIConnectionError(f"the stream from {self.base_url} ended before message_stop (truncated)"),
            )
        call.end_attempt()

    def _prepare_resume(self, call: _Call, asm: _wire.MessageAssembler) -> dict[str, Any] | None:
        """Keep what the broken attempt cost and showed; the body that resumes, or None to start over."""
        call.end_attempt()
        call.usage = call.usage + Usage.from_api(asm.usage)
        if not call.earlier_blocks:
            call.earlier_blocks = asm.content()
        body = call.resume_body(call.body["model"])
        if body is None:
            call.seam = None
            if call.shown:
                raise StreamInterrupted("the stream broke too often to resume", partial=call.shown)
        return body

    async def _retrying(
        self,
        call: _Call,
        attempt: Callable[[], Awaitable[T]],
        on_broken: Callable[[_wire.MessageAssembler], dict[str, Any] | None] | None = None,
    ) -> T:
        """Run ``attempt`` until it succeeds, the failure is final, or the wait budget is spent."""
        while True:
            await self._respect_pause(call)
            try:
                return await attempt()
            except (APIError, APIConnectionError, _StreamBroken) as exc:
                error = exc.error if isinstance(exc, _StreamBroken) else exc
                if not should_retry(error, getattr(error, "headers", None)):
                    raise self._final(call, error) from None
                if isinstance(error, APIConnectionError) and not isinstance(exc, _StreamBroken):
                    call.connect_failures += 1
                    if call.connect_failures > self.retry_policy.max_connect_retries:
                        raise self._final(call, error, gave_up=True) from None
                delay = self.retry_policy.delay(call.retries, getattr(error, "headers", None))
                if isinstance(error, APIError) and error.retry_after is not None:
                    self._pause_until = max(self._pause_until, time.monotonic() + delay)
                if call.waited + delay > self.retry_policy.max_wait:
                    raise self._final(call, error, gave_up=True, next_wait=delay) from None
                resumed = None
                if isinstance(exc, _StreamBroken) and on_broken is not None:
                    resumed = on_broken(exc.asm)
                call.sending = resumed or call.body
                if resumed is None:
                    call.retries += 1
                log.debug("attempt failed (%s); retrying in %.2f s", error, delay)
                await asyncio.sleep(delay)
                call.waited += delay

    async def _respect_pause(self, call: _Call) -> None:
        while (wait := self._pause_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)
            call.waited += wait

    def _final(
        self, call: _Call, error: ClaudeError, *, gave_up: bool = False, next_wait: float | None = None
    ) -> ClaudeError:
        """The error to raise: with what was tried, and the partial text if some was shown."""
        call.end_attempt()
        message = str(error)
        if gave_up:
            attempts = call.retries + call.resumed + 1
            message += f" (gave up after {attempts} attempt{'s' if attempts > 1 else ''}"
            if next_wait is not None:
                limit = self.retry_policy.max_wait
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

    # -- other endpoints ---------------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        parse: Callable[[httpx.Response], Any] | None = None,
    ) -> Any:
        headers = self._headers(None)
        call = _Call({"model": "", "messages": []}, None, time.perf_counter())

        async def attempt() -> Any:
            try:
                response = await self._client().request(
                    method, path, json=body, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                raise self._connection_error(exc) from None
            self._note_headers(response.headers)
            if response.status_code != 200:
                raise self._api_error(response, response.content)
            return parse(response) if parse else response.json()

        return await self._on_loop(lambda _: self._retrying(call, attempt))

    async def acount_tokens(
        self, prompt_or_messages: Any, *, model: str | None = None, **options: Any
    ) -> int:
        """Input tokens the prompt would use (``/v1/messages/count_tokens``); sends no message."""
        body = _wire.count_tokens_body(self.build_body(prompt_or_messages, model=model, **options))
        result = await self._json("POST", "/v1/messages/count_tokens", body)
        return int(result["input_tokens"])

    def count_tokens(self, prompt_or_messages: Any, *, model: str | None = None, **options: Any) -> int:
        return self.run(self.acount_tokens(prompt_or_messages, model=model, **options))

    async def acreate_batch(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        """Submit a Message Batch: ``requests`` = ``[{"custom_id": ..., "params": body}, ...]``."""
        return await self._json("POST", "/v1/messages/batches", {"requests": requests})  # type: ignore[no-any-return]

    async def aretrieve_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/messages/batches/{batch_id}")  # type: ignore[no-any-return]

    async def acancel_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/v1/messages/batches/{batch_id}/cancel")  # type: ignore[no-any-return]

    async def alist_batches(self, limit: int = 20) -> list[dict[str, Any]]:
        page = await self._json("GET", "/v1/messages/batches", params={"limit": limit})
        return page["data"]  # type: ignore[no-any-return]

    async def abatch_results(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """The JSONL results of an ended batch, one dict per request."""
        url = batch.get("results_url") or f"/v1/messages/batches/{batch['id']}/results"
        if url.startswith(self.base_url):
            url = url[len(self.base_url) :]

        def lines(response: httpx.Response) -> list[dict[str, Any]]:
            return [json.loads(line) for line in response.text.splitlines() if line.strip()]

        return await self._json("GET", url, parse=lines)  # type: ignore[no-any-return]

    def create_batch(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        return self.run(self.acreate_batch(requests))

    def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        return self.run(self.aretrieve_batch(batch_id))

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return self.run(self.acancel_batch(batch_id))

    def batch_results(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return self.run(self.abatch_results(batch))

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections, the loop thread and (if this client opened it) the cache."""
        if self.closed:
            return
        self.closed = True
        loop, http = self._loop, self._http
        if loop is not None:
            if http is not None:
                with_timeout = asyncio.run_coroutine_threadsafe(http.aclose(), loop)
                try:
                    with_timeout.result(timeout=2)
                except Exception:  # closing is best effort: the thread is a daemon
                    pass
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=2)
        if self._owns_cache and self._cache is not None:
            self._cache.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _shut_down(loop: asyncio.AbstractEventLoop) -> None:
    """What ``asyncio.run`` does on the way out: cancel what is left, let it unwind, close the
    async generators (a stream's SSE iterator), close the loop. Without it a stream cut short
    leaves a pending ``aclose`` task that Python reports at exit ("Task was destroyed")."""
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


class _Thought(str):
    """A piece of thinking, on its way to ``on_thinking`` through the channel text takes."""


def _route(on_text: Callable[[str], Any] | None,
           on_thinking: Callable[[str], Any] | None) -> Callable[[str], Any] | None:
    """One callback for the stream's channel: text to ``on_text``, thinking to ``on_thinking``."""
    if on_thinking is None:
        return None if on_text is None else (lambda d: None if isinstance(d, _Thought) else on_text(d))

    def deliver(delta: str) -> None:
        if isinstance(delta, _Thought):
            on_thinking(str(delta))
        elif on_text is not None:
            on_text(delta)

    return deliver


def _pump(q: queue.SimpleQueue[Any], deliver: Callable[[str], Any]) -> None:
    """Hand queued deltas to ``deliver`` on this thread, joined a batch at a time (text with text,
    thinking with thinking, in order), until the call ends."""
    while True:
        item = q.get()
        chunk = [item]
        while True:
            try:
                chunk.append(q.get_nowait())
            except queue.Empty:
                break
        done = chunk[-1] is _DONE
        for kind, run in itertools.groupby((c for c in chunk if c is not _DONE), key=type):
            joined = "".join(run)
            if joined:
                deliver(kind(joined))
        if done:
            return
