"""What a hostile server or a careless setting cannot do to the client: leak the key, hang a call,
or turn a malformed answer into a traceback wall. Exact bytes through httpx.MockTransport."""

from __future__ import annotations

import _thread
import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from canary import TEST_KEY
from test_client import FULL, TEXT, Server, api_error, ok_stream, sse, stream_events

from claude_magic import _http
from claude_magic.client import Client
from claude_magic.errors import (
    APIConnectionError,
    APIError,
    ConfigError,
    MalformedResponseError,
    StreamInterrupted,
)
from claude_magic.retry import RetryPolicy

KEY = TEST_KEY
FAST = RetryPolicy(initial=0.001, max_backoff=0.002)


def client_for(handler: Any, tmp_path: Any, **kw: Any) -> Client:
    kw.setdefault("retry_policy", FAST)
    kw.setdefault("api_key", KEY)
    return Client(transport=httpx.MockTransport(handler), cache_dir=tmp_path / "cache", **kw)


@pytest.fixture
def make(tmp_path: Any):
    made: list[Client] = []

    def factory(handler: Any, **kw: Any) -> Client:
        made.append(client_for(handler, tmp_path, **kw))
        return made[-1]

    yield factory
    for c in made:
        c.close()


def message_json(**over: Any) -> dict[str, Any]:
    m = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-opus-5-5",
         "content": [{"type": "text", "text": "fine"}], "stop_reason": "end_turn", "stop_sequence": None,
         "usage": {"input_tokens": 3, "output_tokens": 2}}
    m.update(over)
    return m


# -- the key -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stray", ["\n", " ", "\r\n", "\t"])
def test_surrounding_whitespace_is_stripped_from_the_key(make, stray: str) -> None:
    server = Server(httpx.Response(200, json=message_json()))
    client = make(server, api_key=stray + KEY + stray)
    assert client.complete("hi", stream=False, cache=False).text == "fine"
    assert server.requests[0].headers["x-api-key"] == KEY


@pytest.mark.parametrize(("bad", "what"), [("\x00", "NUL"), ("é", "non-ASCII"), ("\x07", "control"),
                                           (" ", "whitespace")])
def test_a_key_that_cannot_be_a_header_is_refused_in_one_line_without_showing_it(
        tmp_path, monkeypatch, bad: str, what: str) -> None:
    key = KEY[:20] + bad + KEY[20:]
    with pytest.raises(ConfigError) as info:
        Client(api_key=key, cache_dir=tmp_path)
    message = str(info.value)
    assert what in message and "\n" not in message
    assert KEY[:20] not in message and KEY[20:] not in message and KEY[:7] in message
    if bad != "\x00":  # the OS refuses a NUL in the environment anyway
        monkeypatch.setenv("ANTHROPIC_API_KEY", key)
        with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
            Client(cache_dir=tmp_path)


def test_no_local_variable_on_the_request_path_shows_the_key_in_a_verbose_traceback(make) -> None:
    from IPython.core.ultratb import VerboseTB

    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug somewhere below us")

    client = make(explode)
    with pytest.raises(RuntimeError) as info:
        client.complete("hi", cache=False)
    text = "\n".join(VerboseTB(theme_name="nocolor").structured_traceback(info.type, info.value, info.tb))
    assert "a bug somewhere below us" in text and "client.complete(" in text  # locals were shown
    assert KEY not in text and KEY[:12] not in text


def test_the_key_never_reaches_a_log_record(make, caplog) -> None:
    server = Server(api_error(529, "overloaded_error", f"echoing {KEY}"),
                    ok_stream(sse(stream_events(TEXT))))
    client = make(server)
    with caplog.at_level(logging.DEBUG):
        assert client.complete("hi", cache=False).text == FULL
        logging.getLogger("claude_magic").debug("a record that names %s", KEY)
    assert caplog.records and all(KEY not in r.getMessage() for r in caplog.records)
    assert any("<redacted>" in r.getMessage() for r in caplog.records)


def test_an_error_text_that_echoes_the_key_is_scrubbed(make) -> None:
    client = make(Server(api_error(400, "invalid_request_error", f"bad key {KEY} given")))
    with pytest.raises(APIError) as info:
        client.complete("hi", cache=False)
    for text in (str(info.value), repr(info.value), info.value.message, *map(str, info.value.args)):
        assert KEY not in text
    assert "<redacted>" in str(info.value)


