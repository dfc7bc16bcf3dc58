"""What one HTTP exchange needs, below the retry loop: the key at the transport, bounded reads,
and transport failures translated once into the package's errors (as httpx's own transport maps
httpcore's exceptions in one place).

Nothing here retries or waits: it turns bytes and exceptions into values and errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

import httpx

from . import _wire
from ._secrets import Secret, redact_url
from .errors import APIConnectionError, APIError, ClaudeError, ConfigError, MalformedResponseError

__all__ = ["ERROR_BODY_LIMIT", "REPLY_LIMIT", "KeyAuth", "api_error", "check_content_type", "malformed",
           "ratelimit_of", "read_capped", "sent_hook", "transport_error"]

# An error body is a few hundred bytes; past this a reply is not an API error body (an endless
# chunked body once filled 4.6 GB in 40 s). A message is at most ~1 MB (128k tokens); requests may
# be 32 MB, and so may answers, at the very most.
ERROR_BODY_LIMIT = 64 * 1024
REPLY_LIMIT = 32 * 1024 * 1024


class KeyAuth(httpx.Auth):
    """Adds ``x-api-key`` (and Basic credentials taken out of ``base_url``) to each request, at the
    transport: the only place the key is revealed, so no dict on the request path holds it."""

    def __init__(self, key: Secret | None, userinfo: tuple[Secret, Secret] | None = None) -> None:
        self._key = key
        self._userinfo = userinfo

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._key is not None:
            request.headers["x-api-key"] = self._key.reveal()
        if self._userinfo is not None:
            user, password = self._userinfo
            request.headers["authorization"] = httpx.BasicAuth(user.reveal(), password.reveal())._auth_header
        yield request

    def __repr__(self) -> str:
        return "KeyAuth(<hidden>)"


def ratelimit_of(headers: httpx.Headers) -> dict[str, Any] | None:
    """The ``anthropic-ratelimit-*`` reading of an answer (names without the prefix), with ``at``:
    ``time.monotonic()`` now, at receipt; None when the answer has none."""
    rl: dict[str, Any] = {
        k[len("anthropic-ratelimit-") :]: v
        for k, v in headers.items()
        if k.startswith("anthropic-ratelimit-")
    }
    if not rl:
        return None
    rl["at"] = time.monotonic()
    return rl


def sent_hook(on_sent: Callable[[float], Any]) -> dict[str, Any]:
    """httpx extensions that call ``on_sent(time.monotonic())`` when a request's last byte left
    (httpcore's trace): later than the call when a connection had to open first."""

    async def trace(event: str, info: Any) -> None:
        if event.endswith("send_request_body.complete"):
            on_sent(time.monotonic())

    return {"trace": trace}


async def read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The body, read until ``limit`` bytes at most; (bytes, True) when it was longer (the rest is
    left unread: closing the response drops the connection)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts)[:limit], True
    return b"".join(parts), False


def api_error(response: httpx.Response, content: bytes, base_url: str) -> APIError:
    """The exception for a non-200 answer (a redirect names where it pointed)."""
    status = response.status_code
    if 300 <= status < 400:
        where = response.headers.get("location") or "an address it did not give"
        err: APIError = APIError(
            f"{base_url} answered with a redirect to {redact_url(where)}: point base_url at the API "
            "itself (https://api.anthropic.com, or your gateway's final address)",
            status=status, type="redirect", request_id=response.headers.get("request-id"))
    else:
        err = _wire.parse_error(status, content, response.headers)
    err.retry_after = _retry_after(response.headers)
    err.headers = {k: v for k, v in response.headers.items()
                   if k in ("x-should-retry", "retry-after", "retry-after-ms")}
    return err


def _retry_after(headers: httpx.Headers) -> float | None:
    from .retry import parse_retry_after

    return parse_retry_after(headers)


def transport_error(exc: Exception, base_url: str, *, answered: bool, timeout: float | None = None
                    ) -> ClaudeError:
    """One line for a transport failure: which phase failed (reaching the server, waiting for its
    answer, reading it) and why. A request that could not even be written is a ConfigError (it
    would fail the same way every time), never a network fault to retry."""
    kind = type(exc).__name__
    detail = " ".join(str(exc).split()) or kind
    if isinstance(exc, httpx.LocalProtocolError):
        return ConfigError(f"the request to {base_url} could not be sent ({kind}: {detail}): check the "
                           "API key, extra headers and base_url for stray characters")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        hint = " (check the network or base_url)" if isinstance(exc, httpx.ConnectTimeout) else ""
        return APIConnectionError(f"could not reach {base_url}: {kind}: {detail}{hint}")
    if isinstance(exc, httpx.ReadTimeout):
        waited = f" within {timeout:.0f} s" if timeout else ""
        if answered:
            return APIConnectionError(f"the reply from {base_url} stopped arriving: nothing came{waited}")
        return APIConnectionError(f"{base_url} accepted the request but did not answer{waited}")
    if answered:
        return APIConnectionError(f"the reply from {base_url} broke off: {kind}: {detail}")
    return APIConnectionError(f"the connection to {base_url} failed: {kind}: {detail}")


def malformed(message: str, response: httpx.Response | None = None) -> MalformedResponseError:
    status = response.status_code if response is not None else 200
    rid = response.headers.get("request-id") if response is not None else None
    return MalformedResponseError(message, status=status, type="malformed_response", request_id=rid)


def check_content_type(response: httpx.Response, expected: str, base_url: str, body: bytes = b""
                       ) -> None:
    """MalformedResponseError when a 200 is not ``expected`` (``text/event-stream`` for a stream,
    ``application/json`` otherwise): a proxy's or captive portal's page, not the API."""
    got = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if got == expected or (expected == "application/json" and not got and body[:1] in (b"{", b"[")):
        return
    hint = " (a proxy or captive portal?)" if "html" in got else ""
    raise malformed(f"expected {expected} from {base_url}, got {got or 'no content type'}{hint}", response)
