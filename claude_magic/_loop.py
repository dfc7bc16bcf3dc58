"""The loop bridge: one asyncio loop in a daemon thread, and the doors into it.

Inside a Jupyter kernel a loop is already running on the main thread, so ``asyncio.run()`` fails
in a cell; a script has no loop at all. The client therefore runs its coroutines on a loop of its
own, in a daemon thread started on first use (so importing or constructing costs nothing), and
every caller reaches it through this module:

- ``submit(coro)``: schedule, get a ``concurrent.futures.Future``; the caller decides how to wait.
- ``run(coro)``: schedule and wait in short slices (``WAIT_SLICE``): a blocking wait would not see
  an interrupt raised from another thread (``_thread.interrupt_main``, what the kernel's stop
  button uses on Windows) until it returned. Ctrl-C cancels the work and re-raises.
- ``call(make, deliver)``: ``run(make(emit))`` where what the coroutine emits (streamed text, and
  :class:`Thought` for thinking) is handed to ``deliver`` on the caller's thread, through a queue,
  a batch at a time: display updates then happen where the caller is, never on the loop.
- ``on_loop(make, on_text)``: the same for async callers, from any loop (Jupyter's, or this one);
  deltas are handed back with ``call_soon_threadsafe`` to the caller's loop.

So sync and async callers take one path: a coroutine made with an ``emit`` callback, run on the
one loop, which shares one connection pool and one retry policy between them.

Lifetime: ``close(cleanup)`` runs ``cleanup()`` on the loop (closing the connections), stops the
loop and joins the thread; the loop thread then does what ``asyncio.run`` does on its way out.
Forgetting ``close`` leaks nothing either: as IPython's ``%%script`` magics do with their loop
thread, a ``weakref.finalize`` stops it when the bridge is collected or the interpreter exits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import queue
import signal
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")
Emit = Callable[[str], Any]

WAIT_SLICE = 0.1  # s: a blocked caller wakes this often, so any KeyboardInterrupt is seen at once
CLOSE_TIMEOUT = 2.0  # s: closing is best effort (the thread is a daemon)
_DONE = object()


class Thought(str):
    """A piece of thinking, on its way to ``on_thinking`` through the channel text takes."""


class LoopThread:
    """One asyncio loop in a daemon thread, started on first use (see the module docstring).

    ``owner`` names what is closed in the error raised after ``close`` (``"this Client"``).
    """

    def __init__(self, owner: str = "this loop", name: str = "claude_magic-loop") -> None:
        self._owner = owner
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize[Any, LoopThread] | None = None
        self.closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop, if it was started (None before first use)."""
        return self._loop

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def ensure(self) -> asyncio.AbstractEventLoop:
        """The running loop, started now if need be; ConfigError once closed."""
        if self.closed:
            raise ConfigError(f"{self._owner} is closed: create a new one")
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    self._start()
        assert self._loop is not None
        return self._loop

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:  # refers to the loop only: the bridge stays collectable
            quiet_thread()
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                _shut_down(loop)

        thread = threading.Thread(target=run, name=self._name, daemon=True)
        thread.start()
        ready.wait()
        self._thread = thread
        self._finalizer = weakref.finalize(self, _stop, loop, thread)
        self._loop = loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop thread; the caller decides how to wait."""
        return asyncio.run_coroutine_threadsafe(coro, self.ensure())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it; Ctrl-C cancels it (within a second)."""
        return wait(self.submit(coro))

    def call(self, make: Callable[[Emit | None], Coroutine[Any, Any, T]], deliver: Emit | None) -> T:
        """``run(make(emit))``, with what the coroutine emits handed to ``deliver`` on this thread
        (see :func:`_pump`) until it ends. Without ``deliver`` nothing is emitted."""
        if deliver is None:
            return self.run(make(None))
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        fut = self.submit(make(q.put))
        fut.add_done_callback(lambda _: q.put(_DONE))
        try:
            _pump(q, deliver)
        except BaseException:
            _cancel(fut)
            raise
        return wait(fut)

    async def on_loop(self, make: Callable[[Emit | None], Awaitable[T]], on_text: Emit | None = None) -> T:
        """Await ``make(emit)`` on the loop thread, wherever the caller runs; what it emits goes
        to ``on_text`` on the caller's loop."""
        here = asyncio.get_running_loop()
        loop = self.ensure()
        if here is loop:
            return await make(on_text)
        emit = None
        if on_text is not None:

            def emit(delta: str) -> None:
                here.call_soon_threadsafe(on_text, delta)

        async def job() -> T:
            return await make(emit)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(job(), loop))

    def close(self, cleanup: Callable[[], Coroutine[Any, Any, Any]] | None = None) -> None:
        """Run ``cleanup()`` on the loop (if it ever started), then stop the loop and its thread."""
        if self.closed:
            return
        self.closed = True
        loop = self._loop
        if loop is None:
            return
        if cleanup is not None:
            try:
                asyncio.run_coroutine_threadsafe(cleanup(), loop).result(timeout=CLOSE_TIMEOUT)
            except Exception:  # closing is best effort: the thread is a daemon
                pass
        if self._finalizer is not None:
            self._finalizer()


