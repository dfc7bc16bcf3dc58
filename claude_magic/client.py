"""``Client``: one cached, retrying, streaming client for the Messages API.

The client owns one asyncio loop in a daemon thread (``_loop.LoopThread``) and one
``httpx.AsyncClient`` on it. ``complete`` (sync) runs a coroutine on that loop and gets
streamed text handed to the caller's thread, so display updates happen where the caller is;
``acomplete`` awaits the same coroutine from any loop, Jupyter's included. One implementation
of the logic, two doors. A cache hit is answered on the caller's thread without touching the loop.

``Client`` is the façade: it resolves the settings, answers from the response cache (and a
cassette), admits each request through the scheduler, and builds the ``Reply``. The layers below,
each one concern (as httpx's ``send`` goes down one layer per concern to the transport):

- ``_scheduler``: admission, with a priority and the job a request belongs to, paced by the
  mirror of its rate-limit bucket;
- ``_driver``: the retry/resume driver, which runs the attempts of one admitted call until an
  answer or a final error, within the call's clocks;
- ``_attempt``: one attempt, the message it answered or one translated error;
- ``_loop`` (the loop thread and the hand-off of streamed text), ``_call`` (the state of one call
  across attempts, and its time budget), ``_http`` (the key at the transport, bounded reads,
  transport errors), ``_wire`` (the JSON).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from . import _http, _secrets, _wire
from ._attempt import Attempts
from ._call import CONTINUE_PROMPT, GRACE, MAX_RESUMES, Call, read_timeout
from ._coordinator import Coordinator, coordinator_setting, group_of, open_store_or_warn
from ._driver import Driver
from ._loop import LoopThread, route
from ._scheduler import Priority, Scheduler, Ticket, bucket_of, resolve
from ._typed import check_supported, explain, schema_of, typed_reply, with_format
from .cache import ResponseCache, append_to_cassette
from .errors import BadRequestError, CacheMiss, ClaudeError, ConfigError, MissingAPIKey
from .reply import Reply, Usage
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .files import Uploads

__all__ = ["CONTINUE_PROMPT", "MAX_RESUMES", "Client", "read_timeout"]

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_WAIT = 600.0
# Streaming: the longest silence between two events (the API pings while it thinks).
STREAM_IDLE_TIMEOUT = 90.0


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """A ``complete`` checked and resolved before it is looked up or sent."""

    body: dict[str, Any]
    key: str | None  # its cache key, or None with caching off
    lookup: bool  # answer from the cache when it can
    store: bool  # keep the answer in the cache
    stream: bool
    headers: dict[str, str]
    prompt: Any


class Client:
    """A client for the Claude Messages API with a response cache, retries and resumed streams.

    Settings come from the arguments, then the environment (``ANTHROPIC_API_KEY``,
    ``ANTHROPIC_BASE_URL``, ``CLAUDE_MAGIC_CACHE_DIR``, ``CLAUDE_MAGIC_OFFLINE``,
    ``CLAUDE_MAGIC_COORDINATOR``), then defaults. ``coordinator`` (``auto``, ``none``, a directory or
    a ``redis://`` URL) is where clients of the same key share its rate limits (see
    ``claude_magic._coordinator``). ``cache=False`` turns the response cache off; a
    ``ResponseCache`` shares one.
    ``transport`` is an httpx async transport (``httpx.MockTransport`` in tests).
    ``max_wait`` bounds the seconds a call spends not receiving content (see ``_call``).
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
        max_wait: float | None = None,
        cache: ResponseCache | bool | None = None,
        offline: bool | None = None,
        extra_headers: dict[str, str] | None = None,
        max_connections: int = 100,
        stream_idle_timeout: float = STREAM_IDLE_TIMEOUT,
        retry_policy: RetryPolicy | None = None,
        cassette: str | os.PathLike[str] | None = None,
        coordinator: str | os.PathLike[str] | None = None,
    ) -> None:
        _secrets.install_log_filter()
        if api_key is not None and (isinstance(api_key, _secrets.Secret) or str(api_key).strip()):
            self._api_key = _secrets.check_api_key(api_key, "api_key=")
        else:
            self._api_key = _secrets.check_api_key(os.environ.get("ANTHROPIC_API_KEY"), "ANTHROPIC_API_KEY")
        self._set_base_url(base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL)
        self.model = model or _wire.DEFAULT_MODEL
        self.max_tokens = max_tokens
        self.api_version = api_version or _wire.DEFAULT_API_VERSION
        if self.api_version not in _wire.API_VERSIONS:
            raise ConfigError(
                f"api_version must be one of {', '.join(_wire.API_VERSIONS)}, got {self.api_version!r}"
            )
        if max_wait is None:
            max_wait = retry_policy.max_wait if retry_policy is not None else DEFAULT_MAX_WAIT
        if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)) or not max_wait >= 0:
            raise ConfigError(f"max_wait must be a number of seconds >= 0, got {max_wait!r}")
        # a copy: a policy shared between clients must not take one client's max_wait
        self.retry_policy = dataclasses.replace(retry_policy or RetryPolicy(), max_wait=float(max_wait))
        self.offline = _env_flag("CLAUDE_MAGIC_OFFLINE") if offline is None else offline
        # A cassette: recorded into (each answer appended) or, offline, replayed from (loaded into
        # the cache once, mapped to this client's host: replaying is asking for that mapping).
        self.cassette = cassette or os.environ.get("CLAUDE_MAGIC_CASSETTE") or None
        self._cassette_loaded = False
        self.extra_headers = dict(extra_headers or {})
        self.stream_idle_timeout = stream_idle_timeout
        self._cache_dir = cache_dir
        self._cache_arg = cache
        self._cache: ResponseCache | None = cache if isinstance(cache, ResponseCache) else None
        self._owns_cache = self._cache is None
        self._bridge = LoopThread("this Client")
        self._attempts = Attempts(self.base_url, _http.KeyAuth(self._api_key, self._userinfo),
                                  api_version=self.api_version, transport=transport,
                                  max_connections=max_connections)
        self._lock = threading.Lock()
        self.coordinator_setting = coordinator_setting(coordinator)
        store = open_store_or_warn(self.coordinator_setting,
                                   cache.directory if isinstance(cache, ResponseCache) else cache_dir)
        self.scheduler = Scheduler(Coordinator(store, group_of(self._netloc, self._api_key))
                                   if store is not None else None)
        self.history: list[Reply] = []
        self.last_reply: Reply | None = None
        self._replayed: set[str] = set()
        self._capabilities: dict[str, dict[str, Any] | None] = {}  # model -> what the models endpoint said
        self._uploads: Uploads | None = None
        self.closed = False

    def _set_base_url(self, raw: str) -> None:
        """Keep the URL without its ``user:password@`` (which goes to the transport as a Secret): no
        repr, error or log line can then show the password."""
        shown = _secrets.redact_url(str(raw)).rstrip("/")
        try:
            url = httpx.URL(str(raw).strip())
        except Exception:
            raise ConfigError(f"base_url is not a URL: {shown!r}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"base_url must look like https://api.anthropic.com, got {shown!r}")
        self._userinfo: tuple[_secrets.Secret, _secrets.Secret] | None = None
        if url.userinfo:
            self._userinfo = (_secrets.Secret(url.username, scrubbed=False), _secrets.Secret(url.password))
            url = url.copy_with(username=None, password=None)
        self.base_url = str(url).rstrip("/")
        self._host = url.host
        self._netloc = url.netloc.decode("ascii", "replace")

    # -- configuration -------------------------------------------------------------------------

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return f"Client(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"

    @property
    def has_api_key(self) -> bool:
        return bool(self._api_key)

    @property
    def host(self) -> str:
        """The API host the cache keys are made for (never the key, never a password)."""
        return self._host

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache (opened on first use), or None when caching is off."""
        if self._cache is None and self._cache_arg is not False:
            with self._lock:
                if self._cache is None:
                    self._cache = ResponseCache(self._cache_dir, offline=self.offline)
        if self.offline and self.cassette and not self._cassette_loaded and self._cache is not None:
            self._replay_cassette(self._cache)
        return self._cache

    def _replay_cassette(self, cache: ResponseCache) -> None:
        from pathlib import Path

        with self._lock:
            if self._cassette_loaded:
                return
            path = Path(str(self.cassette)).expanduser()
            if not path.exists():
                raise ConfigError(f"no cassette at {path} (CLAUDE_MAGIC_CASSETTE) to replay: record it "
                                  "first, by running the notebook once with CLAUDE_MAGIC_CASSETTE set and no "
                                  "CLAUDE_MAGIC_OFFLINE")
            cache.import_(path, host=self._host)
            self._cassette_loaded = True

    def build_body(
        self,
        prompt_or_messages: Any,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """The request body ``complete`` would send (checked; raises ConfigError). A list of parts —
        strings and images, figures, PDFs (see ``media.as_media``) — is one user turn of blocks."""
        if isinstance(prompt_or_messages, (list, tuple)) and not all(isinstance(m, dict)
                                                                     for m in prompt_or_messages):
            from .media import parts_turn

            prompt_or_messages = parts_turn(list(prompt_or_messages), model=model or self.model)
        return _wire.build_body(
            prompt_or_messages,
            model=model or self.model,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
            api_version=self.api_version,
            **options,
        )

    def cache_key(self, body: dict[str, Any]) -> str:
        files = self._uploads.shas if self._uploads is not None else None
        fields = _wire.cache_fields(body, files)
        return ResponseCache.key(fields, host=self._host, api_version=self.api_version)

    # -- the event loop thread (see ``_loop``) ---------------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the client's loop thread; the caller decides how to wait."""
        return self._bridge.submit(coro)

    @property
    def paused_until(self) -> float:
        """``time.monotonic()`` until which a server's ``retry-after`` pauses batch requests (the
        latest pause of any bucket; see ``claude_magic._scheduler``)."""
        return self.scheduler.paused_until

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the client's loop and wait for it; Ctrl-C cancels it (within a second)."""
        return self._bridge.run(coro)

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        """Headers of a request besides the key (which the transport adds)."""
        if not self._api_key:
            raise MissingAPIKey()
        return {**self.extra_headers, **(extra or {})}

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

    def lookup(self, key: str) -> Reply | None:
        """The cached reply under ``key`` (``cache_key(body)``) as a cache hit, counted in
        ``history`` and in the cache's stats; None on a miss or with caching off. Sends nothing;
        unlike ``complete`` it neither raises CacheMiss offline nor changes ``last_reply``."""
        cache = self.cache
        value = cache.get(key) if cache is not None else None
        if value is None:
            return None
        reply = _as_hit(Reply.from_dict(value))
        self.history.append(reply)
        return reply

    def record(self, reply: Reply, key: str | None = None) -> None:
        """Count an answer fetched without ``complete`` (a Message Batch result) in ``history``, and
        store it in the response cache under ``key`` when one is given and caching is on."""
        if key is not None and (cache := self.cache) is not None:
            cache.set(key, reply.to_dict())
        self.history.append(reply)

    @property
    def ratelimit(self) -> dict[str, Any]:
        """The newest ``anthropic-ratelimit-*`` reading of any answer to this client (``{}`` before
        the first); ``last_ratelimit`` gives a copy."""
        return self._attempts.ratelimit

    @ratelimit.setter
    def ratelimit(self, reading: dict[str, Any]) -> None:
        self._attempts.ratelimit = reading

    @property
    def last_ratelimit(self) -> dict[str, Any] | None:
        """A copy of the newest ``anthropic-ratelimit-*`` reading of any answer to this client (as
        ``Reply.ratelimit``), or None before the first."""
        return dict(self.ratelimit) if self.ratelimit else None

    def _cached(self, prep: _Prepared) -> Reply | None:
        """The cached reply, or None; in offline mode a miss is an error naming the prompt."""
        if prep.lookup and prep.key is not None and (cache := self.cache) is not None:
            started = time.perf_counter()
            value = cache.get(prep.key)
            if value is not None:
                reply = Reply.from_dict(value)
                if self.offline and prep.key not in self._replayed:
                    # A replay (offline mode) gives each answer as its recording run did: the first
                    # time as answered then (cost, time, retries), later times as cache hits, so that
                    # record and replay leave the same outputs (what nbval compares).
                    self._replayed.add(prep.key)
                    reply.extra["replayed"] = True
                    self._record(reply)
                    return reply
                _as_hit(reply)
                reply.latency = reply.ttft = time.perf_counter() - started
                self._record(reply)
                return reply
        if self.offline:
            shown = json.dumps(prep.body["messages"][-1]["content"], ensure_ascii=False)
            raise CacheMiss(
                f"offline mode (CLAUDE_MAGIC_OFFLINE) and no cached answer for {shown[:80]}"
                f"{'…' if len(shown) > 80 else ''}: record it once (with your key and CLAUDE_MAGIC_CASSETTE "
                "set), or import a cassette with %claude_cache import PATH"
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
        priority: str | None = None,
        job: str | None = None,
        schema: Any = None,
        **options: Any,
    ) -> Reply:
        """Ask Claude; return the whole ``Reply``.

        ``prompt_or_messages``: a string, or a list of ``{"role", "content"}`` messages.
        Options: ``model``, ``max_tokens``, ``system``, ``stop_sequences``, ``thinking``,
        ``effort``, ``tools``, ``tool_choice``, ``cache_system``, ``cache_prefix`` and any
        other body field. ``on_text(delta)`` is called on this thread as text arrives, and
        ``on_thinking(delta)`` as thinking does (streamed calls with thinking shown).
        ``cache=False`` neither reads nor writes the response cache; ``refresh=True``
        asks again and overwrites the cached answer. ``priority``: ``"interactive"`` (the default:
        admitted ahead of batch work) or ``"batch"``; ``job``: the id of the batch job it belongs to
        (see ``claude_magic._scheduler``). Time spent waiting for admission is not part of ``max_wait``.
        ``schema``: a typed answer (a pydantic model, a Python type, a JSON schema dict or an inline
        spec, see ``claude_magic.schema``), sent as ``output_config.format``; ``reply.parsed`` holds
        the validated value, and an unusable answer (truncated, refused, not matching) raises
        ``AnswerInvalid`` (``.raw``, ``.reply``).
        """
        typed = schema_of(schema)
        prep = self._prepare(
            prompt_or_messages,
            stream=stream,
            cache=cache,
            refresh=refresh,
            extra_headers=extra_headers,
            **with_format(options, typed),
        )
        if (hit := self._cached(prep)) is not None:
            if on_text is not None:
                on_text(hit.text)
            return typed_reply(hit, typed)
        headers = self._headers(prep.headers)
        if typed is not None:
            self.run(self._check_typed(prep.body["model"]))
        admission = resolve(priority, job)
        try:
            reply = self._bridge.call(lambda emit: self._call(prep, headers, emit, admission=admission),
                                      route(on_text, on_thinking))
        except BadRequestError as exc:
            raise explain(exc, typed) from None
        return typed_reply(reply, typed)

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
        priority: str | None = None,
        job: str | None = None,
        schema: Any = None,
        **options: Any,
    ) -> Reply:
        """``complete`` for async code, from any event loop (Jupyter's, or the client's own).

        ``on_sent(t)``: called on the client's loop with ``time.monotonic()`` each time an
        attempt's request has left whole (what a rate-limit reading can be dated by).
        """
        typed = schema_of(schema)
        prep = self._prepare(
            prompt_or_messages,
            stream=stream,
            cache=cache,
            refresh=refresh,
            extra_headers=extra_headers,
            **with_format(options, typed),
        )
        if (hit := self._cached(prep)) is not None:
            if on_text is not None:
                on_text(hit.text)
            return typed_reply(hit, typed)
        headers = self._headers(prep.headers)
        if typed is not None:
            await self._bridge.on_loop(lambda _: self._check_typed(prep.body["model"]))
        admission = resolve(priority, job)
        try:
            reply = await self._bridge.on_loop(
                lambda emit: self._call(prep, headers, emit, on_sent, admission), route(on_text, on_thinking))
        except BadRequestError as exc:
            raise explain(exc, typed) from None
        return typed_reply(reply, typed)

    async def _call(
        self, prep: _Prepared, headers: dict[str, str], emit: Callable[[str], Any] | None,
        on_sent: Callable[[float], Any] | None = None,
        admission: tuple[Priority, str | None] = (Priority.INTERACTIVE, None),
    ) -> Reply:
        # Admitted first: the call's clocks (max_wait) start once it may go.
        ticket = await self.scheduler.admit(bucket_of("messages", prep.body["model"]), *admission)
        reply: Reply | None = None
        error: BaseException | None = None
        try:
            reply = await self._admitted(prep, headers, emit, on_sent, ticket)
            return reply
        except BaseException as exc:
            error = exc
            raise
        finally:
            # a failure's own reading (a 429 says the bucket is empty), never another bucket's
            self.scheduler.done(ticket, reply, error, ticket.reading)

    async def _admitted(
        self, prep: _Prepared, headers: dict[str, str], emit: Callable[[str], Any] | None,
        on_sent: Callable[[float], Any] | None, ticket: Ticket,
    ) -> Reply:
        def sent(at: float) -> None:
            ticket.sent(at)
            if on_sent is not None:
                on_sent(at)

        call = Call(prep.body, emit, max_wait=self.retry_policy.max_wait, on_sent=sent,
                    first_wait=self.stream_idle_timeout, grace=min(GRACE, self.stream_idle_timeout))
        call.on_reading = lambda reading: self.scheduler.read(ticket, reading)
        driver = Driver(call, ticket, self.scheduler, self.retry_policy)
        try:
            if prep.stream:
                idle = self.stream_idle_timeout
                message = await driver.run(lambda: self._attempts.stream(call, headers, idle))
            else:
                message = await driver.run(lambda: self._attempts.message(call, headers))
        finally:
            ticket.reading = call.ratelimit
        if not prep.stream and (text := _wire.text_of(message.get("content") or [])):
            call.text(text)
        reply = self._reply(call, message, time.perf_counter() - call.started)
        reply.queued = ticket.queued
        if prep.store and prep.key is not None and (cache := self.cache) is not None:
            cache.set(prep.key, reply.to_dict())
            if self.cassette and not self.offline:
                append_to_cassette(self.cassette, prep.key, reply.to_dict())
        self._record(reply)
        return reply

    def _reply(self, call: Call, message: dict[str, Any], latency: float) -> Reply:
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
            ratelimit=call.ratelimit, sent_at=call.sent_at, attempts=call.attempts,
        )

    # -- other endpoints ---------------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        lines: bool = False,
        bucket: str = "batches",
        files: dict[str, Any] | None = None,
    ) -> Any:
        """One JSON (or JSON lines) exchange with the API, admitted and retried like a message."""
        headers = self._headers(None)
        admission = resolve(None, None)

        async def exchange() -> Any:
            ticket = await self.scheduler.admit(bucket, *admission)
            error: BaseException | None = None
            call = Call({"model": "", "messages": [], "max_tokens": 0}, None,
                        max_wait=self.retry_policy.max_wait)

            call.on_sent = ticket.sent
            driver = Driver(call, ticket, self.scheduler, self.retry_policy)
            try:
                return await driver.run(lambda: self._attempts.json(
                    call, method, path, body=body, params=params, headers=headers, lines=lines, files=files))
            except BaseException as exc:
                error = exc
                raise
            finally:
                self.scheduler.done(ticket, None, error, self.ratelimit if error is None else None)

        return await self._bridge.on_loop(lambda _: exchange())

    async def arequest(self, method: str, path: str, body: Any = None, *,
                       params: dict[str, Any] | None = None, files: dict[str, Any] | None = None,
                       bucket: str = "files") -> Any:
        """One exchange with another endpoint of the API (the Files API's), admitted, paced and retried
        like every request; ``files``: a multipart upload. Returns the decoded JSON."""
        return await self._json(method, path, body, params, bucket=bucket, files=files)

    def request(self, method: str, path: str, body: Any = None, **options: Any) -> Any:
        return self.run(self.arequest(method, path, body, **options))

    @property
    def uploads(self) -> Uploads:
        """Content uploaded once through the Files API and referenced by ``file_id`` (see ``files``)."""
        if self._uploads is None:
            from .files import Uploads

            self._uploads = Uploads(self, self.cache, group_of(self._netloc, self._api_key))
        return self._uploads

    def check_typed(self, model: str) -> None:
        """ConfigError when the models endpoint says ``model`` cannot give typed answers (structured
        outputs); nothing when it says it can, or does not answer."""
        self.run(self._check_typed(model))

    async def _check_typed(self, model: str) -> None:
        """Refuse a typed answer from a model the models endpoint says cannot give one (asked once
        per model; an endpoint that does not answer says nothing, and the API decides)."""
        if model not in self._capabilities:
            try:
                info = await self._json("GET", f"/v1/models/{model}", bucket="models")
            except ClaudeError:
                info = None
            self._capabilities[model] = info.get("capabilities") if isinstance(info, dict) else None
        check_supported(model, self._capabilities[model])

    async def acount_tokens(
        self, prompt_or_messages: Any, *, model: str | None = None, **options: Any
    ) -> int:
        """Input tokens the prompt would use (``/v1/messages/count_tokens``); sends no message."""
        body = _wire.count_tokens_body(self.build_body(prompt_or_messages, model=model, **options))
        result = await self._json("POST", "/v1/messages/count_tokens", body, bucket="count_tokens")
        count = result.get("input_tokens") if isinstance(result, dict) else None
        if isinstance(count, bool) or not isinstance(count, int):
            raise _wire.malformed(f"count_tokens from {self.base_url} gave no integer input_tokens")
        return count

    def count_tokens(self, prompt_or_messages: Any, *, model: str | None = None, **options: Any) -> int:
        return self.run(self.acount_tokens(prompt_or_messages, model=model, **options))

    async def acreate_batch(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        """Submit a Message Batch: ``requests`` = ``[{"custom_id": ..., "params": body}, ...]``."""
        return await self._batch_object("POST", "/v1/messages/batches", {"requests": requests})

    async def aretrieve_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._batch_object("GET", f"/v1/messages/batches/{batch_id}")

    async def acancel_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._batch_object("POST", f"/v1/messages/batches/{batch_id}/cancel")

    async def _batch_object(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        batch = await self._json(method, path, body)
        if not isinstance(batch, dict) or not isinstance(batch.get("id"), str):
            raise _wire.malformed(f"{method} {path} on {self.base_url} answered without a batch object")
        return batch

    async def alist_batches(self, limit: int = 20) -> list[dict[str, Any]]:
        page = await self._json("GET", "/v1/messages/batches", params={"limit": limit})
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise _wire.malformed(f"the list of batches from {self.base_url} has no data list")
        return page["data"]  # type: ignore[no-any-return]

    async def abatch_results(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """The JSONL results of an ended batch, one dict per request."""
        url = batch.get("results_url") or f"/v1/messages/batches/{batch['id']}/results"
        if url.startswith(self.base_url):
            url = url[len(self.base_url) :]
        results = await self._json("GET", url, lines=True)
        return [r for r in results if isinstance(r, dict)]

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
        self._cancel_jobs()
        if self.scheduler.coordinator is not None:
            self.scheduler.coordinator.close()
        self._bridge.close(self._attempts.aclose if self._attempts.opened else None)
        if self._owns_cache and self._cache is not None:
            self._cache.close()

    def _cancel_jobs(self, timeout: float = 5.0) -> None:
        """Cancel the background jobs still running and wait (a bounded time) for each to keep what
        it answered: closing the loop under them would lose it."""
        jobs = [job for job in self.scheduler.jobs().values() if job is not None and not job.done()]
        for job in jobs:
            job.cancel()
        deadline = time.monotonic() + timeout
        for job in jobs:
            with contextlib.suppress(Exception):
                job.exception(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _as_hit(reply: Reply) -> Reply:
    """A cached answer as a hit: it cost nothing this time (``saved_cost``: what it saved), with no
    retries or resumes of its own."""
    reply.extra["saved_cost"] = reply.cost
    reply.cached, reply.cost, reply.retries, reply.resumed = True, 0.0, 0, 0
    return reply
