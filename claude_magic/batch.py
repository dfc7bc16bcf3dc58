"""Map a prompt template over the rows of a table: render, dedupe, cache, send, report.

``map_prompts(template, data)`` returns a Series of answers aligned to ``data``'s index;
``run_batch`` takes the same arguments and returns a :class:`BatchResult` that also holds
the errors table, the summary and (for ``dry_run=True``) the estimate. No IPython here:
``batch_magic`` is a thin layer over this module.

How a run goes:

1. **Render** — placeholders follow :mod:`claude_magic.interpolate` (the one rendering rule of
   the package: ``{col}``, ``{{literal}}``, JSON/LaTeX braces untouched). They name columns
   of a DataFrame, or ``{value}`` (or the Series' name) for a Series or list; any other
   name is a ConfigError before anything is sent. Rows are factorised over the columns the
   template uses, so only distinct value combinations are rendered (linear in the rows).
   Rows with a missing value (NaN/None) in a used column are skipped and reported.
2. **Dedupe and cache** — identical prompts are sent once; the response cache is asked
   first (``client.cache_key(client.build_body(...))``, the client's own key), so a re-run
   after a crash, an interrupt or a restart sends only what is missing.
3. **Send** — ``api="live"``: ``client.acomplete(stream=False)`` on the client's event loop
   with a concurrency window that adapts (AIMD: slow start from 16, +1 per window of
   successes, halved when a request needed a retry or failed with 429/529; ``concurrency``
   caps it), request starts paced by a mirror of the account's buckets built from the
   ``anthropic-ratelimit-*`` headers (see :class:`_Bucket`), and the client's own
   client-wide pause on ``retry-after``. ``api="batch"``: Message Batches at half price
   (see :func:`_run_batches`); the batch id is kept in the cache's meta table so that a
   restart resumes polling instead of paying again.
4. **Report** — per-row failures never abort the run (they are in ``BatchResult.errors``);
   only failures every row would share (bad key, bad model, no permission, spend cap, or
   the first three requests failing alike with no success) stop it early.

Interrupts: the engine runs on the client's loop thread while the calling thread polls it
(and draws progress); Ctrl-C cancels the engine within a second and raises
:class:`BatchInterrupted`, a ``KeyboardInterrupt`` that carries the partial ``BatchResult``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from . import _wire, pricing
from .errors import (
    APIError,
    AuthenticationError,
    BillingError,
    ClaudeError,
    ConfigError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    SpendLimitReached,
    error_for_status,
)
from .interpolate import interpolate, placeholders
from .reply import Reply

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "BatchInterrupted",
    "BatchResult",
    "BatchSummary",
    "DryRunReport",
    "Progress",
    "map_prompts",
    "plan_prompts",
    "run_batch",
]

MAX_BATCH_REQUESTS = 100_000          # per Message Batch (api-notes §5)
MAX_BATCH_BYTES = 256 * 1024 * 1024   # per Message Batch (api-notes §5)
DEFAULT_MAX_CONCURRENCY = 64          # the adaptive window's ceiling when no --concurrency is given
START_WINDOW = 16
DRY_RUN_SAMPLE = 50                   # count_tokens calls at most, for a dry run
ADMIT_LAG = 0.01                      # s: from a request leaving to its reading (first guess)
SENT_SLACK = 0.002                    # s: requests that left this much earlier may arrive later
MAX_ADMIT_LAG = 1.0
NEED_MARGIN = 1.25                    # in-flight requests beyond rate x latency, for latency jitter
ABORT_AFTER = 3                       # identical failures, with no success yet, that stop a run
META_PREFIX = "claude_magic.batch:"
# Errors that every row of a run would get: stop at the first one rather than fail N rows.
_SHARED_ERRORS = (AuthenticationError, PermissionDeniedError, NotFoundError, BillingError, SpendLimitReached)
_MISSING_TEXT = None


# --------------------------------------------------------------------------------------------------
# Rendering: template + rows -> unique prompts and a code per row


@dataclass
class PromptPlan:
    """The rows of a run reduced to unique prompts.

    ``codes[i]`` is the unique prompt of row ``i`` (position, not label), -1 for a row skipped
    because a used column is missing there. ``missing`` names, per skipped row position, the
    first missing column.
    """

    index: pd.Index
    codes: np.ndarray
    prompts: list[str]
    columns: list[str]
    skipped: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def rows(self) -> int:
        return len(self.codes)

    def rows_per_prompt(self) -> np.ndarray:
        valid = self.codes[self.codes >= 0]
        return np.bincount(valid, minlength=len(self.prompts)).astype(np.int64)


def _as_frame(data: Any) -> tuple[pd.DataFrame, dict[str, str]]:
    """``data`` as a DataFrame plus placeholder aliases ({value} and a Series' name)."""
    if isinstance(data, pd.DataFrame):
        return data, {}
    if isinstance(data, pd.Series):
        name = data.name if isinstance(data.name, str) and data.name.isidentifier() else None
        frame = data.to_frame(name="value")
        return frame, ({name: "value"} if name and name != "value" else {})
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise ConfigError(f"data must be a DataFrame, a Series or a list of strings, "
                          f"got {type(data).__name__}")
    return pd.DataFrame({"value": pd.Series(list(data), dtype=object)}), {}


def _first_name(expr: str) -> str:
    end = 0
    while end < len(expr) and (expr[end].isalnum() or expr[end] == "_"):
        end += 1
    return expr[:end]


def _template_columns(template: str, frame: pd.DataFrame, aliases: Mapping[str, str]) -> list[str]:
    """The columns the template uses (ConfigError for a name that is not one)."""
    if not isinstance(template, str) or not template.strip():
        raise ConfigError("the template is empty: write the prompt with {column} placeholders")
    columns: list[str] = []
    for expr in placeholders(template):
        name = _first_name(expr)
        column = aliases.get(name, name)
        if column not in frame.columns:
            have = ", ".join(map(str, list(frame.columns)[:30])) + (" …" if len(frame.columns) > 30 else "")
            if set(frame.columns) == {"value"}:
                have = "value" + "".join(f" (or {a})" for a in aliases)
            raise ConfigError(f"template placeholder {{{expr}}} names no column; the data has: {have} "
                              f"(write {{{{{expr}}}}} for a literal brace)")
        if column not in columns:
            columns.append(column)
    return columns


def _factorize(column: pd.Series) -> np.ndarray:
    try:
        codes, _ = pd.factorize(column, use_na_sentinel=True)
    except TypeError:  # unhashable cells (lists, dicts): group them by their text
        codes, _ = pd.factorize(column.map(lambda v: v if _is_missing(v) else repr(v)), use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # array-like cells are values, not missing
        return False


def _group_codes(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One code per distinct combination of ``columns`` (-1 where any is missing), and the
    position of the first row of each code."""
    n = len(frame)
    if not columns:
        return np.zeros(n, dtype=np.int64), np.zeros(1 if n else 0, dtype=np.int64)
    codes = np.zeros(n, dtype=np.int64)
    missing = np.zeros(n, dtype=bool)
    for column in columns:
        c = _factorize(frame[column])
        missing |= c < 0
        # combine pairwise and re-factorise so the numbers stay small whatever the column count
        codes = pd.factorize(codes * (int(c.max(initial=0)) + 2) + (c + 1))[0].astype(np.int64)
    codes[missing] = -1
    valid = np.flatnonzero(~missing)
    remap, first = np.unique(codes[valid], return_index=True)
    dense = np.full(n, -1, dtype=np.int64)
    # renumber groups in order of first appearance, so prompt order follows row order
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    dense[valid] = rank[np.searchsorted(remap, codes[valid])]
    return dense, valid[first[order]]


def _renderer(template: str, aliases: Mapping[str, str]) -> Callable[[dict[str, Any]], str]:
    """``row -> prompt`` through :func:`interpolate`. When every placeholder is a bare name, the
    template is interpolated once with markers and split, so each row is a join (same output)."""
    exprs = placeholders(template)
    names = [_first_name(e) for e in exprs]
    if names == exprs:
        marker = "\x00\ue000{}\ue000\x00"
        if "\ue000" not in template:
            marks = {name: marker.format(i) for i, name in enumerate(dict.fromkeys(names))}
            pieces = interpolate(template, marks).split("\x00")
            slots: list[tuple[bool, str]] = []
            index_of = {marker.format(i).strip("\x00"): name for i, name in enumerate(dict.fromkeys(names))}
            for piece in pieces:
                slots.append((True, aliases.get(index_of[piece], index_of[piece])) if piece in index_of
                             else (False, piece))

            def fast(row: dict[str, Any]) -> str:
                return "".join(str(row[v]) if is_field else v for is_field, v in slots)

            return fast

    def slow(row: dict[str, Any]) -> str:
        namespace = dict(row)
        namespace.update({alias: row[column] for alias, column in aliases.items()})
        return interpolate(template, namespace)

    return slow


def plan_prompts(template: str, data: Any) -> PromptPlan:
    """Render ``template`` over ``data`` into unique prompts (see the module doc); sends nothing."""
    frame, aliases = _as_frame(data)
    columns = _template_columns(template, frame, aliases)
    groups, first_rows = _group_codes(frame, columns)
    render = _renderer(template, aliases)
    sub = frame[columns] if columns else None
    prompt_ids: dict[str, int] = {}
    group_to_prompt = np.empty(len(first_rows), dtype=np.int64)
    for g, pos in enumerate(first_rows):
        row = {c: sub.iat[int(pos), i] for i, c in enumerate(columns)} if sub is not None else {}
        prompt = render(row)
        group_to_prompt[g] = prompt_ids.setdefault(prompt, len(prompt_ids))
    codes = np.where(groups >= 0, group_to_prompt[np.maximum(groups, 0)] if len(first_rows) else -1, -1)
    return PromptPlan(index=frame.index, codes=codes.astype(np.int64), prompts=list(prompt_ids),
                      columns=columns, skipped=np.flatnonzero(groups < 0))


# --------------------------------------------------------------------------------------------------
# What a run reports


@dataclass
class Progress:
    """A snapshot of a run, handed to the ``progress`` callback on the calling thread.

    Row counts: ``done`` rows have an answer (``cached`` of them from the response cache),
    ``failed`` rows got an error, ``skipped`` rows had a missing value; ``total`` is every row.
    ``sent``/``in_flight`` count requests (unique prompts). ``rate`` is requests finished per
    second, ``eta`` seconds left (None until known), ``cost`` USD spent so far by this run.
    """

    total: int
    done: int = 0
    cached: int = 0
    failed: int = 0
    skipped: int = 0
    sent: int = 0
    in_flight: int = 0
    requests_total: int = 0
    requests_done: int = 0
    cost: float = 0.0
    elapsed: float = 0.0
    rate: float = 0.0
    eta: float | None = None
    status: str = "starting"
    finished: bool = False

    def line(self) -> str:
        """A one-line text rendering (what the text progress bar shows)."""
        parts = [f"{self.done + self.failed + self.skipped:,}/{self.total:,} rows"]
        if self.cached:
            parts.append(f"{self.cached:,} cached")
        if self.failed:
            parts.append(f"{self.failed:,} failed")
        if self.skipped:
            parts.append(f"{self.skipped:,} skipped")
        if self.rate:
            parts.append(f"{self.rate:.1f} req/s")
        if self.eta is not None and not self.finished:
            parts.append(f"ETA {_duration(self.eta)}")
        parts.append(pricing.format_cost(self.cost))
        if self.status not in ("live", "done"):
            parts.append(self.status)
        return " · ".join(parts)


@dataclass
class BatchSummary:
    """Counts of a run; ``str()`` is the one-line summary printed at the end."""

    rows: int
    unique: int
    cached_rows: int = 0
    cached_prompts: int = 0
    sent: int = 0
    succeeded_rows: int = 0
    failed_rows: int = 0
    skipped_rows: int = 0
    remaining_rows: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    retries: int = 0
    cost: float | None = 0.0
    seconds: float = 0.0
    api: str = "live"
    stopped: str | None = None
    batch_ids: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return max(0, self.rows - self.skipped_rows - self.unique)

    def __str__(self) -> str:
        parts = [f"{self.rows:,} rows → {self.unique:,} unique prompts"]
        parts.append(f"{self.cached_rows:,} rows from cache")
        parts.append(f"{self.sent:,} sent" + (" (Message Batches)" if self.api == "batch" else ""))
        if self.failed_rows:
            parts.append(f"{self.failed_rows:,} failed")
        if self.skipped_rows:
            parts.append(f"{self.skipped_rows:,} skipped (missing values)")
        if self.remaining_rows:
            parts.append(f"{self.remaining_rows:,} not run")
        if self.retries:
            parts.append(f"{self.retries:,} retr{'y' if self.retries == 1 else 'ies'}")
        parts.append(f"{self.input_tokens:,} in / {self.output_tokens:,} out tokens")
        at_batch_price = self.api == "batch" and self.sent
        parts.append(pricing.format_cost(self.cost) + (" at batch price" if at_batch_price else ""))
        parts.append(_duration(self.seconds))
        line = " · ".join(parts)
        return f"{line} — {self.stopped}" if self.stopped else line

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}


@dataclass
class DryRunReport:
    """What a run would send and cost; nothing was sent but ``count_tokens`` calls.

    ``input_tokens`` estimates the input of the prompts to send (exact when ``counted`` equals
    ``to_send``, else a ratio estimate from a sample spread over prompt lengths, with
    ``input_tokens_low``/``_high`` about two standard errors apart). The cost range runs from
    no output at all to ``max_tokens`` output for every prompt.
    """

    rows: int
    skipped: int
    unique: int
    cached: int
    to_send: int
    counted: int
    input_tokens: int
    input_tokens_low: int
    input_tokens_high: int
    max_tokens: int
    model: str
    api: str
    cost_low: float | None
    cost_high: float | None

    @property
    def duplicates(self) -> int:
        return max(0, self.rows - self.skipped - self.unique)

    def __str__(self) -> str:
        skipped = f", {self.skipped:,} skipped for missing values" if self.skipped else ""
        duplicates = f"{self.duplicates:,} duplicate row{'' if self.duplicates == 1 else 's'}"
        head = (f"dry run: {self.rows:,} rows → {self.unique:,} unique prompts "
                f"({duplicates}{skipped}), "
                f"{self.cached:,} cached, {self.to_send:,} to send to {self.model}")
        if not self.to_send:
            return head + "; nothing to pay"
        if self.counted == self.to_send:
            tokens = f"input {self.input_tokens:,} tokens (counted)"
        else:
            spread = f"{self.input_tokens_low:,}–{self.input_tokens_high:,}"
            tokens = f"input ≈ {self.input_tokens:,} tokens ({spread}, from a sample of {self.counted:,})"
        price = "at batch price" if self.api == "batch" else "at live price"
        cost = "cost unknown"
        if self.cost_low is not None:
            cost = (f"{pricing.format_cost(self.cost_low)}–{pricing.format_cost(self.cost_high)} {price} "
                    f"(output 0–{self.max_tokens:,} tokens each)")
        return f"{head}; {tokens}; {cost}"


@dataclass
class BatchResult:
    """Everything a run produced.

    ``series``: answers aligned to the data's index (missing = ``pd.NA``) · ``errors``: one line
    per failed row (``row``, ``status``, ``type``, ``message``) · ``skipped``: row labels with a
    missing value · ``remaining``: rows not run (budget, interrupt, early stop) · ``summary`` ·
    ``dry_run``: the estimate when ``dry_run=True`` · ``aborted``: the error that stopped the run.
    """

    series: pd.Series
    errors: pd.DataFrame
    skipped: pd.Index
    remaining: pd.Index
    summary: BatchSummary
    dry_run: DryRunReport | None = None
    aborted: ClaudeError | None = None

    def __repr__(self) -> str:
        return f"BatchResult({self.dry_run if self.dry_run is not None else self.summary})"


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; ``result`` holds every row finished before it."""

    def __init__(self, result: BatchResult, message: str) -> None:
        super().__init__(message)
        self.result = result


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


# --------------------------------------------------------------------------------------------------
# Options and the shared state of a run (written on the loop thread, read on the calling thread)


@dataclass
class _Options:
    model: str
    max_tokens: int
    system: str | None
    concurrency: int | None
    api: str
    budget: float | None
    cache: bool
    refresh: bool
    poll_interval: float
    body_options: dict[str, Any]

    def body(self, client: Client, prompt: str) -> dict[str, Any]:
        return client.build_body(prompt, model=self.model, max_tokens=self.max_tokens, system=self.system,
                                 **self.body_options)

    def call_options(self) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens, "system": self.system,
                **self.body_options}


class _State:
    """Per-prompt outcomes and running counters of one run."""

    def __init__(self, plan: PromptPlan) -> None:
        self.plan = plan
        n = len(plan.prompts)
        self.weights = plan.rows_per_prompt()
        self.texts: list[str | None] = [None] * n
        self.cached = np.zeros(n, dtype=bool)
        self.errors: dict[int, ClaudeError | BaseException] = {}
        self.progress = Progress(total=plan.rows, skipped=len(plan.skipped))
        self.started = time.monotonic()
        self.finished_times: deque[float] = deque(maxlen=200)
        self.input_tokens = self.output_tokens = 0
        self.retries = 0
        self.cost: float | None = 0.0
        self.stopped: str | None = None
        self.aborted: ClaudeError | None = None
        self.batch_ids: list[str] = []

    def hit(self, uid: int, text: str) -> None:
        self.texts[uid] = text
        self.cached[uid] = True
        self.progress.done += int(self.weights[uid])
        self.progress.cached += int(self.weights[uid])

    def ok(self, uid: int, reply: Reply) -> None:
        self.texts[uid] = reply.text
        self.progress.done += int(self.weights[uid])
        self.progress.requests_done += 1
        self._account(reply)

    def fail(self, uid: int, error: BaseException) -> None:
        self.errors[uid] = error
        self.progress.failed += int(self.weights[uid])
        self.progress.requests_done += 1
        self.finished_times.append(time.monotonic())

    def invalid(self, uid: int, error: ConfigError) -> None:
        """A prompt the API would refuse (checked before sending): its rows fail, nothing is sent."""
        self.errors[uid] = error
        self.progress.failed += int(self.weights[uid])

    def _account(self, reply: Reply) -> None:
        self.finished_times.append(time.monotonic())
        self.input_tokens += reply.usage.total_input
        self.output_tokens += reply.usage.output_tokens
        self.retries += reply.retries + reply.resumed
        if reply.cost is None:
            self.cost = None
        elif self.cost is not None:
            self.cost += reply.cost
            self.progress.cost = self.cost

    def snapshot(self) -> Progress:
        p = self.progress
        now = time.monotonic()
        p.elapsed = now - self.started
        times = self.finished_times
        if len(times) >= 2 and now - times[0] > 0:
            p.rate = len(times) / max(now - times[0], 1e-9)
        left = p.requests_total - p.requests_done
        p.eta = left / p.rate if p.rate > 0 else None
        return Progress(**p.__dict__)


# --------------------------------------------------------------------------------------------------
# Pacing: the adaptive window and the rate-limit headers


class _Window:
    """AIMD concurrency: slow start (+1 per success) up to the first congestion signal, then
    +1 per window of successes; halved on a congestion signal, at most once per round trip
    (signals from requests started before the last cut are ignored).

    ``need`` (set once the rate limit and the latency are known) bounds it further: more than
    rate x latency requests in flight cannot go faster, they only hold connections.
    """

    def __init__(self, cap: int, start: int = START_WINDOW) -> None:
        self.cap = max(1, cap)
        self.size = float(min(start, self.cap))
        self.threshold = float(self.cap)
        self.last_cut = float("-inf")
        self.cuts = 0
        self.need = float("inf")

    @property
    def limit(self) -> int:
        return max(1, int(min(self.size, self.need)))

    def sized_for(self, per_second: float, latency: float) -> None:
        """Rate x latency requests in flight reach the limit (Little's law). Once the rate limit is
        known the window opens to that at once (the pacer still spaces the starts by the bucket):
        slow start is for an unknown limit. Before a congestion signal only: after one, AIMD rules."""
        self.need = per_second * latency * NEED_MARGIN + 2
        if not self.cuts:
            self.size = max(self.size, min(float(self.cap), self.need))

    def success(self) -> None:
        step = 1.0 if self.size < self.threshold else 1.0 / self.size
        self.size = min(float(self.cap), self.size + step)

    def congestion(self, started_at: float) -> bool:
        """Cut the window; False if the signal is from before the last cut (already answered)."""
        if started_at <= self.last_cut:
            return False
        self.threshold = max(1.0, self.size / 2)
        self.size = self.threshold
        self.last_cut = time.monotonic()
        self.cuts += 1
        return True


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class _Bucket:
    """The account's token bucket for one limit (``anthropic-ratelimit-<name>-*``), mirrored.

    The server reads its bucket when it admits a request and sends that reading with the
    answer; for a non-streamed answer that is a whole latency later, and meanwhile the bucket
    refilled and other requests spent from it. So a reading is dated when its request left and
    replayed like the server would: refill (capped at the most ever seen remaining), minus each
    request the reading did not count (see :meth:`_Pacer.observe`). Dated at receipt instead,
    the mirror would lag by rate x latency requests, and the server's bucket would idle that
    full for the whole run.

    The mirror is the lowest of the last ``KEEP`` replayed readings: one reading that counted
    a request the replay thinks it did not (the server's threads race too) cannot promise a
    start the server would refuse.
    """

    KEEP = 8

    def __init__(self, name: str) -> None:
        self.name = name
        self.rate: float | None = None
        # The most ever seen remaining: the bucket holds at least that much, and the mirror never
        # refills beyond it (an old reading must not promise a burst the server will refuse).
        self.ceiling = 0.0
        self.views: deque[list[float]] = deque(maxlen=self.KEEP)  # [level, at] per replayed reading

    def _refilled(self, level: float, since: float, now: float) -> float:
        assert self.rate is not None
        level += self.rate * max(0.0, now - since)
        return min(self.ceiling, level) if self.ceiling >= 1 else level

    def read(self, ratelimit: Mapping[str, Any], *, at: float | None = None, uncounted: Iterable[float] = (),
             cost: float = 1.0, in_flight: int = 0) -> None:
        """Take a reading the server made at ``at`` (our clock), before the requests that left at
        the times ``uncounted`` (ascending), each of which spends ``cost``.

        Without ``at`` (a retried request: which attempt's reading is it?) the reading is dated
        at receipt less ``in_flight`` requests: everything in flight may be uncounted.
        """
        limit = _number(ratelimit.get(f"{self.name}-limit"))
        remaining = _number(ratelimit.get(f"{self.name}-remaining"))
        received = _number(ratelimit.get("at"))
        if limit is None or remaining is None or received is None or limit <= 0:
            return
        if self.name != "requests" and remaining % 1000 == 0:
            remaining -= 500  # token counts are rounded to the nearest thousand: maybe up by 500
        self.rate = limit / 60.0
        self.ceiling = max(self.ceiling, remaining)
        if at is None:
            self.views.append([remaining - in_flight * cost, received])
            return
        level = remaining
        for left in uncounted:
            level = self._refilled(level, at, left) - cost
            at = max(at, left)
        self.views.append([level, at])

    def available(self, now: float) -> float | None:
        if self.rate is None or not self.views:
            return None
        return min(self._refilled(level, at, now) for level, at in self.views)

    def delay(self, now: float, cost: float) -> float:
        available = self.available(now)
        if available is None or cost <= 0 or self.rate is None:
            return 0.0
        return 0.0 if available >= cost else (cost - available) / self.rate

    def take(self, cost: float, now: float) -> None:
        """Spend ``cost`` now, in every view as the server would (refill capped, then spent)."""
        if self.rate is not None:
            for view in self.views:
                view[0] = self._refilled(view[0], view[1], now) - cost
                view[1] = now


class _Pacer:
    """Request starts paced by every bucket the API reports: requests, and the tokens ones
    (``input-tokens``, ``output-tokens``, and ``tokens`` for both), each spent by what an
    average request of this run costs it."""

    NAMES = ("requests", "input-tokens", "output-tokens", "tokens")

    def __init__(self) -> None:
        self.buckets = {name: _Bucket(name) for name in self.NAMES}
        self.requests = self.buckets["requests"]
        self.seen_at: Any = None
        self.input_tokens = 0.0   # per request, a moving average (prompts of a run are alike, not equal)
        self.output_tokens = 0.0
        # How long after it left a request is admitted (and its reading made). Guessed short; a
        # longer way to the server shows as a 429 despite the mirror: then doubled.
        self.lag = ADMIT_LAG
        # Every start not yet forgotten: mark -> [started, left] (left = inf until it has).
        self.starts: dict[int, list[float]] = {}
        self.mark = 0

    def cost(self, name: str) -> float:
        return {"requests": 1.0, "input-tokens": self.input_tokens, "output-tokens": self.output_tokens,
                "tokens": self.input_tokens + self.output_tokens}[name]

    def take(self, now: float) -> int:
        """Spend one request's worth from every bucket; returns the start's mark."""
        for name, bucket in self.buckets.items():
            bucket.take(self.cost(name), now)
        self.mark += 1
        self.starts[self.mark] = [now, math.inf]
        return self.mark

    def sent(self, mark: int, at: float) -> None:
        """The request of ``mark`` left (again, for a retry) at ``at``."""
        if (start := self.starts.get(mark)) is not None:
            start[1] = at

    def forget(self, in_flight: Iterable[int]) -> None:
        """Drop the starts no reading to come can have missed: those that left (a little) before
        every request still in flight started."""
        alive = set(in_flight)
        floor = min((self.starts[m][0] for m in alive if m in self.starts), default=math.inf) - SENT_SLACK
        while self.starts:
            mark, (_, left) = next(iter(self.starts.items()))
            if mark in alive or left >= floor:
                break
            del self.starts[mark]

    def observe(self, ratelimit: Mapping[str, Any], *, mark: int | None = None, in_flight: int = 0) -> None:
        """Read the headers of the answer to the start ``mark``: the server counted the requests
        that reached it first, i.e. (give or take ``SENT_SLACK``) that left before this one; the
        rest are replayed. Without ``mark`` (or if it never left), dated at receipt, less
        ``in_flight`` requests."""
        received = ratelimit.get("at")
        if received is None or received == self.seen_at:
            return
        self.seen_at = received
        start = self.starts.get(mark) if mark is not None else None
        at: float | None = None
        uncounted: list[float] = []
        if start is not None and start[1] < math.inf:
            left = start[1]
            at = left + self.lag
            uncounted = sorted(min(s, w) if w == math.inf else w for m, (s, w) in self.starts.items()
                               if m != mark and w > left - SENT_SLACK)
        for name, bucket in self.buckets.items():
            bucket.read(ratelimit, at=at, uncounted=uncounted, cost=self.cost(name), in_flight=in_flight)

    def congested(self) -> None:
        self.lag = min(MAX_ADMIT_LAG, self.lag * 2)

    def learn(self, reply: Reply) -> None:
        def average(old: float, new: float) -> float:
            return new if not old else 0.9 * old + 0.1 * new

        self.input_tokens = average(self.input_tokens, reply.usage.total_input)
        self.output_tokens = average(self.output_tokens, reply.usage.output_tokens)

    def delay(self, now: float) -> float:
        return max(bucket.delay(now, self.cost(name)) for name, bucket in self.buckets.items())

    def spare(self, now: float) -> float | None:
        """How many more requests the buckets hold now (None: no bucket known yet)."""
        counts = [level / cost for name, bucket in self.buckets.items()
                  if (cost := self.cost(name)) > 0 and (level := bucket.available(now)) is not None]
        return min(counts) if counts else None


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

    def worst_case(self, prompt: str, system_tokens: int = 0) -> float:
        tokens = len(prompt.encode("utf-8")) * self.tokens_per_byte + system_tokens + 8
        usd = tokens * self.price.input + self.max_tokens * self.price.output
        return usd * self.factor / 1_000_000

    def reserve(self, uid: int, prompt: str) -> bool:
        need = self.worst_case(prompt)
        if self.spent + sum(self.reserved.values()) + need > self.limit + 1e-12:
            return False
        self.reserved[uid] = need
        return True

    def settle(self, uid: int, reply: Reply | None, prompt: str) -> None:
        self.reserved.pop(uid, None)
        if reply is not None:
            self.spent += reply.cost or 0.0
            size = len(prompt.encode("utf-8"))
            if size and reply.usage.total_input:
                # learn the prompt's ratio, rounded up, but never below a prudent floor
                self.tokens_per_byte = max(self.tokens_per_byte * 0.5, reply.usage.input_tokens / size * 1.1,
                                           1 / 8)


# --------------------------------------------------------------------------------------------------
# The live engine


class _Live:
    """Send the prompts ``todo`` with ``client.acomplete`` on the client's loop."""

    def __init__(self, client: Client, opts: _Options, state: _State, todo: list[int],
                 budget: _Budget | None) -> None:
        self.client = client
        self.opts = opts
        self.state = state
        self.todo = deque(todo)
        self.budget = budget
        cap = opts.concurrency or DEFAULT_MAX_CONCURRENCY
        self.window = _Window(cap, start=min(START_WINDOW, cap) if opts.concurrency is None else START_WINDOW)
        self.pacer = _Pacer()
        self.pacer.observe(client.ratelimit)  # the client's last reading: a second run starts paced
        self.in_flight = 0
        self.marks: dict[int, int] = {}
        self.latencies: deque[float] = deque(maxlen=100)
        self.successes = 0
        self.first_failures: list[tuple[Any, ...]] = []
        self.changed: asyncio.Event | None = None
        self.stop = False

    async def run(self) -> None:
        self.changed = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while self.todo and not self.stop:
                if self.in_flight >= self._limit():
                    await self._wait_change()
                    continue
                wait = self.pacer.delay(time.monotonic())
                if wait > 0:
                    await self._wait_change(min(wait, 1.0))
                    continue
                uid = self.todo[0]
                if self.budget is not None and not self.budget.reserve(uid, self.state.plan.prompts[uid]):
                    if self.in_flight:
                        await self._wait_change()  # spend settles as requests finish; then try again
                        continue
                    self.state.stopped = "stopped before the spend would pass the budget"
                    break
                self.todo.popleft()
                started = time.monotonic()
                # counted here, not in the task: it runs when this loop yields
                self._begin(uid, self.pacer.take(started))
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
        spare = None if self.window.cuts else self.pacer.spare(time.monotonic())
        extra = int(spare) if spare is not None and spare > 0 else 0
        return min(self.window.cap, self.window.limit + extra)

    async def _wait_change(self, timeout: float | None = None) -> None:
        assert self.changed is not None
        self.changed.clear()
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _begin(self, uid: int, mark: int) -> None:
        self.marks[uid] = mark
        self.in_flight += 1
        self.state.progress.sent += 1
        self.state.progress.in_flight = self.in_flight

    async def _one(self, uid: int, started: float) -> None:
        prompt = self.state.plan.prompts[uid]
        reply: Reply | None = None
        try:
            # Known misses: refresh=True skips the client's second lookup but still stores the answer.
            mark = self.marks[uid]
            reply = await self.client.acomplete(
                prompt, stream=False, cache=self.opts.cache, refresh=self.opts.cache,
                on_sent=lambda t: self.pacer.sent(mark, t), **self.opts.call_options())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is a row's failure; a bug too shows in the table
            self._failed(uid, exc, started)
        else:
            self.state.ok(uid, reply)
            self.successes += 1
            self.pacer.learn(reply)
            if reply.retries:
                self._congestion(started)
            else:
                self.window.success()
                self._learn_latency(time.monotonic() - started)
        finally:
            self.in_flight -= 1
            mark = self.marks.pop(uid)
            self.state.progress.in_flight = self.in_flight
            assert self.changed is not None
            self.changed.set()
            if self.budget is not None:
                self.budget.settle(uid, reply, prompt)
            self._read_headers(mark if reply is not None and not reply.retries else None)
            self.pacer.forget(self.marks.values())

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
        if self.pacer.requests.rate is not None and len(self.latencies) >= 3:
            service = float(np.percentile(np.fromiter(self.latencies, dtype=float), 20))
            self.window.sized_for(self.pacer.requests.rate, service)

    def _read_headers(self, mark: int | None) -> None:
        """Mirror the rate-limit headers of the response that just arrived.

        No task ran between the client noting this response's headers and this code (no await in
        between), so ``client.ratelimit`` is this request's. For a retried or failed request
        (``mark`` None) which attempt it is from is unknown: dated at receipt, with everything in
        flight subtracted (prudent).
        """
        self.pacer.observe(self.client.ratelimit, mark=mark, in_flight=self.in_flight)

    def _congestion(self, started: float) -> None:
        """A 429/529 (or a retry): a smaller window and a more prudent mirror, once per round trip."""
        if self.window.congestion(started):
            self.pacer.congested()

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
        self.state.stopped = f"stopped early: {error}"


# --------------------------------------------------------------------------------------------------
# The Message Batches engine


def _result_error(result: dict[str, Any]) -> ClaudeError:
    kind = result.get("type")
    if kind == "errored":
        outer: dict[str, Any] = result.get("error") or {}
        nested = outer.get("error")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else outer
        etype = inner.get("type") or "api_error"
        status = _wire.status_of_type(etype)
        return error_for_status(status, etype)(inner.get("message") or "the request errored in the batch",
                                                status=status, type=etype, request_id=outer.get("request_id"))
    return APIError(f"the request was {kind} in the Message Batch", status=0, type=str(kind))


def _chunks(requests: list[dict[str, Any]], sizes: list[int]) -> list[list[dict[str, Any]]]:
    """Split into Message Batches of at most 100,000 requests and 256 MB (envelope included)."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    volume = 0
    for request, size in zip(requests, sizes, strict=True):
        if current and (len(current) >= MAX_BATCH_REQUESTS or volume + size + 64 > MAX_BATCH_BYTES):
            out.append(current)
            current, volume = [], 0
        current.append(request)
        volume += size + 2
    if current:
        out.append(current)
    return out


def _job_name(custom_ids: Iterable[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(custom_ids)).encode()).hexdigest()
    return META_PREFIX + digest


class _Batches:
    """Submit (or resume), poll and collect Message Batches for the prompts ``todo``."""

    def __init__(self, client: Client, opts: _Options, state: _State, todo: list[int], keys: dict[int, str],
                 budget: _Budget | None) -> None:
        self.client = client
        self.opts = opts
        self.state = state
        self.todo = todo
        self.keys = keys
        self.budget = budget

    def _requests(self) -> tuple[list[dict[str, Any]], list[int], dict[str, int]]:
        requests, sizes, by_id = [], [], {}
        for uid in self.todo:
            prompt = self.state.plan.prompts[uid]
            if self.budget is not None and not self.budget.reserve(uid, prompt):
                self.state.stopped = "stopped before the spend would pass the budget"
                break
            body = self.opts.body(self.client, prompt)
            custom_id = self.keys[uid]  # the cache key: 64 hex characters, within ^[a-zA-Z0-9_-]{1,64}$
            request = {"custom_id": custom_id, "params": body}
            requests.append(request)
            sizes.append(len(json.dumps(request, ensure_ascii=False).encode("utf-8")))
            by_id[custom_id] = uid
        return requests, sizes, by_id

    async def run(self) -> None:
        requests, sizes, by_id = self._requests()
        self.state.progress.requests_total = len(requests)
        jobs = [self._job(chunk, by_id) for chunk in _chunks(requests, sizes)]
        await asyncio.gather(*jobs)

    async def _job(self, chunk: list[dict[str, Any]], by_id: dict[str, int]) -> None:
        name = _job_name(r["custom_id"] for r in chunk)
        cache = self.client.cache if self.opts.cache else None
        batch = await self._resume(cache, name)
        if batch is None:
            batch = await self.client.acreate_batch(chunk)
            if cache is not None:
                cache.set_meta(name, {"id": batch["id"], "requests": len(chunk), "created": time.time()})
        self.state.batch_ids.append(batch["id"])
        self.state.progress.sent += len(chunk)
        batch = await self._poll(batch)
        results = await self.client.abatch_results(batch)
        self._collect(chunk, results, by_id)
        if cache is not None:
            cache.delete_meta(name)

    async def _resume(self, cache: Any, name: str) -> dict[str, Any] | None:
        remembered = cache.get_meta(name) if cache is not None else None
        if not isinstance(remembered, dict) or not remembered.get("id"):
            return None
        try:
            batch = await self.client.aretrieve_batch(remembered["id"])
        except NotFoundError:  # deleted, or older than the results' 29 days: submit again
            cache.delete_meta(name)
            return None
        self.state.progress.status = f"resumed {batch['id']}"
        return batch

    async def _poll(self, batch: dict[str, Any]) -> dict[str, Any]:
        interval = self.opts.poll_interval
        while batch.get("processing_status") != "ended":
            counts = batch.get("request_counts") or {}
            self.state.progress.status = (f"batch {batch['id']} {batch.get('processing_status')}: "
                                          f"{counts.get('processing', 0):,} processing")
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 60.0)  # most batches end within the hour: poll less as it ages
            batch = await self.client.aretrieve_batch(batch["id"])
        return batch

    def _collect(self, chunk: list[dict[str, Any]], results: list[dict[str, Any]],
                 by_id: dict[str, int]) -> None:
        cache = self.client.cache if self.opts.cache else None
        seen = set()
        for line in results:
            uid = by_id.get(line.get("custom_id", ""))
            if uid is None or uid in seen:
                continue
            seen.add(uid)
            result = line.get("result") or {}
            if result.get("type") == "succeeded":
                message = result.get("message") or {}
                reply = _wire.reply_from_message(message, model=self.opts.model, batch=True)
                if cache is not None:
                    cache.set(self.keys[uid], reply.to_dict())
                self.client.history.append(reply)
                self.state.ok(uid, reply)
            else:
                self.state.fail(uid, _result_error(result))
        for request in chunk:
            uid = by_id[request["custom_id"]]
            if uid not in seen:
                self.state.fail(uid, APIError("no result for this request in the batch's results",
                                              status=0, type="missing_result"))


# --------------------------------------------------------------------------------------------------
# Dry run


async def _count_tokens(client: Client, opts: _Options, prompts: list[str]) -> list[int]:
    gate = asyncio.Semaphore(8)

    async def one(prompt: str) -> int:
        async with gate:
            options = {"system": opts.system} if opts.system else {}
            return await client.acount_tokens(prompt, model=opts.model, **options)

    return list(await asyncio.gather(*(one(p) for p in prompts)))


def _spread_sample(prompts: list[str], k: int) -> list[int]:
    """``k`` positions spread over the prompts sorted by length (short, typical and long ones)."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    if len(order) <= k:
        return order
    return [order[int(round(j * (len(order) - 1) / (k - 1)))] for j in range(k)]


def _estimate(sizes: np.ndarray, sample: list[int], counts: list[int]) -> tuple[int, int, int]:
    """Total tokens over all prompts from a sample: ratio estimator on UTF-8 size, ± 2 s.e."""
    total_bytes = float(sizes.sum())
    b = sizes[sample].astype(float)
    t = np.asarray(counts, dtype=float)
    if len(sample) == len(sizes):
        return int(t.sum()), int(t.sum()), int(t.sum())
    ratio = t.sum() / max(b.sum(), 1.0)
    estimate = ratio * total_bytes
    n, big_n = len(sample), len(sizes)
    resid = t - ratio * b
    var = resid.var(ddof=1) if n > 1 else 0.0
    se = big_n * math.sqrt(max(0.0, (1 - n / big_n) * var / n))
    return int(round(estimate)), int(max(t.sum(), estimate - 2 * se)), int(round(estimate + 2 * se))


# --------------------------------------------------------------------------------------------------
# The run


def _resolve_options(client: Client, *, model: str | None, max_tokens: int | None, system: str | None,
                     concurrency: int | None, api: str, budget: float | None, cache: bool, refresh: bool,
                     poll_interval: float, body_options: dict[str, Any]) -> _Options:
    if api not in ("live", "batch"):
        raise ConfigError(f"api must be 'live' or 'batch', got {api!r}")
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)
                                    or concurrency < 1):
        raise ConfigError(f"concurrency must be a positive integer, got {concurrency!r}")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                               or not budget > 0):
        raise ConfigError(f"budget must be a positive number of US dollars, got {budget!r}")
    opts = _Options(model=model or client.model,
                    max_tokens=client.max_tokens if max_tokens is None else max_tokens,
                    system=system or None, concurrency=concurrency, api=api,
                    budget=float(budget) if budget is not None else None, cache=cache, refresh=refresh,
                    poll_interval=poll_interval, body_options=body_options)
    opts.body(client, "x")  # checks model, max_tokens and the options before anything is sent
    return opts


