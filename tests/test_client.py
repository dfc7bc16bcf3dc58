"""Client behaviour on exact bytes, through httpx.MockTransport (the emulator is tested elsewhere)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_magic._attempt import Attempts, StreamBroken
from claude_magic._call import Call, Seam
from claude_magic._driver import Driver
from claude_magic._scheduler import Priority, Scheduler
from claude_magic._wire import MessageAssembler
from claude_magic.client import CONTINUE_PROMPT, Client, read_timeout
from claude_magic.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    CacheMiss,
    ClaudeError,
    ConfigError,
    MissingAPIKey,
    OverloadedError,
    SpendLimitReached,
    StreamInterrupted,
)
from claude_magic.reply import Reply, check_dict
from claude_magic.retry import RetryPolicy

KEY = "sk-ant-secret-KEY-123"


def sse(events: list[tuple[str, dict[str, Any]]], sep: str = "\n") -> bytes:
    return "".join(
        f"event: {n}{sep}data: {json.dumps(d, ensure_ascii=False)}{sep}{sep}" for n, d in events
    ).encode()


def stream_events(
    text_parts: list[str], model: str = "claude-opus-5-5", stop: bool = True, output_tokens: int = 9
) -> list[tuple[str, dict[str, Any]]]:
    ev = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 11, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("ping", {"type": "ping"}),
    ]
    ev += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
        )
        for t in text_parts
    ]
    if stop:
        ev += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    return ev


def ok_stream(content: bytes | Any) -> httpx.Response:
    return httpx.Response(
        200, content=content, headers={"content-type": "text/event-stream", "request-id": "req_ok"}
    )


def api_error(
    status: int, etype: str, message: str = "nope", headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "type": "error",
            "error": {"type": etype, "message": message, **extra},
            "request_id": f"req_{status}",
        },
        headers=headers or {},
    )


class Server:
    """Answers requests from a script of handlers, recording the bodies it got."""

    def __init__(self, *responses: Callable[[dict[str, Any]], httpx.Response] | httpx.Response) -> None:
        self.responses = list(responses)
        self.bodies: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(json.loads(request.content) if request.content else {})
        r = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return r(self.bodies[-1]) if callable(r) else r


@pytest.fixture
def make(tmp_path):
    clients: list[Client] = []

    def factory(server: Server, **kw: Any) -> Client:
        kw.setdefault("cache_dir", tmp_path / "cache")
        kw.setdefault("retry_policy", RetryPolicy(initial=0.001, max_backoff=0.002))
        c = Client(api_key=KEY, transport=httpx.MockTransport(server), **kw)
        clients.append(c)
        return c

    yield factory
    for c in clients:
        c.close()


TEXT = ["Hello", ", wör", "ld ", "🌍 ", "日本語", " end."]
FULL = "".join(TEXT)


def test_stream_text_reaches_on_text_in_order_and_reply_is_complete(make) -> None:
    server = Server(ok_stream(sse(stream_events(TEXT))))
    got: list[str] = []
    reply = make(server).complete("hi", on_text=got.append)
    assert "".join(got) == FULL == reply.text
    assert reply.stop_reason == "end_turn" and reply.request_id == "req_ok"
    assert reply.usage.input_tokens == 11 and reply.usage.output_tokens == 9
    assert reply.cost == pytest.approx((11 * 4 + 9 * 20) / 1e6)
    assert reply.ttft is not None and reply.latency >= reply.ttft
    req = server.requests[0]
    assert req.headers["x-api-key"] == KEY and req.headers["anthropic-version"] == "2026-10-21"
    assert server.bodies[0]["stream"] is True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), crlf=st.booleans())
def test_any_chunking_of_the_bytes_gives_the_same_text(make, data, crlf) -> None:
    raw = sse(stream_events(TEXT), sep="\r\n" if crlf else "\n")
    raw = raw.replace(
        b"event: ping", b": a comment line\r\nevent: ping" if crlf else b": a comment\nevent: ping"
    )
    cuts = sorted(data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=40)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]

    async def body():
        for c in chunks:
            yield c

    reply = make(Server(lambda _b: ok_stream(body()))).complete("hi", cache=False)
    assert reply.text == FULL and reply.stop_reason == "end_turn"


def test_a_split_inside_a_utf8_character_is_reassembled(make) -> None:
    raw = sse(stream_events(["🌍"]))
    cut = raw.index("🌍".encode()) + 2

    async def body():
        yield raw[:cut]
        yield raw[cut:]

    assert make(Server(lambda _b: ok_stream(body()))).complete("hi", cache=False).text == "🌍"


@pytest.mark.parametrize(
    "status,etype",
    [
        (408, "timeout_error"),
        (409, "conflict_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_retryable_statuses_are_retried(make, status, etype, stream) -> None:
    good = (
        ok_stream(sse(stream_events(TEXT)))
        if stream
        else httpx.Response(
            200,
            json={
                "id": "m",
                "type": "message",
                "role": "assistant",
                "model": "claude-opus-5-5",
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "content": [{"type": "text", "text": FULL}],
                "usage": {"input_tokens": 1, "output_tokens": 2},
            },
        )
    )
    server = Server(api_error(status, etype), api_error(status, etype), good)
    reply = make(server).complete("hi", stream=stream)
    assert reply.text == FULL and reply.retries == 2 and len(server.bodies) == 3


@pytest.mark.parametrize(
    "status,etype,cls",
    [(400, "invalid_request_error", BadRequestError), (401, "authentication_error", AuthenticationError)],
)
def test_final_errors_fail_at_once_with_one_line(make, status, etype, cls) -> None:
    server = Server(api_error(status, etype, "it is wrong"))
    with pytest.raises(cls) as info:
        make(server).complete("hi")
    assert str(info.value) == f"{status} {etype}: it is wrong (request req_{status})"
    assert len(server.bodies) == 1 and KEY not in repr(info.value)


def test_spend_cap_429_is_not_retried(make) -> None:
    server = Server(
        api_error(429, "rate_limit_error", "cap", details={"error_code": "enforced_spend_limit_reached"})
    )
    with pytest.raises(SpendLimitReached):
        make(server).complete("hi")
    assert len(server.bodies) == 1


def test_x_should_retry_false_stops_a_529(make) -> None:
    server = Server(api_error(529, "overloaded_error", headers={"x-should-retry": "false"}))
    with pytest.raises(OverloadedError):
        make(server).complete("hi")
    assert len(server.bodies) == 1


def test_retry_after_longer_than_the_budget_fails_at_once_and_says_why(make) -> None:
    server = Server(api_error(429, "rate_limit_error", headers={"retry-after": "120"}))
    client = make(server, retry_policy=None, max_wait=60)
    with pytest.raises(Exception) as info:
        client.complete("hi")
    assert "max_wait=60" in str(info.value) and "120 s" in str(info.value)
    assert len(server.bodies) == 1


def test_retry_after_pauses_every_request_of_the_client(make) -> None:
    server = Server(
        api_error(429, "rate_limit_error", headers={"retry-after": "0.2"}),
        ok_stream(sse(stream_events(TEXT))),
    )
    client = make(server)
    reply = client.complete("hi")
    assert reply.retries == 1
    assert client.paused_until > 0  # the wait applies to the bucket, not only to this call


def test_connection_refused_is_retried_a_few_times_then_one_line(make) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    client = Client(
        api_key=KEY,
        transport=httpx.MockTransport(refuse),
        cache=False,
        retry_policy=RetryPolicy(initial=0.001, max_backoff=0.002, max_connect_retries=2),
    )
    with pytest.raises(APIConnectionError) as info:
        client.complete("hi")
    msg = str(info.value)
    assert "Connection refused" in msg and "3 attempts" in msg and "\n" not in msg and KEY not in msg
    client.close()


def test_truncated_stream_is_resumed_not_a_success(make) -> None:
    cut = stream_events(["Hello, wö"], stop=False)
    server = Server(ok_stream(sse(cut)), lambda b: ok_stream(sse(stream_events(["rld done"]))))
    got: list[str] = []
    reply = make(server).complete("hi", model="claude-opus-5-5", on_text=got.append)
    # 5.x refuses prefill: the client continued with a follow-up turn
    sent = server.bodies[1]["messages"]
    assert sent[-2] == {"role": "assistant", "content": "Hello, wö"}
    assert sent[-1] == {"role": "user", "content": CONTINUE_PROMPT}
    assert reply.resumed == 1 and reply.retries == 0
    assert reply.text == "".join(got) == "Hello, wörld done"
    assert reply.usage.input_tokens == 22  # both attempts are paid for, and counted


def test_resume_by_prefill_on_older_models_strips_trailing_whitespace(make) -> None:
    server = Server(
        ok_stream(sse(stream_events(["The quick ", "brown "], model="claude-sonnet-4-5", stop=False))),
        ok_stream(sse(stream_events([" fox."], model="claude-sonnet-4-5"))),
    )
    got: list[str] = []
    reply = make(server).complete("hi", model="claude-sonnet-4-5", on_text=got.append)
    assert server.bodies[1]["messages"][-1] == {"role": "assistant", "content": "The quick brown"}
    assert reply.text == "".join(got) == "The quick brown fox."
    assert reply.resumed == 1


def test_mid_stream_overloaded_error_event_is_resumed(make) -> None:
    broken = stream_events(["Once upon a time"], stop=False) + [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    ]
    server = Server(ok_stream(sse(broken)), ok_stream(sse(stream_events(["a time, a king."]))))
    reply = make(server).complete("hi")
    assert reply.text == "Once upon a time, a king."  # the repeated "a time" is dropped at the seam
    assert reply.resumed == 1


def test_mid_stream_final_error_keeps_the_partial_text(make) -> None:
    broken = stream_events(["Half an ans"], stop=False) + [
        ("error", {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
    ]
    server = Server(ok_stream(sse(broken)))
    got: list[str] = []
    client = make(server)
    with pytest.raises(StreamInterrupted) as info:
        client.complete("hi", on_text=got.append)
    assert info.value.partial == "Half an ans" == "".join(got)
    assert "invalid_request_error" in str(info.value)
    assert client.cache.stats.entries == 0  # a broken answer is never cached


def test_a_break_before_any_text_restarts(make) -> None:
    server = Server(ok_stream(sse(stream_events([], stop=False))), ok_stream(sse(stream_events(TEXT))))
    reply = make(server).complete("hi")
    assert reply.text == FULL and reply.resumed == 0 and reply.retries == 1
    assert server.bodies[1]["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("shown", "continuation", "overlap", "joined"),
    [
        ("Hello world ", "world and more", True, "Hello world and more"),
        ("Hello world ", " and more", True, "Hello world and more"),
        ("Hello world ", "and more", True, "Hello world and more"),
        ("Hello world", " and more", True, "Hello world and more"),
        ("abc", "Hello", True, "abcHello"),
        ("The quick ", " brown", False, "The quick brown"),
        ("The quick ", "brown", False, "The quick brown"),
        ("Line one\n\n", "\n\nLine two", False, "Line one\n\nLine two"),
        ("x = {'a': 1}\n", "x = {'a': 1}\nprint(x)", True, "x = {'a': 1}\nprint(x)"),
    ],
)
def test_seam_joins_without_duplicating(shown, continuation, overlap, joined) -> None:
    for step in (1, 3, len(continuation)):  # however the continuation arrives
        seam = Seam(shown, overlap=overlap)
        out = "".join(seam.feed(continuation[i : i + step]) for i in range(0, len(continuation), step))
        assert shown + out + seam.flush() == joined


def test_cache_hit_refresh_and_no_cache(make) -> None:
    server = Server(lambda b: ok_stream(sse(stream_events(TEXT))))
    client = make(server)
    first = client.complete("hi")
    hit = client.complete("hi", stream=False)  # stream does not change the key
    assert hit.cached and hit.text == first.text and hit.cost == 0.0
    assert hit.extra["saved_cost"] == pytest.approx(first.cost)
    assert len(server.bodies) == 1
    client.complete("hi", refresh=True)
    client.complete("hi", cache=False)
    assert len(server.bodies) == 3
    assert client.cache.stats.hits == 1


def test_a_reply_carries_its_own_rate_limit_reading_and_attempts_but_the_cache_does_not(make) -> None:
    def answer(limit: str) -> Callable[[dict[str, Any]], httpx.Response]:
        def respond(_body: dict[str, Any]) -> httpx.Response:
            response = ok_stream(sse(stream_events(TEXT)))
            response.headers["anthropic-ratelimit-requests-limit"] = limit
            response.headers["anthropic-ratelimit-requests-remaining"] = "9"
            return response
        return respond

    server = Server(api_error(529, "overloaded_error"), answer("50"), answer("60"))
    client = make(server)
    before = time.monotonic()
    first = client.complete("hi")
    second = client.complete("ho")
    assert first.attempts == 2 and first.retries == 1 and second.attempts == 1
    assert first.ratelimit is not None and second.ratelimit is not None
    assert first.ratelimit["requests-limit"] == "50" and second.ratelimit["requests-limit"] == "60"
    assert before < first.ratelimit["at"] < second.ratelimit["at"] <= time.monotonic()
    assert client.last_ratelimit == second.ratelimit and client.last_ratelimit is not second.ratelimit
    assert first.sent_at is None  # a MockTransport does not say when the bytes left
    stored = first.to_dict()
    assert not {"ratelimit", "sent_at", "attempts"} & set(stored)
    check_dict(stored)
    assert Reply.from_dict({**stored, "ratelimit": {"planted": 1}}).ratelimit is None
    hit = client.complete("hi")
    assert hit.cached and hit.attempts == 0 and hit.ratelimit is None and hit.sent_at is None
    assert "ratelimit" not in repr(hit)


def test_lookup_answers_from_the_cache_and_record_stores_an_answer_got_elsewhere(make) -> None:
    server = Server(lambda b: ok_stream(sse(stream_events(TEXT))))
    client = make(server)
    key = client.cache_key(client.build_body("hi"))
    assert client.lookup(key) is None and client.history == []
    first = client.complete("hi")
    hit = client.lookup(key)
    assert hit is not None and hit.cached and hit.text == FULL and hit.cost == 0.0
    assert hit.extra["saved_cost"] == pytest.approx(first.cost) and hit.retries == hit.resumed == 0
    assert client.history == [first, hit] and client.last_reply is first
    assert client.cache.stats.hits == 1 and len(server.bodies) == 1
    other = client.cache_key(client.build_body("elsewhere"))
    got = Reply.from_dict({**first.to_dict(), "text": "from a batch", "batch": True})
    client.record(got, other)
    assert client.history[-1] is got and client.lookup(other).text == "from a batch"
    client.record(got)  # no key: counted, not stored
    assert client.history[-1] is got and len(client.history) == 5
    assert make(server, cache=False).lookup(key) is None


def test_offline_miss_names_the_prompt(make) -> None:
    server = Server(ok_stream(sse(stream_events(TEXT))))
    with pytest.raises(CacheMiss, match="Summarise the sales"):
        make(server, offline=True).complete("Summarise the sales table")
    assert server.bodies == []


def test_sampling_params_fail_before_any_request(make) -> None:
    server = Server(ok_stream(sse(stream_events(TEXT))))
    with pytest.raises(ConfigError, match="2023-06-01"):
        make(server).complete("hi", temperature=0)
    assert server.bodies == []


def test_missing_key_says_how_to_set_one(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    client = Client(cache_dir=tmp_path)
    with pytest.raises(MissingAPIKey, match="ANTHROPIC_API_KEY"):
        client.complete("hi")
    client.close()


def test_the_key_never_shows(make, monkeypatch) -> None:
    client = make(Server(api_error(401, "authentication_error", "invalid x-api-key")))
    assert KEY not in repr(client) and "api_key=set" in repr(client)
    with pytest.raises(AuthenticationError) as info:
        client.complete("hi")
    assert KEY not in str(info.value)
    assert all(
        KEY not in p.read_text(errors="ignore") for p in client.cache.directory.rglob("*") if p.is_file()
    )


def test_settings_resolve_argument_then_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://env.example:9")
    monkeypatch.setenv("CLAUDE_MAGIC_CACHE_DIR", str(tmp_path / "env-cache"))
    c = Client(api_key="k")
    assert c.base_url == "http://env.example:9" and c.cache.directory == tmp_path / "env-cache"
    c.close()
    c = Client(api_key="k", base_url="http://arg.example", cache_dir=tmp_path / "arg")
    assert c.base_url == "http://arg.example" and c.cache.directory == tmp_path / "arg"
    c.close()


def test_timeouts_are_sized_to_the_work(make) -> None:
    server = Server(
        lambda b: httpx.Response(
            200,
            json={
                "id": "m",
                "model": "claude-opus-5-5",
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "content": [{"type": "text", "text": "x"}],
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
        )
    )
    client = make(server)
    client.complete("hi", stream=False, max_tokens=20_000, cache=False)
    t = server.requests[0].extensions["timeout"]
    assert t["connect"] == 5.0 and t["read"] == read_timeout(20_000) == pytest.approx(660.0)
    server.responses = [ok_stream(sse(stream_events(TEXT)))]
    client.complete("hi", max_tokens=20_000, cache=False)
    assert server.requests[1].extensions["timeout"]["read"] == client.stream_idle_timeout


def test_acomplete_works_inside_a_running_loop_and_concurrently(make) -> None:
    server = Server(lambda b: ok_stream(sse(stream_events([b["messages"][0]["content"]]))))
    client = make(server)

    async def main():
        got: list[str] = []
        one = await client.acomplete("solo", on_text=got.append)
        many = await asyncio.gather(*(client.acomplete(f"p{i}") for i in range(20)))
        return one, got, many

    one, got, many = asyncio.run(main())
    assert one.text == "solo" == "".join(got)
    assert [r.text for r in many] == [f"p{i}" for i in range(20)]


def test_an_interrupt_while_streaming_leaves_the_client_usable(make) -> None:
    server = Server(lambda b: ok_stream(sse(stream_events(TEXT))))
    client = make(server)

    def stop(_text: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.complete("hi", on_text=stop, cache=False)
    assert client.complete("again").text == FULL


def test_httpcore_locks_are_fast_acquire_once_a_client_opens_its_pool(make) -> None:
    # Without it, dozens of requests on kept-alive connections reach the server spread over a second.
    import anyio
    from httpcore import _synchronization as sync

    client = make(Server(ok_stream(sse(stream_events(TEXT)))))
    client.complete("hi")

    async def make_lock() -> Any:
        lock = sync.AsyncLock()
        async with lock:
            return lock._anyio_lock

    inner = asyncio.run(make_lock())
    assert isinstance(inner, anyio.Lock) and inner._fast_acquire is True


# -- the layers below the façade, each used without the ones above (see tests/test_structure.py) -----

BODY = {"model": "claude-opus-5-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
READING = {"anthropic-ratelimit-requests-limit": "50", "request-id": "req_rl"}
MESSAGE = {"id": "m", "type": "message", "role": "assistant", "model": "claude-opus-5-5",
           "stop_reason": "end_turn", "stop_sequence": None, "content": [{"type": "text", "text": FULL}],
           "usage": {"input_tokens": 1, "output_tokens": 2}}


def test_one_attempt_gives_the_message_or_one_translated_error_and_notes_the_reading() -> None:
    server = Server(httpx.Response(200, json=MESSAGE, headers=READING),
                    api_error(529, "overloaded_error", headers=READING),
                    ok_stream(sse(stream_events(["Hello", ", wör"], stop=False))))

    async def scenario() -> tuple[dict[str, Any], BaseException, StreamBroken, Call, Attempts]:
        attempts = Attempts("http://api.test", httpx.Auth(), api_version="2026-10-21",
                            transport=httpx.MockTransport(server))
        call = Call(BODY, None, max_wait=5)
        try:
            message = await attempts.message(call, {})
            with pytest.raises(OverloadedError) as failed:
                await attempts.message(call, {})
            with pytest.raises(StreamBroken) as broken:
                await attempts.stream(call, {}, idle_timeout=5)
        finally:
            await attempts.aclose()
        return message, failed.value, broken.value, call, attempts

    message, failed, broken, call, attempts = asyncio.run(scenario())
    assert message["content"] == [{"type": "text", "text": FULL}] and call.attempts == 3
    assert str(failed).startswith("529 overloaded_error") and call.retries == 0  # retrying is not its job
    assert call.ratelimit is not None and call.ratelimit["requests-limit"] == "50"
    assert attempts.ratelimit == call.ratelimit and call.request_id == "req_ok"
    assert isinstance(broken.error, APIConnectionError) and "before message_stop" in str(broken.error)
    assert call.shown == "Hello, wör" and broken.asm.usage["input_tokens"] == 11  # what resuming keeps


def test_the_driver_retries_resumes_and_ends_on_a_final_error_without_any_http() -> None:
    def run(script: list[Any]) -> tuple[Any, Call]:
        async def scenario() -> tuple[Any, Call]:
            scheduler = Scheduler()
            ticket = await scheduler.admit("b", Priority.INTERACTIVE)
            call = Call(BODY, None, max_wait=5)

            async def attempt() -> Any:
                step = script.pop(0)
                if callable(step):
                    step = step(call)
                if isinstance(step, BaseException):
                    raise step
                return step

            driver = Driver(call, ticket, scheduler, RetryPolicy(initial=0.001, max_backoff=0.002))
            try:
                return await driver.run(attempt), call
            except ClaudeError as exc:
                return exc, call

        return asyncio.run(scenario())

    overloaded = OverloadedError("busy", status=529, type="overloaded_error")
    got, call = run([overloaded, {"done": True}])
    assert got == {"done": True} and call.retries == 1 and call.resumed == 0

    def broke_after_text(call: Call) -> StreamBroken:
        call.text("Hello, wör")
        return StreamBroken(MessageAssembler(), APIConnectionError("the stream broke"))

    got, call = run([broke_after_text, {"done": True}])
    assert got == {"done": True} and call.resumed == 1 and call.retries == 0
    assert call.sending["messages"][-2:] == [{"role": "assistant", "content": "Hello, wör"},
                                             {"role": "user", "content": CONTINUE_PROMPT}]

    bad = BadRequestError("no", status=400, type="invalid_request_error")
    got, call = run([bad])
    assert got is bad and call.retries == 0
    got, call = run([broke_after_text, bad])
    assert isinstance(got, StreamInterrupted) and got.partial == "Hello, wör"
    assert str(got).startswith("incomplete answer: 400 invalid_request_error: no")


def test_a_schema_too_big_for_the_api_grammar_is_one_line_that_names_it(make) -> None:
    server = Server(api_error(404, "not_found_error"),  # no models endpoint: the API decides
                    api_error(400, "invalid_request_error", "Schema is too complex for compilation."))
    client = make(server)
    with pytest.raises(BadRequestError) as info:
        client.complete("hi", schema="name: str, tags: list[str]", stream=False)
    message = str(info.value)
    assert "Schema is too complex for compilation." in message and "\n" not in message
    assert "the schema inline spec is too big for the API's grammar: fewer fields" in message
    assert info.value.status == 400
