"""Prices per model, the cost of a call's usage, and what the prompt cache saved on it.

Prices are USD per million tokens, from /work/shared/api-notes.md §9 (models) and §7
(prompt-caching multipliers), as documented in Nov 2026. A model that is not listed has
an unknown price: :func:`price_for` and :func:`cost` return ``None``, never raise.

Cache writes are priced by TTL: the API reports the split in
``usage.cache_creation.ephemeral_{5m,1h}_input_tokens``; without that split every
cache write is priced as a 5-minute write (the default TTL, and the cheaper one).

The Message Batches discount (:data:`BATCH_DISCOUNT`) is applied to *every* line of the
bill — input, output, cache writes and cache reads. The docs state "50 % of standard
input and output"; Anthropic's pricing page says the batch discount and the caching
multipliers stack, so we halve the cache lines too rather than guess a different rule.

:func:`prompt_cache_saved` compares a usage with the same tokens all billed at the input price, and
:func:`min_cacheable_tokens` gives the shortest prefix a model's prompt cache stores (what decides
whether a mark is worth sending).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BATCH_DISCOUNT", "MIN_CACHEABLE_TOKENS", "PRICES", "Price", "cost", "format_cost",
           "min_cacheable_tokens", "price_for", "prompt_cache_saved", "resolve_model"]

BATCH_DISCOUNT = 0.5  # Message Batches bill at half price (api-notes §5)


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float


def _standard(input: float, output: float, *, cache_read: float | None = None) -> Price:
    """A price with the standard caching multipliers of api-notes §7: 5m write 1.25x, 1h write 2x,
    read 0.1x of the input price (``cache_read`` overrides the read price where a model differs)."""
    read = round(input * 0.1, 6) if cache_read is None else cache_read
    return Price(input, output, round(input * 1.25, 6), round(input * 2, 6), read)


_OPUS_4 = _standard(5, 25)  # Opus 4.5-4.8: 6.25 / 10 / 0.50 [doc] pricing
# Sonnet 4.5/4.6 have no price in api-notes §9: $3 / $15 is the public pricing page's (unconfirmed here).
_SONNET_4 = _standard(3, 15)

PRICES: dict[str, Price] = {
    # Fable 5.2: cache prices unconfirmed in api-notes §9 -> standard multipliers (10 / 16 / 0.80).
    "claude-fable-5-2": _standard(8, 40),
    "claude-fable-5-1": _standard(10, 50, cache_read=0.25),  # read 0.025x [doc] pricing
    "claude-opus-5-5": _standard(4, 20, cache_read=0.20),  # read 0.05x
    "claude-sonnet-5-5": _standard(2, 10, cache_read=0.10),  # read cut 0.20 -> 0.10 on 2026-10-07
    # Haiku 5.5 for prompts up to 100K tokens; longer prompts: _LONG_PROMPT below.
    "claude-haiku-5-5": _standard(0.10, 0.50),  # 0.125 / 0.20 / 0.01 [doc]
    "claude-opus-5": _standard(5, 25),  # legacy; 6.25 / 10 / 0.50
    "claude-sonnet-5": _standard(2, 10),  # legacy; 2.50 / 4 / 0.20
    # Haiku 4.5: per-model cache row unconfirmed -> standard multipliers (1.25 / 2 / 0.10).
    "claude-haiku-4-5": _standard(1, 5),
    "claude-opus-4-5": _OPUS_4,
    "claude-opus-4-6": _OPUS_4,
    "claude-opus-4-7": _OPUS_4,
    "claude-opus-4-8": _OPUS_4,
    "claude-sonnet-4-5": _SONNET_4,
    "claude-sonnet-4-6": _SONNET_4,
}

# Models whose price changes when the prompt (input + cache write + cache read) is longer
# than a threshold: model -> (threshold, price above it).
# Haiku 5.5 above 100K: 0.50 / 2.50 [doc]; its cache prices there are unconfirmed -> standard multipliers.
_LONG_PROMPT: dict[str, tuple[int, Price]] = {
    "claude-haiku-5-5": (100_000, _standard(0.50, 2.50)),
}

_DATE_SUFFIX = re.compile(r"-(\d{8}|latest)$")  # pre-4.6 pinned IDs: claude-sonnet-4-5-20250929

# The shortest prefix the prompt cache stores, in tokens: a mark that closes fewer does nothing (no
# error, both cache counts 0). Documented values (prompt-caching page, Nov 2026), then the models
# released after it, which take their line's value (Fable 5.2, Mythos 5.2) or, for Sonnet 5.5 and
# Haiku 5.5, DEFAULT_MIN_CACHEABLE: unconfirmed, and a guess on the low side on purpose, since a mark
# below the real minimum costs nothing while a missing one pays the whole prefix on every request.
MIN_CACHEABLE_TOKENS: dict[str, int] = {
    **dict.fromkeys(("claude-fable-5", "claude-fable-5-1", "claude-fable-5-2", "claude-mythos-5",
                     "claude-mythos-5-1", "claude-mythos-5-2", "claude-opus-5", "claude-opus-5-5"), 512),
    **dict.fromkeys(("claude-opus-4-8", "claude-sonnet-5", "claude-sonnet-4-6", "claude-sonnet-4-5"), 1024),
    **dict.fromkeys(("claude-opus-4-7", "claude-mythos-preview"), 2048),
    **dict.fromkeys(("claude-opus-4-6", "claude-opus-4-5", "claude-haiku-4-5"), 4096),
}
DEFAULT_MIN_CACHEABLE = 1024  # the most common documented value (Sonnet 5, 4.6, 4.5; Opus 4.8)


def resolve_model(model: str) -> str | None:
    """The priced model ID for ``model`` (dated IDs and ``-latest`` resolve to their alias), or None."""
    if not isinstance(model, str):
        return None
    name = model.strip().lower()
    if name in PRICES:
        return name
    name = _DATE_SUFFIX.sub("", name)
    return name if name in PRICES else None


def price_for(model: str, prompt_tokens: int = 0) -> Price | None:
    """The price of ``model`` for a prompt of ``prompt_tokens`` tokens; None for an unknown model."""
    name = resolve_model(model)
    if name is None:
        return None
    tier = _LONG_PROMPT.get(name)
    if tier is not None and prompt_tokens > tier[0]:
        return tier[1]
    return PRICES[name]


def min_cacheable_tokens(model: str) -> int:
    """The shortest prefix, in tokens, that ``model``'s prompt cache stores (see MIN_CACHEABLE_TOKENS)."""
    name = _DATE_SUFFIX.sub("", model.strip().lower()) if isinstance(model, str) else ""
    return MIN_CACHEABLE_TOKENS.get(name, DEFAULT_MIN_CACHEABLE)


