"""A request body off the wire: ``content-length`` or chunked framing (RFC 9112 §6, §7.1), size
limits (32 MB, 256 MB for Message Batches, 500 MB for a Files API upload), then JSON.

Whatever a client sends, the answer is an :class:`~.validate.APIError` (400
``invalid_request_error`` or 413 ``request_too_large``), never an exception from deep inside
``json`` or ``int``. When the framing itself is broken (a negative or non-numeric
``content-length``, a bad chunk size) or the body is too large, the rest of the body is left unread,
so nobody knows where the next request starts: those errors are :class:`BodyUnread` and the
connection closes after the answer.
"""

from __future__ import annotations

import json
import re
from email.message import Message
from io import BufferedIOBase
from typing import Any

from .validate import APIError, invalid

MB = 1024 * 1024
BODY_LIMITS = {"/v1/messages/batches": 256 * MB, "/v1/files": 500 * MB}
DEFAULT_BODY_LIMIT = 32 * MB
_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_LINE = 4096  # longest chunk-size or trailer line read


class BodyUnread(APIError):
    """An error answered before the body was read to its end: close the connection after it."""


class ClientGone(Exception):
    """The client closed the connection mid-body (a cancelled request): answer nothing."""


def read_json(rfile: BufferedIOBase, headers: Message, path: str) -> Any:
    """The request's JSON body, or None for an empty body."""
    return parse_json(read_bytes(rfile, headers, path))


def read_bytes(rfile: BufferedIOBase, headers: Message, path: str) -> bytes:
    """The request's body as it came; 413 from ``content-length`` alone when it is over the limit."""
    limit = BODY_LIMITS.get(path, DEFAULT_BODY_LIMIT)
    if "chunked" in (headers.get("transfer-encoding") or "").lower():
        raw = _read_chunked(rfile, limit)
    else:
        length = _content_length(headers)
        if length > limit:
            raise BodyUnread(413, "request_too_large",
                             f"Request exceeds the maximum allowed number of bytes ({limit}) for {path}")
        raw = rfile.read(length) if length else b""
        if len(raw) < length:
            raise ClientGone
    return raw


def parse_json(raw: bytes) -> Any:
    """The JSON value of a body, None when it is empty; 400 when it is not JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except RecursionError:  # json's parser recurses once per level: '[' * 100000 exhausts the stack
        raise invalid("There was an error parsing the body: the JSON is nested too deeply") from None
    except ValueError as exc:
        raise invalid(f"There was an error parsing the body: {exc}") from None


def _content_length(headers: Message) -> int:
    values = {v.strip() for v in headers.get_all("content-length") or []}
    if not values:
        return 0
    value = values.pop()
    if values or not _DIGITS.fullmatch(value):
        shown = ", ".join(sorted({value, *values}))
        raise BodyUnread(400, "invalid_request_error",
                         f"content-length: Invalid header value {shown!r}: use one non-negative integer")
    return int(value)


def _read_chunked(rfile: BufferedIOBase, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while size := _chunk_size(rfile):
        total += size
        if total > limit:
            raise BodyUnread(413, "request_too_large", f"Request exceeds the maximum allowed size ({limit})")
        data = rfile.read(size)
        if len(data) < size:
            raise ClientGone
        parts.append(data)
        end = rfile.readline(_LINE)
        if not end:
            raise ClientGone
        if end not in (b"\r\n", b"\n"):
            raise BodyUnread(400, "invalid_request_error",
                             f"Invalid chunked body: a chunk of {size} bytes is followed by more data")
    _skip_trailers(rfile)
    return b"".join(parts)


def _chunk_size(rfile: BufferedIOBase) -> int:
    line = rfile.readline(_LINE)
    if not line:
        raise ClientGone
    field = line.split(b";", 1)[0].strip()
    if not line.endswith(b"\n") or not _HEX.fullmatch(field):
        shown = field[:40].decode("latin-1")
        raise BodyUnread(400, "invalid_request_error",
                         f"Invalid chunked body: chunk size {shown!r} is not a hexadecimal number")
    return int(field, 16)


def _skip_trailers(rfile: BufferedIOBase) -> None:
    while True:
        line = rfile.readline(_LINE)
        if not line:
            raise ClientGone
        if line in (b"\r\n", b"\n"):
            return
