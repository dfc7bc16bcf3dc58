"""The API key and other secrets: checked when set, held where no repr shows them, scrubbed from text.

Three lines of defence, in order:

1. **Check when set.** A key is stripped of surrounding whitespace and refused, in one line that
   shows at most its first 7 and last 4 characters, when it cannot be an HTTP header value (a NUL,
   a control character, a non-ASCII character, inner whitespace). Unchecked, such a key reaches h11,
   whose ``Illegal header value b'sk-ant-…'`` carries the whole key into exceptions and logs.
2. **Hold it apart.** :class:`Secret` keeps the value behind ``reveal()``; its repr is ``'<hidden>'``,
   so no ``%xmode Verbose`` traceback, ``%config`` listing or debugger shows it. The request header is
   built at the transport (the client's ``httpx.Auth``), so no dict on the request path holds it.
   A password in ``base_url`` (``http://user:PASSWORD@host``) is taken out of the URL the same way.
3. **Scrub what escapes.** Every secret in use is registered; :func:`scrub` replaces it in any text
   (exception messages go through it, see ``errors.py``), and :func:`install_log_filter` puts a filter on
   the loggers that can carry request details (ours, httpx's, httpcore's).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Secret", "values", "check_api_key", "install_log_filter", "masked", "redact_url", "scrub"]

REDACTED = "<redacted>"
_MIN_SCRUB = 6  # shorter "secrets" (a password "a") would redact ordinary text
# A header value is visible ASCII (RFC 9110 field-value, without obs-text): no spaces inside a key either.
_HEADER_SAFE = re.compile(r"^[\x21-\x7e]+$")
_lock = threading.Lock()
# By identity, not by value: a WeakSet keeps one of two equal Secrets, and when that one died the
# other, still in use, was no longer scrubbed.
_registered: weakref.WeakValueDictionary[int, Secret] = weakref.WeakValueDictionary()


class Secret:
    """A secret string that never shows in a repr, a str() or a traceback's locals."""

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str, *, scrubbed: bool = True) -> None:
        """``scrubbed=False`` for a value that is private but not secret (a user name in a URL): it
        is held apart all the same, but not redacted from every text nor refused in prompts."""
        self._value = value
        if scrubbed and len(value) >= _MIN_SCRUB:
            with _lock:
                _registered[id(self)] = self

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'<hidden>'"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


def masked(value: str) -> str:
    """At most the first 7 and the last 4 characters, with what cannot be printed escaped."""
    value = value.strip()
    if len(value) <= 16:
        return "<hidden>"
    head, tail = value[:7], value[-4:]
    return f"{head!r}…{tail!r}".replace("'", "")


def check_api_key(value: Any, source: str = "the API key") -> Secret | None:
    """The key as a Secret (surrounding whitespace stripped), None if empty; ConfigError if it cannot
    be sent as a header. ``source`` names where it came from (``ANTHROPIC_API_KEY``, ``api_key=``...)."""
    from .errors import ConfigError

    if value is None:
        return None
    if isinstance(value, Secret):
        value = value.reveal()
    if not isinstance(value, str):
        raise ConfigError(f"{source} must be a string, got {type(value).__name__}")
    key = value.strip()
    if not key:
        return None
    if not _HEADER_SAFE.match(key):
        bad = next(c for c in key if not ("\x21" <= c <= "\x7e"))
        raise ConfigError(
            f"{source} ({masked(key)}) contains {_describe(bad)}, which cannot be sent in a header: "
            "copy the key again without it"
        )
    return Secret(key)


def _describe(char: str) -> str:
    if char == "\x00":
        return "a NUL character"
    if char.isspace():
        return "whitespace inside it"
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"a control character (U+{ord(char):04X})"
    return f"a non-ASCII character (U+{ord(char):04X})"


def values() -> list[str]:
    """The secrets in use (keys, passwords), for checks that must not let them through."""
    with _lock:
        return [s._value for s in _registered.values()]


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every registered secret (and ``extra``) replaced by ``<redacted>``."""
    if not isinstance(text, str) or not text:
        return text
    with _lock:
        values = [s._value for s in _registered.values()]
    values += [v for v in extra if v and len(v) >= _MIN_SCRUB]
    for value in sorted(set(values), key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_url(url: Any) -> str:
    """The URL as text with any ``user:password@`` shown as ``<redacted>@``."""
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if parts is None or "@" not in parts.netloc:
        return re.sub(r"(?<=://)[^/@\s]*@", f"{REDACTED}@", text)
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))


class _ScrubFilter(logging.Filter):
    """Replaces registered secrets in a record's message (its arguments are formatted first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = _ScrubFilter()
# Loggers that can carry request details; a logger's filters apply only to its own records, so each
# child that logs is named.
LOGGERS = ("claude_magic", "claude_magic.cache", "claude_magic.batch", "httpx", "httpcore",
           "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "hpack", "asyncio")


def install_log_filter() -> None:
    """Put the scrubbing filter on every logger that can see a request (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
