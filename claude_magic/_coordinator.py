"""Sharing one account's rate limits between clients: the kernels of a host, or of many hosts.

The API limits an organisation, not a kernel; each client learns the limits from the headers and
would pace itself as if it were alone. Clients that use the same API key and host (a *group*: the
host and a hash of the key, never the key) meet in a small shared store instead:

- **Leases.** A client that sends requests beats every ``PERIOD`` seconds: it renews its lease
  (``TTL`` seconds, so a kernel killed with SIGKILL is gone within ``TTL + PERIOD``) and publishes,
  per rate-limit bucket, whether it has batch work (queued or in flight), whether it is backlogged,
  what it spends per second (batch and interactive, in requests and tokens), its jobs (no prompt, no
  label: ids, states, row counts) and its freshest rate-limit reading, dated in the store's clock.
  Every beat is one atomic read-modify-write that also returns the live members and the freshest
  readings. A client idle for ``IDLE`` seconds leaves (and comes back with its next request).
- **Fair share** (:func:`allowance`): while N members have batch work in a bucket, each may spend
  ``max(C/N, C - what the others use)`` per second of each of the bucket's limits, where ``C`` is the
  limit less the members' interactive use, and a backlogged member counts as using at least its
  ``C/N``; but never more than the others leave (``C`` less each backlogged member's published
  allowance, or what it spends if it has none). So N backlogged members split it evenly, a member
  that uses less than its share leaves the rest to the others (work-conserving), a lone member is
  not limited at all, a member joining one that spends the whole limit gets its half once that one
  has published its own smaller allowance (a beat or two: no overdrawn bucket meanwhile), and a
  member that ends or dies gives its share back with its lease. The scheduler gates batch starts by the
  allowance (:class:`~._ratelimit.Allowance`) as well as by its mirror of the bucket; interactive
  requests never wait for it.
- **A reading to start from.** A member that joins adopts the group's freshest reading of a bucket
  it never read, so its first batch request needs no probe.
- **Never in the way.** Beats run in a thread of their own; a call never waits for the store. A store
  that fails (corrupt, unwritable, unreachable, restarting) is one warning, and the member paces
  alone from the headers (no allowance) until a beat succeeds again.

Stores: :class:`DirStore` (diskcache in a directory: one host, nothing to start; by default under
the response cache's directory) and ``RedisStore`` (many hosts; :mod:`claude_magic._redis_store`),
chosen by :func:`open_store` from the ``coordinator`` setting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import _secrets
from ._loop import quiet_thread
from .errors import ConfigError

__all__ = ["Beat", "Coordinator", "DirStore", "Store", "allowance", "group_of", "open_store",
           "open_store_or_warn", "others_spend"]

log = logging.getLogger("claude_magic")

PERIOD = 0.5         # s between heartbeats
TTL = 3.0            # s a lease lasts without a heartbeat
IDLE = 10.0          # s without a request after which a member leaves the group
READING_AGE = 60.0   # s: a shared reading older than this seeds no mirror
STORE_TIMEOUT = 1.0  # s: the most one store operation may take (a lock, a socket)
ENV = "CLAUDE_MAGIC_COORDINATOR"


@dataclass(frozen=True)
class Beat:
    """What the store said at one heartbeat."""

    now: float                            # the store's clock, seconds
    members: dict[str, dict[str, Any]]    # member id -> its published state (live leases only)
    readings: dict[str, dict[str, Any]]   # bucket -> {"headers": {...}, "sent": store time}


class Store(Protocol):
    """A shared place for a group's leases and readings (every method bounded by STORE_TIMEOUT)."""

    where: str  # what to show: a path, or a URL with its password redacted

    def beat(self, group: str, member: str, state: Mapping[str, Any] | None, ttl: float,
             readings: Mapping[str, Mapping[str, Any]]) -> Beat:
        """Atomically: drop expired leases; renew ``member``'s with ``state`` (``None``: only read);
        keep each of ``readings`` that is fresher (larger ``sent``) than the stored one; return the
        live members and the freshest readings."""
        ...

    def leave(self, group: str, member: str) -> None: ...

    def close(self) -> None: ...


