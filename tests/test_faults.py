"""The fault matrix: every emulated fault, streaming and not, against a real local server.

Each case ends in the text an unbroken call gives, with the expected number of attempts,
or in the expected one-line error after exactly the expected attempts.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from canary import TEST_KEY

from claude_magic.client import CONTINUE_PROMPT, Client
from claude_magic.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RequestTooLargeError,
    SpendLimitReached,
)
from claude_magic.retry import RetryPolicy

PROMPT = "Tell me a short story about a lighthouse keeper and a data frame."


@pytest.fixture
def client(claude_emulator, tmp_path):
    c = Client(
        api_key=TEST_KEY,
        base_url=claude_emulator.url,
        cache_dir=tmp_path,
        retry_policy=RetryPolicy(initial=0.005, max_backoff=0.02),
    )
    yield c
    c.close()


def messages_requests(emu):
    return [r for r in emu.requests if r.path == "/v1/messages"]


def reference(client, model="claude-opus-5-5", max_tokens=400):
    return client.complete(PROMPT, model=model, max_tokens=max_tokens, cache=False).text


RECOVERABLE = [
    "429:retry-after=0.01",
    "408",
    "409",
    "500",
    "502",
    "503",
    "504",
    "529",
    "slow-headers=0.05+503",
    "529:x-should-retry=true",
]


@pytest.mark.parametrize("fault", RECOVERABLE)
@pytest.mark.parametrize("stream", [True, False])
def test_retryable_faults_end_in_the_same_text_after_one_retry(
    client, claude_emulator, fault, stream
) -> None:
    expected = reference(client)
    claude_emulator.reset()
    claude_emulator.inject(fault)
    reply = client.complete(PROMPT, max_tokens=400, stream=stream, cache=False)
    assert reply.text == expected
    assert reply.retries == 1 and reply.resumed == 0
    assert len(messages_requests(claude_emulator)) == 2


FINAL = [
    ("400", BadRequestError, "invalid_request_error"),
    ("401", AuthenticationError, "authentication_error"),
    ("403", PermissionDeniedError, "permission_error"),
    ("404", NotFoundError, "not_found_error"),
    ("413", RequestTooLargeError, "request_too_large"),
    ("429-spend", SpendLimitReached, "rate_limit_error"),
    ("529:x-should-retry=false", OverloadedError, "overloaded_error"),
]


@pytest.mark.parametrize(("fault", "cls", "etype"), FINAL)
@pytest.mark.parametrize("stream", [True, False])
def test_final_faults_fail_at_once_with_one_line(client, claude_emulator, fault, cls, etype, stream) -> None:
    claude_emulator.inject(fault)
    with pytest.raises(cls) as info:
        client.complete(PROMPT, stream=stream)
    msg = str(info.value)
    assert isinstance(info.value, APIError)
    assert msg.startswith(f"{info.value.status} {etype}: ") and "(request req_" in msg and "\n" not in msg
    assert TEST_KEY not in msg
    assert len(messages_requests(claude_emulator)) == 1
    assert client.cache.stats.entries == 0


@pytest.mark.parametrize("fault", ["error-event:after=3", "cut:after=3", "truncate:after=3"])
@pytest.mark.parametrize("model", ["claude-opus-5-5", "claude-haiku-5-5", "claude-sonnet-4-5"])
def test_a_broken_stream_is_resumed_into_the_unbroken_text(client, claude_emulator, fault, model) -> None:
    unbroken = client.complete(PROMPT, model=model, max_tokens=400, cache=False)
    expected = unbroken.text
    claude_emulator.reset()
    claude_emulator.inject(fault)
    shown: list[str] = []
    reply = client.complete(PROMPT, model=model, max_tokens=400, on_text=shown.append)
    assert reply.text == expected == "".join(shown)  # nothing shown twice, nothing lost
    assert reply.resumed == 1 and reply.retries == 0
    second = messages_requests(claude_emulator)[1].json["messages"]
    if model == "claude-sonnet-4-5":  # accepts prefill: the partial text, whitespace stripped
        assert second[-1]["role"] == "assistant" and not second[-1]["content"][-1:].isspace()
        assert expected.startswith(second[-1]["content"])
    else:  # 5.x refuses prefill: a follow-up turn
        assert second[-2]["role"] == "assistant" and second[-1] == {
            "role": "user",
            "content": CONTINUE_PROMPT,
        }
    full = client.complete(PROMPT, model=model, max_tokens=400)  # the joined answer was cached whole
    assert full.cached and full.text == expected
    assert reply.usage.input_tokens > unbroken.usage.input_tokens  # both attempts were counted


@pytest.mark.parametrize("fault", ["cut:after=1", "truncate:after=1"])
def test_non_streaming_cut_is_retried(client, claude_emulator, fault) -> None:
    expected = reference(client)
    claude_emulator.reset()
    claude_emulator.inject(fault)
    reply = client.complete(PROMPT, max_tokens=400, stream=False, cache=False)
    assert reply.text == expected and reply.retries == 1


def test_a_stream_broken_twice_is_resumed_twice(client, claude_emulator) -> None:
    expected = reference(client)
    claude_emulator.reset()
    claude_emulator.inject("cut:after=2", "error-event:after=2")
    reply = client.complete(PROMPT, max_tokens=400, cache=False)
    assert reply.text == expected and reply.resumed == 2


def test_max_tokens_and_stop_sequences_round_trip(client) -> None:
    short = client.complete(PROMPT, max_tokens=5, cache=False)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 5
    full = reference(client)
    word = full.split()[3]
    stopped = client.complete(PROMPT, max_tokens=400, stop_sequences=[word], cache=False)
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == word
    assert full.startswith(stopped.text) and word not in stopped.text


def test_thinking_blocks_are_kept_apart_from_the_text(client) -> None:
    reply = client.complete(PROMPT, model="claude-opus-5-5", max_tokens=400, cache=False)
    kinds = [b["type"] for b in reply.content]
    assert kinds[0] == "thinking" and "text" in kinds
    assert reply.thinking and reply.thinking not in reply.text


def test_prompt_cache_marks_are_reported_and_priced(client, claude_emulator) -> None:
    claude_emulator.configure(min_cache_tokens=50)
    system = "You are a careful analyst. " * 60
    first = client.complete(PROMPT, system=system, cache_system=True, cache=False)
    again = client.complete(PROMPT, system=system, cache_system=True, cache=False)
    assert first.usage.cache_creation_input_tokens > 0 and first.usage.cache_read_input_tokens == 0
    assert again.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert again.cost < first.cost  # reads are billed at a fraction of writes


def test_count_tokens_and_batches_round_trip(client, claude_emulator, batch_clock) -> None:
    n = client.count_tokens(PROMPT)
    assert n == client.complete(PROMPT, cache=False).usage.input_tokens
    body = client.build_body(PROMPT, max_tokens=50)
    batch = client.create_batch([{"custom_id": "a-1", "params": body}])
    assert batch["processing_status"] == "in_progress"
    assert client.retrieve_batch(batch["id"])["processing_status"] == "in_progress"
    batch_clock.now += claude_emulator.knobs["batch_duration"]
    batch = client.retrieve_batch(batch["id"])
    assert batch["processing_status"] == "ended"
    (line,) = client.batch_results(batch)
    assert line["custom_id"] == "a-1" and line["result"]["type"] == "succeeded"


@pytest.mark.parametrize("stream", [True, False])
def test_on_sent_reports_when_each_attempt_left(client, claude_emulator, stream) -> None:
    # What a rate-limit reading is dated by (batch pacing): one report per attempt, in order,
    # after the call began and before the reply came back.
    claude_emulator.inject("529")
    times: list[float] = []
    before = time.monotonic()
    call = client.acomplete(PROMPT, max_tokens=50, stream=stream, cache=False, on_sent=times.append)
    reply = client.run(call)
    after = time.monotonic()
    assert reply.retries == 1 and len(messages_requests(claude_emulator)) == 2
    assert len(times) == 2 and before < times[0] < times[1] < after
    assert reply.sent_at == times[-1] and reply.attempts == 2  # the same time, on the Reply


class _HeldAfterFirstText(httpx.AsyncByteStream):
    """A reply's bytes up to the end of its first text delta event, then nothing, for ever: the
    stream is still open whenever the caller gets to its first text, however the bytes were chunked
    and however fast the machine is."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = b""
        async for chunk in self._inner:
            received += chunk
            start = received.find(b'"text_delta"')
            end = received.find(b"\n\n", start) if start >= 0 else -1
            if end >= 0:
                yield received[: end + 2]
                await asyncio.Event().wait()  # never set: only a cancel ends this
        raise AssertionError("the reply had no text delta to stop after")

    async def aclose(self) -> None:
        await self._inner.aclose()


