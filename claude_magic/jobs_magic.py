"""Background batch jobs in a notebook: where their answers go, and ``%claude_jobs``.

``%claude_batch … --background`` returns at once with the job bound to ``_claude_job`` (a
:class:`~claude_magic.batch.BatchJob`); its progress bar stays in the launching cell and keeps
moving while the person works in other cells, and ends with the summary line.

DEST is filled when the job ends, but never while a cell of the person's is running, since a cell
reading ``df`` must not see it change under it:

- in a kernel, at once if the kernel is idle: the job's thread asks the kernel's event loop to
  call back on the main thread, and that callback does nothing while a cell runs (a cell using
  top-level ``await`` yields to that same loop mid-cell);
- otherwise after the running cell ends (``post_run_cell``), which in terminal IPython is the
  next prompt (or while waiting at it, on IPython's prompt loop);
- at once when the person asks for the result: ``_claude_job.result()`` / ``.wait()`` or
  ``%claude_jobs wait``.

DEST is resolved by name when it is written, as when it was checked at launch: if the name no
longer holds a DataFrame (for ``df.col``) the summary says so in one line and the answers stay in
``_claude_batch`` (the job's result) rather than going somewhere unexpected. A cancelled job writes
the rows it answered; rows it did not keep their old values, as in every run.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_magic, magics_class

from ._boundary import MagicError, split_args

if TYPE_CHECKING:
    from ._session import Session
    from .batch import BatchJob
    from .batch_magic import ProgressView

__all__ = ["JOB_NAME", "Deliveries", "JobsMagics", "jobs_table", "kernels_table"]

JOB_NAME = "_claude_job"  # the last background job, in the user's namespace
WAIT_ON_CANCEL = 30.0     # s: %claude_jobs cancel waits this long for a job to keep what it answered


class _Delivery:
    """Where one job's answers go once it ends: ``dest`` in ``ns``, the summary into ``view``."""

    def __init__(self, job: BatchJob, writer: Callable[[], Any], ns: dict[str, Any],
                 view: ProgressView | None, announce: bool) -> None:
        self.job = job
        self.writer = writer  # makes DEST's writer: DEST is resolved by name when the answers arrive
        self.ns = ns
        self.view = view
        self.announce = announce

    def deliver(self) -> None:
        from .batch_magic import RESULT_NAME, summary_line

        problem = True
        try:
            result = self.job.result()
        except Exception as exc:  # the engine failed: say so where the bar was
            line = f"claude_batch: job {self.job.id} failed: {exc}"
        else:
            self.ns[RESULT_NAME] = result
            line = summary_line(result, interrupted=self.job.cancelled())
            problem = result.aborted is not None
            try:
                write = self.writer()  # the name as it is now
                note = write(result) if write is not None else None
                line += f" · {note}" if note else ""
            except MagicError as exc:
                line += f" · not written: {exc} · the answers are in {RESULT_NAME}.series"
                problem = True
        if self.view is not None:
            self.view.close(line)
        elif self.announce or problem:
            print(line)


