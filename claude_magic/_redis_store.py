"""The coordinator's store on a Redis server, for the clients of many hosts (see ``_coordinator``).

A group is three keys under ``claude_magic:{group}:`` (the braces are a hash tag, so a Redis Cluster
keeps the three on one node): ``members``, a sorted set of member -> lease expiry (milliseconds, the
store's clock); ``states``, a hash of member -> its JSON state; ``readings``, a hash of bucket -> its
freshest JSON reading. A beat is one Lua script, so it is atomic with no lock and no WATCH loop: it
drops the expired leases, renews the member's, keeps each reading fresher than the stored one and
returns what is live, as :class:`~._coordinator.DirStore` does in a transaction.

- **One clock.** Leases are dated by the server's ``TIME`` unless a clock is given (tests): hosts whose
  clocks differ by seconds still agree on which lease has run out.
- **Bounded.** Each socket operation waits at most ``STORE_TIMEOUT`` and the client retries nothing
  (redis-py's ``Redis()`` retries 10 times with backoff by default): a beat that fails is the
  coordinator's to handle, and the next one comes a period later anyway.
- **Restarts.** ``register_script`` sends EVALSHA and loads the script again when a restarted server
  answers NOSCRIPT; the beat that meets the cut connection may fail, the next one succeeds.
- **Abandoned groups vanish.** Each write sets the three keys to expire an hour later.
- **RESP2**, though redis-py 8 defaults to RESP3: its HELLO handshake needs Redis 6, RESP2 works with
  every server, and the script's reply reads the same in both.
- **Secrets.** The URL's password is registered with :mod:`._secrets` (scrubbed from any text) and
  ``where`` shows the URL without it. Nothing connects before the first beat: ``from_url`` only
  parses, which is why a malformed URL is refused at construction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import _secrets
from ._coordinator import STORE_TIMEOUT, Beat, _number, merge_readings
from .errors import ConfigError

__all__ = ["RedisStore"]

GROUP_TTL = 3600.0  # s an abandoned group's keys outlive its last write
MISSING_REDIS = "the Redis coordinator needs redis-py: pip install 'claude_magic[redis]'"

# KEYS: members, states, readings. ARGV: now (seconds; '' for the server's TIME), member, state
# (JSON; '' only reads), ttl (ms), the group's ttl (ms), then per reading: bucket, its sent, its JSON.
# Numbers go back as %.17g strings: Redis truncates a Lua number in a reply to an integer.
_BEAT = """
if redis.replicate_commands then redis.replicate_commands() end  -- Redis < 5: writes after TIME
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
else
  now = tonumber(ARGV[1]) * 1000
end
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[2], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local wrote = ARGV[3] ~= ''
if wrote then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
end
local function sent(raw)  -- a stored reading's date; a corrupt one loses to any reading
  local ok, value = pcall(cjson.decode, raw or 'null')
  local s = ok and type(value) == 'table' and tonumber(value.sent)
  if s and s == s and s > -math.huge and s < math.huge then return s end
  return -math.huge
end
for i = 6, #ARGV, 3 do
  if tonumber(ARGV[i + 1]) > sent(redis.call('HGET', KEYS[3], ARGV[i])) then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 2])
    wrote = true
  end
end
if wrote then
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[5]) end
end
local members = {}
local live = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%.17g', now), '+inf', 'WITHSCORES')
for i = 1, #live, 2 do
  table.insert(members, live[i])
  table.insert(members, live[i + 1])
  table.insert(members, redis.call('HGET', KEYS[2], live[i]))
end
return {string.format('%.17g', now), members, redis.call('HGETALL', KEYS[3])}
"""


class RedisStore:
    """The group's state on the Redis server at ``url`` (``redis://`` or ``rediss://``). ``clock``:
    the store's clock in seconds (tests); ``None``, the server's ``TIME``."""

    def __init__(self, url: str, clock: Callable[[], float] | None = None) -> None:
        self._secrets = _passwords(url)  # registered first, so every text below is scrubbed
        self.where = _where(url)
        self._clock = clock
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigError(MISSING_REDIS) from None
        try:
            self._redis = redis.Redis.from_url(
                url, socket_timeout=STORE_TIMEOUT, socket_connect_timeout=STORE_TIMEOUT,
                retry=Retry(NoBackoff(), 0), protocol=2)
        except ValueError as exc:
            raise ConfigError(f"the coordinator {self.where!r} is not a Redis URL ({exc}): expected "
                              "redis://[:password@]host[:port][/db]") from None
        self._beat = self._redis.register_script(_BEAT)

    def __repr__(self) -> str:
        return f"RedisStore({self.where!r})"

    def beat(self, group: str, member: str, state: Mapping[str, Any] | None, ttl: float,
             readings: Mapping[str, Mapping[str, Any]]) -> Beat:
        now = "" if self._clock is None else repr(float(self._clock()))
        args = [now, member, "" if state is None else json.dumps(dict(state)), repr(ttl * 1000.0),
                str(int(GROUP_TTL * 1000))]
        for bucket, reading in readings.items():
            sent = _number(reading.get("sent"))
            if sent > -math.inf:  # a reading with no date never wins (as in merge_readings)
                args += [bucket, repr(sent), json.dumps(dict(reading))]
        return _decoded(*self._beat(keys=_keys(group), args=args))

    def leave(self, group: str, member: str) -> None:
        members, states, _ = _keys(group)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(members, member)
            pipe.hdel(states, member)
            pipe.execute()

    def close(self) -> None:
        self._redis.close()


def _keys(group: str) -> list[str]:
    return [f"claude_magic:{{{group}}}:{name}" for name in ("members", "states", "readings")]


def _decoded(now: bytes, members: list[Any], readings: list[Any]) -> Beat:
    """The script's reply as a Beat: flat lists of (member, expiry, state) and (bucket, reading)."""
    live: dict[str, dict[str, Any]] = {}
    for name, expiry, raw in zip(members[::3], members[1::3], members[2::3], strict=True):
        state = _object(raw)
        if state is not None:  # a corrupt state hides its member, it does not stop the beat
            live[_text(name)] = {**state, "expires": float(expiry) / 1000}
    stored = {_text(bucket): _object(raw) for bucket, raw in zip(readings[::2], readings[1::2], strict=True)}
    return Beat(float(now) / 1000, live, merge_readings(stored, {}))


def _object(raw: Any) -> dict[str, Any] | None:
    """A stored JSON object, or None for anything else (missing, corrupt, not an object)."""
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _passwords(url: str) -> list[_secrets.Secret]:
    """The URL's passwords (``:password@`` and ``?password=``, as written and percent-decoded),
    registered to be scrubbed; kept by the store, as the registry holds them weakly."""
    try:
        parts = urlsplit(url)
        found = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    except ValueError:
        found = re.findall(r"(?<=:)[^:/@\s]+(?=@)", url)  # a URL too broken to split
    return [_secrets.Secret(p) for value in found if value for p in {value, unquote(value)}]


def _where(url: str) -> str:
    """The URL to show: no user or password, and no ``password=`` in its query."""
    return re.sub(r"(?<=[?&]password=)[^&#]*", _secrets.REDACTED, _secrets.redact_url(url))