def _make_budget(opts: _Options) -> _Budget | None:
    if opts.budget is None:
        return None
    price = pricing.price_for(opts.model)
    if price is None:
        raise ConfigError(f"--budget needs the model's price, and {opts.model!r} has no known price: "
                          "use a listed model or drop the budget")
    return _Budget(opts.budget, price, opts.max_tokens, batch=opts.api == "batch")


def _cache_hit(client: Client, key: str) -> Reply | None:
    cache = client.cache
    value = cache.get(key) if cache is not None else None
    if value is None:
        return None
    reply = Reply.from_dict(value)
    reply.extra["saved_cost"] = reply.cost
    reply.cached, reply.cost, reply.retries, reply.resumed = True, 0.0, 0, 0
    client.history.append(reply)  # %claude_usage counts hits and what they saved
    return reply


def _lookup(client: Client, opts: _Options, state: _State) -> tuple[list[int], dict[int, str]]:
    """Answer what the cache holds; return the prompts to send and every prompt's cache key."""
    todo: list[int] = []
    keys: dict[int, str] = {}
    for uid, prompt in enumerate(state.plan.prompts):
        try:
            keys[uid] = client.cache_key(opts.body(client, prompt))
        except ConfigError as exc:  # e.g. a row that renders to whitespace only
            state.invalid(uid, exc)
            continue
        hit = _cache_hit(client, keys[uid]) if opts.cache and not opts.refresh else None
        if hit is not None:
            state.hit(uid, hit.text)
        else:
            todo.append(uid)
    state.progress.requests_total = len(todo)
    return todo, keys


