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
- **Other clients of the same account** (other kernels on this host, or other hosts): with a
  :class:`~._coordinator.Coordinator`, this scheduler publishes what it spends and whether it has
  batch work, and batch starts also wait for its share of each bucket (an
  :class:`~._ratelimit.Allowance`, see :func:`~._coordinator.allowance`); a bucket it never read
  starts from the freshest reading another member saw (no probe). Interactive requests never wait
  for a share. A member alone, or a failing store, leaves the mirror as the only gate.

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

from ._coordinator import READING_AGE, Beat, Coordinator, allowance, others_spend
from ._ratelimit import Allowance, Mirror, Spend
from .errors import ConfigError, OverloadedError, RateLimitError, SpendLimitReached
from .reply import Reply

__all__ = ["Priority", "Scheduler", "Ticket", "bucket_of", "job_context"]

TICK = 1.0  # s: a waiting dispatcher looks again at least this often (a reading may have come meanwhile)
PROBE_WAIT = 5.0  # s: the most a job waits for its probe's answer before going on without it
LINGER = 2.0  # s: a bucket counts as having batch work (or a backlog) this long after it last had
# s of other clients' spending a mirror may not have seen: readings come one answer apart, later under
# load (a busy event loop); the headroom kept for interactive requests grows by that much of their rate
UNSEEN = 0.3


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
    buckets: set[str] = field(default_factory=set)


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
        # What other clients of the account need to know, and this client's share of the bucket.
        self.spend = {Priority.BATCH: Spend(), Priority.INTERACTIVE: Spend()}
        self.batch_in_flight = 0
        self.last_batch = float("-inf")    # when batch work was last queued, started or ended here
        self.last_backlog = float("-inf")  # when batch work last waited for the bucket
        self.allowance: Allowance | None = None
        self.share: float | None = None    # the allowance as a fraction of the requests limit
        self.unseen: dict[str, float] = {}  # other members' spend our mirror may not have counted
        self.shared: tuple[dict[str, Any], float] | None = None  # freshest exact reading, when it left

    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def published(self, now: float) -> dict[str, Any] | None:
        """What the other members see of this bucket (None: nothing worth saying)."""
        batch = bool(self.waiting() or self.batch_in_flight) or now - self.last_batch < LINGER
        spend = self.spend[Priority.BATCH].per_second(now)
        interactive = self.spend[Priority.INTERACTIVE].per_second(now)
        if not (batch or spend or interactive):
            return None
        return {"batch": batch, "backlog": bool(self.waiting()) or now - self.last_backlog < LINGER,
                "spend": spend, "interactive": interactive, "share": self.share,
                "allowed": dict(self.allowance.rates) if self.allowance is not None else None}