def group_of(host: str, api_key: Any) -> str:
    """The coordination key of an API host and key: the host and 16 hex digits of the key's SHA-256."""
    key = api_key.reveal() if isinstance(api_key, _secrets.Secret) else str(api_key or "")
    return f"{host.lower()}:{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _load(raw: Any) -> dict[str, Any]:
    """A stored JSON object, or {} for anything else (a corrupt value is replaced, not fatal)."""
    try:
        value = json.loads(raw) if isinstance(raw, (str, bytes)) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return -math.inf
    return number if math.isfinite(number) else -math.inf


def merge_readings(stored: Mapping[str, Any], new: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The freshest reading of each bucket (the larger ``sent``); malformed ones dropped."""
    merged = {b: r for b, r in stored.items() if isinstance(r, dict) and _number(r.get("sent")) > -math.inf}
    for bucket, reading in new.items():
        if _number(reading.get("sent")) > _number(merged.get(bucket, {}).get("sent")):
            merged[bucket] = dict(reading)
    return merged


def live(members: Mapping[str, Any], now: float) -> dict[str, dict[str, Any]]:
    """The members whose lease (``expires``, store clock) has not run out at ``now``."""
    return {m: s for m, s in members.items() if isinstance(s, dict) and _number(s.get("expires")) > now}


class DirStore:
    """The group's state in a diskcache directory: process-safe, for the clients of one host (a
    shared, group-writable directory serves every user of a JupyterHub host). ``clock``: the store's
    clock (``time.time``; tests pass their own)."""

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path).expanduser()
        self.where = str(self.path)
        self._clock = clock
        self._cache: Any = None

    def _open(self) -> Any:
        if self._cache is None:
            import diskcache

            self.path.mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(self.path), timeout=STORE_TIMEOUT, eviction_policy="none")
        return self._cache

    def beat(self, group: str, member: str, state: Mapping[str, Any] | None, ttl: float,
             readings: Mapping[str, Mapping[str, Any]]) -> Beat:
        cache = self._open()
        now = self._clock()
        with cache.transact():
            members = live(_load(cache.get(f"{group}:members")), now)
            stored = _load(cache.get(f"{group}:readings"))
            merged = merge_readings(stored, readings)
            if state is not None:
                members[member] = {**state, "expires": now + ttl}
            if state is not None or merged != stored:
                cache.set(f"{group}:members", json.dumps(members))
                cache.set(f"{group}:readings", json.dumps(merged))
        return Beat(now, members, merged)

    def leave(self, group: str, member: str) -> None:
        cache = self._open()
        with cache.transact():
            members = _load(cache.get(f"{group}:members"))
            if members.pop(member, None) is not None:
                cache.set(f"{group}:members", json.dumps(members))

    def close(self) -> None:
        if self._cache is not None:
            with contextlib.suppress(Exception):
                self._cache.close()
            self._cache = None


def coordinator_setting(value: Any = None) -> str:
    """The setting (argument, else ``CLAUDE_MAGIC_COORDINATOR``, else ``auto``), checked: ``auto``,
    ``none``, a ``redis://``/``rediss://`` URL or a directory path."""
    raw = os.environ.get(ENV, "") if value is None else value
    if not isinstance(raw, (str, os.PathLike)):
        raise ConfigError(f"coordinator must be 'auto', 'none', a directory or a redis:// URL, got {raw!r}")
    text = os.fspath(raw).strip() or "auto"
    lowered = text.lower()
    if lowered in ("auto", "none"):
        return lowered
    if "://" in text and not lowered.startswith(("redis://", "rediss://")):
        raise ConfigError(f"coordinator must be 'auto', 'none', a directory or a redis:// URL, got "
                          f"{_secrets.redact_url(text)!r}")
    return text


def open_store(setting: str, cache_dir: str | os.PathLike[str] | None = None) -> Store | None:
    """The store a (checked) ``coordinator`` setting names; ``auto``: ``coordination`` in the
    response cache's directory. Nothing is connected or created here."""
    if setting == "none":
        return None
    if setting.lower().startswith(("redis://", "rediss://")):
        from ._redis_store import RedisStore

        return RedisStore(setting)
    if setting == "auto":
        from .cache import default_cache_dir

        base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        return DirStore(base / "coordination")
    return DirStore(setting)


