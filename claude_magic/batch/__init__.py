"""Map a prompt template over the rows of a table: render, dedupe, cache, send, report.

``map_prompts(template, data)`` returns the answers as a series of ``data``'s own library (pandas,
polars or Arrow, read through narwhals: see :mod:`claude_magic.frames`), aligned to its rows;
``run_batch`` takes the same arguments and returns a :class:`BatchResult` that also holds
the errors table, the summary and (for ``dry_run=True``) the estimate. No IPython here:
``batch_magic`` is a thin layer over this module.

How a run goes:

1. **Render** — placeholders follow :mod:`claude_magic.interpolate` (the one rendering rule of
   the package: ``{col}``, ``{{literal}}``, JSON/LaTeX braces untouched). They name columns
   of a DataFrame, or ``{value}`` (or the Series' name) for a Series or list; any other
   name is a ConfigError before anything is sent. Rows are factorised over the columns the
   template uses, so only distinct value combinations are rendered (linear in the rows).
   Rows with a missing value (NaN/None) or an empty one (whitespace only) in a used column are
   skipped and reported with their reason.
2. **Dedupe and cache** — identical prompts are sent once; the response cache is asked
   first (``client.cache_key(client.build_body(...))``, the client's own key), so a re-run
   after a crash, an interrupt or a restart sends only what is missing.
3. **Send** — ``api="live"``: ``client.acomplete(stream=False)`` on the client's event loop
   with a concurrency window that adapts (AIMD: slow start from 16, +1 per window of
   successes, halved when a request needed a retry or failed with 429/529; ``concurrency``
   caps it), request starts paced by a mirror of the account's buckets built from the
   ``anthropic-ratelimit-*`` headers (see ``_pacing``), and the client's own
   client-wide pause on ``retry-after``. The prefix the requests share (system prompt, the
   template's text before its first placeholder) is marked for the API's prompt cache when it is
   long enough, and the first marked request goes alone (see ``_prefix``).
   ``api="batch"``: Message Batches at half price
   (see ``_batches``); the batch id is kept in the cache's meta table so that a
   restart resumes polling instead of paying again.
4. **Report** — per-row failures never abort the run (they are in ``BatchResult.errors``): a
   prompt that cannot be encoded, one whose worst case alone passes the budget, a 400 or a 403
   (a permission may be about one prompt's content or options). Only failures every row would
   share (bad key, bad model, billing, spend cap, or the first three requests failing alike with
   no success) stop it early.

Interrupts: the engine runs on the client's loop thread while the calling thread polls it
(and draws progress); Ctrl-C cancels the engine within a second and raises
:class:`BatchInterrupted`, a ``KeyboardInterrupt`` that carries the partial ``BatchResult``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .. import pricing
from .._kernel import kernel_client
from .._typed import schema_of, typed_reply
from ..errors import AnswerInvalid, ConfigError
from ._batches import _Batches
from ._dryrun import _dry_run, _peek
from ._job import BatchJob, JobState
from ._live import _Budget, _Live
from ._plan import PromptPlan, plan_prompts
from ._prefix import expected_use
from ._report import (
    BatchInterrupted,
    BatchResult,
    BatchSummary,
    DryRunReport,
    Progress,
    Stop,
    _Options,
    _State,
)

if TYPE_CHECKING:
    from ..client import Client

__all__ = [
    "BatchInterrupted",
    "BatchJob",
    "BatchResult",
    "BatchSummary",
    "DryRunReport",
    "JobState",
    "Progress",
    "Stop",
    "map_prompts",
    "plan_prompts",
    "run_batch",
]

_MISSING_TEXT = None


def _resolve_options(client: Client, *, model: str | None, max_tokens: int | None, system: str | None,
                     concurrency: int | None, api: str, budget: float | None, cache: bool, refresh: bool,
                     poll_interval: float, body_options: dict[str, Any], schema: Any = None,
                     prompt_cache: bool = True) -> _Options:
    if api not in ("live", "batch"):
        raise ConfigError(f"api must be 'live' or 'batch', got {api!r}")
    if tooled := [name for name in ("tools", "tool_choice") if name in body_options]:
        # a row's answer is its text: a tool call's input would be lost as ''
        raise ConfigError(f"{' and '.join(tooled)} cannot be used in a batch (a tool call's input would be "
                          "lost): ask for typed answers with schema= (--schema) instead")
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
                    poll_interval=poll_interval, body_options=body_options, schema=schema_of(schema),
                    prompt_cache=bool(prompt_cache))
    opts.body(client, "x")  # checks model, max_tokens and the options before anything is sent
    if opts.schema is not None:
        client.check_typed(opts.model)  # a model without structured outputs: one line, nothing sent
    return opts


def _make_budget(opts: _Options) -> _Budget | None:
    if opts.budget is None:
        return None
    price = pricing.price_for(opts.model)
    if price is None:
        raise ConfigError(f"--budget needs the model's price, and {opts.model!r} has no known price: "
                          "use a listed model or drop the budget")
    return _Budget(opts.budget, price, opts.max_tokens, batch=opts.api == "batch")


def _lookup(client: Client, opts: _Options, state: _State) -> tuple[list[int], dict[int, str]]:
    """Answer what the cache holds; return the prompts to send and every prompt's cache key."""
    todo: list[int] = []
    keys: dict[int, str] = {}
    for uid, prompt in enumerate(state.plan.prompts):
        if (error := state.plan.errors.get(uid)) is not None:  # a medium that cannot be sent
            state.invalid(uid, error)
            continue
        try:
            keys[uid] = opts.key(client, prompt)
        except ConfigError as exc:  # e.g. a character UTF-8 cannot encode: that row's error
            state.invalid(uid, exc)
            continue
        # counted in the client's history: %claude_usage counts hits and what they saved
        hit = client.lookup(keys[uid]) if opts.cache and not opts.refresh else None
        if hit is None:
            todo.append(uid)
            continue
        try:
            state.hit(uid, hit.text, typed_reply(hit, opts.schema).parsed, hit.extra.get("saved_cost"))
        except AnswerInvalid as exc:  # stored, and reported again without being paid for again
            state.invalid(uid, exc)
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
    series = plan.answers(values)  # in the source's library: what DEST and map_prompts give back
    typed: Any = None
    if opts.schema is not None and plan.table is not None:
        objects = np.empty(n + 1, dtype=object)
        objects[:n] = state.values
        objects[n] = None
        typed = objects[plan.codes]
        series = plan.table.objects(typed)
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
        skipped_empty_rows=plan.skipped_empty, remaining_rows=len(remaining), input_tokens=state.input_tokens,
        output_tokens=state.output_tokens,
        retries=state.retries, cost=state.cost, seconds=time.monotonic() - started, api=opts.api,
        stopped=state.stopped,
        stop=state.stop,
        batch_ids=list(state.batch_ids),
        cache_write_tokens=state.cache_write_tokens, cache_read_tokens=state.cache_read_tokens,
        prompt_cache_saved=None if state.prompt_cache_saved is None else round(state.prompt_cache_saved, 10),
        response_cache_saved=round(state.response_cache_saved, 10),
    )
    skipped = plan.index[plan.skipped]
    reasons = pd.Series(np.where(plan.empty, "empty", "missing"), index=skipped, dtype=object)
    return BatchResult(series=series, errors=errors, skipped=skipped, remaining=remaining,
                       summary=summary, dry_run=dry_run, aborted=state.aborted, skipped_reasons=reasons,
                       schema=opts.schema, _values=typed, _table=plan.table)


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
    background: bool = False,
    schema: Any = None,
    prompt_cache: bool = True,
    **body_options: Any,
) -> Any:
    """Run ``template`` over ``data`` and return a :class:`BatchResult` (see the module doc).

    ``data``: a DataFrame (placeholders name columns), a Series or a list (``{value}``).
    ``client``: in a notebook where ``%load_ext claude_magic`` ran, the magics' client (their
    ``%config``, cache and emulator); else a new ``Client()`` from the environment, closed after.
    ``concurrency``: the most requests in flight (the window adapts below it).
    ``api="batch"``: Message Batches at half price; ``poll_interval`` is the first wait between polls.
    ``dry_run``: send nothing but ``count_tokens``; the estimate is in ``result.dry_run``.
    ``budget``: USD; no request starts unless the spend so far plus the worst case of every
    request in flight (its input plus ``max_tokens`` of output) stays within it.
    ``cache=False`` neither reads nor writes the response cache; ``refresh=True`` sends every
    prompt again and overwrites the cached answers.
    ``prompt_cache``: in live runs, mark the prefix the requests share (the system prompt, the
    template's text before its first placeholder) for the API's prompt cache when it is long enough,
    so that it is paid once in full and then at the cache-read price (the first request goes alone);
    ``False`` sends no mark. The summary shows what the prompt cache wrote, read and saved.
    ``progress(Progress)`` is called on this thread about ten times a second, and once at the end.
    ``background=True``: return a :class:`BatchJob` at once (after the cache lookup) and run in
    the background at ``batch`` priority, below interactive calls; ``progress`` is then called on
    the job's thread. ``job.result()`` waits and returns the :class:`BatchResult`.
    Other keyword arguments (``stop_sequences``, ``effort``, ``thinking`` …) go into every request.
    Raises ConfigError before sending anything for a bad template or option;
    :class:`BatchInterrupted` (a KeyboardInterrupt) on Ctrl-C, carrying the partial result.
    """
    if client is None:
        client = kernel_client()  # in a notebook with the extension loaded: the magics' client
    own_client = client is None
    if client is None:
        from ..client import Client

        client = Client()
    handed_over = False
    try:
        opts = _resolve_options(client, model=model, max_tokens=max_tokens, system=system,
                                concurrency=concurrency, api=api, budget=budget, cache=cache, refresh=refresh,
                                poll_interval=poll_interval, body_options=body_options, schema=schema,
                                prompt_cache=prompt_cache)
        if background and dry_run:
            raise ConfigError("a dry run sends nothing to wait for: drop background=True (or dry_run=True)")
        plan = plan_prompts(template, data, model=opts.model)
        budget_gate = _make_budget(opts)
        outcome = _run(client, plan, opts, budget_gate, dry_run, progress, _label(template), background,
                       client.close if own_client else None)
        handed_over = background  # the job closes a client of its own when it ends
        return outcome
    finally:
        if own_client and not handed_over:
            client.close()