class Deliveries:
    """The background jobs of one shell whose answers are still to be written (see the module
    docstring). ``pre_run_cell``/``post_run_cell`` are registered as the shell's event hooks."""

    def __init__(self) -> None:
        self._pending: list[_Delivery] = []
        self._lock = threading.Lock()
        self.cell_running = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, job: BatchJob, writer: Callable[[], Any], ns: dict[str, Any], view: ProgressView | None,
            announce: bool = True) -> None:
        """Write ``job``'s answers when it ends, with the writer ``writer()`` makes then (None: no
        DEST); its summary replaces ``view`` (without one, it is printed if ``announce``, or if
        something went wrong)."""
        delivery = _Delivery(job, writer, ns, view, announce)
        with self._lock:
            self._pending.append(delivery)
        self._loop = _main_loop()
        job.add_result_hook(lambda _: self.flush())
        job.add_done_callback(self._ended)

    def _ended(self, job: BatchJob) -> None:
        """On the job's thread: have the main thread write, when it is free."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._when_idle)
            except RuntimeError:  # the loop closed meanwhile: post_run_cell will do it
                pass

    def _when_idle(self) -> None:
        if not self.cell_running:
            self.flush()

    def pre_run_cell(self, info: Any = None) -> None:
        self.cell_running = True

    def post_run_cell(self, result: Any = None) -> None:
        self.cell_running = False
        self.flush()

    def flush(self) -> None:
        """Write every ended job's answers (main thread only: elsewhere it waits for the hooks)."""
        if threading.current_thread() is not threading.main_thread():
            return
        with self._lock:
            ready = [d for d in self._pending if d.job.done()]
            self._pending = [d for d in self._pending if d not in ready]
        for delivery in ready:
            delivery.deliver()


def _main_loop() -> asyncio.AbstractEventLoop | None:
    """The main thread's event loop: the kernel's (running now, during the cell), or IPython's
    prompt loop in a terminal (it runs while the prompt waits)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    try:
        from IPython import get_ipython
        from IPython.core.async_helpers import get_asyncio_loop
        from IPython.terminal.interactiveshell import TerminalInteractiveShell
    except ImportError:  # an IPython without them: post_run_cell alone
        return None
    if not isinstance(get_ipython(), TerminalInteractiveShell):
        return None  # no prompt loop to call back on (a plain shell, a script): post_run_cell alone
    return get_asyncio_loop()


def _rows(job: BatchJob) -> str:
    p = job.progress
    return f"{p.done + p.failed + p.skipped:,}/{p.total:,}"


def jobs_table(jobs: list[BatchJob]) -> str:
    """One line per job: id, state, rows, rate, ETA, cost so far, the template's head."""
    from . import pricing
    from .batch._report import _duration

    header = ("id", "state", "rows", "rate", "ETA", "cost", "template")
    rows = [header]
    for job in jobs:
        p = job.progress
        eta = _duration(p.eta) if p.eta is not None and job.running() else ""
        rate = f"{p.rate:.1f} req/s" if p.rate else ""
        rows.append((job.id, str(job.state), _rows(job), rate, eta, pricing.format_cost(p.cost), job.label))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
                     for r in rows)


def _share(members: dict[str, Any], state: dict[str, Any], bucket: str, jobs_there: int) -> str:
    """A job's share of a bucket's limits: its kernel's share, split between the kernel's jobs."""
    entry = state.get("buckets", {}).get(bucket, {})
    share = entry.get("share") if isinstance(entry, dict) else None
    if share is None:
        rivals = sum(1 for s in members.values() if s.get("buckets", {}).get(bucket, {}).get("batch"))
        if rivals > 1 or not (isinstance(entry, dict) and entry.get("batch")):
            return ""
        share = 1.0
    return f"{100 * float(share) / max(1, jobs_there):.0f}%"


