"""The response cache's key leaves prompt-cache marks out, and entries stored under the keys of earlier
versions stay reachable (against the emulator); the prices of the prompt cache."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from canary import TEST_KEY

from claude_magic import _wire, pricing
from claude_magic.cache import CacheKey, ResponseCache, append_to_cassette
from claude_magic.client import Client
from claude_magic.emulator import Emulator
from claude_magic.reply import Reply, Usage

MODEL = "claude-haiku-5-5"


@pytest.fixture
def emu(claude_emulator: Emulator) -> Emulator:
    return claude_emulator


@pytest.fixture
def client(emu: Emulator, tmp_path: Path) -> Iterator[Client]:
    c = Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "cache", max_tokens=16)
    yield c
    c.close()


def bodies(emu: Emulator) -> list[dict[str, Any]]:
    return [r.json for r in emu.requests if r.method == "POST" and r.path == "/v1/messages"]


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
