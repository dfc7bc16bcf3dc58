"""The response cache: complete replies on disk, keyed by the request that produced them.

Built on :mod:`diskcache` (SQLite in WAL mode), so several kernels can share one directory.
Values are stored as JSON text by :class:`JSONDisk` and never pickled: diskcache's default
``Disk`` unpickles what it reads, so a tampered cache file could run code; ours refuses any
row that is not JSON text and treats it as a miss. A row that is JSON but not a reply (see
:func:`claude_magic.reply.check_dict`) is deleted and counts as a miss.

Layout of a cache directory::

    <directory>/responses/   replies, keyed by ResponseCache.key(); bounded by size_limit
    <directory>/meta/        small JSON side-table (e.g. submitted Message Batch ids)

The side-table is kept apart so that eviction never drops a batch id (which would mean paying
for the batch twice) and so that ``clear()``, ``export()`` and ``import_()`` — which concern
replies only — leave it alone. ``delete_meta`` removes a meta entry.

Eviction is diskcache's "least-recently-stored": a read never writes, which keeps hits fast.

Keys are two sha256 digests deep (canonical JSON: sorted keys, no spaces, UTF-8)::

    request = sha256({"body": <_wire.cache_fields(body)>, "api_version": version})
    key     = sha256({"host": <API host, lower case, no trailing />, "request": request})

``cache_fields`` is the body minus ``stream``, ``metadata`` and every ``cache_control`` (a mark
changes the price, not the answer), with lists of plain text blocks written as their text. Keys of
earlier versions kept the marks and the lists: a body that has neither has the same key as then; for
one that has them, the key also carries the earlier key (``CacheKey.fallback``), and ``get`` reads
an entry stored under it once, copying it under the new key (a read-through), so stored answers and
recorded cassettes stay reachable.

The host is part of the key so that an emulator's (or a proxy's) answer never serves a call to
the real API; the API key never is. Keeping the request digest apart lets a key be recomputed
for another host: :class:`CacheKey` is the key (a ``str``) carrying its ``host`` and
``request``, and ``set`` stores them as the entry's origin, in diskcache's ``tag`` column so
that the stored value stays exactly the reply.

Cassettes. ``export(path)`` writes one JSON line per reply, sorted by key:
``{"host": ..., "key": ..., "request": ..., "value": {...}}`` (``host`` and ``request`` absent
for an entry stored under a plain string key). ``import_(path)`` stores each reply under its
key, so it answers only calls to the host that recorded it. ``import_(path, host=H)`` stores
every reply under the key recomputed for host ``H`` from its request digest: a cassette
recorded against the emulator (127.0.0.1) replays in CI against api.anthropic.com. The mapping
is an explicit argument, never a default, because it serves answers that another server gave.

A store that fails (a corrupt or truncated ``cache.db``, a directory that cannot be created or
written) never fails the call that uses it: the cache logs one warning per object on the
``claude_magic`` logger, then behaves as an empty cache that stores nothing, and ``broken``
says why. ``clear()`` rebuilds a broken reply store: it deletes that store's own files (its
database and value files, nothing else) and opens it afresh. Stores are opened on first use,
so constructing a ``ResponseCache`` touches no file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

import diskcache
from diskcache.core import MODE_RAW, MODE_TEXT, UNKNOWN

from ._wire import cache_fields
from .errors import ConfigError
from .reply import check_dict

__all__ = ["CacheKey", "CacheStats", "CorruptEntry", "JSONDisk", "ResponseCache", "append_to_cassette",
           "default_cache_dir"]

log = logging.getLogger(__name__)
_user_log = logging.getLogger("claude_magic")  # what the person must see: a store that fails

_TRUE = {"1", "true", "yes", "on"}
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MISSING = object()
# One encoder for every key: json.dumps would build a new one per call (a measurable share of a hit).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_T = TypeVar("_T")


def _normal_host(host: str) -> str:
    return host.rstrip("/").lower()  # host names are case-insensitive (RFC 9110 §4.2.3)


def _digest(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(_CANONICAL.encode(doc).encode("utf-8")).hexdigest()


class CacheKey(str):
    """A response-cache key: the sha256 hex of ``{"host": host, "request": request}``, usable
    wherever a ``str`` is, that also carries its ``host`` (normalised) and ``request`` digest.
    ``for_host(h)`` is the key of the same request sent to host ``h``."""

    host: str
    request: str
    fallback: CacheKey | None = None  # the key an earlier version gave the same request, if another

    def __new__(cls, host: str, request: str) -> CacheKey:
        if not isinstance(request, str) or not _HEX64.fullmatch(request):
            raise ValueError(f"request must be a 64-character sha256 hex string, got {request!r}")
        host = _normal_host(host)
        self = super().__new__(cls, _digest({"host": host, "request": request}))
        self.host, self.request = host, request
        return self

    def for_host(self, host: str) -> CacheKey:
        return CacheKey(host, self.request)

    def __getnewargs__(self) -> tuple[str, str]:  # type: ignore[override]  # copy and pickle
        return self.host, self.request


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
    ``entries``/``volume_bytes`` are of the shared store on disk (0 when it is broken)."""

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


