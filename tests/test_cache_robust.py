"""The response cache against what the disk and the people editing it can do: a corrupt or
unwritable store, values of the wrong shape, exports aimed at the cache itself, and cassettes
carried from one API host to another. Real diskcache stores in tmp_path throughout."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import diskcache
import pytest
from test_cache import BODY, HOST, VERSION, key_of, make_reply

from claude_magic.cache import CacheKey, JSONDisk, ResponseCache
from claude_magic.errors import ConfigError
from claude_magic.reply import Reply, Usage, check_dict

EMULATOR = "127.0.0.1:8765"


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "claude_magic" and r.levelno == logging.WARNING]


def _filled(directory: Path, n: int = 50) -> list[str]:
    keys = [f"{i:064x}" for i in range(n)]
    with ResponseCache(directory) as cache:
        for k in keys:
            cache.set(k, make_reply("x" * 300))
        cache.set_meta("batch", {"id": "msgbatch_1"})
    return keys


def _corrupt(db: Path, how: str) -> None:
    if how == "junk":
        with open(db, "r+b") as f:
            f.write(b"not a database!!" * 4)
    else:
        os.truncate(db, db.stat().st_size // 2)


# --- Reply: one definition of a well-formed reply dict ---------------------------------------------

def test_a_reply_round_trips_with_the_reason_it_is_incomplete() -> None:
    reply = Reply.from_dict({**make_reply("Hel"), "incomplete": "interrupted"})
    assert reply.incomplete == "interrupted"
    assert Reply.from_dict(reply.to_dict()) == reply
    assert Reply.from_dict(make_reply()).incomplete is None  # a complete answer, and old entries


def test_from_dict_ignores_fields_it_does_not_know() -> None:
    d = make_reply()
    d["from_the_future"] = 1
    d["usage"]["new_kind_of_tokens"] = 4
    assert Reply.from_dict(d).usage == Usage(input_tokens=100, output_tokens=20)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"text": 5}, "reply field 'text' must be a string, got int 5"),
        ({"usage": "x"}, "reply field 'usage' must be an object of token counts, got str 'x'"),
        ({"usage": {"input_tokens": "3"}}, "'usage.input_tokens' must be an integer"),
        ({"content": [1]}, "'content' must be a list of objects"),
        ({"cached": "yes"}, "'cached' must be true or false"),
        ({"cost": True}, "'cost' must be a number or null"),
        ({"incomplete": 5}, "'incomplete' must be a string or null"),
        ({"content": None}, "'content' must be a list"),
    ],
)
def test_a_reply_of_the_wrong_shape_is_refused_naming_the_field(change: dict[str, Any],
                                                                complaint: str) -> None:
    d = {**make_reply(), **change}
    with pytest.raises(ValueError, match=re.escape(complaint)):
        check_dict(d)
    with pytest.raises(ValueError, match="reply field"):
        Reply.from_dict(d)


def test_a_reply_that_is_not_an_object_or_lacks_a_field_is_refused() -> None:
    with pytest.raises(ValueError, match="a reply is a JSON object, got list"):
        check_dict(["a"])
    with pytest.raises(ValueError, match="reply field 'content' is missing"):
        check_dict({"text": "hi"})
    check_dict({**make_reply(), "usage": {}})  # no tokens counted is still a reply


def test_every_reply_field_has_a_check() -> None:
    from claude_magic import reply

    # every field the cache stores; the per-call ones (about the request, not the answer) it does not
    assert set(reply._PER_CALL) == {"ratelimit", "sent_at", "attempts", "queued", "parsed"}
    assert set(reply._CHECKS) == {f for f in Reply.__dataclass_fields__} - set(reply._PER_CALL)


# --- a store that fails ------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["junk", "truncated"])
def test_a_corrupt_database_makes_an_empty_cache_that_stores_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str) -> None:
    directory = tmp_path / "c"
    keys = _filled(directory)
    _corrupt(directory / "responses" / "cache.db", how)
    with ResponseCache(directory) as cache:
        assert cache.get(keys[0]) is None
        cache.set(keys[1], make_reply())
        assert cache.get(keys[1]) is None
        assert keys[1] not in cache
        cache.delete(keys[1])
        stats = cache.stats
        assert (stats.hits, stats.misses, stats.entries, stats.volume_bytes) == (0, 2, 0, 0)
        assert cache.get_meta("batch") == {"id": "msgbatch_1"}  # the side-table is its own store
        assert cache.broken in ("file is not a database", "database disk image is malformed")
    (warning,) = _records(caplog)  # once per cache object, however many calls
    assert warning.getMessage() == (
        f"response cache at {directory / 'responses'} unusable ({cache.broken}): running without it; "
        "%claude_cache clear rebuilds it, or set CLAUDE_MAGIC_CACHE_DIR"
    )


def test_each_cache_object_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "c"
    _filled(directory)
    _corrupt(directory / "responses" / "cache.db", "junk")
    for _ in range(2):
        with ResponseCache(directory) as cache:
            for _ in range(3):
                cache.get("a" * 64)
                cache.set("a" * 64, make_reply())
    assert len(_records(caplog)) == 2


def test_an_uncreatable_directory_is_a_broken_cache_not_an_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "file").write_text("I am a file")
    with ResponseCache(tmp_path / "file" / "c") as cache:
        assert not _records(caplog)  # constructing touches nothing
        assert cache.get("a" * 64) is None
        cache.set("a" * 64, make_reply())
        cache.set_meta("m", 1)
        assert cache.get_meta("m", "default") == "default"
        assert cache.stats.entries == 0
        assert cache.broken is not None and "could not be created" in cache.broken
        with pytest.raises(ConfigError, match="cannot rebuild the response cache at .*writable"):
            cache.clear()
        with pytest.raises(ConfigError, match="nothing imported: response cache at .* unusable"):
            cache.import_(_cassette(tmp_path, [{"key": "a" * 64, "value": make_reply()}]))
    assert len(_records(caplog)) == 1
    assert (tmp_path / "file").read_text() == "I am a file"


def test_constructing_a_cache_opens_nothing(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    assert not (tmp_path / "c").exists()
    assert cache.broken is None  # asking opens the stores
    assert (tmp_path / "c" / "responses" / "cache.db").exists()
    cache.close()


@pytest.mark.parametrize("how", ["junk", "truncated"])
def test_clear_rebuilds_a_broken_store_and_nothing_else(tmp_path: Path, how: str) -> None:
    directory = tmp_path / "c"
    _filled(directory)
    with ResponseCache(directory) as cache:
        cache.set("b" * 64, make_reply("y" * 100_000))  # a value file in responses/ab/cd/
    assert list((directory / "responses").rglob("*.val"))
    (directory / "responses" / "notes.txt").write_text("mine")
    (directory / "elsewhere.txt").write_text("mine too")
    _corrupt(directory / "responses" / "cache.db", how)
    with ResponseCache(directory) as cache:
        assert cache.broken is not None
        assert cache.clear() == 0
        assert cache.broken is None
        cache.set("a" * 64, make_reply("fresh"))
        assert cache.get("a" * 64)["text"] == "fresh"  # type: ignore[index]
        assert cache.stats.entries == 1
        assert cache.get_meta("batch") == {"id": "msgbatch_1"}
    assert not list((directory / "responses").rglob("*.val"))
    assert (directory / "responses" / "notes.txt").read_text() == "mine"
    assert (directory / "elsewhere.txt").read_text() == "mine too"
    with ResponseCache(directory) as again:
        assert again.get("a" * 64) is not None


def test_clear_of_a_healthy_cache_counts_what_it_removed(tmp_path: Path) -> None:
    _filled(tmp_path, n=3)
    with ResponseCache(tmp_path) as cache:
        assert cache.clear() == 3


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_clear_never_deletes_through_a_link_out_of_the_cache_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _filled(outside)
    _corrupt(outside / "responses" / "cache.db", "junk")
    directory = tmp_path / "c"
    directory.mkdir()
    (directory / "responses").symlink_to(outside / "responses", target_is_directory=True)
    with ResponseCache(directory) as cache:
        assert cache.broken is not None
        with pytest.raises(ConfigError, match="outside the cache directory"):
            cache.clear()
    assert (outside / "responses" / "cache.db").exists()


# --- values of the wrong shape ----------------------------------------------------------------------

@pytest.mark.parametrize("value", [{"text": 5}, ["a", "list"], {**make_reply(), "usage": "x"}, "text"])
def test_a_stored_value_of_the_wrong_shape_is_a_miss_and_is_deleted(tmp_path: Path, value: Any) -> None:
    key = key_of(BODY)
    raw = diskcache.Cache(str(tmp_path / "c" / "responses"), disk=JSONDisk)
    try:
        raw.set(str(key), value)  # as another program (or a hand) could
    finally:
        raw.close()
    with ResponseCache(tmp_path / "c") as cache:
        assert cache.get(key) is None
        assert key not in cache
        assert (cache.stats.hits, cache.stats.misses) == (0, 1)
        assert cache.export(tmp_path / "out.jsonl") == 0


@pytest.mark.parametrize(
    ("value", "complaint"),
    [({**make_reply(), "text": 5}, "reply field 'text' must be a string"),
     ({**make_reply(), "usage": "x"}, "reply field 'usage' must be an object")],
)
def test_import_refuses_a_value_that_is_not_a_reply(tmp_path: Path, value: dict[str, Any],
                                                    complaint: str) -> None:
    path = _cassette(tmp_path, [{"key": "f" * 64, "value": make_reply()}, {"key": "e" * 64, "value": value}])
    with ResponseCache(tmp_path / "c") as cache:
        with pytest.raises(ConfigError) as info:
            cache.import_(path)
        assert str(info.value).startswith(f"{path}:2: value is not a reply: {complaint}")
        assert "\n" not in str(info.value)
        assert "f" * 64 not in cache


# --- exports ---------------------------------------------------------------------------------------------

def _cassette(tmp_path: Path, items: list[dict[str, Any]], name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return path


@pytest.mark.parametrize("inside", ["responses/cache.db", "x.jsonl", "meta/../responses/x", "."])
def test_export_refuses_a_path_inside_the_cache_directory(tmp_path: Path, inside: str) -> None:
    directory = tmp_path / "c"
    keys = _filled(directory, n=3)
    with ResponseCache(directory) as cache:
        with pytest.raises(ConfigError, match="inside the cache directory") as info:
            cache.export(directory / inside)
        assert "\n" not in str(info.value)
    with ResponseCache(directory) as cache:
        assert cache.broken is None
        assert all(cache.get(k) is not None for k in keys)
    assert not (directory / "x.jsonl").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_export_refuses_a_link_into_the_cache_directory(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    keys = _filled(directory, n=1)
    (tmp_path / "innocent.jsonl").symlink_to(directory / "responses" / "cache.db")
    with ResponseCache(directory) as cache:
        with pytest.raises(ConfigError, match="inside the cache directory"):
            cache.export(tmp_path / "innocent.jsonl")
        assert cache.get(keys[0]) is not None


def test_a_failed_export_leaves_the_old_file_intact(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    _filled(directory, n=1)
    _corrupt(directory / "responses" / "cache.db", "junk")
    out = tmp_path / "out.jsonl"
    out.write_text("the old cassette\n")
    with ResponseCache(directory) as cache:
        with pytest.raises(ConfigError, match="nothing exported: response cache at .* unusable"):
            cache.export(out)
    assert out.read_text() == "the old cassette\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "out.jsonl"]  # no temporary file left


def test_export_replaces_the_old_file(tmp_path: Path) -> None:
    _filled(tmp_path / "c", n=2)
    out = tmp_path / "out.jsonl"
    out.write_text("the old cassette\n" * 1000)
    with ResponseCache(tmp_path / "c") as cache:
        assert cache.export(out) == 2
    assert len(out.read_text().splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "out.jsonl"]


def test_export_and_import_expand_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    keys = _filled(tmp_path / "a", n=2)
    with ResponseCache(tmp_path / "a") as a:
        assert a.export("~/tape.jsonl") == 2
    assert (tmp_path / "tape.jsonl").exists()
    with ResponseCache(tmp_path / "b") as b:
        assert b.import_("~/tape.jsonl") == 2
        assert all(k in b for k in keys)


# --- keys and hosts ---------------------------------------------------------------------------------------

def _sha(doc: Any) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_a_key_is_the_host_over_the_request_digest() -> None:
    key = key_of({**BODY, "stream": True}, host="API.Anthropic.com/")
    request = _sha({"body": BODY, "api_version": VERSION})
    assert isinstance(key, CacheKey) and isinstance(key, str)
    assert (key.host, key.request) == (HOST, request)
    assert key == _sha({"host": HOST, "request": request})
    assert key.for_host(EMULATOR) == key_of(BODY, host=EMULATOR) == CacheKey(EMULATOR, request)
    assert type(str(key)) is str and str(key) == key


def test_a_cache_key_survives_copy_and_pickle() -> None:
    key = key_of(BODY)
    for clone in (copy.copy(key), copy.deepcopy(key), pickle.loads(pickle.dumps(key))):
        assert clone == key and (clone.host, clone.request) == (key.host, key.request)


def test_a_cache_key_needs_a_request_digest() -> None:
    with pytest.raises(ValueError, match="64-character sha256"):
        CacheKey(HOST, "a" * 64 + "\n")


def test_export_writes_the_origin_of_entries_stored_under_a_cache_key(tmp_path: Path) -> None:
    key = key_of(BODY)
    with ResponseCache(tmp_path / "c") as cache:
        cache.set(key, make_reply("keyed"))
        cache.set("0" * 64, make_reply("plain"))
        assert cache.get(key)["text"] == "keyed"  # type: ignore[index]
        assert cache.export(tmp_path / "out.jsonl") == 2
    plain, keyed = (json.loads(line) for line in (tmp_path / "out.jsonl").read_text("utf-8").splitlines())
    assert plain == {"key": "0" * 64, "value": make_reply("plain")}
    assert keyed == {"key": key, "host": HOST, "request": key.request, "value": make_reply("keyed")}


def test_a_cassette_recorded_against_the_emulator_replays_for_the_real_host(tmp_path: Path) -> None:
    recorded = key_of(BODY, host=EMULATOR)
    other = key_of({**BODY, "max_tokens": 7}, host=EMULATOR)
    with ResponseCache(tmp_path / "emu") as emu:
        emu.set(recorded, make_reply("from the emulator"))
        emu.set(other, make_reply("another"))
        emu.export(tmp_path / "tape.jsonl")
    real = key_of(BODY)
    with ResponseCache(tmp_path / "ci") as ci:
        assert ci.import_(tmp_path / "tape.jsonl") == 2
        assert ci.get(real) is None  # by default an emulator's answer never serves the real host
        assert ci.get(recorded)["text"] == "from the emulator"  # type: ignore[index]
    with ResponseCache(tmp_path / "ci2") as ci2:
        assert ci2.import_(tmp_path / "tape.jsonl", host=HOST) == 2
        assert ci2.get(real)["text"] == "from the emulator"  # type: ignore[index]
        assert ci2.get(recorded) is None
        ci2.export(tmp_path / "mapped.jsonl")
    hosts = {json.loads(line)["host"] for line in (tmp_path / "mapped.jsonl").read_text("utf-8").splitlines()}
    assert hosts == {HOST}  # the mapped entries now say where they answer


@pytest.mark.parametrize("order", ["as exported", "reversed"])
def test_mapping_prefers_an_answer_recorded_against_that_host(tmp_path: Path, order: str) -> None:
    with ResponseCache(tmp_path / "a") as a:
        a.set(key_of(BODY, host=EMULATOR), make_reply("fake"))
        a.set(key_of(BODY), make_reply("real"))
        a.export(tmp_path / "tape.jsonl")
    if order == "reversed":
        lines = (tmp_path / "tape.jsonl").read_text("utf-8").splitlines(keepends=True)
        (tmp_path / "tape.jsonl").write_text("".join(reversed(lines)), "utf-8")
    with ResponseCache(tmp_path / "b") as b:
        assert b.import_(tmp_path / "tape.jsonl", host=HOST) == 2
        assert b.get(key_of(BODY))["text"] == "real"  # type: ignore[index]
        assert b.stats.entries == 1


def test_export_import_export_keeps_the_origins(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "a") as a:
        a.set(key_of(BODY, host=EMULATOR), make_reply("one"))
        a.set("1" * 64, make_reply("two"))
        a.export(tmp_path / "one.jsonl")
    with ResponseCache(tmp_path / "b") as b:
        b.import_(tmp_path / "one.jsonl")
        b.export(tmp_path / "two.jsonl")
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()


def test_mapping_a_cassette_without_request_digests_is_refused(tmp_path: Path) -> None:
    path = _cassette(tmp_path, [
        {"key": key_of(BODY, host=EMULATOR), "host": EMULATOR, "request": key_of(BODY).request,
         "value": make_reply()},
        {"key": "a" * 64, "value": make_reply()},
    ])
    with ResponseCache(tmp_path / "c") as cache:
        with pytest.raises(ConfigError) as info:
            cache.import_(path, host=HOST)
        message = str(info.value)
        assert message.startswith(f"{path}:2: ") and "predates host mapping" in message
        assert "re-export" in message and "\n" not in message
        assert cache.stats.entries == 0  # nothing stored from a refused file
        assert cache.import_(path) == 2  # without a host, it loads as before


@pytest.mark.parametrize(
    ("change", "complaint"),
    [({"host": "evil.example"}, "key does not match host"),
     ({"request": "xyz"}, "request 'xyz' is not a 64-character"),
     ({"host": 5}, "host 5 is not a string"),
     ({"request": None}, "request None is not a 64-character")],
)
def test_import_refuses_an_origin_that_does_not_match_its_key(tmp_path: Path, change: dict[str, Any],
                                                             complaint: str) -> None:
    key = key_of(BODY, host=EMULATOR)
    path = _cassette(tmp_path, [{"key": key, "host": EMULATOR, "request": key.request, "value": make_reply(),
                                 **change}])
    with ResponseCache(tmp_path / "c") as cache:
        with pytest.raises(ConfigError, match=f"^{path}:1: {complaint}"):
            cache.import_(path)
