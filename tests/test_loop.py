"""The loop bridge (``claude_magic._loop``): one loop thread, started on first use, stopped by
``close`` or when the bridge is collected; streamed text handed to the caller's thread."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading

import pytest

from claude_magic._loop import LoopThread, Thought, route
from claude_magic.errors import ConfigError


def test_the_loop_starts_on_first_use_and_close_stops_it() -> None:
    bridge = LoopThread("this test")
    assert bridge.loop is None and bridge.thread is None

    async def where() -> str:
        return threading.current_thread().name

    assert bridge.run(where()) == "claude_magic-loop"
    loop, thread = bridge.loop, bridge.thread
    bridge.close()
    assert loop is not None and loop.is_closed()
    assert thread is not None and not thread.is_alive()
    with pytest.raises(ConfigError, match="this test is closed: create a new one"):
        bridge.ensure()


def test_a_forgotten_bridge_stops_its_thread_when_collected() -> None:
    bridge = LoopThread()
    bridge.run(asyncio.sleep(0))
    loop, thread = bridge.loop, bridge.thread
    del bridge
    gc.collect()
    assert thread is not None and not thread.is_alive()
    assert loop is not None and loop.is_closed()


def test_call_hands_text_and_thinking_to_the_callers_thread_in_order() -> None:
    bridge = LoopThread()
    got: list[tuple[str, str, str]] = []
    here = threading.current_thread().name

    def on_text(d: str) -> None:
        got.append(("text", d, threading.current_thread().name))

    def on_thinking(d: str) -> None:
        got.append(("thinking", d, threading.current_thread().name))

    async def make(emit) -> int:  # type: ignore[no-untyped-def]
        emit(Thought("hm"))
        emit(Thought("m"))
        emit("a")
        emit("b")
        return 7

    try:
        assert bridge.call(make, route(on_text, on_thinking)) == 7
    finally:
        bridge.close()
    assert got == [("thinking", "hmm", here), ("text", "ab", here)]


def test_route_drops_thinking_nobody_asked_for() -> None:
    seen: list[str] = []
    deliver = route(seen.append, None)
    assert deliver is not None and route(None, None) is None
    deliver(Thought("hidden"))
    deliver("shown")
    assert seen == ["shown"]


def test_on_loop_from_another_loop_delivers_on_that_loop() -> None:
    bridge = LoopThread()
    got: list[tuple[str, bool]] = []

    async def make(emit) -> str:  # type: ignore[no-untyped-def]
        emit("x")
        return "done"

    async def main() -> str:
        me = asyncio.get_running_loop()

        def on_text(d: str) -> None:
            got.append((d, asyncio.get_running_loop() is me))

        result = await bridge.on_loop(make, on_text)
        await asyncio.sleep(0)  # the hand-off is call_soon_threadsafe: let it run
        return result

    try:
        assert asyncio.run(main()) == "done"
    finally:
        bridge.close()
    assert got == [("x", True)]


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_the_loop_thread_blocks_sigint_so_the_stop_button_reaches_the_main_thread() -> None:
    bridge = LoopThread()

    async def mask() -> set[int]:
        return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))

    try:
        assert signal.SIGINT in bridge.run(mask())
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the caller's is untouched
    finally:
        bridge.close()
