from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import diskcache
import pytest

from claude_magic.cache import ResponseCache, default_cache_dir
from claude_magic.errors import ConfigError
from claude_magic.reply import Reply, Usage

HOST = "api.anthropic.com"
VERSION = "2026-10-21"
BODY: dict[str, Any] = {
    "model": "claude-opus-5-5",
    "max_tokens": 1024,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "Hello, 世界 🌍"}],
    "stop_sequences": ["END"],
}


def make_reply(text: str = "Hi!", cost: float | None = 0.0125, **usage: int) -> dict[str, Any]:
    u = Usage(**(usage or {"input_tokens": 100, "output_tokens": 20}))
    return Reply(text=text, content=[{"type": "text", "text": text}], stop_reason="end_turn",
                 stop_sequence=None, usage=u, model="claude-opus-5-5", id="msg_1", cost=cost).to_dict()


def key_of(body: dict[str, Any], host: str = HOST, version: str = VERSION) -> str:
    return ResponseCache.key(body, host=host, api_version=version)


@pytest.fixture
def cache(tmp_path: Path):
    with ResponseCache(tmp_path / "c") as c:
        yield c


# --- keys --------------------------------------------------------------------------------

def test_key_is_sha256_hex_and_ignores_dict_order() -> None:
    reordered = {k: BODY[k] for k in reversed(list(BODY))}
    reordered["messages"] = [{"content": "Hello, 世界 🌍", "role": "user"}]
    assert key_of(BODY) == key_of(reordered)
    assert len(key_of(BODY)) == 64 and int(key_of(BODY), 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"model": "claude-sonnet-5-5"},
        {"system": "Be verbose."},
        {"max_tokens": 1025},
        {"messages": [{"role": "user", "content": "Hello"}]},
        {"stop_sequences": []},
        {"thinking": {"type": "adaptive"}},
        {"output_config": {"effort": "high"}},
        {"tools": [{"name": "t", "input_schema": {"type": "object"}}]},
    ],
)
def test_every_shaping_field_changes_the_key(change: dict[str, Any]) -> None:
    assert key_of({**BODY, **change}) != key_of(BODY)


def test_host_and_api_version_change_the_key() -> None:
    assert key_of(BODY, host="127.0.0.1:8765") != key_of(BODY)
    assert key_of(BODY, version="2023-06-01") != key_of(BODY)
    assert key_of(BODY, host="API.anthropic.com/") == key_of(BODY)  # host names are case-insensitive


def test_stream_and_metadata_do_not_change_the_key() -> None:
    assert key_of({**BODY, "stream": True, "metadata": {"user_id": "u1"}}) == key_of(BODY)
    assert key_of({**BODY, "stream": False}) == key_of(BODY)


def test_body_fields_cannot_collide_with_host_or_version() -> None:
    assert key_of({**BODY, "host": "other"}) != key_of(BODY, host="other")


def test_key_takes_no_api_key() -> None:
    with pytest.raises(TypeError):
        ResponseCache.key(BODY, host=HOST, api_version=VERSION, api_key="sk-ant-x")  # type: ignore[call-arg]


# --- values and stats ----------------------------------------------------------------------

def test_set_get_round_trip_and_stats(cache: ResponseCache) -> None:
    k = key_of(BODY)
    assert cache.get(k) is None
    value = make_reply(input_tokens=100, output_tokens=20, cache_creation_input_tokens=5,
                       cache_read_input_tokens=7)
    cache.set(k, value)
    assert cache.get(k) == value
    assert cache.get(k) == value
    assert Reply.from_dict(cache.get(k)).usage.cache_read_input_tokens == 7  # type: ignore[arg-type]
    s = cache.stats
    assert (s.hits, s.misses, s.entries) == (3, 1, 1)
    assert s.tokens_saved == 3 * 132
    assert s.dollars_saved == pytest.approx(3 * 0.0125)
    assert s.volume_bytes > 0
    assert s.hit_rate == 0.75


def test_unknown_cost_saves_tokens_but_no_dollars(cache: ResponseCache) -> None:
    cache.set("a" * 64, make_reply(cost=None))
    cache.get("a" * 64)
    assert (cache.stats.tokens_saved, cache.stats.dollars_saved) == (120, 0)


def test_values_are_stored_as_json_text(cache: ResponseCache) -> None:
    cache.set("b" * 64, make_reply("plain"))
    big = make_reply("x" * 100_000)  # goes to a file, not inline
    cache.set("c" * 64, big)
    with sqlite3.connect(cache.directory / "responses" / "cache.db") as con:
        rows = dict(con.execute("SELECT key, value FROM Cache"))
    assert json.loads(rows["b" * 64])["text"] == "plain"
    files = list((cache.directory / "responses").rglob("*.val"))
    assert len(files) == 1 and json.loads(files[0].read_text("utf-8")) == big
    assert cache.get("c" * 64) == big