def _label(template: str) -> str:
    """The head of a template, for job listings (never the rows' values)."""
    head = " ".join(template.split())
    return head if len(head) <= 40 else head[:39] + "…"


def _run(client: Client, plan: PromptPlan, opts: _Options, budget: _Budget | None, dry_run: bool,
         progress: Callable[[Progress], Any] | None, label: str = "", background: bool = False,
         on_close: Callable[[], Any] | None = None) -> BatchResult | BatchJob:
    started = time.monotonic()
    state = _State(plan)
    state.progress.status = "cache"
    todo, keys = _lookup(client, opts, state) if not dry_run else _peek(client, opts, state)
    if dry_run:
        report = _dry_run(client, opts, state, todo)
        report.cache_write_tokens, report.cache_read_tokens, report.prompt_cache_saved = expected_use(
            plan, opts, todo, report.text_tokens)
        return _finish(plan, state, opts, started, dry_run=report)
    engine: _Live | _Batches
    if opts.api == "batch":
        engine = _Batches(client, opts, state, todo, keys, budget)
        state.progress.status = "submitting"
    else:
        engine = _Live(client, opts, state, todo, budget)
        state.progress.status = "live"
    if background:
        def conclude(cancelled: bool) -> BatchResult:
            if cancelled:
                state.stop_with(Stop.CANCELLED)
                state.progress.status = "cancelled"
            return _conclude(plan, state, opts, started, budget, None)

        job = BatchJob(client, label, state, conclude, progress, on_close)
        engine.job = job.id
        return job.start(engine.run() if todo else None)
    engine.job = client.scheduler.open_job(label)
    try:
        if todo:
            _drive(client, engine.run(), state, progress)
    except KeyboardInterrupt:
        state.progress.status = "interrupted"
        waiting = f" while waiting for {', '.join(state.batch_ids)}: run again to resume polling"
        state.stop_with(Stop.INTERRUPTED, waiting if state.batch_ids else "")
        result = _finish(plan, state, opts, started)
        if progress is not None:
            with contextlib.suppress(Exception, KeyboardInterrupt):  # a second Ctrl-C: we are stopping anyway
                progress(_final_progress(state))
        raise BatchInterrupted(result, f"interrupted: {result.summary}") from None
    finally:
        client.scheduler.close_job(engine.job)
    return _conclude(plan, state, opts, started, budget, progress)


