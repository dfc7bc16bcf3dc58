"""The scheduler: every request of a client is admitted here, with a priority class and the job it
belongs to, and paced by a mirror of the rate-limit bucket it spends from.

How requests of different urgency share one quota:

- **Buckets.** The API limits each organisation per model class (some models share a bucket, newer
  ones have their own), and count_tokens, Message Batches, Files and Models each have limits of their
  own. :func:`bucket_of` names the bucket of a request; each has its own :class:`~._ratelimit.Mirror`,
  fed by the ``anthropic-ratelimit-*`` headers of every answer from it, and its own ``retry-after``
  pause.
- **Interactive first.** An ``interactive`` request (``complete``, ``acomplete`` and chats by default)
  is admitted at once, ahead of every queued batch row: it waits only when the mirror says the
  bucket itself is empty, and only for a ``retry-after`` that an interactive request received.
- **Headroom.** A ``batch`` request (``run_batch``/``map_prompts`` rows, their Batches API calls) is
  admitted only when the bucket would still hold room for two interactive requests after it (see
  :meth:`~._ratelimit.Bucket.headroom`): so an interactive request is not answered 429 while a
  batch keeps the bucket near empty. It is a level kept, not a rate: the batch slows by what
  interactive requests use, no more. Batch requests also wait out every ``retry-after`` pause.
- **A probe first.** Before the bucket was ever read, one batch request goes alone: its answer's
  headers tell the bucket's size, so a job never opens with a burst the bucket cannot hold (a
  bucket of 10 and a first window of 16 would be six 429s). It costs one round trip, once.
- **Fair share.** Batch requests queue per job; when the bucket allows one more start, the job that
  has started the fewest (start-time fair queuing: a job's virtual time is its starts, and a job that
  was idle rejoins at the least virtual time of the jobs waiting) goes next, so two jobs in one
  kernel split the capacity equally, and a lone job takes all of it.
- Time spent queued here is not part of a call's ``max_wait`` (the call's clocks start when it is
  admitted).

Everything here runs on the client's event loop thread (no locks); the caller's thread reads
:meth:`Scheduler.snapshot`-style figures only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import itertools
import re
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._ratelimit import Mirror
from .errors import ConfigError, OverloadedError, RateLimitError, SpendLimitReached
from .reply import Reply

__all__ = ["Priority", "Scheduler", "Ticket", "bucket_of", "job_context"]

TICK = 1.0  # s: a waiting dispatcher looks again at least this often (a reading may have come meanwhile)
PROBE_WAIT = 5.0  # s: the most a job waits for its probe's answer before going on without it


class Priority(str, enum.Enum):
    """How urgent a request is: ``interactive`` (a person waits for it) or ``batch``."""

    INTERACTIVE = "interactive"
    BATCH = "batch"

    @classmethod
    def of(cls, value: Any) -> Priority:
        if isinstance(value, Priority):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"priority must be 'interactive' or 'batch', got {value!r}") from None


# A request made inside a batch job (its rows, its Batches API calls) takes the job's priority and
# identity without every layer passing them on: the engine sets this around its tasks.
_CONTEXT: contextvars.ContextVar[tuple[Priority, str | None] | None] = contextvars.ContextVar(
    "claude_magic_job", default=None)


@contextlib.contextmanager
def job_context(priority: Priority, job: str | None) -> Iterator[None]:
    """Requests made in this context (and the tasks it starts) default to ``priority`` and ``job``."""
    token = _CONTEXT.set((priority, job))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def resolve(priority: Any, job: str | None) -> tuple[Priority, str | None]:
    """An explicit ``priority``/``job``, else the surrounding job's, else interactive."""
    context = _CONTEXT.get()
    if priority is None:
        return context if context is not None and job is None else (Priority.INTERACTIVE, job)
    return Priority.of(priority), job if job is not None else (context[1] if context else None)


# Model classes that share one bucket: family and major version (Opus 4.5-4.8, Sonnet 4.5/4.6, Fable
# 5.x, Mythos 5.x). Any other model has a bucket of its own.
_SHARED = {("opus", "4"), ("sonnet", "4"), ("fable", "5"), ("mythos", "5")}
_MODEL = re.compile(r"^claude-(?P<family>[a-z]+)-(?P<major>\d+)(?:-(?P<minor>\d{1,2}))?(?:-\d{8})?$")


def bucket_of(endpoint: str, model: str | None = None) -> str:
    """The rate-limit bucket a request spends from: ``messages:<model class>``, or the endpoint's
    own (``count_tokens``, ``batches``, ``files``, ``models``)."""
    if endpoint != "messages":
        return endpoint
    match = _MODEL.match(model or "")
    if match is None:
        return f"messages:{model}"
    family, major, minor = match["family"], match["major"], match["minor"]
    if (family, major) in _SHARED:
        return f"messages:{family}-{major}"
    return f"messages:{family}-{major}" + (f"-{minor}" if minor else "")