def open_store_or_warn(setting: str, cache_dir: str | os.PathLike[str] | None = None) -> Store | None:
    """:func:`open_store`, but a store that cannot be opened (redis-py missing, a malformed Redis URL)
    is one warning and no sharing: sharing saves quota, and a call must never fail for want of it.
    (``%config ClaudeMagics.coordinator`` refuses such a value when it is set.)"""
    try:
        return open_store(setting, cache_dir)
    except ConfigError as exc:
        log.warning("claude_magic: no sharing of the rate limits with other kernels: %s; pacing alone "
                    "from the rate-limit headers", exc)
        return None


def allowance(members: Mapping[str, Mapping[str, Any]], me: str, bucket: str,
              rates: Mapping[str, float | None]) -> dict[str, float] | None:
    """What ``me`` may spend per second of each limit of ``bucket`` on batch work (see the module
    docstring); ``None`` when it is the only member with batch work there (no limit but the mirror).
    ``rates``: each limit's refill per second, as the mirror learned it."""
    def entry(state: Mapping[str, Any]) -> Mapping[str, Any]:
        value = state.get("buckets", {}).get(bucket) if isinstance(state.get("buckets"), dict) else None
        return value if isinstance(value, dict) else {}

    def use(kind: str, state: Mapping[str, Any], name: str) -> float:
        spend = entry(state).get(kind)
        return max(0.0, _number(spend.get(name))) if isinstance(spend, dict) else 0.0

    active = [m for m, s in members.items() if entry(s).get("batch")]
    if me not in active:
        active.append(me)
    if len(active) <= 1:
        return None
    out: dict[str, float] = {}
    for name, rate in rates.items():
        if not rate:
            continue
        capacity = max(0.0, rate - sum(use("interactive", s, name) for s in members.values()))
        fair = capacity / len(active)
        others = claims = 0.0
        for member in active:
            if member == me or member not in members:
                continue
            state = members[member]
            spent = use("spend", state, name)
            backlog = bool(entry(state).get("backlog"))
            others += max(spent, fair) if backlog else spent
            allowed = entry(state).get("allowed")
            published = backlog and isinstance(allowed, dict) and name in allowed
            claims += use("allowed", state, name) if published else spent
        # Never more than the others leave: a member that was alone spends the whole limit until its
        # next beat tells it someone joined, and a joiner that took its half at once would overdraw
        # the bucket (429s for everyone, interactive requests included) for that long.
        out[name] = max(0.0, min(max(fair, capacity - others), capacity - claims))
    return out or None


def others_spend(members: Mapping[str, Mapping[str, Any]], me: str, bucket: str,
                 seconds: float) -> dict[str, float]:
    """What the other members spend from ``bucket`` (batch and interactive) in ``seconds``, per limit."""
    out: dict[str, float] = {}
    for member, state in members.items():
        buckets = state.get("buckets")
        entry = buckets.get(bucket) if member != me and isinstance(buckets, dict) else None
        if not isinstance(entry, dict):
            continue
        for kind in ("spend", "interactive"):
            spend = entry.get(kind)
            for name, value in (spend.items() if isinstance(spend, dict) else ()):
                if _number(value) > 0:
                    out[name] = out.get(name, 0.0) + _number(value) * seconds
    return out


