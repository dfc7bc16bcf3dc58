from __future__ import annotations

import json
from typing import Any

import pytest

from claude_magic import _wire
from claude_magic._wire import Stop, StreamError, TextDelta, ThinkingDelta
from claude_magic.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    OverloadedError,
    RateLimitError,
    ServerError,
    SpendLimitReached,
)


@pytest.mark.parametrize(
    ("model", "ok"),
    [
        ("claude-sonnet-4-5", True),
        ("claude-sonnet-4-5-20250929", True),
        ("claude-haiku-4-5-20251001", True),
        ("claude-3-5-sonnet-20241022", True),
        ("claude-opus-4-1", True),
        ("claude-opus-4-6", False),
        ("claude-sonnet-4-8", False),
        ("claude-opus-5-5", False),
        ("claude-sonnet-5", False),
        ("claude-haiku-5-5", False),
        ("claude-fable-5-1", False),
        ("claude-mythos-preview", False),
        ("something-else", False),
    ],
)
def test_accepts_prefill_follows_the_4_6_cut(model: str, ok: bool) -> None:
    assert _wire.accepts_prefill(model) is ok


def body(prompt="hi", **kw):
    kw.setdefault("model", "claude-opus-5-5")
    kw.setdefault("max_tokens", 100)
    return _wire.build_body(prompt, **kw)


def test_build_body_minimal_shape() -> None:
    assert body() == {
        "model": "claude-opus-5-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }


@pytest.mark.parametrize("param", ["temperature", "top_p", "top_k"])
def test_sampling_params_fail_under_2026_with_the_way_out(param: str) -> None:
    with pytest.raises(ConfigError) as info:
        body(**{param: 0.5})
    msg = str(info.value)
    assert param in msg and "2026-10-21" in msg and "2023-06-01" in msg and "\n" not in msg


def test_sampling_params_pass_under_legacy_version() -> None:
    assert body(temperature=0.2, api_version="2023-06-01")["temperature"] == 0.2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True, None])
def test_max_tokens_must_be_positive_int(bad) -> None:
    with pytest.raises(ConfigError, match="max_tokens must be a positive integer"):
        body(max_tokens=bad)


def test_effort_and_thinking_map_to_the_2026_fields() -> None:
    b = body(effort="high", thinking="summarized")
    assert b["output_config"] == {"effort": "high"}
    assert b["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert body(thinking=2048)["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    with pytest.raises(ConfigError, match="effort must be one of"):
        body(effort="extreme")


def test_cache_marks_on_system_and_prefix() -> None:
    b = body(system="Be terse.", cache_system="1h")
    assert b["system"] == [
        {"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    msgs = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    b = body(msgs, cache_prefix=True)
    assert b["messages"][1]["content"] == [
        {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}
    ]
    assert b["messages"][2] == {"role": "user", "content": "c"}
    assert msgs[1]["content"] == "b"  # the caller's list is not changed


def test_bad_messages_say_what_is_expected() -> None:
    with pytest.raises(ConfigError, match="message 0 must be a dict"):
        body([{"role": "system", "content": "x"}])
    with pytest.raises(ConfigError, match="prompt is empty"):
        body("   ")


def test_cache_fields_drop_stream_and_metadata() -> None:
    b = {**body(), "stream": True, "metadata": {"user_id": "u"}}
    assert _wire.cache_fields(b) == body()


def error(status, etype, message="m", **extra):
    return json.dumps(
        {"type": "error", "error": {"type": etype, "message": message, **extra}, "request_id": "req_9"}
    ).encode()


@pytest.mark.parametrize(
    ("status", "etype", "cls"),
    [
        (400, "invalid_request_error", BadRequestError),
        (401, "authentication_error", AuthenticationError),
        (429, "rate_limit_error", RateLimitError),
        (500, "api_error", ServerError),
        (504, "timeout_error", ServerError),
        (529, "overloaded_error", OverloadedError),
    ],
)
def test_parse_error_classes_and_one_line(status, etype, cls) -> None:
    err = _wire.parse_error(status, error(status, etype, "bad\nthing"), {"request-id": "req_h"})
    assert type(err) is cls
    assert str(err) == f"{status} {etype}: bad thing (request req_9)"


def test_spend_limit_429_is_its_own_final_error() -> None:
    err = _wire.parse_error(
        429,
        error(429, "rate_limit_error", "limit", details={"error_code": "enforced_spend_limit_reached"}),
        {},
    )
    assert isinstance(err, SpendLimitReached)
    assert "spend limit" in str(err)


def test_parse_error_survives_a_non_json_body() -> None:
    err = _wire.parse_error(502, b"<html>Bad gateway</html>", {"request-id": "req_x"})
    assert isinstance(err, ServerError) and "Bad gateway" in str(err) and "req_x" in str(err)


def events(*pairs):
    asm = _wire.MessageAssembler()
    out = [asm.feed(name, json.dumps(data)) for name, data in pairs]
    return asm, out


START = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "m",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 7, "output_tokens": 1},
        },
    },
)


