"""Work around a stall in httpcore 1.0.x under many concurrent requests on reused connections.

httpcore 1.0.x creates its per-connection locks as ``anyio.Lock()``; with anyio 4.5+ an
uncontended acquire still yields to the event loop, and with dozens of requests in flight on
kept-alive connections the requests then reach the server spread over about a second
(measured against the emulator: 64 requests of 0.3 s took up to 1.3 s on reused connections,
0.4 s on new ones). httpcore2 (the fork the official SDK uses) creates them with
``fast_acquire=True``; this does the same for httpcore, which changes no semantics: the lock
still excludes, it only skips the yield when nobody waits. Applied once, when a Client first
opens its connection pool.
"""

from __future__ import annotations

import inspect

_applied = False


def apply() -> bool:
    """Make httpcore's asyncio locks fast-acquire; True if the patch is (now) in place."""
    global _applied
    if _applied:
        return True
    try:
        import anyio
        from httpcore import _synchronization as sync
    except ImportError:  # pragma: no cover - httpx always brings httpcore
        return False
    if "fast_acquire" not in inspect.signature(anyio.Lock).parameters:
        return False  # an anyio without the option has no stall either
    original = sync.AsyncLock.setup

    def setup(self: sync.AsyncLock) -> None:
        original(self)
        if getattr(self, "_anyio_lock", None) is not None:
            self._anyio_lock = anyio.Lock(fast_acquire=True)

    sync.AsyncLock.setup = setup  # type: ignore[method-assign]
    _applied = True
    return True
