"""The shared prefix paid once: prompt-cache marks in batches, the response-cache key that ignores them,
and what the summary and the dry run say about it, against the emulator (whose prompt cache stores
prefixes of ``min_cache_tokens`` and more and reports usage as the API does)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from canary import TEST_KEY
from ipshell import configure, loaded_shell, run

from claude_magic import _wire, pricing
from claude_magic.batch import plan_prompts, run_batch
from claude_magic.batch._live import _Budget
from claude_magic.batch._prefix import estimate_tokens
from claude_magic.cache import CacheKey, ResponseCache, append_to_cassette
from claude_magic.client import Client
from claude_magic.emulator import Emulator
from claude_magic.reply import Reply, Usage

MODEL = "claude-haiku-5-5"
# About 1,500 tokens: past the 1,024 the emulator (and our table for Haiku 5.5) needs.
RUBRIC = ("You label product reviews. A positive review praises the product; a negative one complains; "
          "a mixed one does both. Answer with one word, in lower case, and nothing else.\n") * 25
TEMPLATE = RUBRIC + "Review: {review}\nLabel:"
SHORT = "Label this review in one word: {review}"


def reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame({"review": [f"review {i}: the kettle is {'fine' if i % 2 else 'noisy'}"
                                    for i in range(n)]})


def bodies(emu: Emulator) -> list[dict[str, Any]]:
    return [r.json for r in emu.requests if r.method == "POST" and r.path == "/v1/messages"]


def marks(body: Any) -> int:
    """How many ``cache_control`` marks a request body carries, wherever they are."""
    if isinstance(body, dict):
        return ("cache_control" in body) + sum(marks(v) for v in body.values())
    if isinstance(body, list):
        return sum(marks(v) for v in body)
    return 0


def earlier_key(body: dict[str, Any], host: str, api_version: str) -> str:
    """The key earlier versions gave a request: its body minus stream and metadata, marks included."""
    def digest(doc: Any) -> str:
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    fields = {k: v for k, v in body.items() if k not in ("stream", "metadata")}
    return digest({"host": host, "request": digest({"body": fields, "api_version": api_version})})


def a_reply(text: str = "stored") -> dict[str, Any]:
    return Reply(text=text, content=[{"type": "text", "text": text}], stop_reason="end_turn",
                 stop_sequence=None, usage=Usage(10, 2), model=MODEL, id="msg_1", cost=0.001).to_dict()


# -- the response cache's key ignores marks --------------------------------------------------------------


def test_a_body_without_marks_keeps_the_key_earlier_versions_gave_it(client: Client) -> None:
    body = client.build_body("Hello", model=MODEL, system="Be brief.", stop_sequences=["END"])
    key = client.cache_key({**body, "stream": True})
    assert str(key) == earlier_key(body, key.host, client.api_version)  # type: ignore[attr-defined]
    assert key.fallback is None  # type: ignore[attr-defined]


def test_marks_anywhere_and_the_marked_split_do_not_change_the_key(client: Client) -> None:
    mark = {"type": "ephemeral"}
    plain = client.build_body("HEAD then row", model=MODEL, system="S")
    split = [{"role": "user", "content": [{"type": "text", "text": "HEAD ", "cache_control": mark},
                                          {"type": "text", "text": "then row"}]}]
    marked = client.build_body(split, model=MODEL, system="S", cache_system="1h")
    assert client.cache_key(marked) == client.cache_key(plain)
    assert client.cache_key({**plain, "cache_control": mark}) == client.cache_key(plain)
    tool = {"name": "t", "input_schema": {"type": "object"}}
    inner = [{"type": "text", "text": "r", "cache_control": mark}]
    result = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": inner}]}]
    with_marks = client.build_body(result, model=MODEL, tools=[{**tool, "cache_control": mark}])
    without = client.build_body(result, model=MODEL, tools=[tool])
    assert client.cache_key(with_marks) == client.cache_key(without) != client.cache_key(plain)
    # what still shapes the answer still changes the key
    other = client.build_body("HEAD then rows", model=MODEL, system="S")
    assert client.cache_key(other) != client.cache_key(plain)
    cited = [{"role": "user", "content": [{"type": "text", "text": "HEAD then row", "citations": []}]}]
    assert client.cache_key(client.build_body(cited, model=MODEL, system="S")) != client.cache_key(plain)


def test_cache_fields_are_idempotent_and_keep_the_earlier_form() -> None:
    body = _wire.build_body("q", model=MODEL, max_tokens=5, system="S", cache_system=True)
    once = _wire.cache_fields(body)
    assert once["system"] == "S" and once.legacy is not None and once.legacy["system"][0]["cache_control"]
    twice = _wire.cache_fields(once)
    assert twice == once and twice.legacy == once.legacy
    assert _wire.cache_fields(_wire.build_body("q", model=MODEL, max_tokens=5)).legacy is None


def test_an_answer_under_the_earlier_key_is_read_once_then_found_under_the_new_one(tmp_path: Path) -> None:
    body = _wire.build_body("q", model=MODEL, max_tokens=5, system="S", cache_system=True)
    key = ResponseCache.key(body, host="api.anthropic.com", api_version="v")
    old = earlier_key(body, "api.anthropic.com", "v")
    assert key.fallback == old and key != old
    with ResponseCache(tmp_path / "c") as cache:
        cache.set(old, a_reply())
        assert key in cache
        assert cache.get(key) == a_reply()
        assert str(key) in cache and cache.stats.hits == 1 and cache.stats.misses == 0
        cache.delete(old)
        assert cache.get(key) == a_reply()  # moved: the earlier entry is no longer needed


def test_a_cassette_recorded_with_marks_by_an_earlier_version_still_replays(emu: Emulator,
                                                                           tmp_path: Path) -> None:
    system = "You are terse. " * 10
    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "rec", max_tokens=16) as recorder:
        body = recorder.build_body("Hi", system=system, cache_system=True)
        key = recorder.cache_key(body)
        cassette = tmp_path / "cassette.jsonl"
        request = json.dumps({"body": body, "api_version": recorder.api_version},
                             sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        old = CacheKey(key.host, hashlib.sha256(request.encode()).hexdigest())  # type: ignore[attr-defined]
        assert old == key.fallback  # type: ignore[attr-defined]
        append_to_cassette(cassette, old, a_reply("recorded"))  # as the earlier version recorded it
    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "replay", max_tokens=16,
                offline=True, cassette=cassette) as replay:
        assert replay.complete("Hi", system=system, cache_system=True).text == "recorded"
    assert bodies(emu) == []


# -- prices -------------------------------------------------------------------------------------------------


def test_the_minimum_cacheable_length_is_the_models() -> None:
    assert pricing.min_cacheable_tokens("claude-opus-4-6") == 4096
    assert pricing.min_cacheable_tokens("claude-haiku-4-5-20251001") == 4096
    assert pricing.min_cacheable_tokens("claude-opus-4-7") == 2048
    assert pricing.min_cacheable_tokens("claude-sonnet-5") == 1024
    assert pricing.min_cacheable_tokens("claude-opus-5-5") == 512
    assert pricing.min_cacheable_tokens("claude-fable-5-2") == 512  # its line's value
    assert pricing.min_cacheable_tokens("claude-haiku-5-5") == pricing.DEFAULT_MIN_CACHEABLE == 1024
    assert pricing.min_cacheable_tokens("claude-unknown-9") == pricing.DEFAULT_MIN_CACHEABLE


def test_prompt_cache_savings_are_reads_at_the_input_price_less_the_write_premium() -> None:
    saved = pricing.prompt_cache_saved("claude-sonnet-5-5", Usage(cache_creation_input_tokens=1_000_000,
                                                                 cache_read_input_tokens=10_000_000))
    assert saved == pytest.approx(10 * (2 - 0.10) - (2.50 - 2))
    written_1h = {"cache_creation_input_tokens": 1_000_000,
                  "cache_creation": {"ephemeral_1h_input_tokens": 1_000_000}}
    lost = pricing.prompt_cache_saved("claude-sonnet-5-5", written_1h)
    assert lost == pytest.approx(-(4 - 2))
    assert pricing.prompt_cache_saved("claude-unknown", Usage(cache_read_input_tokens=5)) is None


# -- what is marked --------------------------------------------------------------------------------------


def test_a_long_shared_head_is_marked_and_the_later_rows_read_it(emu: Emulator, client: Client) -> None:
    result = run_batch(TEMPLATE, reviews(10), client=client, model=MODEL)
    sent = bodies(emu)
    assert len(sent) == 10
    head = plan_prompts(TEMPLATE, reviews(1)).head
    assert head == RUBRIC + "Review: "
    for body in sent:
        [turn] = body["messages"]
        first, rest = turn["content"]
        assert first == {"type": "text", "text": head, "cache_control": {"type": "ephemeral"}}
        assert rest["text"].startswith("review ") and "cache_control" not in rest
    s = result.summary
    assert s.cache_write_tokens > 1024 and s.cache_read_tokens == 9 * s.cache_write_tokens
    price = pricing.price_for(MODEL)
    assert price is not None
    expected = (s.cache_read_tokens * (price.input - price.cache_read)
                - s.cache_write_tokens * (price.cache_write_5m - price.input)) / 1e6
    assert s.prompt_cache_saved == pytest.approx(expected)
    assert (f"prompt cache {s.cache_write_tokens:,} tokens written, {s.cache_read_tokens:,} read, "
            f"saved {pricing.format_cost(s.prompt_cache_saved)}") in str(s)
    assert s.to_dict()["cache_read_tokens"] == s.cache_read_tokens
    # the answers are the ones the unmarked prompt gets
    assert result.series.tolist() == run_batch(TEMPLATE, reviews(10), client=client, model=MODEL,
                                                cache=False, prompt_cache=False).series.tolist()


def test_a_short_head_is_not_marked(emu: Emulator, client: Client) -> None:
    result = run_batch(SHORT, reviews(6), client=client, model=MODEL)
    assert len(bodies(emu)) == 6 and not any(marks(b) for b in bodies(emu))
    assert all(isinstance(b["messages"][0]["content"], str) for b in bodies(emu))
    assert result.summary.cache_write_tokens == result.summary.cache_read_tokens == 0
    assert "prompt cache" not in str(result.summary)


def test_a_long_system_prompt_alone_is_marked_when_the_template_starts_with_its_placeholder(
        emu: Emulator, client: Client) -> None:
    result = run_batch("{review}", reviews(5), client=client, model=MODEL, system=RUBRIC)
    for body in bodies(emu):
        assert body["system"] == [{"type": "text", "text": RUBRIC, "cache_control": {"type": "ephemeral"}}]
        assert isinstance(body["messages"][0]["content"], str)
    assert result.summary.cache_read_tokens == 4 * result.summary.cache_write_tokens > 0
    emu.reset()
    run_batch("{review}", reviews(3), client=client, model=MODEL, system=RUBRIC, cache_system="1h",
              cache=False)  # the caller's own mark wins
    assert [b["system"][0]["cache_control"] for b in bodies(emu)] == [{"type": "ephemeral", "ttl": "1h"}] * 3


def test_the_head_counts_with_the_system_prompt_and_the_model_decides_the_minimum(emu: Emulator,
                                                                                   client: Client) -> None:
    half = RUBRIC[: len(RUBRIC) // 2]
    run_batch(half + "{review}", reviews(3), client=client, model=MODEL, system=half)
    assert all(marks(b) == 1 and marks(b["messages"]) == 1 for b in bodies(emu))  # head with system: enough
    emu.reset()
    run_batch(TEMPLATE, reviews(3), client=client, model="claude-opus-4-6")  # its minimum is 4,096 tokens
    assert not any(marks(b) for b in bodies(emu))


def test_token_estimates_follow_the_size_and_the_models_tokenizer() -> None:
    text = RUBRIC
    assert estimate_tokens(text, "claude-sonnet-4-5") == len(text.encode()) // 4
    assert estimate_tokens(text, "claude-haiku-5-5") == int(len(text.encode()) / 4 * 1.3)
    assert estimate_tokens("日本語" * 100, "claude-opus-4-6") == 225  # 900 bytes: about 300 tokens really


def test_a_lone_prompt_or_an_opt_out_sends_no_marks(emu: Emulator, client: Client) -> None:
    run_batch(TEMPLATE, reviews(1), client=client, model=MODEL)
    run_batch(TEMPLATE, reviews(4), client=client, model=MODEL, prompt_cache=False, cache=False)
    run_batch("{review}", reviews(4), client=client, model=MODEL, system=RUBRIC, prompt_cache=False,
              cache=False)
    assert len(bodies(emu)) == 9 and not any(marks(b) for b in bodies(emu))


def test_marks_the_api_ignores_are_dropped_after_the_first_answer(emu: Emulator, client: Client) -> None:
    emu.configure(min_cache_tokens=100_000)  # a model whose minimum is far above our table's
    result = run_batch(TEMPLATE, reviews(5), client=client, model=MODEL)
    assert [marks(b) for b in bodies(emu)] == [1, 0, 0, 0, 0]
    assert result.series.notna().all() and "prompt cache" not in str(result.summary)


def one_hour(body: Any) -> list[Any]:
    """The ``cache_control`` marks of a body that live an hour."""
    if isinstance(body, dict):
        own = [body["cache_control"]] if body.get("cache_control", {}).get("ttl") == "1h" else []
        return own + [m for v in body.values() for m in one_hour(v)]
    return [m for v in body for m in one_hour(v)] if isinstance(body, list) else []


def test_message_batches_write_the_prefix_live_for_an_hour_first_then_read_it(
        emu: Emulator, client: Client) -> None:
    result = run_batch(TEMPLATE, reviews(12), client=client, model=MODEL, api="batch", poll_interval=0.05)
    [warm] = bodies(emu)  # the first row, live, writes the prefix with a one-hour mark...
    assert len(one_hour(warm)) == 1 and marks(warm) == 1
    [created] = [r.json for r in emu.requests if r.path == "/v1/messages/batches" and r.method == "POST"]
    assert len(created["requests"]) == 11  # ... and the batch holds the other rows, with the same mark
    assert all(len(one_hour(r["params"])) == 1 for r in created["requests"])
    assert result.series.notna().all() and result.summary.sent == 12
    s = result.summary
    assert s.cache_write_tokens > 0 and s.cache_read_tokens == 11 * s.cache_write_tokens
    unmarked = run_batch(TEMPLATE, reviews(12), client=client, model=MODEL, api="batch", poll_interval=0.05,
                         prompt_cache=False, refresh=True)
    assert unmarked.summary.cost is not None and s.cost is not None and s.cost < unmarked.summary.cost


def test_a_small_message_batch_is_not_marked_the_live_write_would_cost_more_than_it_saves(
        emu: Emulator, client: Client) -> None:
    run_batch(TEMPLATE, reviews(4), client=client, model=MODEL, api="batch", poll_interval=0.05)
    [created] = [r.json for r in emu.requests if r.path == "/v1/messages/batches" and r.method == "POST"]
    assert bodies(emu) == [] and len(created["requests"]) == 4 and not marks(created)


def test_a_marked_run_finds_what_an_unmarked_run_stored_and_back(emu: Emulator, client: Client,
                                                                 tmp_path: Path) -> None:
    first = run_batch(TEMPLATE, reviews(6), client=client, model=MODEL, prompt_cache=False)
    assert first.summary.sent == 6 and not any(marks(b) for b in bodies(emu))
    again = run_batch(TEMPLATE, reviews(6), client=client, model=MODEL)
    assert again.summary.sent == 0 and again.series.equals(first.series)
    assert again.summary.response_cache_saved == pytest.approx(first.summary.cost)
    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "other", max_tokens=16) as other:
        marked = run_batch(TEMPLATE, reviews(8), client=other, model=MODEL)
        assert marked.summary.sent == 8 and all(marks(b) for b in bodies(emu)[6:])
        plain = run_batch(TEMPLATE, reviews(8), client=other, model=MODEL, prompt_cache=False)
    assert plain.summary.sent == 0 and plain.series.equals(marked.series)


# -- the first marked request goes alone -----------------------------------------------------------------


def _spans(client: Client, monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    real = client.acomplete

    async def timed(*args: Any, **kwargs: Any) -> Reply:
        started = time.monotonic()
        reply = await real(*args, **kwargs)
        spans.append((started, time.monotonic()))
        return reply

    monkeypatch.setattr(client, "acomplete", timed)
    return spans


def test_the_first_marked_request_goes_alone_then_the_others_together(
        emu: Emulator, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    emu.configure(ttft=0.2)
    client.complete("warm up", model=MODEL)  # the bucket is read: the scheduler sends no probe of its own
    spans = _spans(client, monkeypatch)
    run_batch(SHORT, reviews(6), client=client, model=MODEL)  # not marked: all start together
    first_end = min(spans)[1]
    assert sum(start < first_end for start, _ in spans) > 1
    spans.clear()
    result = run_batch(TEMPLATE, reviews(6), client=client, model=MODEL)
    spans.sort()
    first_end = spans[0][1]
    assert all(start >= first_end for start, _ in spans[1:])
    later_end = min(end for _, end in spans[1:])
    assert sum(start < later_end for start, _ in spans[1:]) > 1  # the rest in parallel
    assert result.summary.cache_read_tokens == 5 * result.summary.cache_write_tokens


def test_a_failed_first_request_leaves_the_next_one_alone(emu: Emulator, client: Client,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    client.complete("warm up", model=MODEL)
    spans = _spans(client, monkeypatch)
    real = client.acomplete
    calls = 0

    async def first_fails(*args: Any, **kwargs: Any) -> Reply:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.05)
            raise RuntimeError("boom")
        return await real(*args, **kwargs)

    monkeypatch.setattr(client, "acomplete", first_fails)
    emu.configure(ttft=0.1)
    result = run_batch(TEMPLATE, reviews(5), client=client, model=MODEL)
    assert result.summary.failed_rows == 1 and result.summary.succeeded_rows == 4
    spans.sort()
    assert all(start >= spans[0][1] for start, _ in spans[1:])  # the second went alone too
    assert result.summary.cache_read_tokens == 3 * result.summary.cache_write_tokens


# -- reports and the budget ------------------------------------------------------------------------------


def test_the_dry_run_estimates_what_the_prompt_cache_writes_reads_and_saves(client: Client) -> None:
    report = run_batch(TEMPLATE, reviews(20), client=client, model=MODEL, dry_run=True).dry_run
    assert report is not None
    head = report.cache_write_tokens
    assert report.cache_read_tokens == 19 * head
    usage = Usage(cache_creation_input_tokens=head, cache_read_input_tokens=19 * head)
    assert report.prompt_cache_saved == pytest.approx(pricing.prompt_cache_saved(MODEL, usage))
    assert f"≈ prompt cache {head:,} tokens written, {19 * head:,} read, saved $" in str(report)
    # the size of the head comes from the counted tokens, close to what the run then writes
    run = run_batch(TEMPLATE, reviews(20), client=client, model=MODEL).summary
    assert run.cache_write_tokens == pytest.approx(head, rel=0.05)
    assert run.cache_read_tokens == pytest.approx(report.cache_read_tokens, rel=0.05)
    short = run_batch(SHORT, reviews(20), client=client, model=MODEL, dry_run=True).dry_run
    assert short is not None and short.cache_write_tokens == 0 and "prompt cache" not in str(short)
    off = run_batch(TEMPLATE, reviews(20), client=client, model=MODEL, dry_run=True,
                    prompt_cache=False).dry_run
    assert off is not None and off.cache_write_tokens == 0


def test_the_summary_says_a_write_nobody_read_cost_more() -> None:
    from claude_magic.batch import BatchSummary

    line = str(BatchSummary(rows=1, unique=1, cache_write_tokens=2000, prompt_cache_saved=-0.0005))
    assert "prompt cache 2,000 tokens written, 0 read, cost $0.0005 more" in line


def test_the_budget_learns_from_all_input_and_prices_cache_writes() -> None:
    price = pricing.price_for(MODEL)
    assert price is not None
    budget = _Budget(1.0, price, max_tokens=10, batch=False)
    prompt = "x" * 4000
    before = budget.worst_case(prompt)
    budget.cache_writes()
    assert budget.worst_case(prompt) > before
    reply = Reply(text="a", content=[], stop_reason="end_turn", stop_sequence=None, model=MODEL, id="m",
                  usage=Usage(input_tokens=5, output_tokens=1, cache_read_input_tokens=995), cost=0.0)
    budget.settle(0, reply, prompt)
    assert budget.tokens_per_byte == pytest.approx(1000 / 4000 * 1.1)  # not 5 / 4000: the read counts


# -- the magic -------------------------------------------------------------------------------------------


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> Iterator[Any]:
    with loaded_shell(monkeypatch, tmp_path / "cache", "df", "_claude_batch") as shell:
        configure(shell, base_url=emu.url, api_key=TEST_KEY, model=MODEL, max_tokens=16)
        shell.user_ns["df"] = reviews(4)
        yield shell


def test_the_magic_marks_by_default_and_no_prompt_cache_opts_out(ip: Any, emu: Emulator) -> None:
    run(ip, "%%claude_batch df.review -o df.label\n" + TEMPLATE.replace("{review}", "{value}"))
    assert [marks(b) for b in bodies(emu)] == [1, 1, 1, 1]
    assert ip.user_ns["_claude_batch"].summary.cache_read_tokens > 0
    run(ip, "%%claude_batch df.review -o df.again --no-cache --no-prompt-cache\n" + TEMPLATE)
    assert [marks(b) for b in bodies(emu)[4:]] == [0, 0, 0, 0]
    assert ip.user_ns["df"]["again"].tolist() == ip.user_ns["df"]["label"].tolist()