def test_assembler_keeps_blocks_apart_and_sums_usage() -> None:
    asm, out = events(
        START,
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "hmm"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "sig"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi "}},
        ),
        ("brand_new_event", {"type": "brand_new_event"}),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "future_delta", "x": 1}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "there"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": '{"a": [1, '},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": "2]}"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 30},
            },
        ),
    )
    assert [o for o in out if o] == [ThinkingDelta("hmm"), TextDelta("Hi "), TextDelta("there")]
    assert not asm.done
    assert asm.feed("message_stop", '{"type": "message_stop"}') == Stop()
    assert asm.done
    assert asm.content() == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Hi there"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, 2]}},
    ]
    assert asm.usage == {"input_tokens": 7, "output_tokens": 30}
    assert asm.message["stop_reason"] == "tool_use"


def test_assembler_text_includes_the_open_block_and_error_events_are_kept() -> None:
    asm, out = events(
        START,
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial"}},
        ),
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )
    assert asm.text == "partial" and asm.content() == [] and not asm.done
    assert out[:-1] == [None, None, TextDelta("partial")] and isinstance(out[-1], StreamError)
    err = _wire.error_from_event(out[-1].data, "req_5")
    assert isinstance(err, OverloadedError) and err.status == 529 and "req_5" in str(err)


def test_assembler_says_which_thinking_each_event_added() -> None:
    asm = _wire.MessageAssembler()
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}
    delta = {"type": "content_block_delta", "index": 0,
             "delta": {"type": "thinking_delta", "thinking": "hmm"}}
    seen = []
    for name, data in [START, ("content_block_start", start), ("content_block_delta", delta), ("ping", {})]:
        seen.append(asm.feed(name, json.dumps(data)))
    assert seen == [None, None, ThinkingDelta("hmm"), None]  # thinking is not text; only its delta's event
    assert not isinstance(seen[2], TextDelta)


def test_assembler_returns_nothing_for_an_empty_delta_and_its_events_are_frozen() -> None:
    asm = _wire.MessageAssembler()
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    empty = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ""}}
    word = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}
    assert asm.feed("content_block_start", json.dumps(start)) is None
    assert asm.feed("content_block_delta", json.dumps(empty)) is None  # nothing added: nothing to show
    event = asm.feed("content_block_delta", json.dumps(word))
    assert event == TextDelta("hi")
    with pytest.raises(AttributeError):
        event.text = "changed"  # type: ignore[misc,union-attr]


def test_images_and_documents_are_keyed_by_their_content_never_a_file_id_or_base64() -> None:
    import base64 as b64
    import hashlib

    data = b"\x89PNG\r\n\x1a\n pretend pixels"
    digest = hashlib.sha256(data).hexdigest()

    def body(source: dict[str, Any]) -> dict[str, Any]:
        return {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is it?"}, {"type": "image", "source": source}]}]}

    inline = _wire.cache_fields(body({"type": "base64", "media_type": "image/png",
                                      "data": b64.b64encode(data).decode()}))
    uploaded = _wire.cache_fields(body({"type": "file", "file_id": "file_1"}), {"file_1": digest})
    reuploaded = _wire.cache_fields(body({"type": "file", "file_id": "file_2"}), {"file_2": digest})
    assert inline == uploaded == reuploaded
    assert "file_1" not in json.dumps(uploaded) and b64.b64encode(data).decode() not in json.dumps(inline)
    unknown = _wire.cache_fields(body({"type": "file", "file_id": "file_3"}))  # nothing known: as sent
    assert unknown != inline and "file_3" in json.dumps(unknown)
