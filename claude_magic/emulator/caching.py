"""Input token accounting and prompt caching (api-notes §7).

The prompt is a sequence of segments in the API's prefix order: the system prompt the API injects for
a structured-output format (:mod:`.structured`: a new format misses the cache), tools, system blocks,
message blocks.
A segment with ``cache_control`` (or the last one, for a top-level ``cache_control``) is a breakpoint.
A breakpoint whose prefix has fewer than ``min_cache_tokens`` tokens is ignored. On a request the
longest cached prefix is read (looking back up to 20 segments from each breakpoint, as the API does,
so a conversation whose mark moves forward still reads its earlier prefix); every later breakpoint is
written, its tokens reported by the TTL of the breakpoint that closes them. A hit refreshes the TTL.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import structured, tokens
from .generate import content_text
from .validate import invalid

BASE_OVERHEAD = 4       # tokens every request pays (the API adds a few of its own)
MESSAGE_OVERHEAD = 3    # per message: role markers
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
LOOKBACK = 20


@dataclass
class Segment:
    key: str
    tokens: int
    ttl: str | None = None


@dataclass
class InputUsage:
    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    ephemeral_5m: int = 0
    ephemeral_1h: int = 0

    def to_dict(self) -> dict:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": self.ephemeral_5m,
                               "ephemeral_1h_input_tokens": self.ephemeral_1h},
        }


def _ttl(block: Any) -> str | None:
    control = block.get("cache_control") if isinstance(block, dict) else None
    if not isinstance(control, dict):
        return None
    ttl = control.get("ttl", "5m")
    if not isinstance(ttl, str) or ttl not in TTL_SECONDS:
        raise invalid(f"cache_control.ttl: Input should be '5m' or '1h', got {ttl!r}")
    return str(ttl)


def _bare(block: dict) -> dict:
    return {k: v for k, v in block.items() if k != "cache_control"}


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _block_tokens(block: dict) -> int:
    if block.get("type") == "text":
        return tokens.count(str(block.get("text", "")))
    if block.get("type") in ("tool_result", "thinking"):
        return tokens.count(content_text(block.get("content", "")) + str(block.get("thinking", "")))
    return tokens.count_json(_bare(block))


def segments(body: dict, media: Mapping[tuple[int, int], int] | None = None) -> list[Segment]:
    """The prompt's segments in prefix order (format, tools, system, messages). ``media``: the tokens
    of each image and document block by (message, block) index (:mod:`.attachments`); without it such
    a block counts as its JSON."""
    schema = structured.schema_of(body)
    segs = [Segment(_key(["format", schema]), structured.input_tokens(schema))] if schema is not None else []
    segs += [Segment(_key(["tool", _bare(t)]), tokens.count_json(_bare(t)), _ttl(t))
             for t in body.get("tools") or [] if isinstance(t, dict)]
    system = body.get("system")
    if isinstance(system, str) and system:
        segs.append(Segment(_key(["system", system]), tokens.count(system)))
    elif isinstance(system, list):
        segs += [Segment(_key(["system", _bare(b)]), _block_tokens(b), _ttl(b)) for b in system]
    for i, message in enumerate(body.get("messages") or []):
        role, content = message.get("role"), message.get("content")
        if isinstance(content, str):
            segs.append(Segment(_key([role, content]), tokens.count(content) + MESSAGE_OVERHEAD))
            continue
        blocks = [(k, b) for k, b in enumerate(content or []) if isinstance(b, dict)]
        for j, (k, block) in enumerate(blocks):
            extra = MESSAGE_OVERHEAD if j == 0 else 0
            counted = media.get((i, k)) if media else None
            n = _block_tokens(block) if counted is None else counted
            segs.append(Segment(_key([role, j, _bare(block)]), n + extra, _ttl(block)))
        if not blocks:
            segs.append(Segment(_key([role, []]), MESSAGE_OVERHEAD))
    top = _ttl(body)
    if top and segs and segs[-1].ttl is None:
        segs[-1].ttl = top
    return segs


def total_input(body: dict, media: Mapping[tuple[int, int], int] | None = None) -> int:
    """All input tokens of a request, as count_tokens reports them."""
    return BASE_OVERHEAD + sum(s.tokens for s in segments(body, media))


class PromptCache:
    """Cached prefixes of one server: prefix hash -> (expiry, ttl seconds). Thread-safe."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def usage(self, body: dict, *, min_tokens: int, now: float) -> InputUsage:
        """The input usage of a request, reading and writing cached prefixes."""
        return self.account(segments(body), str(body.get("model")), min_tokens=min_tokens, now=now)

    def account(self, segs: list[Segment], model: str, *, min_tokens: int, now: float) -> InputUsage:
        total = BASE_OVERHEAD + sum(s.tokens for s in segs)
        marks = [i for i, s in enumerate(segs) if s.ttl]
        if len(marks) > 4:
            raise invalid(f"A maximum of 4 blocks with cache_control may be provided. Found {len(marks)}.")
        if not marks:
            return InputUsage(total)
        cumulative, hashes = [], []
        running, digest = 0, hashlib.sha256(model.encode())
        for seg in segs[: marks[-1] + 1]:
            running += seg.tokens
            digest.update(seg.key.encode())
            cumulative.append(running)
            hashes.append(digest.copy().hexdigest())
        eligible = [i for i in marks if cumulative[i] >= min_tokens]
        return self._account(total, segs, eligible, cumulative, hashes, now)

    def _account(self, total: int, segs: list[Segment], eligible: list[int], cumulative: list[int],
                 hashes: list[str], now: float) -> InputUsage:
        written = {"5m": 0, "1h": 0}
        with self._lock:
            hit = self._longest_hit(eligible, hashes, now)
            if hit >= 0:
                ttl = self._entries[hashes[hit]][1]
                self._entries[hashes[hit]] = (now + ttl, ttl)
            previous = cumulative[hit] if hit >= 0 else 0
            for i in eligible:
                if i <= hit:
                    continue
                ttl_name = segs[i].ttl or "5m"
                written[ttl_name] += cumulative[i] - previous
                previous = cumulative[i]
                self._entries[hashes[i]] = (now + TTL_SECONDS[ttl_name], TTL_SECONDS[ttl_name])
            if len(self._entries) > 10_000:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        read = cumulative[hit] if hit >= 0 else 0
        created = written["5m"] + written["1h"]
        return InputUsage(total - read - created, created, read, written["5m"], written["1h"])

    def _longest_hit(self, eligible: list[int], hashes: list[str], now: float) -> int:
        hit = -1
        for mark in eligible:
            for i in range(mark, max(-1, mark - LOOKBACK), -1):
                if i <= hit:
                    break
                entry = self._entries.get(hashes[i])
                if entry is not None and entry[0] > now:
                    hit = i
                    break
        return hit
