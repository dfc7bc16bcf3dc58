"""The response cache: complete replies on disk, keyed by the request that produced them.

Built on :mod:`diskcache` (SQLite in WAL mode), so several kernels can share one directory.
Values are stored as JSON text by :class:`JSONDisk` and never pickled: diskcache's default
``Disk`` unpickles what it reads, so a tampered cache file could run code; ours refuses any
row that is not JSON text and treats it as a miss.

Layout of a cache directory::

    <directory>/responses/   replies, keyed by ResponseCache.key(); bounded by size_limit
    <directory>/meta/        small JSON side-table (e.g. submitted Message Batch ids)

The side-table is kept apart so that eviction never drops a batch id (which would mean paying
for the batch twice) and so that ``clear()``, ``export()`` and ``import_()`` — which concern
replies only — leave it alone. ``delete_meta`` removes a meta entry.

Eviction is diskcache's "least-recently-stored": a read never writes, which keeps hits fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import MODE_RAW, MODE_TEXT, UNKNOWN

from .errors import ConfigError

__all__ = ["CacheStats", "CorruptEntry", "JSONDisk", "ResponseCache", "default_cache_dir"]

log = logging.getLogger(__name__)

# Request fields that do not shape the answer (issue 2 §3).
_IGNORED_FIELDS = frozenset({"stream", "metadata"})
_TRUE = {"1", "true", "yes", "on"}
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_MISSING = object()
# One encoder for every key: json.dumps would build a new one per call (a measurable share of a hit).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class CorruptEntry(OSError):
    """A cache row that is not JSON text (tampered or foreign). An OSError so that diskcache's
    ``Cache.get`` treats it like a vanished file: a miss."""


class _Unreadable:
    """Stands for a row key that is not a plain string (diskcache would have unpickled it)."""

    def __repr__(self) -> str:
        return "<unreadable cache key>"


class JSONDisk(diskcache.Disk):
    """diskcache serialisation with string keys and JSON values only; nothing is ever unpickled.

    Values below ``min_file_size`` characters of JSON live inline in SQLite (one query per hit),
    larger ones in a ``.val`` text file.
    """

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError(f"cache keys must be str, got {type(key).__name__}")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        # raw=False rows hold pickled keys: never load them.
        return key if raw and type(key) is str else _Unreadable()

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, str | None, Any]:
        if read:
            raise TypeError("the response cache stores JSON values, not files")
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        if len(text) < self.min_file_size:
            return 0, MODE_RAW, None, text
        stored: tuple[int, int, str | None, Any] = super().store(text, False, key=key)  # MODE_TEXT file
        return stored

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == MODE_RAW and type(value) is str:
            text = value
        elif mode == MODE_TEXT and filename:
            text = super().fetch(mode, filename, value, False)
        else:
            raise CorruptEntry(f"cache row of mode {mode} is not JSON text; ignored")
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CorruptEntry(f"cache row is not valid JSON ({exc}); ignored") from None


@dataclass(frozen=True)
class CacheStats:
    """``hits``/``misses`` and savings are this ResponseCache object's (this process);
    ``entries``/``volume_bytes`` are of the shared store on disk."""

    hits: int
    misses: int
    tokens_saved: int
    dollars_saved: float
    entries: int
    volume_bytes: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def default_cache_dir() -> Path:
    """``CLAUDE_MAGIC_CACHE_DIR``, else the platform's user cache directory + ``claude_magic``
    (Linux: ``$XDG_CACHE_HOME`` or ``~/.cache``; macOS: ``~/Library/Caches``; Windows: ``%LOCALAPPDATA%``)."""
    env = os.environ.get("CLAUDE_MAGIC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "claude_magic" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "claude_magic"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative paths are invalid and must be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "claude_magic"


def _env_offline() -> bool:
    return os.environ.get("CLAUDE_MAGIC_OFFLINE", "").strip().lower() in _TRUE


def _usage_tokens(usage: Any) -> int:
    if not isinstance(usage, Mapping):
        return 0
    names = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return sum(int(usage.get(n) or 0) for n in names)


class ResponseCache:
    """Complete replies (``Reply.to_dict()``) stored as JSON under a key of the request.

    ``directory``: the argument, else ``CLAUDE_MAGIC_CACHE_DIR``, else :func:`default_cache_dir`.
    ``offline``: the argument, else ``CLAUDE_MAGIC_OFFLINE`` in {1, true, yes}; the client turns a
    miss into :class:`claude_magic.errors.CacheMiss` when it is set.
    ``size_limit``: bytes of the reply store; past it the oldest-stored replies are evicted.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        size_limit: int = 2**30,
        offline: bool | None = None,
    ) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.offline = _env_offline() if offline is None else bool(offline)
        self._responses = diskcache.Cache(
            str(self.directory / "responses"),
            disk=JSONDisk,
            size_limit=size_limit,
            eviction_policy="least-recently-stored",
        )
        self._meta = diskcache.Cache(str(self.directory / "meta"), disk=JSONDisk, eviction_policy="none")
        self._lock = threading.Lock()
        self._hits = self._misses = self._tokens_saved = 0
        self._dollars_saved = 0.0

    @staticmethod
    def key(body: Mapping[str, Any], *, host: str, api_version: str) -> str:
        """sha256 hex of the canonical JSON of the request body (minus ``stream`` and ``metadata``),
        the API host and the API version. The API key is never part of it."""
        shaping = {k: v for k, v in body.items() if k not in _IGNORED_FIELDS}
        doc = {"body": shaping, "host": host.rstrip("/").lower(), "api_version": api_version}
        return hashlib.sha256(_CANONICAL.encode(doc).encode("utf-8")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored reply, or None. Counts a hit (with the tokens and dollars it saved) or a miss."""
        value = self._responses.get(key, _MISSING)
        if value is _MISSING or not isinstance(value, dict):
            with self._lock:
                self._misses += 1
            return None
        saved_usd = value.get("cost")
        with self._lock:
            self._hits += 1
            self._tokens_saved += _usage_tokens(value.get("usage"))
            if isinstance(saved_usd, (int, float)):
                self._dollars_saved += saved_usd
        return value

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a complete reply (``Reply.to_dict()``); it must be JSON-serialisable."""
        if not isinstance(value, Mapping):
            raise TypeError(f"cache values are reply dicts, got {type(value).__name__}")
        self._responses.set(key, dict(value))

    def delete(self, key: str) -> None:
        self._responses.delete(key)

    def __contains__(self, key: str) -> bool:
        return key in self._responses

    # --- meta side-table -------------------------------------------------------------------
    def get_meta(self, name: str, default: Any = None) -> Any:
        value = self._meta.get(name, _MISSING)
        return default if value is _MISSING else value

    def set_meta(self, name: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``name`` (never evicted, untouched by ``clear``)."""
        self._meta.set(name, value)

    def delete_meta(self, name: str) -> None:
        self._meta.delete(name)

    # --- housekeeping ----------------------------------------------------------------------
    @property
    def stats(self) -> CacheStats:
        with self._lock:
            hits, misses, tokens, usd = self._hits, self._misses, self._tokens_saved, self._dollars_saved
        entries, volume = len(self._responses), self._responses.volume()
        return CacheStats(hits, misses, tokens, round(usd, 10), entries, volume)

    def clear(self) -> int:
        """Remove every stored reply (the meta side-table stays); returns how many were removed."""
        return int(self._responses.clear())

    def export(self, path: str | os.PathLike[str]) -> int:
        """Write every reply to a JSONL cassette, one ``{"key": ..., "value": ...}`` per line,
        sorted by key with sorted fields, so the same cache always gives the same file."""
        count = 0
        with open(path, "w", encoding="utf-8", newline="\n") as out:
            for key in self._responses.iterkeys():  # diskcache yields keys in sorted order
                if not isinstance(key, str):
                    continue
                value = self._responses.get(key, _MISSING)
                if not isinstance(value, dict):
                    continue
                line = json.dumps({"key": key, "value": value}, sort_keys=True, ensure_ascii=False,
                                  separators=(",", ":"))
                out.write(line + "\n")
                count += 1
        return count

    def import_(self, path: str | os.PathLike[str]) -> int:
        """Load a JSONL cassette (entries with the same key are replaced); returns how many were read.
        The whole file is checked before anything is stored; a bad line raises ConfigError."""
        entries = list(_read_cassette(path))
        with self._responses.transact():
            for key, value in entries:
                self._responses.set(key, value)
        return len(entries)

    def close(self) -> None:
        """Close the database connections (safe to call twice)."""
        self._responses.close()
        self._meta.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r}, offline={self.offline})"


def _read_cassette(path: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    entries = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read cassette {os.fspath(path)}: {exc}") from exc
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        entries.append(_parse_cassette_line(line, f"{os.fspath(path)}:{lineno}"))
    return entries


def _parse_cassette_line(line: str, where: str) -> tuple[str, dict[str, Any]]:
    expected = 'expected {"key": "<64 hex chars>", "value": {...}}'
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise ConfigError(f"{where}: not JSON ({exc.args[0]}); {expected}") from None
    if not isinstance(item, dict) or "key" not in item or "value" not in item:
        raise ConfigError(f"{where}: {expected}")
    key, value = item["key"], item["value"]
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ConfigError(f"{where}: key {key!r} is not a 64-character sha256 hex string; {expected}")
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: value is a {type(value).__name__}, not an object; {expected}")
    return key, value