@dataclass(eq=False)
class Ticket:
    """One admitted request: spend it with :meth:`sent` (each time it leaves) and hand it back to
    :meth:`Scheduler.done`."""

    bucket: str
    priority: Priority
    job: str | None
    mark: int
    admitted: float
    queued: float  # seconds spent waiting for admission
    mirror: Mirror = field(repr=False)
    reading: dict[str, Any] | None = field(default=None, repr=False)  # its own answer's rate-limit reading

    def sent(self, at: float) -> None:
        self.mirror.sent(self.mark, at)


@dataclass(eq=False)
class _Job:
    id: str
    label: str
    vtime: float = 0.0
    started: int = 0


class _Bucket:
    """The scheduler's state for one rate-limit bucket."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mirror = Mirror()
        self.in_flight: set[int] = set()
        # job -> its waiting batch requests (and when each began to wait)
        self.queues: dict[str, deque[tuple[asyncio.Future[Ticket], float]]] = {}
        self.pause: dict[Priority, float] = {}
        self.last_cut = float("-inf")
        self.answered = False  # an answer came back: the mirror has read the bucket, if it ever will
        self.probe_at: float | None = None  # when the first batch request (the probe) was admitted
        self.changed: asyncio.Event | None = None
        self.dispatcher: asyncio.Task[None] | None = None

    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())


class Scheduler:
    """Admits every request of one client (see the module docstring)."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._jobs: dict[str, _Job] = {}  # open jobs (their standing in the fair share)
        self._handles: dict[str, Any] = {}  # every job given a handle, ended ones too (for listings)
        self._ids = itertools.count(1)
        self.admitted: Counter[Priority] = Counter()

    # -- jobs -------------------------------------------------------------------------------------

    def open_job(self, label: str, handle: Any = None) -> str:
        """Register a batch job; returns its id (``"1"``, ``"2"`` … in this client)."""
        job = _Job(str(next(self._ids)), label)
        self._jobs[job.id] = job
        if handle is not None:
            self._handles[job.id] = handle
        return job.id

    def close_job(self, job_id: str) -> None:
        """The job ended: it leaves the fair share (its handle stays listed)."""
        self._jobs.pop(job_id, None)

    def jobs(self) -> dict[str, Any]:
        """Every job opened with a handle (a background job), ended ones too: id -> handle."""
        return dict(self._handles)

    # -- admission --------------------------------------------------------------------------------

    def _bucket(self, name: str) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(name)
        return bucket

    def mirror(self, bucket: str) -> Mirror:
        """The mirror of ``bucket`` (what a batch engine sizes its window by)."""
        return self._bucket(bucket).mirror

    def pause(self, bucket: str, until: float, priority: Priority) -> None:
        """The server asked a request of ``priority`` to wait (``retry-after``) until ``until``."""
        state = self._bucket(bucket)
        state.pause[priority] = max(state.pause.get(priority, 0.0), until)
        self._wake(state)

    def paused(self, bucket: str, priority: Priority, now: float | None = None) -> float:
        """Seconds a request of ``priority`` must still wait: an interactive request only for a
        pause an interactive request was asked for; a batch request for every pause."""
        state = self._buckets.get(bucket)
        if state is None:
            return 0.0
        now = time.monotonic() if now is None else now
        until = (state.pause.get(Priority.INTERACTIVE, 0.0) if priority is Priority.INTERACTIVE
                 else max(state.pause.values(), default=0.0))
        return max(0.0, until - now)

    @property
    def paused_until(self) -> float:
        return max((t for b in self._buckets.values() for t in b.pause.values()), default=0.0)

    async def admit(self, bucket: str, priority: Priority, job: str | None = None) -> Ticket:
        """Wait until a request of ``priority`` may start in ``bucket``; returns its ticket."""
        state = self._bucket(bucket)
        queued = time.monotonic()
        if priority is Priority.INTERACTIVE:
            while (wait := max(state.mirror.delay(time.monotonic()),
                               self.paused(bucket, priority))) > 0:
                await asyncio.sleep(min(wait, TICK))
            return self._grant(state, priority, job, queued)
        key = job or ""
        queue = state.queues.get(key)
        if queue is None:
            queue = state.queues[key] = deque()
            self._rejoin(state, key)
        future: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        entry = (future, queued)
        queue.append(entry)
        self._ensure_dispatcher(state)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.done(future.result())  # granted as the caller left: never left, so never counted
            elif entry in queue:
                queue.remove(entry)
            raise

    def _rejoin(self, state: _Bucket, key: str) -> None:
        """A job that starts waiting again takes at least the least virtual time of those waiting:
        its idle spell earns it no burst."""
        job = self._jobs.get(key)
        if job is None:
            return
        others = [j.vtime for k, q in state.queues.items() if k != key and q and (j := self._jobs.get(k))]
        if others:
            job.vtime = max(job.vtime, min(others))

    def _ensure_dispatcher(self, state: _Bucket) -> None:
        if state.changed is None:
            state.changed = asyncio.Event()
        if state.dispatcher is None or state.dispatcher.done():
            state.dispatcher = asyncio.get_running_loop().create_task(self._dispatch(state))
        self._wake(state)

    async def _dispatch(self, state: _Bucket) -> None:
        assert state.changed is not None
        while state.waiting():
            now = time.monotonic()
            wait = max(state.mirror.delay(now, headroom=True), self.paused(state.name, Priority.BATCH, now))
            if self._probing(state, now):
                wait = TICK  # a probe is out: its answer tells the bucket's size before a burst is sent
            if wait > 0:
                state.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(state.changed.wait(), min(wait, TICK))
                continue
            key = self._next_job(state)
            queue = state.queues[key]
            future, queued = queue.popleft()
            if not queue:
                del state.queues[key]
            if future.done():  # its caller left
                continue
            if (job := self._jobs.get(key)) is not None:
                job.vtime += 1
                job.started += 1
            future.set_result(self._grant(state, Priority.BATCH, key or None, queued))

    @staticmethod
    def _probing(state: _Bucket, now: float) -> bool:
        """The first batch request is out and nothing has told the bucket's size yet (bounded: a
        server that sends no rate-limit headers, or a slow first answer, holds a job PROBE_WAIT s
        at most)."""
        return (state.mirror.requests.rate is None and not state.answered and state.probe_at is not None
                and now - state.probe_at < PROBE_WAIT)

    def _next_job(self, state: _Bucket) -> str:
        def order(key: str) -> tuple[float, int]:
            job = self._jobs.get(key)
            return (job.vtime, int(job.id)) if job is not None else (float("-inf"), 0)

        return min((k for k, q in state.queues.items() if q), key=order)

    def _grant(self, state: _Bucket, priority: Priority, job: str | None, queued: float) -> Ticket:
        now = time.monotonic()
        if priority is Priority.BATCH and state.probe_at is None:
            state.probe_at = now
        mark = state.mirror.take(now)
        state.in_flight.add(mark)
        self.admitted[priority] += 1
        return Ticket(state.name, priority, job, mark, now, now - queued, state.mirror)

    # -- completion -------------------------------------------------------------------------------

    def done(self, ticket: Ticket, reply: Reply | None = None, error: BaseException | None = None,
             reading: Mapping[str, Any] | None = None) -> None:
        """The request of ``ticket`` ended with ``reply`` or ``error``; ``reading`` is the newest
        rate-limit reading when there is no reply (a failure may have had no response at all)."""
        state = self._bucket(ticket.bucket)
        state.in_flight.discard(ticket.mark)
        state.answered = True
        mirror = state.mirror
        if reply is not None:
            mirror.learn(reply, interactive=ticket.priority is Priority.INTERACTIVE)
        congested = (reply is not None and reply.retries > 0) or (
            isinstance(error, (RateLimitError, OverloadedError)) and not isinstance(error, SpendLimitReached))
        if congested and ticket.admitted > state.last_cut:  # once per round trip
            mirror.congested()
            state.last_cut = time.monotonic()
        # For a retried or failed request which attempt the reading is from is unknown: it is dated
        # at receipt, with everything in flight subtracted (prudent).
        exact = reply is not None and not reply.retries
        mirror.observe((reply.ratelimit if reply is not None else reading) or {},
                       mark=ticket.mark if exact else None, in_flight=len(state.in_flight))
        mirror.forget(state.in_flight)
        self._wake(state)

    def read(self, ticket: Ticket, reading: Mapping[str, Any]) -> None:
        """The headers of ``ticket``'s answer arrived (its body may still be streaming): the first
        answer of a bucket ends its probe at once."""
        state = self._bucket(ticket.bucket)
        if state.answered:
            return  # later readings wait for done(), which knows whether the request was retried
        state.answered = True
        state.mirror.observe(reading, mark=ticket.mark, in_flight=len(state.in_flight))
        self._wake(state)

    def _wake(self, state: _Bucket) -> None:
        if state.changed is not None:
            state.changed.set()
