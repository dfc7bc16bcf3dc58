"""The emulator as a service: bad knobs, malformed HTTP, idle connections, internal errors, exposure.

Each test talks to a real server over a socket; raw sockets send what no HTTP client would.
"""

from __future__ import annotations

import json
import math
import queue
import socket
import subprocess
import sys
import threading
import warnings

import pytest

from claude_magic.emulator import DEFAULT_KNOBS, Emulator
from claude_magic.emulator.__main__ import main

EXPOSED = "reachable from the network, and accepts any API key: listen on 127.0.0.1, or set api_key="

HEADERS = b"host: x\r\nx-api-key: k\r\nanthropic-version: 2026-10-21\r\ncontent-type: application/json\r\n"
BODY = {"model": "claude-haiku-5-5", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def emu(claude_emulator: Emulator) -> Emulator:
    return claude_emulator


def exchange(emu: Emulator, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a new connection, then read one answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(raw)
        head, _, rest = _read_until(sock, b"\r\n\r\n").partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection mid-answer"
            rest += chunk
        return int(status_line.split()[1]), headers, rest[:length]


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer (got {data!r})"
        data += chunk
    return data


def api_error(status: int, headers: dict[str, str], payload: bytes, want: int, kind: str) -> str:
    assert status == want, payload
    data = json.loads(payload)
    assert data["type"] == "error" and data["error"]["type"] == kind
    assert data["request_id"] == headers["request-id"]
    return data["error"]["message"]


def post(body: bytes, extra_headers: bytes = b"") -> bytes:
    return b"POST /v1/messages HTTP/1.1\r\n" + HEADERS + extra_headers + b"\r\n" + body


# -- knobs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "value", "allowed"),
    [
        ("rpm", -5, "rpm must be a positive number of requests per minute"),
        ("rpm", 0, "rpm must be a positive number"),
        ("tpm", 0, "tpm must be a positive number of tokens per minute"),
        ("tpm", -1000, "tpm must be a positive number"),
        ("burst", 0, "burst must be a positive number"),
        ("ttft", -0.1, "ttft must be a number of seconds >= 0"),
        ("ttft", None, "ttft must be a number"),
        ("token_rate", 0, "token_rate must be a positive number of tokens per second"),
        ("token_rate", "fast", "token_rate must be a positive number"),
        ("rpm", True, "rpm must be a positive number"),
        ("tpm", math.nan, "tpm must be a positive number"),
        ("batch_duration", math.inf, "batch_duration must be a number of seconds >= 0"),
        ("min_cache_tokens", 1.5, "min_cache_tokens must be an integer >= 0"),
        ("continue_overlap", -1, "continue_overlap must be an integer >= 0"),
        ("api_key", "", "api_key must be a non-empty string"),
        ("organization_id", 7, "organization_id must be a non-empty string"),
        ("idle_timeout", 0, "idle_timeout must be a positive number of seconds"),
    ],
)
def test_a_bad_knob_value_is_refused_naming_the_knob_the_value_and_what_is_allowed(emu, knob, value, allowed):
    before = emu.knobs
    with pytest.raises(ValueError) as configured:
        emu.configure(**{knob: value})
    message = str(configured.value)
    assert message.startswith(allowed) and message.endswith(f", got {value!r}") and "\n" not in message
    assert emu.knobs == before
    with pytest.raises(ValueError, match=f"^{knob} must be"):
        Emulator(**{knob: value})


def test_a_bad_knob_leaves_the_others_in_the_same_call_unchanged(emu):
    with pytest.raises(ValueError, match="tpm"):
        emu.configure(rpm=60, tpm=-1)
    assert emu.knobs["rpm"] is None


def test_the_defaults_and_none_for_unlimited_knobs_are_accepted(emu):
    emu.configure(**DEFAULT_KNOBS)
    emu.configure(rpm=None, tpm=None, burst=None, token_rate=None, api_key=None, idle_timeout=None)
    emu.configure(rpm=60, tpm=10_000.5, burst=1, ttft=0, token_rate=1e6, min_cache_tokens=0)


def test_the_command_line_refuses_a_bad_knob_in_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--port", "0", "--rpm", "-5"])
    assert info.value.code == 2
    assert "rpm must be a positive number of requests per minute" in capsys.readouterr().err


# -- idle connections ---------------------------------------------------------------------------------


def closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; the bound only guards against a hang."""
    sock.settimeout(30)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n",
        post(b'{"model": ', b"content-length: 100\r\n"),
        post(b"5\r\n[1, 2", b"transfer-encoding: chunked\r\n"),
    ],
    ids=["nothing", "half the headers", "half the body", "half a chunk"],
)
def test_a_connection_that_goes_quiet_is_closed_after_the_idle_timeout(emu, capfd, sent):
    emu.configure(idle_timeout=0.2)
    with socket.create_connection(("127.0.0.1", emu.port)) as sock:
        sock.sendall(sent)
        assert closed_by_server(sock) == b""  # closed, without an answer
    assert emu.requests == []
    assert "Traceback" not in capfd.readouterr().err


def test_a_kept_alive_connection_is_closed_once_idle(emu):
    emu.configure(idle_timeout=0.2)
    with socket.create_connection(("127.0.0.1", emu.port)) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\n" + HEADERS + b"\r\n")
        answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"data"' in answer


def test_the_idle_timeout_defaults_to_a_minute(emu):
    assert DEFAULT_KNOBS["idle_timeout"] == 60.0 and Emulator().knobs["idle_timeout"] == 60.0


# -- malformed requests -------------------------------------------------------------------------------


def with_length(body: bytes, extra_headers: bytes = b"") -> bytes:
    return post(body, extra_headers + b"content-length: %d\r\n" % len(body))


@pytest.mark.parametrize(
    ("raw", "status", "needle", "closes"),
    [
        (with_length(b"[" * 100_000), 400, "nested too deeply", False),
        (with_length(b'{"model": ' * 50_000), 400, "nested too deeply", False),
        (with_length(b'{"model": "claude'), 400, "error parsing the body", False),
        (post(b"", b"content-length: -5\r\n"), 400, "content-length: Invalid header value '-5'", True),
        (post(b"{}", b"content-length: two\r\n"), 400, "content-length: Invalid header value 'two'", True),
        (post(b"{}", b"content-length: 2\r\ncontent-length: 3\r\n"), 400, "'2, 3'", True),
        (post(b"zz\r\n{}\r\n0\r\n\r\n", b"transfer-encoding: chunked\r\n"), 400, "chunk size 'zz'", True),
        (post(b"-2\r\n{}\r\n0\r\n\r\n", b"transfer-encoding: chunked\r\n"), 400, "chunk size '-2'", True),
        (post(b"1\r\n{}\r\n0\r\n\r\n", b"transfer-encoding: chunked\r\n"), 400, "followed by more", True),
        (b"NONSENSE\r\n\r\n", 400, "Bad request syntax", True),
        (b"GET /v1/models HTTP/1.1\r\nx-long: " + b"a" * 300_000 + b"\r\n\r\n", 431, "Line too long", True),
    ],
    ids=["deep array", "deep object", "bad JSON", "negative length", "word length", "two lengths",
         "word chunk size", "negative chunk size", "chunk too long", "bad request line", "long header"],
)
def test_a_malformed_request_gets_an_api_error_and_no_traceback(emu, capfd, raw, status, needle, closes):
    got, headers, payload = exchange(emu, raw)
    assert needle in api_error(got, headers, payload, status, "invalid_request_error")
    assert (headers.get("connection") == "close") == closes
    assert "Traceback" not in capfd.readouterr().err


def test_a_body_over_the_limit_is_a_413_and_the_connection_closes(emu):
    status, headers, payload = exchange(emu, post(b"", b"content-length: 99999999999999999999\r\n"))
    assert "maximum allowed number of bytes" in api_error(status, headers, payload, 413, "request_too_large")
    assert headers["connection"] == "close"


def test_a_well_formed_chunked_body_with_extensions_and_trailers_is_read(emu):
    payload = json.dumps(BODY).encode()
    half = len(payload) // 2
    chunks = b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\ntrailer: x\r\n\r\n" % (
        half, payload[:half], len(payload) - half, payload[half:])
    status, _, answer = exchange(emu, post(chunks, b"transfer-encoding: chunked\r\n"))
    assert status == 200 and json.loads(answer)["type"] == "message"
    assert emu.requests[0].json == BODY


def test_after_a_bad_json_body_the_connection_serves_the_next_request(emu):
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(with_length(b"{") + with_length(json.dumps(BODY).encode()))
        answers = _read_until(sock, b'"type":"message"')
    assert answers.startswith(b"HTTP/1.1 400 ") and b"HTTP/1.1 200 " in answers


# -- content blocks -----------------------------------------------------------------------------------


def with_content(*blocks: dict, **extra) -> dict:
    return {**BODY, "messages": [{"role": "user", "content": list(blocks)}], **extra}


IMAGE_SOURCE = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (with_content({"type": "text", "text": 5}),
         "messages.0.content.0.text: Input should be a valid string, got 5"),
        (with_content({"type": "text"}), "messages.0.content.0.text: Field required"),
        (with_content({"type": "text", "text": "a"}, {"type": "text", "text": ""}),
         "messages.0.content.1.text: text content blocks must be non-empty"),
        (with_content({"type": "image"}, {"type": "text", "text": "What is it?"}),
         "messages.0.content.0.source: Field required"),
        (with_content({"type": "document", "source": "a.pdf"}, {"type": "text", "text": "Sum up"}),
         "messages.0.content.0.source: Input should be a valid dictionary, got 'a.pdf'"),
        (with_content({"type": "text", "text": "x"}, system=[{"type": "text", "text": ["a"]}]),
         "system.0.text: Input should be a valid string, got ['a']"),
        (with_content({"type": "text", "text": "x"}, system=[{"type": "text", "text": ""}]),
         "system.0.text: text content blocks must be non-empty"),
    ],
    ids=["text not a string", "text missing", "empty text", "image without source",
         "document source a string", "system text not a string", "system text empty"],
)
def test_a_malformed_content_block_is_a_400_naming_where_it_is(emu, body, message):
    raw = json.dumps(body).encode()
    for path in (b"/v1/messages", b"/v1/messages/count_tokens"):
        status, headers, payload = exchange(
            emu, b"POST %s HTTP/1.1\r\n%scontent-length: %d\r\n\r\n%s" % (path, HEADERS, len(raw), raw))
        assert api_error(status, headers, payload, 400, "invalid_request_error") == message


def test_well_formed_text_image_and_document_blocks_are_accepted(emu):
    body = with_content(
        {"type": "image", "source": IMAGE_SOURCE},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
        {"type": "text", "text": "Describe both"},
        system=[{"type": "text", "text": "Be brief"}],
    )
    status, _, payload = exchange(emu, with_length(json.dumps(body).encode()))
    assert status == 200, payload


# -- the safety net for the emulator's own failures ------------------------------------------------------


def fault_header(spec: str) -> bytes:
    return b"x-emulator-fault: %s\r\n" % spec.encode()


def test_an_exception_inside_a_request_is_a_500_api_error_not_a_dropped_connection(emu, capfd):
    raw = json.dumps(BODY).encode()
    status, headers, payload = exchange(emu, with_length(raw, fault_header("crash")))
    message = api_error(status, headers, payload, 500, "api_error")
    assert message.startswith("Internal server error: the emulator failed with EmulatedCrash: ")
    assert headers["connection"] == "close"
    emu.inject("crash")  # queued faults take the same path
    status, headers, payload = exchange(emu, with_length(raw))
    api_error(status, headers, payload, 500, "api_error")
    status, _, _ = exchange(emu, with_length(raw))  # the server still answers
    assert status == 200
    assert "Traceback" not in capfd.readouterr().err


def test_an_exception_mid_stream_ends_the_stream_with_an_api_error_event(emu, capfd):
    raw = json.dumps({**BODY, "max_tokens": 500, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(with_length(raw, fault_header("crash:after=2")))
        answer = closed_by_server(sock)  # the stream ends, then the connection closes
    head, _, chunked = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    events = [json.loads(event.split("\ndata: ", 1)[1]) for event in _unchunk(chunked).decode().split("\n\n")
              if event]
    assert [e["delta"]["type"] for e in events if e["type"] == "content_block_delta"] == ["text_delta"] * 2
    assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == "api_error"
    assert "EmulatedCrash" in events[-1]["error"]["message"]
    assert "Traceback" not in capfd.readouterr().err


def _unchunk(data: bytes) -> bytes:
    """The payload of a complete chunked body (fails when the last chunk is missing)."""
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2:]


# -- listening beyond this machine ----------------------------------------------------------------------


def test_listening_on_every_interface_without_a_key_warns_in_one_line():
    with pytest.warns(UserWarning, match=EXPOSED) as caught, Emulator(host="0.0.0.0"):
        pass
    [warning] = caught
    assert "\n" not in str(warning.message) and warning.filename == __file__


@pytest.mark.parametrize(("host", "key"), [("127.0.0.1", None), ("localhost", None), ("0.0.0.0", "sk-mine")])
def test_a_loopback_address_or_a_required_key_does_not_warn(host, key):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Emulator(host=host, api_key=key) as emulator:
            assert emulator.port


def test_the_command_line_prints_the_warning_for_a_network_address():
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_magic.emulator", "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines: queue.Queue[tuple[str, str]] = queue.Queue()
        for name, pipe in (("out", proc.stdout), ("err", proc.stderr)):
            threading.Thread(target=lambda n=name, p=pipe: lines.put((n, p.readline())), daemon=True).start()
        got = dict(lines.get(timeout=30) for _ in range(2))
        assert got["out"].startswith("claude_magic emulator listening on http://0.0.0.0:")
        assert got["err"].startswith("warning: the Claude API emulator listens on 0.0.0.0:")
        assert EXPOSED in got["err"] and got["err"].endswith("(--api-key) to require one\n")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


# -- fields that used to reach the safety net ------------------------------------------------------------


TOOL = {"name": "t", "input_schema": {"type": "object"}}


@pytest.mark.parametrize(
    ("extra", "status", "needle"),
    [
        ({"tools": [TOOL], "tool_choice": "auto"}, 400, "tool_choice: Input should be a valid dictionary"),
        ({"tools": "t"}, 400, "tools: Input should be a valid list of tool objects"),
        ({"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": [5]}}]},
         400, "cache_control.ttl: Input should be '5m' or '1h', got [5]"),
        ({"tools": [{"name": "t", "input_schema": {"type": "object", "properties": [1]}}],
          "tool_choice": {"type": "any"}}, 200, ""),
        ({"tools": [{"name": "t", "input_schema": {"properties": {"a": {"enum": {"x": 1}}}}}],
          "tool_choice": {"type": "any"}}, 200, ""),
    ],
    ids=["tool_choice a string", "tools a string", "ttl a list", "properties a list", "enum an object"],
)
def test_odd_fields_are_answered_as_the_api_would_not_as_an_internal_error(emu, extra, status, needle):
    got, headers, payload = exchange(emu, with_length(json.dumps({**BODY, **extra}).encode()))
    if status == 200:
        assert got == 200, payload
    else:
        assert needle in api_error(got, headers, payload, status, "invalid_request_error")
