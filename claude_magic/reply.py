"""What a call returns: the answer, its usage and what it cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["Reply", "Usage"]


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


@dataclass
class Reply:
    """One answer from the Messages API, or from the response cache.

    ``text`` joins the text blocks; ``content`` keeps every block as the API sent
    it (thinking, text and tool_use apart). ``retries`` counts failed attempts
    before the answer, ``resumed`` the seams where a broken stream was continued.
    Times are in seconds; ``cost`` in USD (None for a model without a known price).
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

    @property
    def thinking(self) -> str:
        return "".join(b.get("thinking", "") for b in self.content if b.get("type") == "thinking")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b.get("type") == "tool_use"]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["usage"] = self.usage.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reply:
        kw = {k: v for k, v in d.items() if k in _REPLY_FIELDS}
        kw["usage"] = Usage(**d.get("usage", {}))
        return cls(**kw)

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text


_REPLY_FIELDS = frozenset(f.name for f in fields(Reply))