def test_a_password_in_base_url_is_sent_as_basic_auth_and_shown_nowhere(make, caplog) -> None:
    password = "hunter2-very-secret"

    def refuse(request: httpx.Request) -> httpx.Response:
        server.append(request)
        raise httpx.ConnectError("refused", request=request)

    server: list[httpx.Request] = []
    client = make(refuse, base_url=f"https://me:{password}@gateway.example/", cache=False,
                  retry_policy=RetryPolicy(initial=0.001, max_backoff=0.002, max_connect_retries=0))
    assert password not in repr(client) and client.base_url == "https://gateway.example"
    with caplog.at_level(logging.DEBUG), pytest.raises(APIConnectionError) as info:
        client.complete("hi")
    assert password not in str(info.value) and "gateway.example" in str(info.value)
    assert server[0].headers["authorization"].startswith("Basic ") and "@" not in str(server[0].url)
    assert all(password not in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError) as bad:
        Client(api_key=KEY, base_url=f"ftp://me:{password}@x")
    assert password not in str(bad.value) and "<redacted>@x" in str(bad.value)


def test_a_user_name_in_base_url_is_held_apart_but_not_treated_as_a_secret(tmp_path) -> None:
    from claude_magic._secrets import scrub, values
    from claude_magic.interpolate import render

    client = Client(api_key=KEY, base_url="https://analyst:pw-0123456789@gateway.example", cache_dir=tmp_path)
    assert "analyst" not in values() and "pw-0123456789" in values()
    assert scrub("the analyst said pw-0123456789") == "the analyst said <redacted>"
    assert render("{who}", {"who": "analyst"}, secrets=values()).text == "analyst"
    client.close()


# -- answers that are not the protocol ----------------------------------------------------------------


PORTAL = httpx.Response(200, text="<html><body>Sign in to the hotel wifi</body></html>",
                        headers={"content-type": "text/html"})


@pytest.mark.parametrize("stream", [True, False])
def test_an_html_page_is_a_final_error_after_one_retry(make, stream: bool) -> None:
    server = Server(PORTAL)
    with pytest.raises(MalformedResponseError) as info:
        make(server).complete("hi", stream=stream, cache=False)
    expected = "text/event-stream" if stream else "application/json"
    assert f"expected {expected} from https://api.anthropic.com, got text/html (a proxy or captive portal?)" \
        in str(info.value)
    assert len(server.requests) == 2 and "\n" not in str(info.value)