def kernels_table(members: dict[str, Any], me: str | None = None) -> str:
    """One line per job of every kernel sharing the key (and one for a kernel with no job): the
    kernel (user@host:pid), job id, state, rows, the model class it spends from, its share of that limit.
    No template, no prompt: other people's work is not ours to read."""
    header = ("kernel", "job", "state", "rows", "limit", "share")
    rows = [header]
    for member, state in sorted(members.items(), key=lambda kv: str(kv[1].get("kernel", ""))):
        kernel = str(state.get("kernel", member)) + (" (this kernel)" if member == me else "")
        jobs = [j for j in state.get("jobs", []) if isinstance(j, dict)]
        if not jobs:
            rows.append((kernel, "", "interactive" if state.get("buckets") else "idle", "", "", ""))
        for job in jobs:
            buckets = [b for b in job.get("buckets", []) if isinstance(b, str)] or [""]
            count = f"{job['done'] + job.get('failed', 0):,}/{job['total']:,}" if "total" in job else ""
            for bucket in buckets:
                jobs_there = sum(1 for j in jobs if bucket in j.get("buckets", []))
                rows.append((kernel, str(job.get("id", "")), str(job.get("state", "")), count,
                             bucket.split(":", 1)[-1], _share(members, state, bucket, jobs_there)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


@magics_class
class JobsMagics(Magics):
    """``%claude_jobs``: this kernel's background batch jobs."""

    def __init__(self, shell: Any, session: Session, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session = session

    @line_magic
    def claude_jobs(self, line: str = "") -> None:
        """%claude_jobs [list] [--all-kernels] | cancel ID|--all | wait [ID]

        list (the default): this kernel's batch jobs (id, state, rows done/total, rate, ETA, cost
        so far, the template's head); with --all-kernels, the jobs of every kernel that shares this
        API key through the coordinator, and each one's share of the rate limits (no prompts).
        cancel: stop sending (the rows answered are kept and written to DEST after this cell).
        wait: wait for a job (every running one without ID) and write its DEST now; the stop
        button stops the wait, never the job.
        """
        words = split_args(line)
        action = words[0] if words else "list"
        if "--all-kernels" in words and [w for w in words if w != "--all-kernels"] in ([], ["list"]):
            self._all_kernels()
            return
        jobs = self.session.jobs()
        if action == "list" and len(words) <= 1:
            print(jobs_table(jobs) if jobs else "no batch jobs in this kernel: start one with "
                  "%claude_batch SOURCE \"TEMPLATE\" -o DEST --background")
            return
        if action == "cancel" and len(words) == 2:
            chosen = [j for j in jobs if j.running()] if words[1] == "--all" else [self._job(jobs, words[1])]
            for job in chosen:
                job.cancel()
            for job in chosen:
                try:
                    job.exception(timeout=WAIT_ON_CANCEL)
                except TimeoutError:
                    raise MagicError(f"job {job.id} did not stop within {WAIT_ON_CANCEL:g} s") from None
            print(f"cancelled {len(chosen)} job{'s' if len(chosen) != 1 else ''}"
                  + (f": {', '.join(j.id for j in chosen)}" if chosen else " (none was running)"))
            return
        if action == "wait" and len(words) <= 2:
            chosen = [self._job(jobs, words[1])] if len(words) == 2 else [j for j in jobs if j.running()]
            for job in chosen:
                try:
                    job.result()  # waits (interruptibly); its result hook writes DEST now
                except Exception:  # noqa: S110 - the failure is shown where the job's bar was
                    pass
            return
        raise MagicError(f"unknown %claude_jobs arguments {line.strip()!r}: use %claude_jobs "
                         "[--all-kernels], %claude_jobs cancel ID|--all or %claude_jobs wait [ID]")

    def _all_kernels(self) -> None:
        from ._coordinator import describe

        coordinator = self.session.client.scheduler.coordinator
        if coordinator is None:
            raise MagicError("kernels do not share the rate limits here (coordinator is 'none'): "
                             "%config ClaudeMagics.coordinator = 'auto' turns sharing on")
        try:
            members = coordinator.members()
        except Exception as exc:
            raise MagicError(f"the coordinator at {coordinator.where} failed ({describe(exc)}): "
                             "check it, or %config ClaudeMagics.coordinator = 'none'") from None
        if not members:
            print(f"no kernel is sending requests with this API key (coordinator: {coordinator.where})")
            return
        print(kernels_table(members, coordinator.member))

    @staticmethod
    def _job(jobs: list[BatchJob], wanted: str) -> BatchJob:
        for job in jobs:
            if job.id == wanted:
                return job
        known = ", ".join(j.id for j in jobs) or "none"
        raise MagicError(f"no batch job {wanted!r} in this kernel (jobs: {known}); %claude_jobs lists them")