class Scheduler:
    """Admits every request of one client (see the module docstring)."""

    def __init__(self, coordinator: Coordinator | None = None) -> None:
        self.coordinator = coordinator
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
            if self.coordinator is not None and (beat := self.coordinator.fresh()) is not None:
                self._seed(bucket, beat, time.monotonic())
        return bucket

    def mirror(self, bucket: str) -> Mirror:
        """The mirror of ``bucket`` (what a batch engine sizes its window by)."""
        return self._bucket(bucket).mirror

    def pause(self, bucket: str, until: float, priority: Priority) -> None:
        """The server asked a request of ``priority`` to wait (``retry-after``) until ``until``."""
        state = self._bucket(bucket)
        state.pause[priority] = max(state.pause.get(priority, 0.0), until)
        if state.allowance is not None:
            # what the share saved during the pause is not owed: spent at once after it, it was a
            # burst that met the next 429 (measured: a chain of them, one a second, at 3 kernels)
            state.allowance.empty(until)
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
        if self.coordinator is not None:
            self.coordinator.touch(self._publish, self._readings, self._apply)
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
        state.last_batch = queued
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
            wait = max(state.mirror.delay(now, headroom=True, unseen=self._unseen(state, now)),
                       self.paused(state.name, Priority.BATCH, now), self._share_delay(state, now))
            if self._probing(state, now):
                wait = TICK  # a probe is out: its answer tells the bucket's size before a burst is sent
            if wait > 0:
                state.last_backlog = now
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
        costs = state.mirror.costs()
        mark = state.mirror.take(now)
        state.in_flight.add(mark)
        state.spend[priority].add(now, costs)
        if priority is Priority.BATCH:
            state.batch_in_flight += 1
            state.last_batch = now
            if state.allowance is not None:
                state.allowance.take(now, costs)
            if job is not None and (open_job := self._jobs.get(job)) is not None:
                open_job.buckets.add(state.name)
        self.admitted[priority] += 1
        return Ticket(state.name, priority, job, mark, now, now - queued, state.mirror)

    # -- completion -------------------------------------------------------------------------------

    def done(self, ticket: Ticket, reply: Reply | None = None, error: BaseException | None = None,
             reading: Mapping[str, Any] | None = None) -> None:
        """The request of ``ticket`` ended with ``reply`` or ``error``; ``reading`` is the newest
        rate-limit reading when there is no reply (a failure may have had no response at all)."""
        state = self._bucket(ticket.bucket)
        if ticket.mark in state.in_flight and ticket.priority is Priority.BATCH:
            state.batch_in_flight -= 1
            state.last_batch = time.monotonic()
        state.in_flight.discard(ticket.mark)
        state.answered = True
        mirror = state.mirror
        unread = mirror.requests.rate is None
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
        if exact and reply is not None and reply.ratelimit:
            self._keep_reading(state, ticket, reply.ratelimit)
        mirror.observe((reply.ratelimit if reply is not None else reading) or {},
                       mark=ticket.mark if exact else None, in_flight=len(state.in_flight))
        mirror.forget(state.in_flight)
        if unread and mirror.requests.rate is not None:
            self._first_reading(state)
        self._wake(state)

    def read(self, ticket: Ticket, reading: Mapping[str, Any]) -> None:
        """The headers of ``ticket``'s answer arrived (its body may still be streaming): the first
        answer of a bucket ends its probe at once."""
        state = self._bucket(ticket.bucket)
        if state.answered:
            return  # later readings wait for done(), which knows whether the request was retried
        state.answered = True
        self._keep_reading(state, ticket, reading)
        state.mirror.observe(reading, mark=ticket.mark, in_flight=len(state.in_flight))
        self._first_reading(state)
        self._wake(state)

    # -- other clients of the account (see claude_magic._coordinator) ---------------------------------

    @staticmethod
    def _keep_reading(state: _Bucket, ticket: Ticket, reading: Mapping[str, Any]) -> None:
        left = state.mirror.left(ticket.mark)
        if left is not None and (state.shared is None or left > state.shared[1]):
            headers = {k: v for k, v in reading.items() if k.endswith(("-limit", "-remaining"))}
            if headers:
                state.shared = (headers, left)

    def _unseen(self, state: _Bucket, now: float) -> dict[str, float] | None:
        if not state.unseen or self.coordinator is None or self.coordinator.fresh(now) is None:
            return None
        return state.unseen

    def _share_delay(self, state: _Bucket, now: float) -> float:
        if state.allowance is None or self.coordinator is None or self.coordinator.fresh(now) is None:
            return 0.0
        return state.allowance.delay(now, state.mirror.costs())

    def _publish(self) -> dict[str, Any]:
        """This member's state for the others (on the loop): its buckets and its jobs, no prompt."""
        now = time.monotonic()
        buckets = {name: entry for name, state in self._buckets.items()
                   if (entry := state.published(now)) is not None}
        return {"buckets": buckets, "jobs": [self._job_entry(job) for job in self._jobs.values()]}

    def _job_entry(self, job: _Job) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": job.id, "buckets": sorted(job.buckets), "state": "running"}
        handle = self._handles.get(job.id)
        if handle is not None:
            with contextlib.suppress(Exception):  # a listing must not fail a beat
                progress = handle.progress
                entry.update(state=str(handle.state), done=progress.done, failed=progress.failed,
                             total=progress.total)
        return entry

    def _readings(self) -> dict[str, dict[str, Any]]:
        coordinator = self.coordinator
        assert coordinator is not None
        return {name: {"headers": state.shared[0], "sent": coordinator.store_time(state.shared[1])}
                for name, state in self._buckets.items() if state.shared is not None}

    def _apply(self, beat: Beat | None) -> None:
        """A heartbeat's news (None: the store failed, or this member left): shares, first readings."""
        now = time.monotonic()
        for state in self._buckets.values():
            if beat is not None:
                self._seed(state, beat, now)
            self._share(state, beat, now)

    def _share(self, state: _Bucket, beat: Beat | None, now: float) -> None:
        """This member's share of ``state``'s bucket by ``beat`` (and the mirror's rates: a bucket
        not yet read gets its share when its first reading comes)."""
        rates = state.mirror.rates()
        share = (allowance(beat.members, self.coordinator.member, state.name, rates)
                 if beat is not None and self.coordinator is not None else None)
        state.unseen = others_spend(beat.members, self.coordinator.member, state.name, UNSEEN) if (
            share is not None and beat is not None and self.coordinator is not None) else {}
        if share is None:
            state.allowance, state.share = None, None
        else:
            if state.allowance is None:
                state.allowance = Allowance()
            state.allowance.set(share, state.mirror.costs(), now)
            state.share = share["requests"] / rates["requests"] if "requests" in share else None
        self._wake(state)

    def _first_reading(self, state: _Bucket) -> None:
        if self.coordinator is not None and state.allowance is None:
            self._share(state, self.coordinator.fresh(), time.monotonic())

    def _others_busy(self, beat: Beat, bucket: str) -> bool:
        assert self.coordinator is not None
        return any(isinstance(entry := (s.get("buckets") or {}).get(bucket), dict) and entry.get("batch")
                   for m, s in beat.members.items() if m != self.coordinator.member)

    def _seed(self, state: _Bucket, beat: Beat, now: float) -> None:
        """A bucket this client never read starts from the group's freshest reading of it, if no
        other member is spending from it now: a reading taken before someone's burst would promise
        what that burst took (measured: two processes starting together, two to four 429s), and
        then the probe's own reading is the safe start."""
        reading = beat.readings.get(state.name)
        if (state.mirror.requests.rate is not None or not isinstance(reading, dict)
                or self.coordinator is None or self._others_busy(beat, state.name)):
            return
        headers, sent = reading.get("headers"), reading.get("sent")
        if not isinstance(headers, dict) or not isinstance(sent, (int, float)):
            return
        at = self.coordinator.local_time(float(sent))
        if 0 <= now - at <= READING_AGE:
            state.mirror.adopt(headers, at, now)
            state.answered = state.mirror.requests.rate is not None or state.answered

    def _wake(self, state: _Bucket) -> None:
        if state.changed is not None:
            state.changed.set()
