"""What a run reports (progress, summary, dry-run estimate, result), its options, and its state:
per-prompt outcomes and counters, written on the client's loop thread, read on the calling one.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import pricing
from ..errors import ClaudeError, ConfigError
from ..reply import Reply
from ._media import MediaPrompt, request_content, text_of
from ._plan import PromptPlan

if TYPE_CHECKING:
    from ..client import Client
    from ..schema import Schema

@dataclass
class Progress:
    """A snapshot of a run, handed to the ``progress`` callback on the calling thread.

    Row counts: ``done`` rows have an answer (``cached`` of them from the response cache),
    ``failed`` rows got an error, ``skipped`` rows had a missing or an empty value
    (``skipped_empty`` of them empty); ``total`` is every row.
    ``sent``/``in_flight`` count requests (unique prompts). ``rate`` is requests finished per
    second, ``eta`` seconds left (None until known), ``cost`` USD spent so far by this run.
    """

    total: int
    done: int = 0
    cached: int = 0
    failed: int = 0
    skipped: int = 0
    skipped_empty: int = 0
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
            parts.append(f"{self.skipped:,} skipped ({_skip_reasons(self.skipped, self.skipped_empty)})")
        if self.rate:
            parts.append(f"{self.rate:.1f} req/s")
        if self.eta is not None and not self.finished:
            parts.append(f"ETA {_duration(self.eta)}")
        parts.append(pricing.format_cost(self.cost))
        if self.status not in ("live", "done"):
            parts.append(self.status)
        return " · ".join(parts)


class Stop(str, enum.Enum):
    """Why a run ended before every row was tried (``BatchSummary.stop``)."""

    BUDGET = "budget"            # the next requests could have taken the spend past the budget
    EARLY = "early"              # a failure every row would share (or a bug of ours) stopped it
    INTERRUPTED = "interrupted"  # Ctrl-C / the stop button
    CANCELLED = "cancelled"      # a background job's cancel(), or the client closed under it

    def __str__(self) -> str:
        return self.value


_STOP_TEXT = {Stop.BUDGET: "stopped before the spend would pass the budget", Stop.EARLY: "stopped early",
              Stop.INTERRUPTED: "interrupted", Stop.CANCELLED: "cancelled"}


@dataclass
class BatchSummary:
    """Counts of a run; ``str()`` is the one-line summary printed at the end. ``stop`` says why a
    run ended early (a :class:`Stop`, else None) and ``stopped`` says it in words.

    Two caches save money: the response cache answers a prompt asked before without sending it
    (``cached_rows``; ``response_cache_saved``: USD those answers cost when they were paid for), and
    the API's prompt cache bills a prefix shared by the requests once (``cache_write_tokens``, at
    1.25x the input price) and then at the read price (``cache_read_tokens``, 0.1x or less);
    ``prompt_cache_saved`` is what that saved against paying every one of those tokens at the input
    price (None when the model's price is unknown). ``input_tokens`` counts all three kinds of input.
    """

    rows: int
    unique: int
    cached_rows: int = 0
    cached_prompts: int = 0
    sent: int = 0
    succeeded_rows: int = 0
    failed_rows: int = 0
    skipped_rows: int = 0
    skipped_empty_rows: int = 0
    remaining_rows: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    retries: int = 0
    cost: float | None = 0.0
    seconds: float = 0.0
    api: str = "live"
    stopped: str | None = None
    batch_ids: list[str] = field(default_factory=list)
    stop: Stop | None = None
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    prompt_cache_saved: float | None = 0.0
    response_cache_saved: float = 0.0

    @property
    def duplicates(self) -> int:
        return max(0, self.rows - self.skipped_rows - self.unique)

    def __str__(self) -> str:
        parts = [f"{self.rows:,} rows → {self.unique:,} unique prompts"]
        parts.append(f"{self.cached_rows:,} rows from cache")
        if self.cache_write_tokens or self.cache_read_tokens:
            parts.append(_prompt_cache(self.cache_write_tokens, self.cache_read_tokens,
                                       self.prompt_cache_saved))
        parts.append(f"{self.sent:,} sent" + (" (Message Batches)" if self.api == "batch" else ""))
        if self.failed_rows:
            parts.append(f"{self.failed_rows:,} failed")
        if self.skipped_rows:
            reasons = _skip_values(self.skipped_rows, self.skipped_empty_rows)
            parts.append(f"{self.skipped_rows:,} skipped ({reasons})")
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
    no output at all to ``max_tokens`` output for every prompt, all input at the input price.
    When the run would mark a shared prefix for the prompt cache, ``cache_write_tokens`` (written
    once) and ``cache_read_tokens`` (read by the other requests) estimate its use and
    ``prompt_cache_saved`` what it would take off that range (see :class:`BatchSummary`).
    Images and PDFs are part of ``input_tokens``: ``image_tokens`` exactly (the formula at the size
    sent), PDFs as the estimate ``pdf_tokens_low``–``pdf_tokens_high`` (the low and high ends of the
    range include it, ``input_tokens`` its middle); ``uncounted_media`` (URLs, PDFs whose pages cannot
    be read) are in none of them. ``failed``: prompts whose rows cannot be sent (see ``errors``).
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
    skipped_empty: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    prompt_cache_saved: float | None = 0.0
    image_tokens: int = 0
    pdf_tokens_low: int = 0
    pdf_tokens_high: int = 0
    uncounted_media: int = 0
    failed: int = 0

    @property
    def duplicates(self) -> int:
        return max(0, self.rows - self.skipped - self.unique)

    @property
    def text_tokens(self) -> int:
        """``input_tokens`` less the media's share: what ``count_tokens`` counted (or its estimate)."""
        return self.input_tokens - self.image_tokens - (self.pdf_tokens_low + self.pdf_tokens_high) // 2

    def _media(self) -> str:
        """``; images 1,204 tokens (exact), PDFs ≈ 7,920–12,420 tokens (estimate), 2 URLs not counted``."""
        parts = []
        if self.image_tokens:
            parts.append(f"images {self.image_tokens:,} tokens (exact)")
        if self.pdf_tokens_high:
            parts.append(f"PDFs ≈ {self.pdf_tokens_low:,}–{self.pdf_tokens_high:,} tokens (estimate)")
        if self.uncounted_media:
            plural = "" if self.uncounted_media == 1 else "s"
            parts.append(f"{self.uncounted_media:,} URL or unread PDF{plural} not counted "
                         "(the API fetches and counts them)")
        if self.failed:
            plural = "" if self.failed == 1 else "s"
            parts.append(f"{self.failed:,} prompt{plural} cannot be sent (see errors)")
        return "; " + ", ".join(parts) if parts else ""

    def __str__(self) -> str:
        reasons = _skip_values(self.skipped, self.skipped_empty)
        skipped = f", {self.skipped:,} skipped for {reasons}" if self.skipped else ""
        duplicates = f"{self.duplicates:,} duplicate row{'' if self.duplicates == 1 else 's'}"
        head = (f"dry run: {self.rows:,} rows → {self.unique:,} unique prompts "
                f"({duplicates}{skipped}), "
                f"{self.cached:,} cached, {self.to_send:,} to send to {self.model}")
        if not self.to_send:
            return head + "; nothing to pay"
        if self.counted == self.to_send and not self.pdf_tokens_high:
            tokens = f"input {self.input_tokens:,} tokens (counted)"
        elif self.counted == self.to_send:
            spread = f"{self.input_tokens_low:,}–{self.input_tokens_high:,}"
            tokens = f"input ≈ {self.input_tokens:,} tokens ({spread}: PDFs estimated)"
        else:
            spread = f"{self.input_tokens_low:,}–{self.input_tokens_high:,}"
            tokens = f"input ≈ {self.input_tokens:,} tokens ({spread}, from a sample of {self.counted:,})"
        price = "at batch price" if self.api == "batch" else "at live price"
        cost = "cost unknown"
        if self.cost_low is not None:
            cost = (f"{pricing.format_cost(self.cost_low)}–{pricing.format_cost(self.cost_high)} {price} "
                    f"(output 0–{self.max_tokens:,} tokens each)")
        line = f"{head}; {tokens}{self._media()}; {cost}"
        if self.cache_write_tokens or self.cache_read_tokens:
            line += "; ≈ " + _prompt_cache(self.cache_write_tokens, self.cache_read_tokens,
                                           self.prompt_cache_saved)
        return line


@dataclass
class BatchResult:
    """Everything a run produced.

    ``series``: the answers in the source's own library (a pandas Series aligned to the data's
    index for pandas and lists, a polars Series or an Arrow ChunkedArray in row order for those),
    null where this run has no answer: skipped, failed or not run · ``errors``: one line per failed
    row (``row`` — a label for pandas, a position otherwise —, ``status``,
    ``type``, ``message``) · ``skipped``: row labels with a missing or empty value, and
    ``skipped_reasons`` the reason of each (``"missing"`` or ``"empty"``, indexed by those labels)
    · ``remaining``: rows not run (budget, interrupt, early stop) · ``summary`` · ``dry_run``: the
    estimate when ``dry_run=True`` · ``aborted``: the error that stopped the run.
    """

    series: Any
    errors: pd.DataFrame
    skipped: pd.Index
    remaining: pd.Index
    summary: BatchSummary
    dry_run: DryRunReport | None = None
    aborted: ClaudeError | None = None
    skipped_reasons: pd.Series = field(default_factory=lambda: pd.Series(dtype=object))
    schema: Schema | None = None
    _values: Any = field(default=None, repr=False)  # typed answers per row (None where none)
    _table: Any = field(default=None, repr=False)

    def columns(self, prefix: str = "") -> dict[str, Any]:
        """A typed run's answers, one series per field of the schema (named ``prefix + field``), in the
        source's library and typed by the schema; a row without an answer, or without that optional
        field, is null. ConfigError for a run without a schema."""
        if self.schema is None or self._table is None:
            raise ConfigError("columns() needs a typed run: pass schema= (--schema)")
        return self._table.fields(self._values, self.schema.fields, prefix)

    def __repr__(self) -> str:
        return f"BatchResult({self.dry_run if self.dry_run is not None else self.summary})"


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; ``result`` holds every row finished before it."""

    def __init__(self, result: BatchResult, message: str) -> None:
        super().__init__(message)
        self.result = result


def _skip_reasons(skipped: int, empty: int) -> str:
    """``missing``, ``empty`` or ``2 missing, 1 empty``."""
    if not empty:
        return "missing"
    if empty == skipped:
        return "empty"
    return f"{skipped - empty:,} missing, {empty:,} empty"


def _skip_values(skipped: int, empty: int) -> str:
    """``missing values``, ``empty values`` or ``missing or empty values: 2 missing, 1 empty``."""
    if 0 < empty < skipped:
        return f"missing or empty values: {_skip_reasons(skipped, empty)}"
    return f"{_skip_reasons(skipped, empty)} values"


def _prompt_cache(written: int, read: int, saved: float | None) -> str:
    """``prompt cache 2,010 tokens written, 98,490 read, saved $0.0176`` (or ``cost $0.0001 more``)."""
    text = f"prompt cache {written:,} tokens written, {read:,} read"
    if saved is None:
        return text
    if saved < 0:
        return f"{text}, cost {pricing.format_cost(-saved)} more"
    return f"{text}, saved {pricing.format_cost(saved)}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


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
    schema: Schema | None = None
    prompt_cache: bool = True  # mark the prefix the requests share (see _prefix)

    def body(self, client: Client, prompt: str | MediaPrompt, shared: dict[str, str] | None = None,
             ) -> dict[str, Any]:
        """The request body of ``prompt`` (a media prompt's blocks in base64: see ``_media``)."""
        from .._typed import with_format

        return client.build_body(request_content(prompt, self.model, shared), model=self.model,
                                  max_tokens=self.max_tokens, system=self.system,
                                 **with_format(self.body_options, self.schema))

    def key(self, client: Client, prompt: str | MediaPrompt) -> str:
        """The prompt's cache key; ConfigError for a prompt the API would refuse (that row's error).
        An image or PDF enters it by the SHA-256 of its content (the client's key), never by a path."""
        try:
            return client.cache_key(self.body(client, prompt))
        except UnicodeEncodeError as exc:
            raise ConfigError(_not_utf8(text_of(prompt), exc)) from None

    def call_options(self) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens, "system": self.system,
                "schema": self.schema, **self.body_options}


def _not_utf8(prompt: str, exc: UnicodeEncodeError) -> str:
    """One line: which character cannot be sent (a lone surrogate, as ``read_csv(encoding_errors=
    'surrogateescape')`` makes of undecodable bytes), where, and how to clean it."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as bad:
        where = ("the prompt contains a character that cannot be encoded as UTF-8 "
                 f"(U+{ord(prompt[bad.start]):04X}) at position {bad.start}")
    else:  # not the prompt: the system prompt or an option
        where = ("the system prompt or an option contains a character that cannot be encoded as UTF-8 "
                 f"({exc.reason})")
    return (f"{where}: read the file with its real encoding, or clean the column with "
            ".str.encode('utf-8', 'replace').str.decode('utf-8')")


class _State:
    """Per-prompt outcomes and running counters of one run."""

    def __init__(self, plan: PromptPlan) -> None:
        self.plan = plan
        n = len(plan.prompts)
        self.weights = plan.rows_per_prompt()
        self.texts: list[str | None] = [None] * n
        self.values: list[Any] = [None] * n  # typed answers (Reply.parsed), when the run has a schema
        self.cached = np.zeros(n, dtype=bool)
        self.errors: dict[int, ClaudeError | BaseException] = {}
        self.progress = Progress(total=plan.rows, skipped=len(plan.skipped), skipped_empty=plan.skipped_empty)
        self.started = time.monotonic()
        self.finished_times: deque[float] = deque(maxlen=200)
        self.input_tokens = self.output_tokens = 0
        self.cache_write_tokens = self.cache_read_tokens = 0
        self.prompt_cache_saved: float | None = 0.0
        self.response_cache_saved = 0.0
        self.retries = 0
        self.cost: float | None = 0.0
        self.stop: Stop | None = None
        self.stop_detail = ""  # what follows the reason's words (the error, the batches waited for)
        self.aborted: ClaudeError | None = None
        self.batch_ids: list[str] = []

    def stop_with(self, reason: Stop, detail: str = "") -> None:
        """Record why the run stops (the first reason stands)."""
        if self.stop is None:
            self.stop, self.stop_detail = reason, detail

    @property
    def stopped(self) -> str | None:
        """The reason in words, as the summary shows it."""
        return None if self.stop is None else _STOP_TEXT[self.stop] + self.stop_detail

    def hit(self, uid: int, text: str, value: Any = None, saved: float | None = None) -> None:
        """A prompt the response cache answered; ``saved``: what its answer cost when it was paid for."""
        self.texts[uid] = text
        self.response_cache_saved += saved or 0.0
        self.values[uid] = value
        self.cached[uid] = True
        self.progress.done += int(self.weights[uid])
        self.progress.cached += int(self.weights[uid])

    def ok(self, uid: int, reply: Reply) -> None:
        self.texts[uid] = reply.text
        self.values[uid] = reply.parsed
        self.progress.done += int(self.weights[uid])
        self.progress.requests_done += 1
        self._account(reply)

    def fail(self, uid: int, error: BaseException) -> None:
        self.errors[uid] = error
        self.progress.failed += int(self.weights[uid])
        self.progress.requests_done += 1
        answered = getattr(error, "reply", None)
        if answered is not None and not answered.cached:  # an unusable typed answer was paid for
            self._account(answered)
        else:
            self.finished_times.append(time.monotonic())

    def invalid(self, uid: int, error: ClaudeError) -> None:
        """A prompt the API would refuse (checked before sending): its rows fail, nothing is sent."""
        self.errors[uid] = error
        self.progress.failed += int(self.weights[uid])

    def refused(self, uid: int, error: ClaudeError) -> None:
        """A prompt that was to be sent and will not be (it alone passes the budget): its rows fail."""
        self.invalid(uid, error)
        self.progress.requests_total -= 1

    def _account(self, reply: Reply) -> None:
        self.finished_times.append(time.monotonic())
        self.input_tokens += reply.usage.total_input
        self.output_tokens += reply.usage.output_tokens
        self.cache_write_tokens += reply.usage.cache_creation_input_tokens
        self.cache_read_tokens += reply.usage.cache_read_input_tokens
        if reply.usage.cache_creation_input_tokens or reply.usage.cache_read_input_tokens:
            saved = pricing.prompt_cache_saved(reply.model, reply.usage, batch=reply.batch)
            if self.prompt_cache_saved is not None:
                self.prompt_cache_saved = None if saved is None else self.prompt_cache_saved + saved
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