class _HoldingTransport(httpx.AsyncBaseTransport):
    """The real transport to the emulator; each reply held after its first text delta."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_HeldAfterFirstText(response.stream), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


def test_close_after_an_interrupted_stream_leaves_nothing_pending(claude_emulator, tmp_path, caplog) -> None:
    # A stream cut short by Ctrl-C leaves its SSE iterator suspended; close() must finalize it
    # and close the loop, or Python reports "Task was destroyed but it is pending!" at exit.
    client = Client(api_key=TEST_KEY, base_url=claude_emulator.url, cache_dir=tmp_path,
                    transport=_HoldingTransport())
    seen: list[str] = []

    def on_text(delta: str) -> None:
        seen.append(delta)
        raise KeyboardInterrupt  # at the first text: the rest of the stream is still to come

    try:
        with pytest.raises(KeyboardInterrupt):
            client.complete(PROMPT, max_tokens=400, cache=False, on_text=on_text)
        assert len(seen) == 1 and seen[0]
        loop, thread = client._bridge.loop, client._bridge.thread
    finally:
        client.close()
    assert loop is not None and loop.is_closed()
    assert thread is not None and not thread.is_alive()
    assert not asyncio.all_tasks(loop), "tasks left pending on the closed loop"
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR], caplog.text


def test_close_finalizes_what_the_loop_left_suspended(client) -> None:
    # What an interrupted call can leave on the loop, made on purpose: an async generator
    # suspended at a yield (an SSE iterator left by ``break``) and a task that never ends.
    finalized: list[str] = []

    async def events() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            finalized.append("generator")

    gen = events()

    async def first() -> int:
        return await gen.__anext__()

    assert client.run(first()) == 1
    never = client.submit(asyncio.Event().wait())
    loop = client._bridge.loop
    client.close()
    assert finalized == ["generator"] and never.cancelled()
    assert loop is not None and loop.is_closed()


def test_thinking_streams_to_on_thinking_before_the_text(client) -> None:
    events: list[tuple[str, str]] = []
    reply = client.complete(PROMPT, model="claude-opus-5-5", max_tokens=400, cache=False,
                            thinking="summarized", on_text=lambda d: events.append(("text", d)),
                            on_thinking=lambda d: events.append(("thinking", d)))
    kinds = [k for k, _ in events]
    assert kinds[0] == "thinking" and "text" in kinds
    assert kinds.index("text") > max(i for i, k in enumerate(kinds) if k == "thinking")
    assert "".join(d for k, d in events if k == "thinking") == reply.thinking != ""
    assert "".join(d for k, d in events if k == "text") == reply.text


def test_acomplete_streams_thinking_from_another_loop(client) -> None:
    async def main() -> tuple[Any, list[str], list[str]]:
        thoughts: list[str] = []
        texts: list[str] = []
        reply = await client.acomplete(PROMPT, model="claude-opus-5-5", max_tokens=400, cache=False,
                                       thinking="summarized", on_text=texts.append,
                                       on_thinking=thoughts.append)
        return reply, thoughts, texts

    reply, thoughts, texts = asyncio.run(main())
    assert "".join(thoughts) == reply.thinking != "" and "".join(texts) == reply.text
