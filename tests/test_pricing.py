from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_magic import pricing
from claude_magic.pricing import BATCH_DISCOUNT, PRICES, Price, cost, format_cost, price_for
from claude_magic.reply import Usage

# api-notes §9 / §7, written out by hand so that a typo in PRICES fails here.
EXPECTED = {
    "claude-fable-5-2": Price(8, 40, 10, 16, 0.80),  # cache unconfirmed: standard multipliers
    "claude-fable-5-1": Price(10, 50, 12.50, 20, 0.25),
    "claude-opus-5-5": Price(4, 20, 5, 8, 0.20),
    "claude-sonnet-5-5": Price(2, 10, 2.50, 4, 0.10),
    "claude-haiku-5-5": Price(0.10, 0.50, 0.125, 0.20, 0.01),
    "claude-opus-5": Price(5, 25, 6.25, 10, 0.50),
    "claude-sonnet-5": Price(2, 10, 2.50, 4, 0.20),
    "claude-haiku-4-5": Price(1, 5, 1.25, 2, 0.10),
    "claude-opus-4-5": Price(5, 25, 6.25, 10, 0.50),
    "claude-opus-4-6": Price(5, 25, 6.25, 10, 0.50),
    "claude-opus-4-7": Price(5, 25, 6.25, 10, 0.50),
    "claude-opus-4-8": Price(5, 25, 6.25, 10, 0.50),
}


@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_every_model_of_the_notes_has_its_price(model: str) -> None:
    assert price_for(model) == EXPECTED[model]


def test_every_listed_price_is_sane() -> None:
    for model, p in PRICES.items():
        assert p.output > p.input > p.cache_read > 0, model
        assert p.cache_write_1h > p.cache_write_5m > p.input, model


@pytest.mark.parametrize(
    ("alias", "model"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("claude-haiku-4-5", "claude-haiku-4-5"),
        ("Claude-Opus-5-5", "claude-opus-5-5"),
        (" claude-opus-5-5 ", "claude-opus-5-5"),
        ("claude-sonnet-5-5-latest", "claude-sonnet-5-5"),
    ],
)
def test_dated_ids_and_aliases_resolve(alias: str, model: str) -> None:
    assert pricing.resolve_model(alias) == model
    assert price_for(alias) == PRICES[model]


@pytest.mark.parametrize("model", ["claude-mythos-5", "gpt-5", "", "claude-opus-9-9-20991231", None, 42])
def test_unknown_model_has_unknown_price_and_cost(model: object) -> None:
    assert price_for(model) is None  # type: ignore[arg-type]
    assert cost(model, Usage(input_tokens=10, output_tokens=10)) is None  # type: ignore[arg-type]


def test_haiku_5_5_switches_tier_above_100k_prompt_tokens() -> None:
    low, high = price_for("claude-haiku-5-5", 100_000), price_for("claude-haiku-5-5", 100_001)
    assert low == Price(0.10, 0.50, 0.125, 0.20, 0.01)
    assert high is not None and (high.input, high.output) == (0.50, 2.50)
    # The prompt counts cache reads and writes, not only uncached input.
    usage = Usage(input_tokens=1_000, cache_read_input_tokens=100_000, output_tokens=1_000)
    want = (1_000 * 0.50 + 100_000 * 0.05 + 1_000 * 2.50) / 1e6
    assert cost("claude-haiku-5-5", usage) == pytest.approx(want)


def test_cost_of_plain_usage() -> None:
    # 1M input at $4 + 1M output at $20
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost("claude-opus-5-5", usage) == pytest.approx(24.0)
    assert cost("claude-opus-5-5", Usage()) == 0


def test_cache_writes_use_the_ttl_split_when_given() -> None:
    api = {
        "input_tokens": 10,
        "output_tokens": 0,
        "cache_creation_input_tokens": 3_000,
        "cache_read_input_tokens": 5_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 2_000},
    }
    want = (10 * 4 + 1_000 * 5 + 2_000 * 8 + 5_000 * 0.20) / 1e6
    assert cost("claude-opus-5-5", api) == pytest.approx(want)
    assert cost("claude-opus-5-5", Usage.from_api(api)) == pytest.approx(want)
    assert cost("claude-opus-5-5", Usage.from_api(api).to_dict()) == pytest.approx(want)


def test_cache_writes_without_split_are_priced_as_5m() -> None:
    api = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 2_000}
    assert cost("claude-sonnet-5-5", api) == pytest.approx(2_000 * 2.50 / 1e6)
    api["cache_creation"] = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
    assert cost("claude-sonnet-5-5", api) == pytest.approx(2_000 * 2.50 / 1e6)


def test_split_that_misses_tokens_prices_the_rest_as_5m() -> None:
    api = {"cache_creation_input_tokens": 3_000, "cache_creation": {"ephemeral_1h_input_tokens": 1_000}}
    assert cost("claude-sonnet-5-5", api) == pytest.approx((2_000 * 2.50 + 1_000 * 4) / 1e6)


def test_null_fields_count_as_zero() -> None:
    api = {"input_tokens": 100, "output_tokens": None, "cache_creation": None,
           "cache_read_input_tokens": None}
    assert cost("claude-opus-5-5", api) == pytest.approx(100 * 4 / 1e6)


def test_any_object_with_usage_attributes_is_accepted() -> None:
    class Duck:
        input_tokens = 1_000
        output_tokens = 100

    assert cost("claude-opus-5-5", Duck()) == pytest.approx((1_000 * 4 + 100 * 20) / 1e6)


counts = st.integers(min_value=0, max_value=2_000_000)


@given(counts, counts, counts, counts, counts, st.sampled_from(sorted(EXPECTED)))
def test_batch_is_half_of_everything(inp: int, out: int, w5: int, w1: int, read: int, model: str) -> None:
    usage = Usage(inp, out, w5 + w1, read, w5, w1)
    full, half = cost(model, usage), cost(model, usage, batch=True)
    assert full is not None and half is not None
    assert math.isclose(half, full * BATCH_DISCOUNT, rel_tol=1e-9, abs_tol=1e-12)
    assert full >= 0


@pytest.mark.parametrize(
    ("usd", "text"),
    [
        (None, "unknown"),
        (0, "$0"),
        (0.00004, "<$0.0001"),
        (0.0001, "$0.0001"),
        (0.0123, "$0.0123"),
        (0.01234, "$0.0123"),
        (0.5, "$0.5000"),
        (1.5, "$1.50"),
        (1234.567, "$1,234.57"),
    ],
)
def test_format_cost(usd: float | None, text: str) -> None:
    assert format_cost(usd) == text