def test_delete_and_clear(cache: ResponseCache) -> None:
    cache.set("a" * 64, make_reply())
    cache.set("b" * 64, make_reply())
    cache.delete("a" * 64)
    cache.delete("a" * 64)  # deleting a missing key is fine
    assert "a" * 64 not in cache and "b" * 64 in cache
    cache.set_meta("batch", {"id": "msgbatch_1"})
    assert cache.clear() == 1
    assert cache.stats.entries == 0
    assert cache.get_meta("batch") == {"id": "msgbatch_1"}  # clear() leaves the side-table


def test_values_must_be_json(cache: ResponseCache) -> None:
    with pytest.raises(TypeError):
        cache.set("a" * 64, {"when": object()})
    with pytest.raises(TypeError):
        cache.set("a" * 64, ["not", "a", "dict"])  # type: ignore[arg-type]
    assert "a" * 64 not in cache


# --- security: nothing is ever unpickled -----------------------------------------------------

class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


PICKLE_MODE = 4  # diskcache.core.MODE_PICKLE
BINARY_MODE = 2  # diskcache.core.MODE_BINARY


def _plant(db: Path, key: str, mode: int, value: bytes | None, filename: str | None = None,
           raw: int = 1) -> None:
    with sqlite3.connect(db) as con:
        con.execute(
            "INSERT OR REPLACE INTO Cache (key, raw, store_time, expire_time, access_time, access_count,"
            " tag, size, mode, filename, value) VALUES (?, ?, 0, NULL, 0, 0, NULL, 0, ?, ?, ?)",
            (key, raw, mode, filename, value),
        )


@pytest.mark.parametrize("where", ["inline", "file"])
def test_planted_pickle_is_never_loaded(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker))
    directory = tmp_path / "c"
    key = str(key_of(BODY))  # a plain str: diskcache's default Disk pickles any other key type
    with ResponseCache(directory) as cache:
        cache.set(key, make_reply())
    db = directory / "responses" / "cache.db"
    if where == "inline":
        _plant(db, key, PICKLE_MODE, payload)
    else:
        (directory / "responses" / "ev.val").write_bytes(payload)
        _plant(db, key, PICKLE_MODE, None, "ev.val")

    with ResponseCache(directory) as cache:
        assert cache.get(key) is None  # a tampered row is a miss, never code
        assert cache.export(tmp_path / "out.jsonl") == 0
    assert not marker.exists()

    # Proof that the planted row is a real attack: diskcache's default Disk runs it.
    plain = diskcache.Cache(str(directory / "responses"))
    try:
        plain.get(key)
    finally:
        plain.close()
    assert marker.exists()


def test_planted_pickled_key_and_binary_value_are_ignored(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker))
    directory = tmp_path / "c"
    with ResponseCache(directory) as cache:
        cache.set("a" * 64, make_reply())
    db = directory / "responses" / "cache.db"
    _plant(db, payload, PICKLE_MODE, payload, raw=0)  # type: ignore[arg-type]
    _plant(db, "b" * 64, BINARY_MODE, payload)
    with ResponseCache(directory) as cache:
        assert cache.get("b" * 64) is None
        assert cache.export(tmp_path / "out.jsonl") == 1  # only the genuine entry
        cache.set("b" * 64, make_reply("fresh"))  # a tampered row is simply overwritten
        assert cache.get("b" * 64)["text"] == "fresh"  # type: ignore[index]
    assert not marker.exists()


def test_meta_values_are_json_too(cache: ResponseCache) -> None:
    assert cache.get_meta("missing") is None
    assert cache.get_meta("missing", 7) == 7
    cache.set_meta("batches", ["msgbatch_1", {"n": 2}])
    assert cache.get_meta("batches") == ["msgbatch_1", {"n": 2}]
    cache.delete_meta("batches")
    assert cache.get_meta("batches") is None
    with pytest.raises(TypeError):
        cache.set_meta("x", {1, 2})


def test_meta_is_not_a_response(cache: ResponseCache) -> None:
    cache.set_meta("k", {"v": 1})
    assert cache.stats.entries == 0
    assert cache.get("k") is None


# --- sharing between objects and processes -------------------------------------------------------

def test_two_objects_on_one_directory_see_each_other(tmp_path: Path) -> None:
    with ResponseCache(tmp_path) as a, ResponseCache(tmp_path) as b:
        a.set("a" * 64, make_reply("from a"))
        assert b.get("a" * 64)["text"] == "from a"  # type: ignore[index]
        b.set("a" * 64, make_reply("from b"))  # no stale in-process copy in a
        assert a.get("a" * 64)["text"] == "from b"  # type: ignore[index]
        b.set_meta("m", 1)
        assert a.get_meta("m") == 1
        assert (a.stats.hits, b.stats.hits) == (1, 1)  # hit counts are per object
        assert a.stats.entries == b.stats.entries == 1