def _conclude(plan: PromptPlan, state: _State, opts: _Options, started: float, budget: _Budget | None,
              progress: Callable[[Progress], Any] | None) -> BatchResult:
    result = _finish(plan, state, opts, started)
    if budget is not None and result.summary.remaining_rows:
        state.stop_with(Stop.BUDGET)
    if state.stop is Stop.BUDGET:
        state.stop_detail = f": {result.summary.remaining_rows:,} rows remain"
    result.summary.stop, result.summary.stopped = state.stop, state.stopped
    if progress is not None:
        progress(_final_progress(state))
    return result


def _final_progress(state: _State) -> Progress:
    snap = state.snapshot()
    snap.finished, snap.eta, snap.in_flight = True, 0.0, 0
    snap.status = state.progress.status if state.stopped else "done"
    return snap


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
    prompt_cache: bool = True,
    **options: Any,
) -> Any:
    """Ask Claude ``template`` for every row of ``data``; return the answers as a series of the
    source's library, one per row, missing where a row was skipped, failed or not run.

    ``data``: a DataFrame (placeholders name any of its columns), a Series or a list (``{value}``),
    of pandas, polars (a LazyFrame is collected, with a warning) or pyarrow (Table, ChunkedArray,
    Array). The answers: a pandas Series (dtype ``string``, ``pd.NA`` where missing) aligned to
    the index for pandas and lists, with the summary as a dict in ``series.attrs["claude"]``; a
    polars Series (``String``, null where missing) for polars; a ``pyarrow.ChunkedArray`` for
    Arrow, in row order. For the errors table, the dry-run estimate, the rows a budget left or
    (outside pandas) the summary, call :func:`run_batch` (same arguments), which returns the whole
    :class:`BatchResult`. An error every row would share (bad key, unknown model) is raised after
    the run stops.

    >>> df["label"] = map_prompts("Sentiment of {review} ({lang}). One word.", df, model="claude-haiku-5-5")
    >>> pldf = pldf.with_columns(label=map_prompts("Sentiment of: {review}", pldf))
    """
    result: BatchResult = run_batch(
        template, data, client=client, model=model, max_tokens=max_tokens, system=system,
        concurrency=concurrency, api=api, dry_run=dry_run, budget=budget, cache=cache,
        refresh=refresh, progress=progress, prompt_cache=prompt_cache, **options)
    if result.aborted is not None:
        raise result.aborted
    if isinstance(result.series, pd.Series):  # polars and Arrow series carry no metadata
        result.series.attrs["claude"] = result.summary.to_dict()
    return result.series
