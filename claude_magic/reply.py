"""What a call returns: the answer, its usage and what it cost.

A ``Reply`` travels as a plain dict (``to_dict``) through the response cache and cassettes, which
anyone can edit: :func:`check_dict` is the one definition of a well-formed reply dict, used by
``Reply.from_dict``, by the cache before it serves an entry and by cassette import.

A few fields describe the call rather than the answer (``ratelimit``, ``sent_at``, ``attempts``:
marked ``per_call``): they are left out of ``to_dict`` and so of the cache, cassettes, equality
and the repr; a reply read back from the cache has their defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

__all__ = ["Reply", "Usage", "check_dict"]


@dataclass
class Usage:
    """Token counts of one call (or of several, added with ``+``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_5m: int = 0
    cache_creation_1h: int = 0

    @classmethod
    def from_api(cls, d: dict[str, Any] | None) -> Usage:
        """Read the API's ``usage`` object (absent or null fields count as 0)."""
        d = d or {}
        split = d.get("cache_creation") or {}
        return cls(
            input_tokens=d.get("input_tokens") or 0,
            output_tokens=d.get("output_tokens") or 0,
            cache_creation_input_tokens=d.get("cache_creation_input_tokens") or 0,
            cache_read_input_tokens=d.get("cache_read_input_tokens") or 0,
            cache_creation_5m=split.get("ephemeral_5m_input_tokens") or 0,
            cache_creation_1h=split.get("ephemeral_1h_input_tokens") or 0,
        )

    @property
    def total_input(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def _per_call(default: Any) -> Any:
    """A field about the call, not the answer: kept out of ``to_dict``, equality and the repr."""
    return field(default=default, compare=False, repr=False, metadata={"per_call": True})


@dataclass
class Reply:
    """One answer from the Messages API, or from the response cache.

    ``text`` joins the text blocks; ``content`` keeps every block as the API sent
    it (thinking, text and tool_use apart). ``retries`` counts failed attempts
    before the answer, ``resumed`` the seams where a broken stream was continued.
    Times are in seconds; ``cost`` in USD (None for a model without a known price).
    ``incomplete`` says why an answer is partial (e.g. ``'interrupted'`` or an error line);
    None for a complete answer.

    Of this call only (not cached): ``ratelimit`` is the ``anthropic-ratelimit-*`` reading of the
    answer (header names without the prefix, plus ``at``: ``time.monotonic()`` at receipt), or
    None; ``sent_at`` the ``time.monotonic()`` when the (last) request had left whole, or None
    where the transport does not say; ``attempts`` the requests sent (0 for a cache hit);
    ``queued`` the seconds it waited for the scheduler to admit it (not part of ``latency``);
    ``parsed`` the validated value of a typed answer (``schema=``), else None.
    """

    text: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    stop_sequence: str | None
    usage: Usage
    model: str
    id: str
    request_id: str | None = None
    cached: bool = False
    retries: int = 0
    resumed: int = 0
    ttft: float | None = None
    latency: float = 0.0
    cost: float | None = None
    batch: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    incomplete: str | None = None
    ratelimit: dict[str, Any] | None = _per_call(None)
    sent_at: float | None = _per_call(None)
    attempts: int = _per_call(0)
    queued: float = _per_call(0.0)
    parsed: Any = _per_call(None)

    @property
    def thinking(self) -> str:
        return "".join(b.get("thinking", "") for b in self.content if b.get("type") == "thinking")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b.get("type") == "tool_use"]

    def to_dict(self) -> dict[str, Any]:
        """The answer as a JSON-ready dict (what the cache stores): without the per-call fields."""
        d = asdict(self)
        for name in _PER_CALL:
            del d[name]
        d["usage"] = self.usage.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reply:
        """The reply ``to_dict`` gave; unknown fields are ignored (a newer version may add some).
        Raises ValueError, saying which field is wrong, for a dict of another shape."""
        check_dict(d)
        kw = {k: v for k, v in d.items() if k in _REPLY_FIELDS}
        usage = d.get("usage") or {}
        kw["usage"] = Usage(**{k: v for k, v in usage.items() if k in _USAGE_FIELDS})
        return cls(**kw)

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text


_PER_CALL = tuple(f.name for f in fields(Reply) if f.metadata.get("per_call"))
_REPLY_FIELDS = frozenset(f.name for f in fields(Reply)) - set(_PER_CALL)
_USAGE_FIELDS = frozenset(f.name for f in fields(Usage))
# usage may be absent (counts as zeros); every other field without a default must be present.
_REQUIRED = tuple(
    f.name for f in fields(Reply)
    if f.default is MISSING and f.default_factory is MISSING and f.name != "usage"
)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str_or_none(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _is_blocks(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(b, dict) for b in v)


_CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "text": ("a string", lambda v: isinstance(v, str)),
    "content": ("a list of objects", _is_blocks),
    "stop_reason": ("a string or null", _is_str_or_none),
    "stop_sequence": ("a string or null", _is_str_or_none),
    "usage": ("an object of token counts", lambda v: isinstance(v, dict)),
    "model": ("a string", lambda v: isinstance(v, str)),
    "id": ("a string", lambda v: isinstance(v, str)),
    "request_id": ("a string or null", _is_str_or_none),
    "cached": ("true or false", lambda v: isinstance(v, bool)),
    "retries": ("an integer", _is_int),
    "resumed": ("an integer", _is_int),
    "ttft": ("a number or null", lambda v: v is None or _is_number(v)),
    "latency": ("a number", _is_number),
    "cost": ("a number or null", lambda v: v is None or _is_number(v)),
    "batch": ("true or false", lambda v: isinstance(v, bool)),
    "extra": ("an object", lambda v: isinstance(v, dict)),
    "incomplete": ("a string or null", _is_str_or_none),
}


def _shown(v: Any) -> str:
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 40 else text[:39] + '…'}"


def check_dict(d: Any) -> None:
    """Raise ValueError, naming the field and what it holds, unless ``d`` has the shape of
    ``Reply.to_dict()``: the required fields present, every known field of its type (unknown
    fields are allowed, so that an older version can read what a newer one stored)."""
    if not isinstance(d, dict):
        raise ValueError(f"a reply is a JSON object, got {_shown(d)}")
    missing = [name for name in _REQUIRED if name not in d]
    if missing:
        raise ValueError(f"reply field {missing[0]!r} is missing")
    for name, value in d.items():
        check = _CHECKS.get(name)
        if check is not None and not check[1](value):
            raise ValueError(f"reply field {name!r} must be {check[0]}, got {_shown(value)}")
    for name, value in (d.get("usage") or {}).items():
        if name in _USAGE_FIELDS and not _is_int(value):
            raise ValueError(f"reply field 'usage.{name}' must be an integer, got {_shown(value)}")
