"""Fault specs: what goes wrong with a request, given per request or queued per server.

A spec is one or more parts joined by ``+`` (e.g. ``slow-headers=0.5+429:retry-after=0.05``):

``400`` ``401`` ``402`` ``403`` ``404`` ``408`` ``409`` ``413`` ``422`` ``500`` ``502`` ``503`` ``504``
``529``
    answer with that status and its error type (504 ``timeout_error``, 529 ``overloaded_error``, ...).
``429``
    ``rate_limit_error`` with ``retry-after`` in whole seconds (default 1). ``429:retry-after=0.05``
    sends ``retry-after: 1`` (ceiling) and, because the value is fractional, ``retry-after-ms: 50``.
    ``retry-after`` is accepted on every status fault (e.g. ``529:retry-after=2``).
``429-spend``
    429 with ``error.details.error_code = "enforced_spend_limit_reached"`` and no ``retry-after``.
``error-event:after=N``
    HTTP 200 stream, then after N text deltas an ``event: error`` (``overloaded_error``) and a clean end.
    Non-streaming: HTTP 529.
``cut:after=N``
    after N text deltas the TCP connection is closed: no last chunk, no ``message_stop``.
    Non-streaming: the connection is closed without any response.
``truncate:after=N``
    after N text deltas the stream ends cleanly (last chunk sent) without ``content_block_stop``,
    ``message_delta`` or ``message_stop``. Non-streaming: like ``cut``.
``crash:after=N``
    after N text deltas the emulator raises an exception, as a bug of its own would, and its safety
    net answers it: the stream ends with an ``event: error`` (``api_error``) and a clean end, and the
    connection closes. Non-streaming: HTTP 500 ``api_error``.
``truncate-json``
    the answer (a structured output's JSON, or free text) stops at half its tokens with
    ``stop_reason: "max_tokens"``, so a JSON object or array is never complete; streamed or not, the
    reply is otherwise well formed, and usage counts the tokens sent. No effect on a reply without text.
``refusal``
    HTTP 200 with ``stop_reason: "refusal"``, ``stop_details`` ``{"type": "refusal", "category":
    "general_harms", "explanation": ...}`` and the short text ``REFUSAL_TEXT`` (not JSON) instead of
    the answer (a thinking block, if any, stays before it). In a stream ``stop_details`` rides on
    ``message_delta``.
``slow-headers=SECONDS``
    wait before sending the status line (combine it with another part, or use it alone).
``x-should-retry=false`` (or ``true``)
    add that header to the error answer; also accepted as a parameter: ``429:x-should-retry=false``.

N counts ``text_delta`` events only (thinking deltas come first on always-thinking models and are not
counted); when the reply has fewer text deltas the fault fires after the last one. ``after`` defaults
to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import tokens
from .generate import Block, Plan, seeded, split_pieces

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 408: "timeout_error", 409: "conflict_error",
    413: "request_too_large", 422: "invalid_request_error", 429: "rate_limit_error", 500: "api_error",
    502: "api_error", 503: "api_error", 504: "timeout_error", 529: "overloaded_error",
}
MESSAGES = {
    400: "Invalid request (emulated fault)", 401: "invalid x-api-key (emulated fault)",
    402: "Your credit balance is too low (emulated fault)", 403: "Permission denied (emulated fault)",
    404: "Not found (emulated fault)", 408: "Request timed out (emulated fault)",
    409: "Conflict (emulated fault)", 413: "Request exceeds the maximum allowed size (emulated fault)",
    422: "Unprocessable entity (emulated fault)",
    429: "This request would exceed your organization's rate limit (emulated fault)",
    500: "Internal server error (emulated fault)", 502: "Bad gateway (emulated fault)",
    503: "Service unavailable (emulated fault)", 504: "Request timed out (emulated fault)",
    529: "Overloaded",
}
STREAM_KINDS = ("error-event", "cut", "truncate", "crash")
PLAN_KINDS = ("truncate-json", "refusal")   # change the reply itself, streamed or not
REFUSAL_TEXT = "I can't help with that request."
REFUSAL_DETAILS = {"type": "refusal", "category": "general_harms",
                   "explanation": "The request was declined under the usage policy (emulated refusal)."}
SPEND_MESSAGE = ("You have reached your specified workspace API usage limits. You will regain access on "
                 "the first day of next month at 00:00 UTC (emulated fault)")


class FaultSpecError(ValueError):
    pass


class EmulatedCrash(RuntimeError):
    """Raised inside a request by the ``crash`` fault."""


@dataclass(frozen=True)
class Fault:
    kind: str | None = None  # "status", "spend", one of STREAM_KINDS or PLAN_KINDS; None: slow-headers only
    status: int | None = None
    after: int = 1
    retry_after: float | None = None
    should_retry: str | None = None
    slow_headers: float = 0.0

    @property
    def is_stream_fault(self) -> bool:
        return self.kind in STREAM_KINDS


def parse(spec: str) -> Fault:
    """A Fault from its spec; FaultSpecError says what was wrong."""
    fields: dict = {}
    for part in filter(None, (p.strip() for p in spec.split("+"))):
        _parse_part(part, fields, spec)
    if not fields:
        raise FaultSpecError(f"empty fault spec {spec!r}: use e.g. '429', 'cut:after=3' or 'slow-headers=1'")
    return Fault(**fields)


def _parse_part(part: str, fields: dict, spec: str) -> None:
    name, _, params = part.partition(":")
    name = name.strip().lower()
    if "=" in name:  # a bare modifier: slow-headers=S or x-should-retry=false
        _apply_param(name, fields, spec)
        return
    if name == "429-spend":
        fields.update(kind="spend", status=429)
    elif name in STREAM_KINDS or name in PLAN_KINDS:
        fields["kind"] = name
    elif name.isdigit() and int(name) in ERROR_TYPES:
        fields.update(kind="status", status=int(name))
    else:
        statuses = ", ".join(map(str, ERROR_TYPES))
        raise FaultSpecError(f"unknown fault {name!r} in {spec!r}: use a status ({statuses}), 429-spend, "
                             "error-event, cut, truncate, crash, truncate-json, refusal, slow-headers=S or "
                             "x-should-retry=false")
    for param in filter(None, (p.strip() for p in params.split(","))):
        _apply_param(param, fields, spec)


def _apply_param(param: str, fields: dict, spec: str) -> None:
    key, _, value = param.partition("=")
    key, value = key.strip().lower(), value.strip()
    try:
        if key == "after":
            fields["after"] = max(0, int(value))
        elif key == "retry-after":
            fields["retry_after"] = float(value)
        elif key == "slow-headers":
            fields["slow_headers"] = float(value)
        elif key == "x-should-retry" and value.lower() in ("true", "false"):
            fields["should_retry"] = value.lower()
        else:
            raise ValueError
    except ValueError:
        raise FaultSpecError(f"bad fault parameter {param!r} in {spec!r}: use after=N, retry-after=S, "
                             "slow-headers=S or x-should-retry=true|false") from None


def error_answer(fault: Fault) -> tuple[int, str, str, dict[str, str], dict | None]:
    """(status, error type, message, headers, error details) of a status fault."""
    status = fault.status or 529
    headers: dict[str, str] = {}
    details = None
    if fault.kind == "spend":
        details = {"error_code": "enforced_spend_limit_reached"}
        message = SPEND_MESSAGE
    else:
        message = MESSAGES[status]
        retry_after = fault.retry_after
        if retry_after is None and status == 429:
            retry_after = 1.0
        if retry_after is not None:
            headers["retry-after"] = str(max(0, math.ceil(retry_after)))
            if retry_after != int(retry_after):
                headers["retry-after-ms"] = f"{retry_after * 1000:g}"
    if fault.should_retry:
        headers["x-should-retry"] = fault.should_retry
    return status, ERROR_TYPES[status], message, headers, details


def reshape(plan: Plan, fault: Fault | None) -> Plan:
    """The reply a ``truncate-json`` or ``refusal`` fault makes of ``plan`` (any other: ``plan``)."""
    kind = fault.kind if fault is not None else None
    if kind not in PLAN_KINDS:
        return plan
    thoughts = [b for b in plan.blocks if b.type == "thinking"]
    spent = sum(tokens.count(b.text) for b in thoughts)
    if kind == "refusal":
        pieces = split_pieces(REFUSAL_TEXT, seeded("refusal"))
        return Plan([*thoughts, Block("text", pieces)], "refusal", None,
                    spent + tokens.count(REFUSAL_TEXT), stop_details=dict(REFUSAL_DETAILS))
    texts = [b for b in plan.blocks if b.type == "text"]
    if not texts:
        return plan
    kept = texts[-1].pieces[: len(texts[-1].pieces) // 2]
    blocks = [*thoughts, Block("text", kept)] if kept else thoughts
    return Plan(blocks, "max_tokens", None, max(1, spent + tokens.count("".join(kept))))
