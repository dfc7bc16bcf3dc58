"""The exceptions claude_magic raises.

Every message is one line that says what went wrong and what to do next. No
message, repr or traceback text ever contains the API key: besides never putting it
there, every message goes through :func:`claude_magic._secrets.scrub` when the
exception is made (the last line of defence).

    ClaudeError
    ├── ConfigError             bad argument or setting, caught before any request
    │   └── MissingAPIKey       no key in the argument, %config or ANTHROPIC_API_KEY
    ├── APIError                the API answered with an error (status, type, message, request id)
    │   ├── MalformedResponseError  the answer is not the protocol (HTML, bad JSON, wrong shapes)
    │   ├── BadRequestError         400 invalid_request_error
    │   ├── AuthenticationError     401 authentication_error
    │   ├── BillingError            402 billing_error
    │   ├── PermissionDeniedError   403 permission_error
    │   ├── NotFoundError           404 not_found_error
    │   ├── RequestTooLargeError    413 request_too_large
    │   ├── RateLimitError          429 rate_limit_error
    │   │   └── SpendLimitReached       429 enforced_spend_limit_reached (never retried)
    │   ├── ServerError             500 api_error, 502, 503, 504 timeout_error
    │   └── OverloadedError         529 overloaded_error
    ├── APIConnectionError      no answer: connection refused or cut, timeout
    ├── StreamInterrupted       a stream broke and could not be resumed (keeps the partial text)
    ├── AnswerInvalid           a typed answer is not JSON or does not match its schema (keeps the text)
    ├── CacheMiss               offline mode and the prompt is not in the cache
    └── BudgetExceeded          a batch stopped before the spend would pass its budget, or a
                                row's worst case alone passes it (that row's error)
"""

from __future__ import annotations

from typing import Any

from ._secrets import scrub

__all__ = [
    "APIConnectionError",
    "APIError",
    "AnswerInvalid",
    "AuthenticationError",
    "BadRequestError",
    "BillingError",
    "BudgetExceeded",
    "CacheMiss",
    "ClaudeError",
    "MalformedResponseError",
    "ConfigError",
    "MissingAPIKey",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "ServerError",
    "SpendLimitReached",
    "StreamInterrupted",
    "error_for_status",
]


class ClaudeError(Exception):
    """Base class of every error claude_magic raises on purpose."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(scrub(a) if isinstance(a, str) else a for a in args))


class ConfigError(ClaudeError, ValueError):
    """A bad argument or setting, detected before any request is sent."""


class MissingAPIKey(ConfigError):
    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "no API key: set ANTHROPIC_API_KEY, pass Client(api_key=...), or use "
            "%config ClaudeMagics.api_key = '...' (to try offline: %claude_emulator start)"
        )


class APIError(ClaudeError):
    """The API answered with an error.

    ``status`` is the HTTP status (200 for an ``error`` event inside a stream),
    ``type`` the API's ``error.type``, ``request_id`` the ``request-id`` header.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = scrub(str(message))
        self.headers = headers or {}  # the response headers that steer retries
        self.status = status
        self.type = type
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body
        super().__init__(str(self))

    def __str__(self) -> str:
        kind = f" {self.type}" if self.type else ""
        rid = f" (request {self.request_id})" if self.request_id else ""
        msg = " ".join(str(self.message).split())  # one line, always
        return f"{self.status}{kind}: {msg}{rid}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_api_error,
            (type(self), self.message, self.status, self.type, self.request_id, self.retry_after),
        )


def _rebuild_api_error(
    cls: type[APIError],
    message: str,
    status: int,
    type_: str | None,
    request_id: str | None,
    retry_after: float | None,
) -> APIError:
    return cls(message, status=status, type=type_, request_id=request_id, retry_after=retry_after)


class BadRequestError(APIError):
    pass


class MalformedResponseError(APIError):
    """The server answered, but not in the API's protocol (an HTML page from a proxy or a captive
    portal, JSON that does not parse or has the wrong shape, an event stream that is not one).
    Retried once (a proxy may have hiccuped), then final."""


class AuthenticationError(APIError):
    pass


class BillingError(APIError):
    pass


class PermissionDeniedError(APIError):
    pass


class NotFoundError(APIError):
    pass


class RequestTooLargeError(APIError):
    pass


class RateLimitError(APIError):
    pass


class SpendLimitReached(RateLimitError):
    """The account's monthly spend cap: waiting will not help until it resets."""


class ServerError(APIError):
    pass


class OverloadedError(APIError):
    pass


class APIConnectionError(ClaudeError):
    """The request got no answer: connection refused or cut, or a timeout."""


class StreamInterrupted(ClaudeError):
    """A stream broke after text arrived and could not be resumed.

    ``partial`` holds the text that arrived (it was shown, and is not cached).
    """

    def __init__(self, message: str, *, partial: str = "", cause: BaseException | None = None) -> None:
        self.partial = scrub(partial)
        self.cause = cause
        super().__init__(message)


class AnswerInvalid(ClaudeError):
    """An answer asked to match a schema (structured outputs) does not: it is not JSON (cut short by
    ``max_tokens``, or a refusal) or it fails a check. ``raw`` holds the answer's text."""

    def __init__(self, message: str, *, raw: str = "") -> None:
        self.raw = scrub(raw)
        self.reply: Any = None  # the Reply it came in, when a client call got one
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0],), {"raw": self.raw})


class CacheMiss(ClaudeError):
    """Offline mode is on and the prompt is not in the response cache."""


class BudgetExceeded(ClaudeError):
    """A batch stopped starting requests because the next ones could pass the budget."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: BillingError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    429: RateLimitError,
    529: OverloadedError,
}

_BY_TYPE: dict[str, type[APIError]] = {
    "invalid_request_error": BadRequestError,
    "authentication_error": AuthenticationError,
    "billing_error": BillingError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "request_too_large": RequestTooLargeError,
    "rate_limit_error": RateLimitError,
    "overloaded_error": OverloadedError,
    "api_error": ServerError,
    "timeout_error": ServerError,
}


def error_for_status(status: int, error_type: str | None) -> type[APIError]:
    """The exception class for an HTTP status, or for an error type inside a stream (status 200)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    if error_type in _BY_TYPE:
        return _BY_TYPE[error_type]
    return APIError
