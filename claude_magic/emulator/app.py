"""The HTTP server: routing, auth, faults, rate limits, JSON and SSE answers.

Standard library only: ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive, one daemon thread per
connection). JSON answers go out in one write with ``content-length``; streams use
``transfer-encoding: chunked`` with one chunk (one write, TCP_NODELAY) per SSE event.

A connection that sends nothing for ``idle_timeout`` seconds (the knob, default 60) while the
server waits for a request or the rest of one, or reads nothing while the server writes, is closed
without an answer, so a half-open connection cannot hold a server thread forever. HTTP clients drop
idle pooled connections sooner (httpx after 5 s), so this does not close a connection under a client
that means to reuse it.

Nothing a client sends or does prints a traceback (stderr lands in the user's notebook): malformed
requests are answered 400 (:mod:`.body`), a client that goes away is let go, and any other exception
inside a request is answered 500 ``api_error`` (mid-stream: an ``error`` event) and logged at DEBUG.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
import secrets
import signal
import socket
import sys
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import attachments, caching, faults, structured
from .batches import BatchStore
from .body import BodyUnread, ClientGone, parse_json, read_bytes
from .files import FileStore, Form, is_form, parse_form
from .generate import Plan, plan_reply
from .knobs import DEFAULT_KNOBS, LIMIT_KNOBS
from .knobs import check as check_knobs
from .models import ModelSpec, find_model, model_info
from .models import page as model_page
from .ratelimit import RateLimiter
from .tokens import count as count_tokens
from .validate import API_VERSIONS, APIError, check_count_request, check_messages_request, invalid

FAULT_HEADER = "x-emulator-fault"
REDACTED = ("x-api-key", "authorization")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator saw it (the API key redacted)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    json: Any


def _request_id() -> str:
    return "req_" + secrets.token_hex(12)


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p), h) for m, p, h in [
        ("POST", r"^/v1/messages$", "messages"),
        ("POST", r"^/v1/messages/count_tokens$", "count_tokens"),
        ("POST", r"^/v1/messages/batches$", "batch_create"),
        ("GET", r"^/v1/messages/batches$", "batch_list"),
        ("GET", r"^/v1/messages/batches/([^/]+)$", "batch_get"),
        ("DELETE", r"^/v1/messages/batches/([^/]+)$", "batch_delete"),
        ("POST", r"^/v1/messages/batches/([^/]+)/cancel$", "batch_cancel"),
        ("GET", r"^/v1/messages/batches/([^/]+)/results$", "batch_results"),
        ("POST", r"^/v1/files$", "file_upload"),
        ("GET", r"^/v1/files$", "file_list"),
        ("GET", r"^/v1/files/([^/]+)$", "file_get"),
        ("DELETE", r"^/v1/files/([^/]+)$", "file_delete"),
        ("GET", r"^/v1/files/([^/]+)/content$", "file_content"),
        ("GET", r"^/v1/models$", "models"),
        ("GET", r"^/v1/models/([^/]+)$", "model"),
    ]
]


def _quiet() -> None:
    """Block SIGINT in this server thread: run inside a kernel, the emulator's threads must not take
    the stop button's signal from the main thread (a cell blocked on a lock wakes only when the
    signal lands on the main thread)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # benchmarks open ~100 connections at once
    allow_reuse_address = True

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        _quiet()
        super().process_request_thread(request, client_address)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        _quiet()
        super().serve_forever(poll_interval)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that closes a kept-alive connection (a Client closed or rebuilt, a cancelled
        # stream) is routine, not a server error: the base class would print a traceback to
        # stderr, which lands in the user's notebook (and fails nbval).
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def _exposure(address: str, port: int, api_key: str | None) -> str | None:
    """The one-line warning for a server other machines can reach with any key, or None."""
    if api_key is not None or ipaddress.ip_address(address).is_loopback:
        return None
    return (f"the Claude API emulator listens on {address}:{port}, reachable from the network, and accepts "
            "any API key: listen on 127.0.0.1, or set api_key= (--api-key) to require one")


class _Closed(Exception):
    """The connection was closed on purpose (a fault): send nothing more."""


class Emulator:
    """A local Claude API server on a real socket. See the package docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, ttft: float = 0.0,
                 token_rate: float | None = None, rpm: float | None = None, tpm: float | None = None,
                 burst: float | None = None, api_key: str | None = None, batch_duration: float = 0.2,
                 min_cache_tokens: int = 1024, continue_overlap: int = 12,
                 organization_id: str = DEFAULT_KNOBS["organization_id"],
                 idle_timeout: float | None = DEFAULT_KNOBS["idle_timeout"]) -> None:
        self.host = host
        self.port = port
        self._initial: dict[str, Any] = dict(
            ttft=ttft, token_rate=token_rate, rpm=rpm, tpm=tpm, burst=burst, api_key=api_key,
            batch_duration=batch_duration, min_cache_tokens=min_cache_tokens,
            continue_overlap=continue_overlap, organization_id=organization_id, idle_timeout=idle_timeout)
        check_knobs(self._initial)
        self._lock = threading.Lock()
        self._knobs = dict(self._initial)
        self._faults: deque[tuple[faults.Fault, str]] = deque()
        self._records: list[RecordedRequest] = []
        self._limiter = RateLimiter(rpm, tpm, burst)
        self._connections: set[socket.socket] = set()
        self.prompt_cache = caching.PromptCache()
        self.batches = BatchStore()
        self.files = FileStore()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Emulator:
        """Listen and serve in a daemon thread; warns (UserWarning) when other machines can use it."""
        return self._start()

    def _start(self) -> Emulator:
        if self._server is not None:
            return self
        handler = type("Handler", (_Handler,), {"emulator": self})
        server = _Server((self.host, self.port), handler, bind_and_activate=False)
        try:
            server.server_bind()
            server.server_activate()
        except OSError:
            server.server_close()
            raise
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"claude-emulator-{self.port}", daemon=True)
        self._thread.start()
        exposed = _exposure(str(server.server_address[0]), self.port, self.knobs["api_key"])
        if exposed:
            warnings.warn(exposed, UserWarning, stacklevel=3)  # the caller of start() or __enter__
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive connections would otherwise outlive the server
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self._start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        return f"<Emulator {self.url} {state}>"

    # -- knobs, faults, records ---------------------------------------------------------------------
    @property
    def knobs(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._knobs)

    def configure(self, **knobs: Any) -> None:
        """Change knobs while running (thread-safe).

        Unknown names raise TypeError and bad values ValueError, before any knob changes.
        ``idle_timeout`` applies to connections opened after the change.
        """
        check_knobs(knobs)
        with self._lock:
            self._knobs.update(knobs)
            if any(k in knobs for k in LIMIT_KNOBS):
                self._limiter = RateLimiter(self._knobs["rpm"], self._knobs["tpm"], self._knobs["burst"])

    def inject(self, *specs: str, on: str = "/v1/messages") -> None:
        """Queue faults for the next requests to ``on``, one per request, in order.

        ``on`` is a path (``/v1/messages``, the default), a prefix ending in ``*``
        (``/v1/messages/batches*``) or ``*`` for every request. Bad specs raise ValueError.
        """
        parsed = [faults.parse(s) for s in specs]
        with self._lock:
            self._faults.extend((f, on) for f in parsed)

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far."""
        with self._lock:
            return list(self._records)

    def reset(self, *, knobs: bool = False) -> None:
        """Clear faults, records, rate-limit state, batches, uploaded files and the prompt cache.

        ``knobs=True`` also restores the knobs given to the constructor.
        """
        with self._lock:
            if knobs:
                self._knobs = dict(self._initial)
            self._faults.clear()
            self._records.clear()
            self._limiter = RateLimiter(self._knobs["rpm"], self._knobs["tpm"], self._knobs["burst"])
        self.prompt_cache.clear()
        self.batches.clear()
        self.files.clear()

    # -- used by the handler ------------------------------------------------------------------------
    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self._records.append(record)

    def _next_fault(self, path: str) -> faults.Fault | None:
        with self._lock:
            for i, (fault, on) in enumerate(self._faults):
                if on == "*" or on == path or (on.endswith("*") and path.startswith(on[:-1])):
                    del self._faults[i]
                    return fault
        return None

    def _limiter_now(self) -> RateLimiter:
        with self._lock:
            return self._limiter

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "claude-magic-emulator"
    emulator: Emulator
    request_id: str
    extra: dict[str, str]  # headers every answer to this request carries (rate-limit readings)
    head_sent = False      # the status line of the answer to this request went out
    stream: _Stream | None = None  # the SSE answer being written, if any

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.emulator.knobs["idle_timeout"])  # reads and writes alike
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.emulator._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.emulator._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: tests and benchmarks send thousands of requests

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the base class answers itself (a malformed request line or header, an unsupported
        method) in the API's JSON error shape instead of HTML; the connection closes after them."""
        self.request_id = _request_id()
        self.extra = {}
        self.close_connection = True
        kind = faults.ERROR_TYPES.get(code, "api_error" if code >= 500 else "invalid_request_error")
        self._send_error(APIError(code, kind, message or HTTPStatus(code).phrase))

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- one request --------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        self.request_id = _request_id()
        self.extra = {}
        self.head_sent, self.stream = False, None
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        try:
            try:
                body = self._read_body(path)
                recorded = body.summary() if isinstance(body, Form) else body  # never a file's bytes
                record = RecordedRequest(self.command, path, split.query, self._safe_headers(), recorded)
                self.emulator._record(record)
                self._route(path, parse_qs(split.query), body)
            except APIError as exc:
                self._send_error(exc)
        except (_Closed, ClientGone):
            self.close_connection = True
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # the safety net: answered, never a traceback
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        """Answer an exception no check expected (an emulator bug) with 500 ``api_error``, or, once a
        stream has started, with an ``error`` event, as the API does; the connection closes.

        The base class would drop the connection and print a traceback to stderr, which lands in the
        user's notebook; the traceback goes to this module's logger at DEBUG level instead.
        """
        _log.debug("%s %s failed", self.command, self.path, exc_info=exc)
        self.close_connection = True
        message = f"Internal server error: the emulator failed with {type(exc).__name__}: {exc}"
        try:
            if self.stream is not None:
                self.stream.fail(message)
            elif not self.head_sent:
                self._send_error(APIError(500, "api_error", message))
        except OSError:  # the client went away meanwhile
            pass

    def _read_body(self, path: str) -> Any:
        """The JSON body, or the parsed :class:`~.files.Form` of a multipart/form-data one."""
        try:
            raw = read_bytes(self.rfile, self.headers, path)
        except BodyUnread:
            self.close_connection = True
            raise
        content_type = self.headers.get("content-type")
        if raw and is_form(content_type):
            return parse_form(raw, str(content_type))
        return parse_json(raw)

    def _safe_headers(self) -> dict[str, str]:
        return {k.lower(): ("REDACTED" if k.lower() in REDACTED else v) for k, v in self.headers.items()}

    def _route(self, path: str, query: dict[str, list[str]], body: Any) -> None:
        fault = self._fault(path)
        if fault is not None and fault.slow_headers > 0:
            time.sleep(fault.slow_headers)
        if path == "/v1/messages" and self.command == "POST":
            self.extra.update(self.emulator._limiter_now().headers())
        if fault is not None and fault.kind in ("status", "spend"):
            status, kind, message, headers, details = faults.error_answer(fault)
            raise APIError(status, kind, message, headers=headers, details=details)
        self._authenticate()
        version = self._api_version()
        for method, pattern, name in _ROUTES:
            match = pattern.match(path)
            if match and method == self.command:
                getattr(self, "_h_" + name)(body, version, query, fault, *match.groups())
                return
        raise APIError(404, "not_found_error", f"Not found: {self.command} {path}")

    def _fault(self, path: str) -> faults.Fault | None:
        spec = self.headers.get(FAULT_HEADER)
        if spec:
            try:
                return faults.parse(spec)
            except faults.FaultSpecError as exc:
                raise invalid(f"{FAULT_HEADER}: {exc}") from None
        return self.emulator._next_fault(path)

    def _authenticate(self) -> None:
        key = self.headers.get("x-api-key") or ""
        auth = self.headers.get("authorization") or ""
        if not key and auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
        if not key:
            raise APIError(401, "authentication_error",
                           "x-api-key header is required (or Authorization: Bearer <key>)")
        expected = self.emulator.knobs["api_key"]
        if expected is not None and key != expected:
            raise APIError(401, "authentication_error", "invalid x-api-key")

    def _betas(self) -> list[str]:
        """``anthropic-beta``: comma-separated, possibly repeated."""
        headers = self.headers.get_all("anthropic-beta") or []
        return [b.strip() for h in headers for b in h.split(",") if b.strip()]

    def _api_version(self) -> str:
        version = self.headers.get("anthropic-version")
        if not version:
            raise invalid("anthropic-version: header is required")
        if version not in API_VERSIONS:
            raise invalid(f"anthropic-version: {version!r} is not a supported API version; use "
                          f"{' or '.join(API_VERSIONS)}")
        return version

    # -- writing ------------------------------------------------------------------------------------
    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        self.head_sent = True  # the caller writes it next
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Overloaded" if status == 529 else "Error"
        lines = [f"HTTP/1.1 {status} {reason}", f"request-id: {self.request_id}",
                 f"anthropic-organization-id: {self.emulator.knobs['organization_id']}",
                 f"date: {self.date_time_string()}", f"server: {self.server_version}"]
        lines += [f"{k}: {v}" for k, v in {**self.extra, **headers}.items()]
        if self.close_connection:
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, status: int, payload: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        head = self._head(status, {"content-type": content_type, "content-length": str(len(payload)),
                                   **(headers or {})})
        self.wfile.write(head + payload)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        self._send(status, payload, "application/json", headers)

    def _send_error(self, exc: APIError) -> None:
        error: dict[str, Any] = {"type": exc.type, "message": exc.message}
        if exc.details:
            error["details"] = exc.details
        body = {"type": "error", "error": error, "request_id": self.request_id}
        self._send_json(exc.status, body, exc.headers)

    def _close_abruptly(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Closed

    # -- /v1/messages -------------------------------------------------------------------------------
    def _h_messages(self, body: Any, version: str, query: dict, fault: faults.Fault | None) -> None:
        knobs = self.emulator.knobs
        files = self.emulator.files
        spec, plan, media = _plan(body, version, self._betas(), knobs["continue_overlap"], files)
        plan = faults.reshape(plan, fault)
        segs = caching.segments(body, media)
        total = caching.BASE_OVERHEAD + sum(s.tokens for s in segs)
        if total > spec.context:
            raise invalid(f"prompt is too long: {total} tokens > {spec.context} maximum")
        self._admit(total + plan.output_tokens)
        usage = self.emulator.prompt_cache.account(segs, spec.id, min_tokens=knobs["min_cache_tokens"],
                                                   now=time.monotonic())
        message = _message(body["model"], plan, usage)
        if body.get("stream"):
            try:
                _Stream(self, plan, message, fault, knobs).run()
            except _Stopped:
                pass
            return
        if fault is not None and fault.kind in ("cut", "truncate"):
            self._close_abruptly()
        if fault is not None and fault.kind == "crash":
            raise faults.EmulatedCrash("emulated crash (fault 'crash')")
        if fault is not None and fault.kind == "error-event":
            raise APIError(529, "overloaded_error", "Overloaded")
        delay = knobs["ttft"] + (plan.output_tokens / knobs["token_rate"] if knobs["token_rate"] else 0.0)
        if delay > 0:
            time.sleep(delay)
        self._send_json(200, message)

    def _admit(self, cost: int) -> None:
        wait, headers = self.emulator._limiter_now().admit(cost)
        self.extra.update(headers)
        if wait > 0:
            raise APIError(429, "rate_limit_error",
                           "This request would exceed your organization's rate limit. Please retry later.",
                           headers={"retry-after": str(max(1, math.ceil(wait)))})

    def _h_count_tokens(self, body: Any, version: str, query: dict, fault: faults.Fault | None) -> None:
        spec = check_count_request(body, version)
        structured.check_shape(body, self._betas())
        found = attachments.inspect(body, spec, None, counting=True)
        media = {key: a.tokens for key, a in found.items()}
        self._send_json(200, {"input_tokens": caching.total_input(body, media)})

    # -- Message Batches ----------------------------------------------------------------------------
    def _base_url(self) -> str:
        host = self.headers.get("host")
        return f"http://{host}" if host else self.emulator.url

    def _h_batch_create(self, body: Any, version: str, query: dict, fault: faults.Fault | None) -> None:
        overlap, betas, files = self.emulator.knobs["continue_overlap"], self._betas(), self.emulator.files

        def run(params: dict) -> dict:
            spec, plan, media = _plan(params, version, betas, overlap, files)
            # a batch's requests read and write the prompt cache as live ones do (best effort on the API)
            usage = self.emulator.prompt_cache.account(caching.segments(params, media), spec.id,
                                                       min_tokens=self.emulator.knobs["min_cache_tokens"],
                                                       now=time.monotonic())
            return _message(params["model"], plan, usage)

        batch = self.emulator.batches.create(body, run, float(self.emulator.knobs["batch_duration"]))
        self._send_json(200, self.emulator.batches.to_object(batch, self._base_url()))

    def _h_batch_get(self, body: Any, version: str, query: dict, fault: Any, batch_id: str) -> None:
        batches = self.emulator.batches
        self._send_json(200, batches.to_object(batches.get(batch_id), self._base_url()))

    def _h_batch_cancel(self, body: Any, version: str, query: dict, fault: Any, batch_id: str) -> None:
        batches = self.emulator.batches
        self._send_json(200, batches.to_object(batches.cancel(batch_id), self._base_url()))

    def _h_batch_delete(self, body: Any, version: str, query: dict, fault: Any, batch_id: str) -> None:
        self._send_json(200, self.emulator.batches.delete(batch_id))

    def _h_batch_results(self, body: Any, version: str, query: dict, fault: Any, batch_id: str) -> None:
        batches = self.emulator.batches
        lines = batches.results(batches.get(batch_id))
        payload = ("\n".join(lines) + "\n").encode() if lines else b""
        self._send(200, payload, "application/binary")

    def _h_batch_list(self, body: Any, version: str, query: dict, fault: Any) -> None:
        after, before, limit = _page_args(query)
        items, more = self.emulator.batches.page(after, before, limit)
        base = self._base_url()
        self._send_json(200, _page([self.emulator.batches.to_object(b, base) for b in items], more))

    # -- Files API ----------------------------------------------------------------------------------
    def _h_file_upload(self, body: Any, version: str, query: dict, fault: Any) -> None:
        self._send_json(200, self.emulator.files.upload(body).to_object())

    def _h_file_list(self, body: Any, version: str, query: dict, fault: Any) -> None:
        after, before, limit = _page_args(query)
        self._send_json(200, self.emulator.files.page(query, after, before, limit))

    def _h_file_get(self, body: Any, version: str, query: dict, fault: Any, file_id: str) -> None:
        self._send_json(200, self.emulator.files.get(file_id).to_object())

    def _h_file_delete(self, body: Any, version: str, query: dict, fault: Any, file_id: str) -> None:
        self._send_json(200, self.emulator.files.delete(file_id))

    def _h_file_content(self, body: Any, version: str, query: dict, fault: Any, file_id: str) -> None:
        self._send(200, self.emulator.files.content(file_id), "application/octet-stream")

    # -- /v1/models ---------------------------------------------------------------------------------
    def _h_models(self, body: Any, version: str, query: dict, fault: Any) -> None:
        try:
            page, more = model_page(*_page_args(query))
        except ValueError as exc:
            raise invalid(str(exc)) from None
        self._send_json(200, _page([model_info(m) for m in page], more))

    def _h_model(self, body: Any, version: str, query: dict, fault: Any, model_id: str) -> None:
        spec = find_model(model_id)
        if spec is None:
            raise APIError(404, "not_found_error", f"model: {model_id}")
        self._send_json(200, model_info(spec))


def _page_args(query: dict[str, list[str]]) -> tuple[str | None, str | None, int]:
    raw = query.get("limit", ["20"])[-1]
    try:
        limit = int(raw)
    except ValueError:
        raise invalid(f"limit: Input should be a valid integer, got {raw!r}") from None
    if not 1 <= limit <= 1000:
        raise invalid(f"limit: Input should be between 1 and 1000, got {limit}")
    return query.get("after_id", [None])[-1], query.get("before_id", [None])[-1], limit


def _page(data: list[dict], has_more: bool) -> dict:
    return {"data": data, "has_more": has_more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def _plan(body: Any, version: str, betas: list[str], continue_overlap: int,
          files: FileStore) -> tuple[ModelSpec, Plan, dict[tuple[int, int], int]]:
    """The model and the reply of a Messages request (or a batch's), after all its checks, and the
    input tokens of its image and document blocks."""
    spec = check_messages_request(body, version)
    found = attachments.inspect(body, spec, files)
    fmt = structured.check_request(body, spec, betas)
    text = structured.answer(body, fmt) if fmt is not None else None
    plan = plan_reply(body, always_thinks=spec.always_thinks, continue_overlap=continue_overlap, text=text,
                      shown={key: a.label for key, a in found.items()})
    return spec, plan, {key: a.tokens for key, a in found.items()}


def _message(model: str, plan: Plan, usage: caching.InputUsage) -> dict:
    return {
        "id": "msg_" + secrets.token_hex(12),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [b.content() for b in plan.blocks],
        "stop_reason": plan.stop_reason,
        "stop_sequence": plan.stop_sequence,
        "stop_details": plan.stop_details,
        "container": None,
        "usage": {**usage.to_dict(), "output_tokens": plan.output_tokens, "service_tier": "standard",
                  "inference_geo": "global", "server_tool_use": None},
    }


class _Stream:
    """Writes one Messages reply as SSE, pacing deltas and applying a stream fault."""

    def __init__(self, handler: _Handler, plan: Plan, message: dict, fault: faults.Fault | None,
                 knobs: dict[str, Any]) -> None:
        self.h = handler
        self.plan = plan
        self.message = message
        self.fault = fault if fault is not None and fault.is_stream_fault else None
        self.ttft = float(knobs["ttft"] or 0.0)
        self.rate = knobs["token_rate"]
        self.text_deltas = sum(len(b.pieces) for b in plan.blocks if b.type == "text")
        self.sent_text = 0
        self.tokens = 0

    def run(self) -> None:
        self.h.wfile.write(self.h._head(200, {"content-type": "text/event-stream; charset=utf-8",
                                              "cache-control": "no-cache", "transfer-encoding": "chunked"}))
        self.h.stream = self
        self.t0 = time.monotonic()
        usage = self.message["usage"]
        start = {**self.message, "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {**usage, "output_tokens": min(3, max(1, self.plan.output_tokens))}}
        self.event("message_start", {"type": "message_start", "message": start})
        if not self.plan.blocks:
            self.event("ping", {"type": "ping"})
        for index, block in enumerate(self.plan.blocks):
            self.block(index, block)
        if self.fault is not None and self.sent_text == 0:
            self.fire()
        plan = self.plan
        delta: dict[str, Any] = {"stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence}
        if plan.stop_details is not None:
            delta["stop_details"] = plan.stop_details
        self.event("message_delta", {
            "type": "message_delta",
            "delta": delta,
            "usage": {"input_tokens": usage["input_tokens"],
                      "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                      "cache_read_input_tokens": usage["cache_read_input_tokens"],
                      "output_tokens": self.plan.output_tokens},
        })
        self.event("message_stop", {"type": "message_stop"})
        self.h.wfile.write(b"0\r\n\r\n")

    def block(self, index: int, block: Any) -> None:
        start = block.content()
        if block.type == "text":
            start["text"] = ""
        elif block.type == "thinking":
            start.update(thinking="", signature="")
        elif block.type == "tool_use":
            start["input"] = {}
        self.event("content_block_start",
                   {"type": "content_block_start", "index": index, "content_block": start})
        if index == 0:
            self.event("ping", {"type": "ping"})
        for piece in block.pieces:
            self.pace(piece)
            if block.type == "thinking":
                if not block.omitted:
                    self.delta(index, {"type": "thinking_delta", "thinking": piece})
            elif block.type == "tool_use":
                self.delta(index, {"type": "input_json_delta", "partial_json": piece})
            else:
                if self.fault is not None and self.fault.after == 0 and self.sent_text == 0:
                    self.fire()
                self.delta(index, {"type": "text_delta", "text": piece})
                self.sent_text += 1
                if self.fault is not None and (self.sent_text == self.fault.after or (
                        self.sent_text == self.text_deltas and self.sent_text < self.fault.after)):
                    self.fire()
        if block.type == "thinking":
            self.delta(index, {"type": "signature_delta", "signature": block.signature})
        self.event("content_block_stop", {"type": "content_block_stop", "index": index})

    def pace(self, piece: str) -> None:
        self.tokens += count_tokens(piece)
        if not self.ttft and not self.rate:
            return
        due = self.t0 + self.ttft + (self.tokens / self.rate if self.rate else 0.0)
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def delta(self, index: int, delta: dict) -> None:
        self.event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def event(self, name: str, data: dict) -> None:
        payload = f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
        self.h.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))

    def fire(self) -> None:
        assert self.fault is not None
        kind = self.fault.kind
        if kind == "cut":
            self.h._close_abruptly()
        if kind == "crash":
            raise faults.EmulatedCrash(f"emulated crash (fault 'crash') after {self.sent_text} text deltas")
        if kind == "error-event":
            error = {"type": "overloaded_error", "message": "Overloaded"}
            self.event("error", {"type": "error", "error": error, "request_id": self.h.request_id})
        self.h.wfile.write(b"0\r\n\r\n")
        raise _Stopped

    def fail(self, message: str) -> None:
        """End the stream after an unexpected exception: an ``api_error`` event, then the last chunk."""
        error = {"type": "api_error", "message": message}
        self.event("error", {"type": "error", "error": error, "request_id": self.h.request_id})
        self.h.wfile.write(b"0\r\n\r\n")


class _Stopped(Exception):
    """The stream ended early on purpose; the connection stays usable."""