def _drive(client: Client, coro: Any, state: _State, progress: Callable[[Progress], Any] | None,
           tick: float = 0.1) -> None:
    """Run ``coro`` on the client's loop; call ``progress`` here every ``tick`` s; Ctrl-C cancels."""
    future: concurrent.futures.Future[Any] = client.submit(coro)
    try:
        while True:
            try:
                future.result(timeout=tick)
                return
            except concurrent.futures.TimeoutError:
                if progress is not None:
                    progress(state.snapshot())
    except BaseException:
        future.cancel()
        concurrent.futures.wait([future], timeout=1.0)
        raise


def _finish(plan: PromptPlan, state: _State, opts: _Options, started: float,
            dry_run: DryRunReport | None = None) -> BatchResult:
    n = len(plan.prompts)
    texts = np.empty(n + 1, dtype=object)
    texts[:n] = state.texts
    texts[n] = _MISSING_TEXT
    values = texts[plan.codes]  # code -1 picks the trailing empty slot
    series = pd.Series(values, index=plan.index, dtype=pd.StringDtype())
    errors = _errors_table(plan, state)
    done_or_failed = np.zeros(n + 1, dtype=bool)
    for uid, text in enumerate(state.texts):
        done_or_failed[uid] = text is not None or uid in state.errors
    done_or_failed[n] = True
    remaining = plan.index[~done_or_failed[plan.codes]]
    p = state.progress
    summary = BatchSummary(
        rows=plan.rows, unique=n, cached_rows=p.cached, cached_prompts=int(state.cached.sum()),
        sent=p.sent, succeeded_rows=p.done - p.cached, failed_rows=p.failed, skipped_rows=len(plan.skipped),
        remaining_rows=len(remaining), input_tokens=state.input_tokens, output_tokens=state.output_tokens,
        retries=state.retries, cost=state.cost, seconds=time.monotonic() - started, api=opts.api,
        stopped=state.stopped,
        batch_ids=list(state.batch_ids),
    )
    return BatchResult(series=series, errors=errors, skipped=plan.index[plan.skipped], remaining=remaining,
                       summary=summary, dry_run=dry_run, aborted=state.aborted)