# --- one sub-store, set aside when it fails ---------------------------------------------------------

class _Unusable(Exception):
    """A store operation that did not run: the store is broken, or was busy for too long."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _Store:
    """One diskcache sub-store, opened on first use.

    An error of the store itself (sqlite3.DatabaseError: a corrupt or truncated file; OSError: a
    directory that cannot be created or written) sets it aside for good: ``broken`` holds the
    reason, ``on_break`` is told once, and ``call`` raises :class:`_Unusable` from then on. A lock
    that another process held past diskcache's timeout fails that one call only.
    """

    def __init__(self, path: Path, what: str, fix: str, on_break: Callable[[_Store], None],
                 **settings: Any) -> None:
        self.path, self.what, self.fix = path, what, fix
        self.broken: str | None = None
        self._on_break = on_break
        self._settings = settings
        self._cache: diskcache.Cache | None = None
        self._lock = threading.Lock()

    def call(self, op: Callable[[diskcache.Cache], _T]) -> _T:
        """``op(cache)``; raises _Unusable instead of the store's own errors."""
        cache = self._cache if self.broken is None else None
        if cache is None:
            cache = self._open()
        return self._guard(lambda: op(cache))

    def run(self, op: Callable[[diskcache.Cache], _T], default: _T) -> _T:
        """``op(cache)``, or ``default`` when the store cannot do it."""
        try:
            return self.call(op)
        except _Unusable:
            return default

    def rebuild(self, root: Path) -> None:
        """Delete this store's files and open it afresh; raises OSError, ConfigError or _Unusable."""
        with self._lock:
            if self._cache is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._cache.close()
                self._cache = None
            _remove_store_files(self.path, root)
            self.broken = None
        self._open()

    def close(self) -> None:
        if self._cache is not None:
            with contextlib.suppress(sqlite3.Error):
                self._cache.close()

    def _open(self) -> diskcache.Cache:
        with self._lock:
            if self.broken is not None:
                raise _Unusable(f"{self.what} at {self.path} unusable ({self.broken})")
            if self._cache is None:
                path, settings = str(self.path), self._settings
                self._cache = self._guard(lambda: diskcache.Cache(path, disk=JSONDisk, **settings))
            return self._cache

    def _guard(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except diskcache.Timeout:
            reason = "busy: another process held the lock past the timeout"
        except (sqlite3.DatabaseError, OSError) as exc:
            reason = _one_line(exc)
            if not (isinstance(exc, sqlite3.OperationalError) and ("locked" in reason or "busy" in reason)):
                self.broken = reason
                self._on_break(self)
                raise _Unusable(f"{self.what} at {self.path} unusable ({reason})") from None
        log.warning("%s at %s skipped for one call (%s)", self.what, self.path, reason)
        raise _Unusable(f"{self.what} at {self.path} {reason}; try again")


def _remove_store_files(store: Path, root: Path) -> None:
    """Delete diskcache's files in ``store`` — its database and its ``ab/cd/*.val`` value files —
    and nothing else. A store that resolves outside ``root`` (a link elsewhere) is refused."""
    if store.resolve() != root.resolve() / store.name:
        raise ConfigError(f"{store} links to {store.resolve()}, outside the cache directory {root}: "
                          "delete its cache.db* files yourself, or set CLAUDE_MAGIC_CACHE_DIR")
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        with contextlib.suppress(FileNotFoundError):
            (store / name).unlink()
    for top in _hex_dirs(store):
        for sub in _hex_dirs(top):
            with os.scandir(sub) as entries:
                for entry in entries:
                    if entry.name.endswith(".val") and not entry.is_dir(follow_symlinks=False):
                        os.unlink(entry.path)
            with contextlib.suppress(OSError):
                sub.rmdir()  # kept when something else lives there
        with contextlib.suppress(OSError):
            top.rmdir()


def _hex_dirs(folder: Path) -> list[Path]:
    """The two-hex-digit folders diskcache puts value files in (links are never followed)."""
    try:
        with os.scandir(folder) as entries:
            return [Path(e.path) for e in entries
                    if len(e.name) == 2 and _is_hex(e.name) and e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


# --- the cache ----------------------------------------------------------------------------------------

class ResponseCache:
    """Complete replies (``Reply.to_dict()``) stored as JSON under a key of the request.

    ``directory``: the argument, else ``CLAUDE_MAGIC_CACHE_DIR``, else :func:`default_cache_dir`.
    ``offline``: the argument, else ``CLAUDE_MAGIC_OFFLINE`` in {1, true, yes}; the client turns a
    miss into :class:`claude_magic.errors.CacheMiss` when it is set.
    ``size_limit``: bytes of the reply store; past it the oldest-stored replies are evicted.

    No method but ``clear``, ``export`` and ``import_`` raises because of the store on disk: a
    broken store makes the cache empty and non-storing (see ``broken``).
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
        self._lock = threading.Lock()
        self._warned = False
        self._hits = self._misses = self._tokens_saved = 0
        self._dollars_saved = 0.0
        responses, meta = self.directory / "responses", self.directory / "meta"
        self._responses = _Store(
            responses, "response cache", "%claude_cache clear rebuilds it, or set CLAUDE_MAGIC_CACHE_DIR",
            self._broke, size_limit=size_limit, eviction_policy="least-recently-stored",
        )
        self._meta = _Store(
            meta, "response cache side-table",
            f"delete {meta} to rebuild it (it remembers submitted batch ids), or set CLAUDE_MAGIC_CACHE_DIR",
            self._broke, eviction_policy="none",
        )

    @staticmethod
    def key(body: Mapping[str, Any], *, host: str, api_version: str) -> CacheKey:
        """The key of a request: see the module docstring. ``body`` minus what never shapes the answer
        (``stream``, ``metadata``, ``cache_control``), the API version and the host (case-insensitive)
        shape it; the API key never does. ``fallback`` is the key earlier versions gave it, when other."""
        fields = cache_fields(dict(body) if not isinstance(body, dict) else body)
        key = CacheKey(host, _digest({"body": fields, "api_version": api_version}))
        if fields.legacy is not None:
            key.fallback = CacheKey(host, _digest({"body": fields.legacy, "api_version": api_version}))
        return key

    @property
    def broken(self) -> str | None:
        """Why the cache runs without its store (it then answers nothing and stores nothing), or
        None when it works. Opens the stores if they are not open yet."""
        for store in (self._responses, self._meta):
            store.run(lambda c: None, None)
        if self._responses.broken is not None:
            return self._responses.broken
        return None if self._meta.broken is None else f"side-table: {self._meta.broken}"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored reply, or None. Counts a hit (with the tokens and dollars it saved) or a miss."""
        value = self._read(str(key))  # JSONDisk takes exactly str, not a CacheKey
        if value is _MISSING and (old := getattr(key, "fallback", None)) is not None:
            value = self._read(str(old))
            if isinstance(value, dict):  # read through: the next lookup finds it under the new key
                log.debug("cache entry %s… read under its earlier key %s…", str(key)[:12], str(old)[:12])
                self.set(key, value)
        if not isinstance(value, dict):
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

    def _read(self, k: str) -> Any:
        value = self._responses.run(lambda c: c.get(k, _MISSING), _MISSING)
        return value if value is _MISSING or self._is_reply(k, value) else _MISSING

    def _is_reply(self, key: str, value: Any) -> bool:
        """Whether ``value`` is a reply; one that is not is deleted, so it is reported once."""
        try:
            check_dict(value)
        except ValueError as exc:
            log.warning("dropped cache entry %s…: %s", key[:12], exc)
            self._responses.run(lambda c: c.delete(key), None)
            return False
        return True

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a complete reply (``Reply.to_dict()``); it must be JSON-serialisable. A
        :class:`CacheKey` also records the reply's origin (host and request digest) for cassettes."""
        if not isinstance(value, Mapping):
            raise TypeError(f"cache values are reply dicts, got {type(value).__name__}")
        k, tag, v = str(key), _origin_tag(key), dict(value)
        self._responses.run(lambda c: c.set(k, v, tag=tag), None)

    def delete(self, key: str) -> None:
        k = str(key)
        self._responses.run(lambda c: c.delete(k), None)

    def __contains__(self, key: str) -> bool:
        """Whether ``key`` (or the earlier key it carries) holds an entry; reads nothing, counts nothing."""
        keys = [str(key)] + ([str(old)] if (old := getattr(key, "fallback", None)) is not None else [])
        return self._responses.run(lambda c: any(k in c for k in keys), False)

    # --- meta side-table -------------------------------------------------------------------
    def get_meta(self, name: str, default: Any = None) -> Any:
        value = self._meta.run(lambda c: c.get(name, _MISSING), _MISSING)
        return default if value is _MISSING else value

    def set_meta(self, name: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``name`` (never evicted, untouched by ``clear``)."""
        self._meta.run(lambda c: c.set(name, value), None)

    def delete_meta(self, name: str) -> None:
        self._meta.run(lambda c: c.delete(name), None)

    # --- housekeeping ----------------------------------------------------------------------
    @property
    def stats(self) -> CacheStats:
        with self._lock:
            hits, misses, tokens, usd = self._hits, self._misses, self._tokens_saved, self._dollars_saved
        entries, volume = self._responses.run(lambda c: (len(c), c.volume()), (0, 0))
        return CacheStats(hits, misses, tokens, round(usd, 10), entries, volume)

    def clear(self) -> int:
        """Remove every stored reply (the meta side-table stays); returns how many were removed.

        A broken reply store is rebuilt instead: its files are deleted and it is opened afresh
        (returns 0, since how many it held is unknown). ConfigError when that cannot be done.
        """
        try:
            return int(self._responses.call(lambda c: c.clear()))
        except _Unusable as exc:
            if self._responses.broken is None:  # busy, not broken: deleting would lose a live store
                raise ConfigError(f"cannot clear: {exc}") from None
        try:
            self._responses.rebuild(self.directory)
        except (_Unusable, OSError) as exc:
            where = self._responses.path
            raise ConfigError(f"cannot rebuild the response cache at {where} ({_one_line(exc)}): "
                              "set CLAUDE_MAGIC_CACHE_DIR to a writable directory") from None
        with self._lock:
            self._warned = False  # a new store: if it breaks too, say so again
        return 0

    def export(self, path: str | os.PathLike[str]) -> int:
        """Write every reply to a JSONL cassette (see the module docstring), sorted by key with
        sorted fields, so the same cache always gives the same file; returns how many.

        The file is written beside ``path`` and then moved into place, so a failed export leaves
        an existing file as it was. A path inside the cache directory is refused (ConfigError).
        """
        target = Path(path).expanduser().resolve()
        root = self.directory.resolve()
        if target == root or root in target.parents:
            raise ConfigError(f"cannot export to {os.fspath(path)}: it is inside the cache directory {root}; "
                              "choose a path outside it")
        try:
            return _write_replacing(target, lambda out: self._responses.call(partial(_write_cassette, out)))
        except _Unusable as exc:
            raise ConfigError(f"nothing exported: {exc}; {self._responses.fix}") from None

    def import_(self, path: str | os.PathLike[str], host: str | None = None) -> int:
        """Load a JSONL cassette (entries with the same key are replaced); returns how many were read.

        Without ``host`` each reply is stored under its key. With ``host`` each is stored under the
        key of its request sent to that host (see the module docstring); a reply recorded against
        ``host`` itself wins over one mapped from elsewhere. The whole file is checked before
        anything is stored; a bad line raises ConfigError naming the file and line.
        """
        entries = _read_cassette(Path(path).expanduser(), host)
        try:
            self._responses.call(lambda c: _store_all(c, entries))
        except _Unusable as exc:
            raise ConfigError(f"nothing imported: {exc}; {self._responses.fix}") from None
        return len(entries)

    def close(self) -> None:
        """Close the database connections (safe to call twice)."""
        self._responses.close()
        self._meta.close()

    def _broke(self, store: _Store) -> None:
        with self._lock:
            warned, self._warned = self._warned, True
        if not warned:
            _user_log.warning("%s at %s unusable (%s): running without it; %s",
                              store.what, store.path, store.broken, store.fix)

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r}, offline={self.offline})"


# --- cassettes ------------------------------------------------------------------------------------------

class _Entry(NamedTuple):
    key: str
    origin: dict[str, str]  # {"host": ..., "request": ...} or {} when unknown
    value: dict[str, Any]


def _origin_tag(key: str) -> str | None:
    if not isinstance(key, CacheKey):
        return None
    return _CANONICAL.encode({"host": key.host, "request": key.request})


def _origin(key: str, tag: Any) -> dict[str, str]:
    """The origin a tag records, if it is well formed and matches the key (else unknown: {})."""
    try:
        doc = json.loads(tag) if isinstance(tag, str) else None
        if isinstance(doc, dict) and isinstance(doc.get("host"), str):
            origin = CacheKey(doc["host"], doc.get("request", ""))  # ValueError unless a sha256 hex
            if origin == key:
                return {"host": origin.host, "request": origin.request}
    except ValueError:
        pass
    return {}


def append_to_cassette(path: str | os.PathLike[str], key: str, value: Mapping[str, Any]) -> None:
    """Add one reply to a cassette file, in the format ``export`` writes (a recording run)."""
    item = {"key": str(key), **({"host": key.host, "request": key.request} if isinstance(key, CacheKey)
                                else {}), "value": dict(value)}
    line = json.dumps(item, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8", newline="\n") as out:
        out.write(line)


def _write_cassette(out: IO[str], cache: diskcache.Cache) -> int:
    count = 0
    for key in cache.iterkeys():  # diskcache yields keys in sorted order
        if type(key) is not str:
            continue
        value, tag = cache.get(key, _MISSING, tag=True)
        try:
            check_dict(value)  # import would refuse it
        except ValueError:
            continue
        item = {"key": key, **_origin(key, tag), "value": value}
        out.write(json.dumps(item, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


def _write_replacing(target: Path, write: Callable[[IO[str]], int]) -> int:
    """``write`` into a new file beside ``target``, then move it onto ``target`` (os.replace is
    atomic on one file system); on any failure the new file is removed and ``target`` untouched."""
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temp, flags, 0o666)  # the umask applies, as with open(path, "w")
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as out:
            count = write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return count


def _store_all(cache: diskcache.Cache, entries: Iterable[_Entry]) -> None:
    with cache.transact():
        for entry in entries:
            tag = _CANONICAL.encode(entry.origin) if entry.origin else None
            cache.set(entry.key, entry.value, tag=tag)


def _read_cassette(path: Path, host: str | None) -> list[_Entry]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read cassette {path}: {_one_line(exc)}") from exc
    entries = [_parse_cassette_line(line, f"{path}:{lineno}", host)
               for lineno, line in enumerate(lines, 1) if line.strip()]
    return entries if host is None else _map_to_host(entries, host)


def _map_to_host(entries: list[_Entry], host: str) -> list[_Entry]:
    """Each entry under the key of its request sent to ``host``. Entries recorded against
    ``host`` itself come last, so where two answer one request, the host's own answer is kept."""
    native = _normal_host(host)
    mapped = []
    for entry in sorted(entries, key=lambda e: e.origin["host"] == native):  # a stable sort
        key = CacheKey(host, entry.origin["request"])
        mapped.append(_Entry(str(key), {"host": key.host, "request": key.request}, entry.value))
    return mapped


def _parse_cassette_line(line: str, where: str, host: str | None) -> _Entry:
    expected = 'expected {"key": "<64 hex chars>", "host": ..., "request": ..., "value": {...}}'
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise ConfigError(f"{where}: not JSON ({exc.args[0]}); {expected}") from None
    if not isinstance(item, dict) or "key" not in item or "value" not in item:
        raise ConfigError(f"{where}: {expected}")
    key, value = item["key"], item["value"]
    if not isinstance(key, str) or not _HEX64.fullmatch(key):
        raise ConfigError(f"{where}: key {key!r} is not a 64-character sha256 hex string; {expected}")
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: value is a {type(value).__name__}, not an object; {expected}")
    try:
        check_dict(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: value is not a reply: {exc}") from None
    origin = _parse_origin(item, key, where)
    if host is not None and not origin:
        raise ConfigError(f"{where}: no request digest, so it cannot be mapped to host {host}: the "
                          "cassette predates host mapping; re-export it with this version, or import it "
                          "without a host")
    return _Entry(key, origin, value)


def _parse_origin(item: dict[str, Any], key: str, where: str) -> dict[str, str]:
    request, host = item.get("request"), item.get("host")
    if request is None and host is None:
        return {}
    if not isinstance(request, str) or not _HEX64.fullmatch(request):
        raise ConfigError(f"{where}: request {request!r} is not a 64-character sha256 hex string")
    if not isinstance(host, str):
        raise ConfigError(f"{where}: host {host!r} is not a string (it goes with request)")
    if CacheKey(host, request) != key:
        raise ConfigError(f"{where}: key does not match host {host!r} and its request digest "
                          "(edited by hand?); re-export the cassette")
    return {"host": host, "request": request}