def quiet_thread() -> None:
    """Block SIGINT in the calling (worker) thread. A process-directed signal goes to any thread that
    does not block it; Python runs its handler in the main thread, but a main thread blocked on a
    lock (``threading.Event().wait()`` in a cell) only wakes when the signal lands on it. With each
    of our threads blocking it, the stop button always reaches the cell."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Stop the loop and wait for its thread to unwind it (``_shut_down``)."""
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:  # already closed
        return
    if threading.current_thread() is not thread:
        thread.join(timeout=CLOSE_TIMEOUT)


def _shut_down(loop: asyncio.AbstractEventLoop) -> None:
    """What ``asyncio.run`` does on the way out: cancel what is left, let it unwind, close the
    async generators (a stream's SSE iterator), close the loop. Without it a stream cut short
    leaves a pending ``aclose`` task that Python reports at exit ("Task was destroyed")."""
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def _cancel(fut: concurrent.futures.Future[Any]) -> None:
    fut.cancel()
    concurrent.futures.wait([fut], timeout=1.0)


def wait(fut: concurrent.futures.Future[T]) -> T:
    """The future's result, waited for in short slices (see the module docstring). Ctrl-C cancels
    the work (within a second) and re-raises."""
    try:
        while True:
            try:
                return fut.result(timeout=WAIT_SLICE)
            except concurrent.futures.TimeoutError:
                continue
    except BaseException:
        _cancel(fut)
        raise


def route(on_text: Emit | None, on_thinking: Emit | None) -> Emit | None:
    """One callback for the stream's channel: text to ``on_text``, thinking to ``on_thinking``."""
    if on_thinking is None:
        return None if on_text is None else (lambda d: None if isinstance(d, Thought) else on_text(d))

    def deliver(delta: str) -> None:
        if isinstance(delta, Thought):
            on_thinking(str(delta))
        elif on_text is not None:
            on_text(delta)

    return deliver


def _pump(q: queue.SimpleQueue[Any], deliver: Emit) -> None:
    """Hand queued deltas to ``deliver`` on this thread, joined a batch at a time (text with text,
    thinking with thinking, in order), until the call ends. Waits in short slices (see ``wait``)."""
    while True:
        try:
            item = q.get(timeout=WAIT_SLICE)
        except queue.Empty:
            continue
        chunk = [item]
        while True:
            try:
                chunk.append(q.get_nowait())
            except queue.Empty:
                break
        done = chunk[-1] is _DONE
        for kind, run in itertools.groupby((c for c in chunk if c is not _DONE), key=type):
            joined = "".join(run)
            if joined:
                deliver(kind(joined))
        if done:
            return