def _errors_table(plan: PromptPlan, state: _State) -> pd.DataFrame:
    columns = ["row", "status", "type", "message"]
    if not state.errors:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    failed = np.fromiter(state.errors, dtype=np.int64)
    positions = np.flatnonzero(np.isin(plan.codes, failed))
    rows = []
    for pos in positions:
        error = state.errors[int(plan.codes[pos])]
        rows.append((plan.index[pos], getattr(error, "status", None), getattr(error, "type", None)
                     or type(error).__name__, getattr(error, "message", None) or str(error)))
    return pd.DataFrame(rows, columns=columns)


def run_batch(
    template: str,
    data: Any,
    *,
    client: Client | None = None,
    model: str | None = None,
    max_tokens: int | None = None,
    system: str | None = None,
    concurrency: int | None = None,
    api: Literal["live", "batch"] = "live",
    dry_run: bool = False,
    budget: float | None = None,
    cache: bool = True,
    refresh: bool = False,
    progress: Callable[[Progress], Any] | None = None,
    poll_interval: float = 2.0,
    **body_options: Any,
) -> BatchResult:
    """Run ``template`` over ``data`` and return a :class:`BatchResult` (see the module doc).

    ``data``: a DataFrame (placeholders name columns), a Series or a list (``{value}``).
    ``client``: defaults to a new ``Client()`` from the environment (closed afterwards).
    ``concurrency``: the most requests in flight (the window adapts below it).
    ``api="batch"``: Message Batches at half price; ``poll_interval`` is the first wait between polls.
    ``dry_run``: send nothing but ``count_tokens``; the estimate is in ``result.dry_run``.
    ``budget``: USD; no request starts unless the spend so far plus the worst case of every
    request in flight (its input plus ``max_tokens`` of output) stays within it.
    ``cache=False`` neither reads nor writes the response cache; ``refresh=True`` sends every
    prompt again and overwrites the cached answers.
    ``progress(Progress)`` is called on this thread about ten times a second, and once at the end.
    Other keyword arguments (``stop_sequences``, ``effort``, ``thinking`` …) go into every request.
    Raises ConfigError before sending anything for a bad template or option;
    :class:`BatchInterrupted` (a KeyboardInterrupt) on Ctrl-C, carrying the partial result.
    """
    own_client = client is None
    if client is None:
        from .client import Client

        client = Client()
    try:
        opts = _resolve_options(client, model=model, max_tokens=max_tokens, system=system,
                                concurrency=concurrency, api=api, budget=budget, cache=cache, refresh=refresh,
                                poll_interval=poll_interval, body_options=body_options)
        plan = plan_prompts(template, data)
        budget_gate = _make_budget(opts)
        return _run(client, plan, opts, budget_gate, dry_run, progress)
    finally:
        if own_client:
            client.close()


