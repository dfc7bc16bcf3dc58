"""The live engine: ``client.acomplete`` per unique prompt, paced, within a budget.

When the requests share a prefix marked for the prompt cache (see ``_prefix``), the first marked
request goes alone and the others start once it has answered: the API can read a cache entry only
after the response that writes it has begun, so requests sent together would each write the prefix
(at 1.25x the input price) instead of one writing it and the rest reading it (0.1x).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import pricing
from .._scheduler import Priority, bucket_of, job_context
from ..errors import (
    AuthenticationError,
    BillingError,
    BudgetExceeded,
    ClaudeError,
    NotFoundError,
    OverloadedError,
    RateLimitError,
    SpendLimitReached,
)
from ..media import Media
from ..reply import Reply
from ._media import MediaPrompt, request_content, text_of
from ._pacing import DEFAULT_MAX_CONCURRENCY, START_WINDOW, _Window
from ._prefix import SharedPrefix, shared_prefix
from ._report import Stop, _Options, _State

if TYPE_CHECKING:
    from ..client import Client

log = logging.getLogger("claude_magic")

ABORT_AFTER = 3                       # identical failures, with no success yet, that stop a run
# Errors that every row of a run would get: stop at the first one rather than fail N rows. Not a
# 403: a permission can be about one prompt's content or options; when every row gets it, the
# ABORT_AFTER rule stops the run after a few.
_SHARED_ERRORS = (AuthenticationError, NotFoundError, BillingError, SpendLimitReached)


class _Budget:
    """Spend so far plus the worst case of what is in flight must stay within ``limit`` USD."""

    def __init__(self, limit: float, price: pricing.Price, max_tokens: int, batch: bool) -> None:
        self.limit = limit
        self.price = price
        self.max_tokens = max_tokens
        self.factor = pricing.BATCH_DISCOUNT if batch else 1.0
        self.spent = 0.0
        self.reserved: dict[int, float] = {}
        self.tokens_per_byte = 1 / 3  # prudent before the first reply (CJK is ~1 token per 3 bytes)
        self.input_price = price.input  # per input token; a run that writes the prompt cache pays more

    def cache_writes(self) -> None:
        """Requests may write the prompt cache: price their worst case as all input written."""
        self.input_price = max(self.price.input, self.price.cache_write_5m)

    def worst_case(self, prompt: str | MediaPrompt, system_tokens: int = 0) -> float:
        media = prompt.worst_tokens() if isinstance(prompt, MediaPrompt) else 0
        tokens = _size(prompt) * self.tokens_per_byte + media + system_tokens + 8
        usd = tokens * self.input_price + self.max_tokens * self.price.output
        return usd * self.factor / 1_000_000

    def too_big(self, prompt: str | MediaPrompt) -> BudgetExceeded | None:
        """The error for a prompt whose worst case alone passes the whole budget (it would stop
        every run at it), else None: such a row fails, the rows that fit go on."""
        need = self.worst_case(prompt)
        if need <= self.limit + 1e-12:
            return None
        return BudgetExceeded(f"worst case {_usd(need)} alone passes the budget {_usd(self.limit)}: "
                              "raise --budget or lower --max-tokens")

    def reserve(self, uid: int, prompt: str | MediaPrompt) -> bool:
        need = self.worst_case(prompt)
        if self.spent + sum(self.reserved.values()) + need > self.limit + 1e-12:
            return False
        self.reserved[uid] = need
        return True

    def settle(self, uid: int, reply: Reply | None, prompt: str | MediaPrompt) -> None:
        self.reserved.pop(uid, None)
        if reply is not None:
            self.spent += reply.cost or 0.0
            size = _size(prompt)
            # the text's share of the input: a medium's tokens are known (or its worst case taken)
            media = prompt.media_tokens()[0] if isinstance(prompt, MediaPrompt) else 0
            text_tokens = reply.usage.total_input - media
            if size and text_tokens > 0:
                # learn the prompt's ratio, rounded up, but never below a prudent floor; from all of its
                # input: input_tokens alone leaves out what the prompt cache wrote or read
                self.tokens_per_byte = max(self.tokens_per_byte * 0.5, text_tokens / size * 1.1, 1 / 8)


def _size(prompt: str | MediaPrompt) -> int:
    """UTF-8 bytes of the prompt's text (what the tokens-per-byte ratio is learnt over)."""
    return len(text_of(prompt).encode("utf-8", "surrogatepass"))