_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _counts(usage: Any) -> tuple[int, int, int, int, int, int]:
    """(input, output, cache write total, cache read, 5m write, 1h write) from a Usage-like object
    or a dict in the API's shape (nested ``cache_creation``) or in ``Usage.to_dict()``'s shape."""
    if isinstance(usage, Mapping):
        fields = usage
        split = usage.get("cache_creation") or {}
        w5 = split.get("ephemeral_5m_input_tokens") if split else usage.get("cache_creation_5m")
        w1 = split.get("ephemeral_1h_input_tokens") if split else usage.get("cache_creation_1h")
    else:
        fields = {n: getattr(usage, n, 0) for n in _USAGE_FIELDS}
        w5, w1 = getattr(usage, "cache_creation_5m", 0), getattr(usage, "cache_creation_1h", 0)
    get = fields.get
    return (
        int(get("input_tokens") or 0),
        int(get("output_tokens") or 0),
        int(get("cache_creation_input_tokens") or 0),
        int(get("cache_read_input_tokens") or 0),
        int(w5 or 0),
        int(w1 or 0),
    )


def _bill(usage: Any) -> tuple[int, int, int, int, int]:
    """(input, output, cache read, 5m writes, 1h writes) of a usage."""
    inp, out, writes, read, w5, w1 = _counts(usage)
    if w5 + w1:
        # Trust the split; tokens the split leaves out of the total are priced as 5m writes.
        w5 += max(0, writes - w5 - w1)
    else:
        w5 = writes
    return inp, out, read, w5, w1


def cost(model: str, usage: Any, *, batch: bool = False) -> float | None:
    """USD cost of ``usage`` on ``model``; None when the model's price is unknown.

    ``usage`` is a :class:`claude_magic.reply.Usage` (or any object with its attributes) or the
    API's ``usage`` dict. ``batch=True`` applies the Message Batches discount to every line.
    """
    inp, out, read, w5, w1 = _bill(usage)
    price = price_for(model, prompt_tokens=inp + w5 + w1 + read)
    if price is None:
        return None
    usd = (
        inp * price.input
        + out * price.output
        + w5 * price.cache_write_5m
        + w1 * price.cache_write_1h
        + read * price.cache_read
    ) / 1_000_000
    if batch:
        usd *= BATCH_DISCOUNT
    return round(usd, 12)  # drop float noise such as 0.30000000000000004


def prompt_cache_saved(model: str, usage: Any, *, batch: bool = False) -> float | None:
    """USD the prompt cache saved on ``usage`` (as :func:`cost` reads it): its reads priced at the
    input price rather than the read price, less what its writes paid above the input price. Negative
    when the writes cost more than the reads saved (a prefix written and never read back); None when
    the model's price is unknown."""
    inp, _, read, w5, w1 = _bill(usage)
    price = price_for(model, prompt_tokens=inp + w5 + w1 + read)
    if price is None:
        return None
    usd = (read * (price.input - price.cache_read) - w5 * (price.cache_write_5m - price.input)
           - w1 * (price.cache_write_1h - price.input)) / 1_000_000
    if batch:
        usd *= BATCH_DISCOUNT
    return round(usd, 12)


def format_cost(usd: float | None) -> str:
    """``"$0.0123"`` (4 decimals below a dollar, cents above), ``"<$0.0001"``, ``"$0"`` or ``"unknown"``."""
    if usd is None:
        return "unknown"
    if usd == 0:
        return "$0"
    if 0 < usd < 0.0001:
        return "<$0.0001"
    if abs(usd) < 1:
        return f"${usd:.4f}"
    return f"${usd:,.2f}"