class Coordinator:
    """One client's membership of its group (see the module docstring).

    The scheduler supplies ``publish()`` (this member's state, called on the loop) and
    ``apply(beat)`` (``None``: pace alone), and calls :meth:`touch` with each request; the beats run
    as a task on the client's loop, the store's I/O in a thread of its own.
    """

    def __init__(self, store: Store, group: str, *, period: float = PERIOD, ttl: float = TTL,
                 idle: float = IDLE) -> None:
        self.store = store
        self.group = group
        self.member = uuid.uuid4().hex[:12]
        self.kernel = f"{_user()}@{socket.gethostname()}:{os.getpid()}"
        self.period, self.ttl, self.idle = period, ttl, idle
        self.last: Beat | None = None      # the last beat that succeeded
        self.last_at = -math.inf           # when it returned (monotonic)
        self.offset = 0.0                  # store clock - monotonic clock
        self.failure: str | None = None    # why the last beat failed (None: it did not)
        self._warned = False
        self._used = -math.inf             # the last request (monotonic)
        self._task: asyncio.Task[None] | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._joined = False
        self.closed = False

    @property
    def where(self) -> str:
        return self.store.where

    def store_time(self, monotonic: float) -> float:
        return monotonic + self.offset

    def local_time(self, stored: float) -> float:
        return stored - self.offset

    def fresh(self, now: float | None = None) -> Beat | None:
        """The last beat if it is recent enough to act on (else the member paces alone)."""
        now = time.monotonic() if now is None else now
        return self.last if self.failure is None and now - self.last_at <= self.ttl else None

    def touch(self, publish: Callable[[], dict[str, Any]], readings: Callable[[], dict[str, Any]],
              apply: Callable[[Beat | None], None]) -> None:
        """A request is being admitted (on the loop): make sure this member is beating."""
        self._used = time.monotonic()
        if self.closed or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(self._beats(publish, readings, apply))

    async def _beats(self, publish: Callable[[], dict[str, Any]], readings: Callable[[], dict[str, Any]],
                     apply: Callable[[Beat | None], None]) -> None:
        while not self.closed and time.monotonic() - self._used < self.idle:
            await self.beat_once(publish, readings, apply)
            await asyncio.sleep(self.period)
        apply(None)
        await self._leave()

    async def beat_once(self, publish: Callable[[], dict[str, Any]], readings: Callable[[], dict[str, Any]],
                        apply: Callable[[Beat | None], None]) -> Beat | None:
        """One heartbeat: publish, renew the lease, apply what the store says (None: it failed)."""
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="claude_magic-coordinator", initializer=quiet_thread)
        state = {**publish(), "kernel": self.kernel, "pid": os.getpid()}
        if state.get("buckets") or state.get("jobs"):
            self._used = time.monotonic()  # work in flight or spend still counting: not idle
        shared = readings()
        try:
            beat = await asyncio.wait_for(loop.run_in_executor(
                self._pool, self.store.beat, self.group, self.member, state, self.ttl, shared),
                timeout=self.ttl)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the store means: pace alone
            self._failed(exc)
            apply(None)
            return None
        self._succeeded(beat)
        apply(beat)
        return beat

    def _succeeded(self, beat: Beat) -> None:
        now = time.monotonic()
        self.last, self.last_at, self.offset = beat, now, beat.now - now
        self._joined = True
        if self.failure is not None:
            log.info("claude_magic: the coordinator at %s answers again: sharing the rate limits", self.where)
        self.failure = None

    def _failed(self, exc: BaseException) -> None:
        self.failure = describe(exc)
        if not self._warned:
            self._warned = True
            log.warning("claude_magic: the coordinator at %s failed (%s): pacing alone from the rate-limit "
                        "headers; %%config ClaudeMagics.coordinator = 'none' turns sharing off",
                        self.where, self.failure)

    async def _leave(self) -> None:
        if self._joined and self._pool is not None:
            self._joined = False
            with contextlib.suppress(Exception):
                left = asyncio.get_running_loop().run_in_executor(self._pool, self.store.leave, self.group,
                                                                  self.member)
                await asyncio.wait_for(left, timeout=self.ttl)

    def members(self) -> dict[str, dict[str, Any]]:
        """The group's live members now (a read of the store, without joining; raises what the store
        raises)."""
        beat = self.store.beat(self.group, self.member, None, self.ttl, {})
        return beat.members

    def close(self) -> None:
        """Leave the group (the share is given back at once) and stop the store's thread."""
        if self.closed:
            return
        self.closed = True
        if self._task is not None and not self._task.done():
            with contextlib.suppress(RuntimeError):
                self._task.get_loop().call_soon_threadsafe(self._task.cancel)
        if self._joined and self._pool is not None:
            self._joined = False
            with contextlib.suppress(Exception):
                self._pool.submit(self.store.leave, self.group, self.member).result(timeout=self.ttl)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(Exception):
            self.store.close()


def _user() -> str:
    """Who runs this kernel, for the listings of the people sharing a key (``?`` if unknown)."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers: not worth failing for
        return "?"


def describe(exc: BaseException) -> str:
    """One line for a store failure, with any secret (a Redis password) scrubbed."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = _secrets.redact_url(text)
    return _secrets.scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