def _usd(usd: float) -> str:
    """Two significant digits however small (``$0.41``, ``$0.000030``): a budget of a few cents
    and a worst case just above it must read differently."""
    if usd >= 1:
        return f"${usd:,.2f}"
    decimals = max(2, 1 - math.floor(math.log10(usd))) if usd > 0 else 2
    return f"${usd:.{decimals}f}"


class _Live:
    """Send the prompts ``todo`` with ``client.acomplete`` on the client's loop, as batch job ``job``.

    The client's scheduler paces the starts (its mirror of the rate-limit bucket, headroom for
    interactive requests, fair share between jobs); this engine keeps the concurrency window and the
    budget: how many of its rows wait for admission or are in flight at once. ``prefix``: the marks
    for the prompt cache (None: none); while ``warming``, one request at a time, the first marked one
    first, until a marked one has answered.
    """

    def __init__(self, client: Client, opts: _Options, state: _State, todo: list[int],
                 budget: _Budget | None) -> None:
        self.client = client
        self.opts = opts
        self.state = state
        self.prefix: SharedPrefix | None = shared_prefix(state.plan, opts, todo)
        self.todo = deque(self._probe_first(todo))
        self.warming = self.prefix is not None
        self.budget = budget
        if budget is not None and self.prefix is not None:
            budget.cache_writes()
        cap = opts.concurrency or DEFAULT_MAX_CONCURRENCY
        self.window = _Window(cap, start=min(START_WINDOW, cap) if opts.concurrency is None else START_WINDOW)
        self.job: str | None = None  # set by the caller: the scheduler's id of this run
        self.mirror = client.scheduler.mirror(bucket_of("messages", opts.model))
        self.in_flight = 0
        self.latencies: deque[float] = deque(maxlen=100)
        self.successes = 0
        self.first_failures: list[tuple[Any, ...]] = []
        self.changed: asyncio.Event | None = None
        self.stop = False
        self.file_ids: dict[str, str] = {}  # sha256 -> the uploaded file the requests reference

    def _probe_first(self, todo: list[int]) -> list[int]:
        """``todo`` with its first marked prompt first (it writes the cache the others read)."""
        prefix, prompts = self.prefix, self.state.plan.prompts
        if prefix is None:
            return todo
        first = next((i for i, uid in enumerate(todo) if prefix.marks(prompts[uid])), 0)
        return [todo[first], *todo[:first], *todo[first + 1:]]

    async def run(self) -> None:
        with job_context(Priority.BATCH, self.job):  # its tasks' requests too (they copy the context)
            await self._run()

    async def _upload_shared(self) -> None:
        """Content that more than one of the requests to send holds goes up once (the Files API) and
        is referenced by ``file_id`` (the same logo in 5,000 rows: one upload, not 5,000 copies in
        base64). An upload that fails leaves those requests sending the bytes."""
        seen: dict[str, Media] = {}
        shared: dict[str, Media] = {}
        for uid in self.todo:
            prompt = self.state.plan.prompts[uid]
            media = {m.sha256: m for m in prompt.media} if isinstance(prompt, MediaPrompt) else {}
            for sha, medium in media.items():
                if medium.data is not None:
                    (shared if sha in seen else seen)[sha] = medium
        for sha, medium in shared.items():
            try:
                self.file_ids[sha] = await self.client.uploads.afile_id(medium)
            except ClaudeError as exc:
                log.warning("claude_magic: %s goes inline in each request: its Files API upload failed "
                            "(%s)", medium.where, exc)

    async def _run(self) -> None:
        self.changed = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        await self._upload_shared()
        try:
            while self.todo and not self.stop:
                if self.in_flight >= self._limit():
                    await self._wait_change(1.0)  # the mirror's spare may grow with time alone
                    continue
                if self.warming and self.in_flight:
                    await self._wait_change()  # the others read what the first writes
                    continue
                uid = self.todo[0]
                prompt = self.state.plan.prompts[uid]
                if self.budget is not None and (error := self.budget.too_big(prompt)) is not None:
                    self.todo.popleft()
                    self.state.refused(uid, error)
                    continue
                if self.budget is not None and not self.budget.reserve(uid, prompt):
                    if self.in_flight:
                        await self._wait_change()  # spend settles as requests finish; then try again
                        continue
                    self.state.stop_with(Stop.BUDGET)
                    break
                self.todo.popleft()
                started = time.monotonic()
                self._begin(uid)  # counted here, not in the task: it runs when this loop yields
                task = asyncio.create_task(self._one(uid, started))
                tasks.add(task)
                task.add_done_callback(self._done)
                task.add_done_callback(tasks.discard)
            while tasks:
                await asyncio.wait(set(tasks))
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(set(tasks), timeout=1.0)

    def _limit(self) -> int:
        """The window, plus what the mirrored bucket holds beyond it: a burst is spent at once, as
        an ideal client would (until the first congestion signal; then the window alone rules)."""
        spare = None if self.window.cuts else self.mirror.spare(time.monotonic())
        extra = int(spare) if spare is not None and spare > 0 else 0
        return min(self.window.cap, self.window.limit + extra)

    async def _wait_change(self, timeout: float | None = None) -> None:
        assert self.changed is not None
        self.changed.clear()
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _begin(self, uid: int) -> None:
        self.in_flight += 1
        self.state.progress.sent += 1
        self.state.progress.in_flight = self.in_flight

    async def _one(self, uid: int, started: float) -> None:
        prompt = self.state.plan.prompts[uid]
        prefix = self.prefix
        ask, marks = prefix.request(prompt) if prefix is not None else (prompt, {})
        # a media prompt's base64 exists while it is in flight; shared content is referenced by file_id
        ask = request_content(ask, self.opts.model, file_id=lambda m: self.file_ids.get(m.sha256))
        options = {**marks, **self.opts.call_options()}  # a cache_system the caller gave wins
        reply: Reply | None = None
        try:
            # Known misses: refresh=True skips the client's second lookup but still stores the answer.
            # Streamed while the bucket's size is unknown: its headers then end the scheduler's probe
            # at the first token, not a whole answer later.
            unread = self.mirror.requests.rate is None
            reply = await self.client.acomplete(
                ask, stream=unread, cache=self.opts.cache, refresh=self.opts.cache,
                priority=Priority.BATCH, job=self.job, **options)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is a row's failure; a bug too shows in the table
            self._failed(uid, exc, started)
        else:
            self.state.ok(uid, reply)
            if self.warming and prefix is not None and prefix.marks(prompt):
                self._warmed(reply)
            self.successes += 1
            if reply.retries:
                self._congestion(started)
            else:
                self.window.success()
                self._learn_latency(reply.latency)  # from its admission: queued time is not service
        finally:
            self.in_flight -= 1
            self.state.progress.in_flight = self.in_flight
            assert self.changed is not None
            self.changed.set()
            if self.budget is not None:
                self.budget.settle(uid, reply, prompt)

    def _warmed(self, reply: Reply) -> None:
        """The first marked request answered: the others may go. When it neither wrote nor read the
        cache, the prefix is below the model's real minimum (its estimate was too high, or the minimum
        is not the documented one): the rest go without marks, which would do nothing."""
        self.warming = False
        if not (reply.usage.cache_creation_input_tokens or reply.usage.cache_read_input_tokens):
            self.prefix = None

    def _done(self, task: asyncio.Task[None]) -> None:
        """A request's own failures are its row's; one that escapes ``_one`` is a bug of ours:
        stop the run with it rather than lose it (or wait forever for the task to report)."""
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._abort(exc)
            assert self.changed is not None
            self.changed.set()

    def _learn_latency(self, seconds: float) -> None:
        # A low percentile, not the mean: the service time, which stalls (queues anywhere on the way)
        # must not inflate, or a slow spell would widen the window and feed itself.
        self.latencies.append(seconds)
        if (rate := self.mirror.requests.rate) is not None and len(self.latencies) >= 3:
            service = float(np.percentile(np.fromiter(self.latencies, dtype=float), 20))
            self.window.sized_for(rate, service)

    def _congestion(self, started: float) -> None:
        """A 429/529 (or a retry): a smaller window, once per round trip (the scheduler makes its
        mirror more prudent)."""
        self.window.congestion(started)

    def _failed(self, uid: int, exc: Exception, started: float) -> None:
        self.state.fail(uid, exc)
        if isinstance(exc, (RateLimitError, OverloadedError)) and not isinstance(exc, SpendLimitReached):
            self._congestion(started)
        if isinstance(exc, _SHARED_ERRORS):
            self._abort(exc)
            return
        if self.successes == 0:
            self.first_failures.append((type(exc), getattr(exc, "status", None), getattr(exc, "type", None)))
            if len(self.first_failures) >= ABORT_AFTER and len(set(self.first_failures)) == 1:
                self._abort(exc)

    def _abort(self, exc: BaseException) -> None:
        if self.stop:
            return
        self.stop = True
        error = exc if isinstance(exc, ClaudeError) else ClaudeError(f"{type(exc).__name__}: {exc}")
        self.state.aborted = error
        self.state.stop_with(Stop.EARLY, f": {error}")