def _run(client: Client, plan: PromptPlan, opts: _Options, budget: _Budget | None, dry_run: bool,
         progress: Callable[[Progress], Any] | None) -> BatchResult:
    started = time.monotonic()
    state = _State(plan)
    state.progress.status = "cache"
    todo, keys = _lookup(client, opts, state) if not dry_run else _peek(client, opts, state)
    if dry_run:
        report = _dry_run(client, opts, state, todo)
        return _finish(plan, state, opts, started, dry_run=report)
    engine: _Live | _Batches
    if opts.api == "batch":
        engine = _Batches(client, opts, state, todo, keys, budget)
        state.progress.status = "submitting"
    else:
        engine = _Live(client, opts, state, todo, budget)
        state.progress.status = "live"
    try:
        if todo:
            _drive(client, engine.run(), state, progress)
    except KeyboardInterrupt:
        state.progress.status = "interrupted"
        state.stopped = "interrupted"
        if state.batch_ids:
            state.stopped += f" while waiting for {', '.join(state.batch_ids)}: run again to resume polling"
        result = _finish(plan, state, opts, started)
        if progress is not None:
            with contextlib.suppress(Exception, KeyboardInterrupt):  # a second Ctrl-C: we are stopping anyway
                progress(_final_progress(state))
        raise BatchInterrupted(result, f"interrupted: {result.summary}") from None
    result = _finish(plan, state, opts, started)
    if budget is not None and result.summary.remaining_rows and not state.stopped:
        state.stopped = "stopped before the spend would pass the budget"
    if state.stopped and result.summary.stopped is None:
        result.summary.stopped = state.stopped
    if result.summary.stopped and "budget" in result.summary.stopped:
        result.summary.stopped += f": {result.summary.remaining_rows:,} rows remain"
    if progress is not None:
        progress(_final_progress(state))
    return result


