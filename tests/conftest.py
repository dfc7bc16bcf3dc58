"""Load the emulator's pytest fixtures, unless the installed package already did (its pytest11
entry point registers the same module, and pytest refuses to register it twice).

Every test starts from the same environment, whatever the developer's shell holds and whatever
an earlier test did: no ``ANTHROPIC_*`` or ``CLAUDE_MAGIC_*`` setting, and a response cache of its
own (never the user's cache, which outlives the run). Hypothesis has no deadline: a busy machine
makes an example slow, not wrong. Ctrl-C is Python's KeyboardInterrupt even when the run was
started in the background (a shell then ignores SIGINT for it, and ``_thread.interrupt_main()``,
which the interrupt tests use, does nothing).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

_PLUGIN = "claude_magic.emulator.pytest_plugin"
pytest_plugins = [] if any(ep.value == _PLUGIN for ep in entry_points(group="pytest11")) else [_PLUGIN]

settings.register_profile("claude_magic", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("claude_magic")


@pytest.fixture(scope="session", autouse=True)
def interruptible() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("ANTHROPIC_", "CLAUDE_MAGIC_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CLAUDE_MAGIC_CACHE_DIR", str(tmp_path / "user-cache"))
    yield


class BatchClock:
    """The emulator's Message Batches clock, moved by the test: a batch's requests finish and the
    batch ends when the test says, never because a loaded machine spent real time elsewhere."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def batch_clock(monkeypatch: pytest.MonkeyPatch) -> BatchClock:
    from claude_magic.emulator import batches

    clock = BatchClock()
    monkeypatch.setattr(batches, "time", clock)
    return clock


# -- the emulator and a client of it, for the tests that talk to it -------------------------------------


@pytest.fixture
def emu(claude_emulator: Any) -> Any:
    """The session's emulator, its knobs and queues reset (the pytest plugin's ``claude_emulator``)."""
    return claude_emulator


@pytest.fixture
def client(emu: Any, tmp_path: Path) -> Iterator[Any]:
    """A Client of the emulator with the canary key, a cache of its own and short answers."""
    from canary import TEST_KEY

    from claude_magic.client import Client

    c = Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "cache", max_tokens=16)
    yield c
    c.close()


# -- a real redis-server, for the Redis coordinator's tests -----------------------------------------


@pytest.fixture(scope="session")
def redis_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One redis-server for the session (skipped where it or redis-py is missing)."""
    import shutil

    from redis_server import MISSING, RedisServer

    if shutil.which("redis-server") is None:
        pytest.skip(MISSING)
    pytest.importorskip("redis", reason="redis-py is not installed: pip install 'claude_magic[redis]'")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(redis_process: Any) -> Any:
    """The session's redis-server, running (a test may have stopped it) and empty."""
    if not redis_process.running:
        redis_process.start()
    r = redis_process.client()
    try:
        r.flushall()
    finally:
        r.close()
    return redis_process
