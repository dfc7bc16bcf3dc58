"""The emulator's knobs: their defaults and the values each accepts.

A knob is checked when it is set (the constructor, :meth:`Emulator.configure`), so a bad value fails
where it was written with one line naming the knob, the value and what is allowed, instead of
surfacing later as a hung stream or a traceback in a server thread. Numbers are ints or floats
(never ``bool``, never NaN or infinity); ``None`` means "no limit" where a knob allows it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

DEFAULT_KNOBS: dict[str, Any] = {
    "ttft": 0.0,                 # seconds before the first content delta
    "token_rate": None,          # output tokens per second; None = as fast as possible
    "rpm": None,                 # requests per minute (None = unlimited)
    "tpm": None,                 # input + output tokens per minute (None = unlimited)
    "burst": None,               # requests bucket capacity; None = rpm / 60 (one second's worth)
    "api_key": None,             # None = accept any non-empty key
    "batch_duration": 0.2,       # seconds a Message Batch stays in_progress
    "min_cache_tokens": 1024,    # shortest prefix the prompt cache stores
    "continue_overlap": 12,      # characters a "continue" follow-up repeats (see generate.py)
    "organization_id": "00000000-0000-4000-8000-emulator0000",
    "idle_timeout": 60.0,        # seconds a connection may wait for (the rest of) a request; None = forever
}
LIMIT_KNOBS = ("rpm", "tpm", "burst")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


def _positive_or_none(value: Any) -> bool:
    return value is None or _positive(value)


def _non_negative(value: Any) -> bool:
    return _number(value) and value >= 0


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "ttft": (_non_negative, "a number of seconds >= 0"),
    "token_rate": (_positive_or_none, "a positive number of tokens per second, or None (no pacing)"),
    "rpm": (_positive_or_none, "a positive number of requests per minute, or None (no limit)"),
    "tpm": (_positive_or_none, "a positive number of tokens per minute, or None (no limit)"),
    "burst": (_positive_or_none, "a positive number of requests, or None (rpm / 60)"),
    "api_key": (lambda v: v is None or _text(v), "a non-empty string, or None (accept any key)"),
    "batch_duration": (_non_negative, "a number of seconds >= 0"),
    "min_cache_tokens": (_count, "an integer >= 0"),
    "continue_overlap": (_count, "an integer >= 0"),
    "organization_id": (_text, "a non-empty string"),
    "idle_timeout": (_positive_or_none, "a positive number of seconds, or None (wait forever)"),
}


def check(knobs: dict[str, Any]) -> None:
    """Raise TypeError for an unknown name, ValueError for a value the knob does not accept."""
    unknown = set(knobs) - set(DEFAULT_KNOBS)
    if unknown:
        raise TypeError(f"unknown emulator knob(s) {sorted(unknown)}: use {sorted(DEFAULT_KNOBS)}")
    for name, value in knobs.items():
        accepts, allowed = _RULES[name]
        if not accepts(value):
            raise ValueError(f"{name} must be {allowed}, got {value!r}")