def _final_progress(state: _State) -> Progress:
    snap = state.snapshot()
    snap.finished, snap.eta, snap.in_flight = True, 0.0, 0
    snap.status = state.progress.status if state.stopped else "done"
    return snap


def _peek(client: Client, opts: _Options, state: _State) -> tuple[list[int], dict[int, str]]:
    """The dry run's lookup: which prompts are cached, without counting hits in the cache's stats."""
    todo, keys = [], {}
    cache = client.cache if opts.cache and not opts.refresh else None
    for uid, prompt in enumerate(state.plan.prompts):
        try:
            keys[uid] = client.cache_key(opts.body(client, prompt))
        except ConfigError as exc:
            state.errors[uid] = exc
            continue
        if cache is not None and keys[uid] in cache:
            state.cached[uid] = True
        else:
            todo.append(uid)
    return todo, keys


def _dry_run(client: Client, opts: _Options, state: _State, todo: list[int]) -> DryRunReport:
    prompts = [state.plan.prompts[uid] for uid in todo]
    sample = _spread_sample(prompts, DRY_RUN_SAMPLE)
    counts = client.run(_count_tokens(client, opts, [prompts[i] for i in sample])) if sample else []
    sizes = np.fromiter((len(p.encode("utf-8")) for p in prompts), dtype=np.int64, count=len(prompts))
    estimate, low, high = _estimate(sizes, sample, counts) if sample else (0, 0, 0)
    price = pricing.price_for(opts.model, prompt_tokens=max(counts, default=0))
    factor = pricing.BATCH_DISCOUNT if opts.api == "batch" else 1.0
    cost_low = cost_high = None
    if price is not None:
        cost_low = round(low * price.input / 1e6 * factor, 10)
        worst_output = len(todo) * opts.max_tokens * price.output
        cost_high = round((high * price.input + worst_output) / 1e6 * factor, 10)
    return DryRunReport(rows=state.plan.rows, skipped=len(state.plan.skipped), unique=len(state.plan.prompts),
                        cached=int(state.cached.sum()), to_send=len(todo), counted=len(sample),
                        input_tokens=estimate, input_tokens_low=low, input_tokens_high=high,
                        max_tokens=opts.max_tokens, model=opts.model, api=opts.api,
                        cost_low=cost_low, cost_high=cost_high)