def test_a_subprocess_writes_what_we_read(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from claude_magic.cache import ResponseCache\n"
        "import json\n"
        "with ResponseCache(sys.argv[1]) as c:\n"
        "    c.set('d' * 64, json.loads(sys.argv[2]))\n"
        "    print(c.get('e' * 64)['text'])\n"
    )
    root = Path(__file__).resolve().parents[1]
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    child = make_reply("from the child", input_tokens=3)
    with ResponseCache(tmp_path) as cache:
        cache.set("e" * 64, make_reply("from the parent"))
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path), json.dumps(child)],
                              capture_output=True, text=True, env=env, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "from the parent"
        assert cache.get("d" * 64) == child


# --- size limit ----------------------------------------------------------------------------

def test_size_limit_evicts_the_oldest_stored(tmp_path: Path) -> None:
    limit = 400_000
    with ResponseCache(tmp_path, size_limit=limit) as cache:
        keys = [f"{i:064x}" for i in range(30)]
        for k in keys:
            cache.set(k, make_reply("x" * 50_000))  # each in a 50 KB file
            cache.get(keys[0])  # reading does not keep an entry alive (least-recently-stored)
        assert cache.stats.volume_bytes < limit + 100_000
        assert keys[0] not in cache
        assert keys[-1] in cache
        assert 0 < cache.stats.entries < 30


# --- cassettes --------------------------------------------------------------------------------------

def test_export_import_round_trip_is_deterministic(tmp_path: Path) -> None:
    items = {f"{i:064x}": make_reply(f"answer {i} ✓") for i in (3, 1, 2)}
    with ResponseCache(tmp_path / "a") as a:
        for k, v in items.items():
            a.set(k, v)
        a.set_meta("m", 1)
        assert a.export(tmp_path / "one.jsonl") == 3
    lines = (tmp_path / "one.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(line)["key"] for line in lines] == sorted(items)
    assert "✓" in lines[0]  # readable, not \u-escaped

    with ResponseCache(tmp_path / "b") as b:
        for k in reversed(list(items)):  # a different insertion order ...
            b.set(k, items[k])
        b.export(tmp_path / "two.jsonl")
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()  # ... same file

    with ResponseCache(tmp_path / "c") as c:
        assert c.import_(tmp_path / "one.jsonl") == 3
        assert {k: c.get(k) for k in items} == items
        assert c.get_meta("m") is None  # cassettes carry replies, not the side-table


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("{not json", "not JSON"),
        ('["a"]', "expected"),
        ('{"key": "' + "a" * 64 + '"}', "expected"),
        ('{"key": "short", "value": {}}', "sha256"),
        ('{"key": "' + "a" * 64 + '", "value": [1]}', "not an object"),
    ],
)
def test_import_names_file_and_line_of_a_bad_line(tmp_path: Path, line: str, complaint: str) -> None:
    good = json.dumps({"key": "f" * 64, "value": make_reply()})
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with ResponseCache(tmp_path / "c") as cache:
        with pytest.raises(ConfigError, match=complaint) as info:
            cache.import_(path)
        assert str(info.value).startswith(f"{path}:3: ")
        assert "\n" not in str(info.value)
        assert "f" * 64 not in cache  # nothing stored from a bad file


def test_import_of_a_missing_file_is_a_config_error(cache: ResponseCache, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read cassette"):
        cache.import_(tmp_path / "nope.jsonl")


# --- configuration ----------------------------------------------------------------------------

def test_directory_from_env_then_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLAUDE_MAGIC_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    with ResponseCache() as c:
        assert c.directory == tmp_path / "env"
    with ResponseCache(tmp_path / "arg") as c:
        assert c.directory == tmp_path / "arg"


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG rules are Linux's")
def test_default_dir_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CLAUDE_MAGIC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "claude_magic"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "claude_magic"


@pytest.mark.parametrize(("env", "offline"), [("1", True), ("true", True), ("YES", True), ("0", False),
                                              ("", False), (None, False)])
def test_offline_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: str | None,
                          offline: bool) -> None:
    if env is None:
        monkeypatch.delenv("CLAUDE_MAGIC_OFFLINE", raising=False)
    else:
        monkeypatch.setenv("CLAUDE_MAGIC_OFFLINE", env)
    with ResponseCache(tmp_path) as c:
        assert c.offline is offline
    with ResponseCache(tmp_path, offline=not offline) as c:
        assert c.offline is (not offline)  # the argument wins


def test_close_is_idempotent(tmp_path: Path) -> None:
    c = ResponseCache(tmp_path)
    c.set("a" * 64, make_reply())
    c.close()
    c.close()
    with ResponseCache(tmp_path) as again:
        assert again.get("a" * 64) is not None
