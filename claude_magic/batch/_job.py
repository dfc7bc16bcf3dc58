"""Background batch jobs: ``run_batch(..., background=True)`` returns a :class:`BatchJob` at once.

The engine runs on the client's loop as it does in the foreground; a watcher thread of the job's own
calls ``progress`` about ten times a second (so a progress bar keeps moving while the person works in
other cells), builds the :class:`BatchResult` when the engine ends, and calls the done callbacks
(which is where the magics learn that a DEST is ready to be written: never from this thread).

The handle is shaped like ``concurrent.futures.Future`` — ``done()``, ``running()``, ``cancelled()``,
``result(timeout)``, ``exception(timeout)``, ``cancel()``, ``add_done_callback(fn)`` — with two
differences worth having in a notebook: a cancelled job's ``result()`` is the partial
:class:`BatchResult` (the rows it answered are kept, in the cache too), not an error; and waiting is
interruptible (Ctrl-C stops the wait, never the job).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._loop import WAIT_SLICE, quiet_thread
from ._report import BatchResult, Progress, _State

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["BatchJob", "JobState"]

log = logging.getLogger("claude_magic")
TICK = 0.1  # s between two progress calls


class JobState(str, enum.Enum):
    RUNNING = "running"
    DONE = "done"            # the engine ended (rows may have failed: see the result)
    FAILED = "failed"        # the engine itself failed (a bug, or a failure every row shares)
    CANCELLED = "cancelled"  # cancel(), or the client closed (kernel shutdown)

    def __str__(self) -> str:
        return self.value


class BatchJob:
    """A batch running in the background (see the module docstring).

    ``id`` is unique in its client (``"1"``, ``"2"`` …); ``label`` is the template's head;
    ``progress`` a fresh :class:`Progress` snapshot; ``state`` a :class:`JobState`.
    """

    def __init__(self, client: Client, label: str, state: _State,
                 conclude: Callable[[bool], BatchResult], progress: Callable[[Progress], Any] | None,
                 on_close: Callable[[], Any] | None = None) -> None:
        self.client = client
        self.label = label
        self.id = client.scheduler.open_job(label, handle=self)
        self._state = state
        self._conclude = conclude
        self._progress = progress
        self._on_close = on_close
        self._future: concurrent.futures.Future[Any] | None = None
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[BatchJob], Any]] = []
        self._result_hooks: list[Callable[[BatchJob], Any]] = []
        self._result: BatchResult | None = None
        self._error: BaseException | None = None
        self._cancelling = False
        self.state = JobState.RUNNING
        self.started = time.monotonic()
        self.ended: float | None = None

    def start(self, coro: Any) -> BatchJob:
        """Run ``coro`` (the engine; None when the cache answered everything) and watch it."""
        self._future = self.client.submit(coro) if coro is not None else None
        threading.Thread(target=self._watch, name=f"claude_magic-job-{self.id}", daemon=True).start()
        return self

    # -- the Future-like surface ------------------------------------------------------------------

    def done(self) -> bool:
        return self._finished.is_set()

    def running(self) -> bool:
        return not self._finished.is_set()

    def cancelled(self) -> bool:
        return self.state is JobState.CANCELLED

    @property
    def progress(self) -> Progress:
        return self._state.snapshot() if not self.done() else self._final_progress()

    def result(self, timeout: float | None = None) -> BatchResult:
        """Wait for the job (at most ``timeout`` s: else ``TimeoutError``) and return its result —
        a cancelled job's partial one; raises the error that stopped the engine, if one did."""
        self._wait(timeout)
        with self._lock:
            hooks, self._result_hooks = self._result_hooks, []
        for hook in hooks:
            hook(self)
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def wait(self, timeout: float | None = None) -> BatchResult:
        """The same as :meth:`result`, for readability in a notebook (``_claude_job.wait()``)."""
        return self.result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return self._error

    def cancel(self) -> bool:
        """Stop sending; the rows answered so far stay (in the result and the cache). False if the
        job had already ended."""
        if self.done():
            return False
        self._cancelling = True
        if self._future is not None:
            self._future.cancel()
        return True

    def add_done_callback(self, fn: Callable[[BatchJob], Any]) -> None:
        """Call ``fn(job)`` when the job ends (on the job's thread; at once if it has ended)."""
        with self._lock:
            if not self.done():
                self._callbacks.append(fn)
                return
        fn(self)

    def add_result_hook(self, fn: Callable[[BatchJob], Any]) -> None:
        """Call ``fn(job)`` once, on the thread that first gets the result with :meth:`result` or
        :meth:`wait` (the magics fill DEST there: on the person's own thread, when asked)."""
        with self._lock:
            self._result_hooks.append(fn)

    def __repr__(self) -> str:
        p = self.progress
        return (f"<BatchJob {self.id} {self.state}: {p.done + p.failed + p.skipped:,}/{p.total:,} rows, "
                f"{self.label!r}>")

    # -- the watcher ------------------------------------------------------------------------------

    def _wait(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished.wait(WAIT_SLICE if deadline is None
                                      else max(0.0, min(WAIT_SLICE, deadline - time.monotonic()))):
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"batch job {self.id} is still running ({self.progress.line()})")

    def _watch(self) -> None:
        quiet_thread()  # the stop button is the cell's, never this thread's
        future = self._future
        while future is not None and not future.done():
            with contextlib.suppress(concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                future.result(timeout=TICK)
            if not future.done():
                self._report(self._state.snapshot())
        cancelled = self._cancelling or (future is not None and future.cancelled())
        try:
            if future is not None and not future.cancelled() and (exc := future.exception()) is not None:
                raise exc
            result = self._conclude(cancelled)
        except BaseException as exc:  # a bug of ours, or the loop closed under the engine
            self._error = exc
            self.state = JobState.FAILED
            log.debug("batch job %s failed: %s", self.id, exc)
        else:
            self._result = result
            self.state = (JobState.CANCELLED if cancelled
                          else JobState.FAILED if result.aborted is not None else JobState.DONE)
        self._report(self._final_progress())
        self.ended = time.monotonic()
        self.client.scheduler.close_job(self.id)
        with self._lock:
            self._finished.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception as exc:  # one broken callback must not keep the others from running
                log.warning("a done callback of batch job %s failed: %s", self.id, exc)
        if self._on_close is not None:
            self._on_close()

    def _final_progress(self) -> Progress:
        snap = self._state.snapshot()
        snap.finished, snap.eta, snap.in_flight = True, 0.0, 0
        snap.status = str(self.state) if self.state is not JobState.RUNNING else snap.status
        return snap

    def _report(self, snapshot: Progress) -> None:
        if self._progress is None:
            return
        try:
            self._progress(snapshot)
        except Exception as exc:  # a broken display must not stop the job
            log.debug("progress of batch job %s failed: %s", self.id, exc)