def map_prompts(
    template: str,
    data: Any,
    *,
    client: Client | None = None,
    model: str | None = None,
    max_tokens: int | None = None,
    system: str | None = None,
    concurrency: int | None = None,
    api: Literal["live", "batch"] = "live",
    dry_run: bool = False,
    budget: float | None = None,
    cache: bool = True,
    refresh: bool = False,
    progress: Callable[[Progress], Any] | None = None,
    **options: Any,
) -> pd.Series:
    """Ask Claude ``template`` for every row of ``data``; return the answers as a Series.

    The Series is aligned to ``data``'s index (dtype ``string``; ``pd.NA`` where a row was
    skipped, failed or not run) and ``series.attrs["claude"]`` holds the summary as a dict.
    For the errors table, the dry-run estimate or the rows a budget left, call
    :func:`run_batch` (same arguments), which returns the whole :class:`BatchResult`.
    An error every row would share (bad key, unknown model) is raised after the run stops.

    >>> df["label"] = map_prompts("Sentiment of: {review}. One word.", df, model="claude-haiku-5-5")
    """
    result = run_batch(template, data, client=client, model=model, max_tokens=max_tokens, system=system,
                       concurrency=concurrency, api=api, dry_run=dry_run, budget=budget, cache=cache,
                       refresh=refresh, progress=progress, **options)
    if result.aborted is not None:
        raise result.aborted
    result.series.attrs["claude"] = result.summary.to_dict()
    return result.series