def json_reply(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(("body", "said"), [
    (b"{not json", "not JSON"),
    (b"", "empty"),
    (b"[1, 2]", "a JSON list"),
    (json.dumps(message_json(content="just text")).encode(), "content is a string"),
    (json.dumps(message_json(usage={"input_tokens": "5", "output_tokens": 1})).encode(),
     "usage.input_tokens is '5'"),
    ("{\"content\": \"caf\xe9\"}".encode("latin-1"), "not UTF-8"),
    (json.dumps(message_json(content=[{"type": "text", "text": 5}])).encode(), "content[0].text"),
])
def test_a_malformed_json_answer_is_one_line_naming_what_came(make, body: bytes, said: str) -> None:
    server = Server(json_reply(body))
    with pytest.raises(MalformedResponseError) as info:
        make(server).complete("hi", stream=False, cache=False)
    assert said in str(info.value) and "\n" not in str(info.value)
    assert len(server.requests) == 2  # retried once: a proxy may hiccup once


def events_then(extra: bytes) -> bytes:
    return sse(stream_events(["Hello"], stop=False)) + extra


@pytest.mark.parametrize(("tail", "said"), [
    (b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {"type": "text_delta", '
     b'"text": "x"}}\n\n', "no valid block index"),
    (b"event: content_block_delta\ndata: [1,2]\n\n", "a JSON list, not an object"),
    (b"event: content_block_delta\ndata: {oops\n\n", "not JSON"),
    (b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": '
     b'{"type": "text_delta", "text": 7}}\n\n', "not a string"),
])
def test_a_malformed_stream_event_keeps_the_partial_text_and_says_what_came(make, tail: bytes,
                                                                              said: str) -> None:
    server = Server(ok_stream(events_then(tail)))
    shown: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        make(server).complete("hi", cache=False, on_text=shown.append)
    assert said in str(info.value) and "\n" not in str(info.value)
    assert info.value.partial.startswith("Hello") and "".join(shown) == info.value.partial


def test_a_redirect_names_where_it_pointed(make) -> None:
    server = Server(httpx.Response(301, headers={"location": "https://user:pw-secret@elsewhere.example/v1"}))
    with pytest.raises(APIError) as info:
        make(server).complete("hi", cache=False)
    message = str(info.value)
    assert "redirect to https://<redacted>@elsewhere.example/v1" in message and "pw-secret" not in message
    assert len(server.requests) == 1


def test_the_phase_that_failed_is_named() -> None:
    request = httpx.Request("POST", "https://api.anthropic.com/v1/messages")
    url = "https://api.anthropic.com"
    before = _http.transport_error(httpx.ReadTimeout("", request=request), url, answered=False, timeout=91)
    after = _http.transport_error(httpx.ReadTimeout("", request=request), url, answered=True, timeout=90)
    refused = _http.transport_error(httpx.ConnectError("refused", request=request), url, answered=False)
    assert str(before) == f"{url} accepted the request but did not answer within 91 s"
    assert str(after) == f"the reply from {url} stopped arriving: nothing came within 90 s"
    assert str(refused).startswith(f"could not reach {url}") and "could not reach" not in str(after)


def test_broke_too_often_names_the_last_cause(make) -> None:
    broken = ok_stream(sse(stream_events(["more text "], stop=False)))
    with pytest.raises(StreamInterrupted) as info:
        make(Server(broken)).complete("hi", cache=False)
    assert "broke too often to resume" in str(info.value)
    assert "last: the stream from https://api.anthropic.com ended before message_stop" in str(info.value)


# -- every wait is bounded -----------------------------------------------------------------------------


def body_of(*parts: bytes, then: str = "hang", gap: float = 0.0) -> Any:
    """A streamed body: ``parts``, then nothing ever again (``hang``) or a ping every ``gap`` s."""

    async def gen() -> AsyncIterator[bytes]:
        for p in parts:
            if gap:
                await asyncio.sleep(gap)
            yield p
        if then == "hang":
            await asyncio.Event().wait()
        while True:
            await asyncio.sleep(gap or 0.01)
            yield b'event: ping\ndata: {"type": "ping"}\n\n'

    return gen()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("then", ["hang", "pings"])
def test_a_server_that_answers_then_sends_no_content_is_bounded_by_max_wait(make, then: str) -> None:
    start = sse(stream_events([], stop=False)[:1])  # message_start only
    server = Server(lambda _b: ok_stream(body_of(start, then=then)))
    client = make(server, max_wait=0.3, stream_idle_timeout=0.3)
    with pytest.raises(APIConnectionError) as info:
        client.complete("hi", cache=False)
    assert "sent no content for too long" in str(info.value) and "max_wait=0.3" in str(info.value)


@pytest.mark.timeout(30)
def test_a_stream_that_produces_is_not_cut_by_max_wait(make) -> None:
    # Twenty deltas 0.05 s apart take longer than max_wait: producing time is not waiting time.
    events = sse(stream_events(["tok "] * 20))
    chunks = [events[i:i + 200] for i in range(0, len(events), 200)]

    async def slow() -> AsyncIterator[bytes]:
        for c in chunks:
            await asyncio.sleep(0.05)
            yield c

    client = make(Server(lambda _b: ok_stream(slow())), max_wait=0.05, stream_idle_timeout=30)
    assert client.complete("hi", cache=False).text == "tok " * 20


@pytest.mark.timeout(30)
def test_silence_after_some_text_is_bounded_and_keeps_the_text(make) -> None:
    server = Server(lambda _b: ok_stream(body_of(events_then(b""), then="pings", gap=0.02)))
    client = make(server, max_wait=0.2, stream_idle_timeout=2)
    with pytest.raises(StreamInterrupted) as info:
        client.complete("hi", cache=False)
    assert info.value.partial == "Hello" and "stopped sending content" in str(info.value)


@pytest.mark.timeout(60)
def test_an_endless_error_body_is_read_only_up_to_a_bound(make) -> None:
    read = [0]

    async def endless() -> AsyncIterator[bytes]:
        while True:
            read[0] += 1
            yield b"x" * 65536

    server = Server(lambda _b: httpx.Response(500, content=endless()))
    with pytest.raises(APIError) as info:
        make(server, max_wait=0.0).complete("hi", stream=False, cache=False)
    assert info.value.status == 500 and "\n" not in str(info.value)
    assert read[0] <= 3 * len(server.requests)  # a few chunks per attempt, not gigabytes


@pytest.mark.timeout(60)
@pytest.mark.parametrize("with_text", [False, True])
def test_interrupt_main_stops_a_blocked_call(make, with_text: bool) -> None:
    # What ipykernel's stop button does on Windows: an interrupt raised from another thread, which a
    # blocking wait on a lock never sees.
    arrived = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        arrived.set()
        return ok_stream(body_of(sse(stream_events([], stop=False)[:1]), then="hang"))

    client = make(hang)
    threading.Thread(target=lambda: (arrived.wait(10), _thread.interrupt_main()), daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        client.complete("hi", cache=False, on_text=(lambda d: None) if with_text else None)
    assert arrived.is_set()


def test_a_secret_stays_scrubbed_while_an_equal_one_that_came_first_is_gone() -> None:
    # The registry once held Secrets by value: a second client's key equal to a first client's
    # was not added, and once the first client was collected the key in use went unscrubbed.
    import gc

    from claude_magic import _secrets

    first = _secrets.Secret(KEY + "-twin")
    second = _secrets.Secret(KEY + "-twin")
    del first
    gc.collect()
    assert second and _secrets.scrub(f"echo {KEY}-twin") == "echo <redacted>"
