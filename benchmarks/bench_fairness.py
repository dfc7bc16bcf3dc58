"""Kernels sharing one account's rate limit: fairness, goodput, 429s, interactive latency, a death.

Run: .venv/bin/python benchmarks/bench_fairness.py [--rows 600] [--rpm 600] [--latency 0.3]
     [--calls 40] [--spacing 0.5] [--stagger 5] [--lead 3] [--kill-at 0.6]
     [--scenarios dir,none,redis] [--quick] [--plot artifacts/bench_fairness.png] [--raw runs.json]

Each kernel is a **process** of its own (this file run with ``--worker``), with its own ``Client``
(the same API key, its own fresh cache directory, so nothing is answered from a cache), against one
emulator in this process, limited to ``--rpm`` requests a minute (its bucket holds one second's
worth), each request taking about ``--latency`` seconds. Every client sends a header naming its
process, so the emulator's record of what it received tells whose request each was. One run per
scenario, each on a fresh emulator:

- ``dir``: ``coordinator=<one shared directory>`` (the diskcache store: the kernels of one host);
- ``none``: ``coordinator="none"``, the baseline: each client paces alone from the rate-limit
  headers;
- ``redis``: ``coordinator="redis://..."``, a real ``redis-server`` started here on a free port
  (nothing saved to disk) and stopped after; the clients share no directory at all (standing in for
  separate hosts). Skipped, with one line, without ``redis-server`` or redis-py.

The script of a run: four processes start; the interactive one makes ``--calls`` streamed
``client.complete`` calls, one every ``--spacing`` s, alone (idle time to first token); then batch
processes b1 and b2 start a ``run_batch`` of ``--rows`` distinct prompts each, b3 joins
``--stagger`` s later; ``--lead`` s after b3's first request the interactive process makes the same
calls again (contended); once those are done and b2 has sent ``--kill-at`` of its rows, b2 is
SIGKILLed; b1 and b3 finish.

Measured at the emulator (a sampler reads its records every 0.05 s; each batch prompt is distinct,
so a prompt received again was answered 429 the time before, and a request is *accepted* when it is
its prompt's last):

- **fairness**: each batch process's accepted requests per second while all three run (from b3's
  first request to the kill, or to the first batch that ends), and the largest deviation from their
  mean (goal: within 10 %);
- **goodput**: accepted requests of every process from the first batch request to the last batch's
  end, against the ideal ``(accepted - burst) / rate + latency`` (as bench_batch), goal >= 0.90;
- **429s**: batch requests received beyond one per prompt, as a share of those received (goal
  <= 5 %), and the interactive process's; rows the surviving batches ended without (goal 0);
- **interactive latency**: time to first token (the caller's clock, from calling ``complete`` to the
  first ``on_text``), p95 contended against p95 idle, goal within +20 % (of 40 calls the p95 lies
  between the third and second slowest: two calls answered 429, each waiting out a whole second of
  ``retry-after``, miss it);
- **take-up after a death**: the first 2 s window after the kill in which the survivors' accepted
  requests reach 0.9 of the limit; the time from the kill to that window's midpoint (a window's rate
  is a measure of its middle), goal <= 5 s. Beside it, read from the store by a watcher (every
  0.25 s, a read-only beat, this module's only use of the package's private parts): when the killed
  kernel's lease was gone.

The plot (``--plot``; without matplotlib the tables still print) shows, per scenario, each process's
accepted requests per second in 1 s bins, stacked (the top is the total), the requests answered 429
below zero, and the joins (dash-dot), ends (dotted) and the kill marked.

The emulator shares this process's interpreter with the sampler, the watcher and the pipes of the
workers; the workers are separate interpreters (a 2-core machine runs them all mostly idle at these
rates).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "claude-haiku-5-5"
MAX_TOKENS = 16
KEY = "sk-bench"
HEADER = "x-bench-worker"       # names the process that sent a request (the emulator records it)
BATCHES = ("b1", "b2", "b3")
CALLER = "i"                    # the interactive process
VICTIM = "b2"                   # the batch process that is SIGKILLed
SAMPLE = 0.05                   # s between two reads of the emulator's records
WATCH = 0.25                    # s between two reads of the coordinator's store
BIN = 1.0                       # s: the plot's bins
TAKE_UP = 2.0                   # s: the sliding window of the take-up measure
START_DEADLINE = 120.0          # s: the most a worker may take to get ready (imports on a loaded machine)
NONE = np.array([])             # no times at all
SCENARIOS = {"dir": "one host (directory store)", "none": "uncoordinated (none)",
             "redis": "many hosts (Redis store)"}


# -- the workers: this file with --worker, one process each ------------------------------------------

def emit(event: str, **fields: Any) -> None:
    """One JSON line to the parent, dated by the wall clock (shared by every process)."""
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def prompts(name: str, n: int) -> list[str]:
    return [f"kernel {name}, review {i}: the product arrived late but works; positive or negative?"
            for i in range(n)]


def batch_worker(client: Any, spec: dict[str, Any]) -> None:
    import pandas as pd

    from claude_magic.batch import run_batch

    frame = pd.DataFrame({"review": prompts(spec["name"], spec["rows"])})
    emit("ready")
    sys.stdin.readline()
    emit("started")
    result = run_batch("Classify: {review}", frame, client=client, model=MODEL, max_tokens=MAX_TOKENS)
    summary = result.summary
    emit("ended", answered=int(result.series.notna().sum()), failed=summary.failed_rows,
         retries=summary.retries)


def interactive_calls(client: Any, texts: list[str], spacing: float) -> dict[str, Any]:
    """Streamed calls, started ``spacing`` s apart (or back to back if one takes longer)."""
    ttft: list[float] = []
    retried, errors = 0, []
    begin = time.monotonic()
    for i, text in enumerate(texts):
        if (wait := begin + i * spacing - time.monotonic()) > 0:
            time.sleep(wait)
        first: list[float] = []

        def on_text(_delta: str, first: list[float] = first) -> None:
            if not first:
                first.append(time.perf_counter())

        started = time.perf_counter()
        try:
            reply = client.complete(text, model=MODEL, max_tokens=MAX_TOKENS, stream=True, on_text=on_text)
        except Exception as exc:  # a failed call is counted, not fatal: the table says so
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        if first:
            ttft.append(first[0] - started)
        retried += bool(reply.retries > 0 or reply.attempts > 1)
    return {"ttft": ttft, "retried": retried, "errors": errors}


def interactive_worker(client: Any, spec: dict[str, Any]) -> None:
    client.count_tokens("warm up the loop and the connection", model=MODEL)  # not the messages bucket
    emit("ready")
    for phase in ("idle", "busy"):
        if not sys.stdin.readline():
            return
        texts = [f"{text} ({phase})" for text in prompts(spec["name"], spec["calls"])]
        emit("calls", phase=phase, **interactive_calls(client, texts, spec["spacing"]))


def worker(spec: dict[str, Any]) -> None:
    from claude_magic.client import Client

    with Client(api_key=KEY, base_url=spec["url"], cache_dir=spec["cache_dir"],
                coordinator=spec["coordinator"], extra_headers={HEADER: spec["name"]}) as client:
        (batch_worker if spec["kind"] == "batch" else interactive_worker)(client, spec)


# -- the parent: processes, the emulator's records, the store ------------------------------------------

class Worker:
    """One worker process: its JSON lines read on a thread, ``go`` written to its stdin."""

    def __init__(self, spec: dict[str, Any], logs: Path) -> None:
        self.name = spec["name"]
        self.log = logs / f"{self.name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_MAGIC_", "ANTHROPIC_"))}
        with open(self.log, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--worker", json.dumps(spec)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        self.events: list[dict[str, Any]] = []
        self.killed: float | None = None
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"bench-{self.name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def event(self, name: str, **match: Any) -> dict[str, Any] | None:
        with self._changed:
            return next((e for e in self.events if e["event"] == name
                         and all(e.get(k) == v for k, v in match.items())), None)

    def wait(self, name: str, timeout: float, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while (found := self.event(name, **match)) is None:
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
                    raise RuntimeError(f"worker {self.name} sent no {name!r} within {timeout:g} s "
                                       f"(exit code {self.process.poll()}): {' | '.join(tail)}")
                self._changed.wait(min(left, 0.5))
        return found

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self) -> float:
        os.kill(self.process.pid, signal.SIGKILL)
        self.killed = time.time()
        return self.killed

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """End the process if it still runs (SIGKILL: it is a benchmark's worker), then reap it."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        self._reader.join(timeout=5)


def prompt_of(body: Any) -> str:
    return json.dumps(body.get("messages", ""), ensure_ascii=False) if isinstance(body, dict) else ""


class Sampler(threading.Thread):
    """Every ``SAMPLE`` s, the emulator's new POST /v1/messages: (when seen, which process, prompt)."""

    def __init__(self, emu: Any) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.emu = emu
        self.records: list[tuple[float, str, str]] = []
        self.received: Counter[str] = Counter()
        self.halt = threading.Event()
        self._seen = 0

    def run(self) -> None:
        while not self.halt.wait(SAMPLE):
            self.take()
        self.take()

    def take(self) -> None:
        now = time.time()
        records = self.emu.requests
        for r in records[self._seen:]:
            if r.method == "POST" and r.path == "/v1/messages":
                name = r.headers.get(HEADER, "?")
                self.records.append((now, name, prompt_of(r.json)))
                self.received[name] += 1
        self._seen = len(records)


class Watcher(threading.Thread):
    """Every ``WATCH`` s, the group's live members as the store has them: (when, {pid: state})."""

    def __init__(self, setting: str, url: str) -> None:
        super().__init__(name="bench-watcher", daemon=True)
        from claude_magic._coordinator import TTL, group_of, open_store

        self.store = open_store(setting)
        self.group = group_of(url.split("://", 1)[1], KEY)
        self.ttl = TTL
        self.samples: list[tuple[float, dict[int, dict[str, Any]]]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        if self.store is None:
            return
        while not self.halt.wait(WATCH):
            try:
                beat = self.store.beat(self.group, "bench-watcher", None, self.ttl, {})
            except Exception:  # noqa: BLE001 - a failed read is a gap in the record, not an end
                continue
            self.samples.append((time.time(), {int(s.get("pid", 0)): s for s in beat.members.values()}))
        self.store.close()

    def gone(self, pid: int, after: float) -> float | None:
        """When ``pid`` was first missing from the members after ``after``."""
        return next((t for t, members in self.samples if t > after and pid not in members), None)


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str | None]:
    """A throwaway redis-server on a free port (nothing saved): its URL, or None (said why)."""
    executable = shutil.which("redis-server") or ("/usr/bin/redis-server"
                                                  if Path("/usr/bin/redis-server").exists() else None)
    if executable is None or importlib.util.find_spec("redis") is None:
        missing = "redis-server" if executable is None else "redis-py (pip install redis)"
        print(f"\n{missing} is not installed: the Redis scenario is skipped")
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "redis.log", "wb") as log:
        process = subprocess.Popen(
            [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory)], stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        import redis

        probe = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(redis.RedisError):
                if probe.ping():
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (directory / "redis.log").read_text(errors="replace").splitlines()[-3:]
                raise RuntimeError(f"redis-server did not answer PING on port {port}: {' | '.join(tail)}")
            time.sleep(0.05)
        probe.close()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- one scenario --------------------------------------------------------------------------------------

@dataclass
class Run:
    """What one scenario left behind: the emulator's records, the workers' events, the store's."""

    key: str
    records: list[tuple[float, str, str]]
    events: dict[str, list[dict[str, Any]]]
    killed: float | None
    victim_pid: int
    watch: list[tuple[float, dict[int, dict[str, Any]]]] = field(default_factory=list)
    lease_gone: float | None = None
    warnings: list[str] = field(default_factory=list)


def emulator(rpm: float, latency: float) -> Any:
    from claude_magic.emulator import Emulator

    # ttft + output at token_rate: a 16-token reply takes about `latency` seconds (as bench_batch)
    token_rate = MAX_TOKENS / (latency * 0.25) if latency > 0 else None
    return Emulator(rpm=rpm, ttft=latency * 0.75, token_rate=token_rate)


def run_scenario(key: str, coordinator: str, args: argparse.Namespace, tmp: Path) -> Run:
    with emulator(args.rpm, args.latency) as emu:
        sampler = Sampler(emu)
        sampler.start()
        watcher = Watcher(coordinator, emu.url) if coordinator != "none" else None
        if watcher is not None:
            watcher.start()
        logs = tmp / f"{key}-logs"
        logs.mkdir()
        workers: dict[str, Worker] = {}
        try:
            for name in (CALLER, *BATCHES):
                spec = {"kind": "interactive" if name == CALLER else "batch", "name": name, "url": emu.url,
                        "coordinator": coordinator, "cache_dir": str(tmp / f"{key}-cache-{name}"),
                        "rows": args.rows, "calls": args.calls, "spacing": args.spacing}
                workers[name] = Worker(spec, logs)
            for w in workers.values():
                w.wait("ready", START_DEADLINE)
            caller = workers[CALLER]
            caller.go()  # idle calls
            caller.wait("calls", args.calls * args.spacing + 60, phase="idle")
            return drive(key, workers, sampler, watcher, args)
        finally:
            for w in workers.values():
                w.stop()
            sampler.halt.set()
            sampler.join(timeout=5)
            if watcher is not None:
                watcher.halt.set()
                watcher.join(timeout=5)


def drive(key: str, workers: dict[str, Worker], sampler: Sampler, watcher: Watcher | None,
          args: argparse.Namespace) -> Run:
    """Batches join, the contended calls, the kill; returns when every batch has ended or died."""
    deadline = time.monotonic() + args.timeout
    notes: list[str] = []

    def until(condition: Callable[[], bool], what: str) -> None:
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{key}: {what} did not happen within --timeout {args.timeout:g} s")
            time.sleep(SAMPLE)

    workers["b1"].go()
    workers["b2"].go()
    time.sleep(args.stagger)
    workers["b3"].go()
    until(lambda: sampler.received["b3"] > 0, "b3's first request")
    time.sleep(args.lead)
    workers[CALLER].go()  # contended calls
    victim = workers[VICTIM]
    ended = [workers[name] for name in BATCHES if name != VICTIM]

    def kill_due() -> bool:
        return (workers[CALLER].event("calls", phase="busy") is not None
                and sampler.received[VICTIM] >= args.kill_at * args.rows)

    until(lambda: kill_due() or victim.event("ended") is not None, f"{VICTIM} reaching --kill-at")
    if victim.event("ended") is not None:
        notes.append(f"{VICTIM} ended before the kill: raise --rows or lower --kill-at")
    else:
        victim.kill()
    if any(w.event("ended") is not None for w in ended):
        notes.append("a batch ended before the kill (while all three should run): raise --rows")
    until(lambda: all(w.event("ended") is not None or not w.running for w in ended), "the survivors' end")
    time.sleep(2 * SAMPLE)
    sampler.take()
    lease_gone = None
    if watcher is not None and victim.killed is not None:
        until(lambda: watcher.gone(victim.process.pid, victim.killed or 0.0) is not None
              or time.time() > (victim.killed or 0.0) + 15, "the killed lease's end")
        lease_gone = watcher.gone(victim.process.pid, victim.killed)
    return Run(key=key, records=list(sampler.records),
               events={n: list(w.events) for n, w in workers.items()}, killed=victim.killed,
               victim_pid=victim.process.pid, watch=list(watcher.samples) if watcher is not None else [],
               lease_gone=lease_gone, warnings=notes)


# -- measures ------------------------------------------------------------------------------------------

@dataclass
class Measures:
    key: str
    window: tuple[float, float]
    rates: dict[str, float]              # batch process -> accepted req/s while all three run
    deviation: float                     # largest |rate - mean| / mean
    goodput: float                       # ideal / achieved
    span: float
    accepted_total: int
    batch_429: float                     # share of batch requests received answered 429
    batch_received: int
    caller_429: int
    caller_bad: int                      # interactive calls retried or failed (client side)
    lost: int                            # rows the batches that ended have no answer for
    ttft: dict[str, list[float]]         # phase -> seconds
    take_up: float | None                # s from the kill to the survivors at >= 0.9 of the limit
    lease_gone: float | None             # s from the kill to the lease's end in the store
    accepted: dict[str, np.ndarray]      # process -> when each accepted request arrived
    rejected: dict[str, np.ndarray]      # process -> when each request answered 429 arrived
    joins: dict[str, float]
    ends: dict[str, float]
    killed: float | None
    t0: float


def split(records: list[tuple[float, str, str]]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per process, the arrival times of accepted requests (the last of each prompt) and of the ones
    answered 429 (a prompt that came again)."""
    last: dict[tuple[str, str], int] = {}
    for i, (_, name, text) in enumerate(records):
        last[(name, text)] = i
    accepted: dict[str, list[float]] = {}
    rejected: dict[str, list[float]] = {}
    for i, (t, name, text) in enumerate(records):
        (accepted if last[(name, text)] == i else rejected).setdefault(name, []).append(t)
    names = {name for _, name, _ in records}
    return ({n: np.array(accepted.get(n, [])) for n in names},
            {n: np.array(rejected.get(n, [])) for n in names})


def count(times: np.ndarray | None, a: float, b: float) -> int:
    return 0 if times is None else int(np.count_nonzero((times >= a) & (times < b)))


def take_up_after(accepted: dict[str, np.ndarray], killed: float, end: float, limit: float) -> float | None:
    """Seconds from ``killed`` to the midpoint of the first ``TAKE_UP`` s window in which the
    survivors' accepted requests reach 0.9 of the limit (None: never before ``end``)."""
    survivors = np.sort(np.concatenate([t for name, t in accepted.items() if name != VICTIM] or [NONE]))
    need = 0.9 * limit * TAKE_UP
    for start in np.arange(killed, end - TAKE_UP + 1e-9, SAMPLE):
        if count(survivors, start, start + TAKE_UP) >= need:
            return float(start + TAKE_UP / 2 - killed)
    return None


def ends_of(run: Run) -> list[dict[str, Any]]:
    """The ``ended`` event of each batch process that ended (with its name)."""
    return [{**e, "name": name} for name in BATCHES for e in run.events[name] if e["event"] == "ended"]


def measure(run: Run, args: argparse.Namespace) -> Measures:
    rate = args.rpm / 60
    accepted, rejected = split(run.records)
    joins = {name: float(np.min(np.concatenate([accepted.get(name, NONE), rejected.get(name, NONE)])))
             for name in BATCHES if name in accepted or name in rejected}
    ends = {e["name"]: e["t"] for e in ends_of(run)}
    finish = [t for t in ([run.killed] if run.killed is not None else []) + list(ends.values())]
    window = (joins["b3"], min(finish))
    length = window[1] - window[0]
    rates = {name: count(accepted.get(name), *window) / length for name in BATCHES}
    mean = float(np.mean(list(rates.values())))
    deviation = max(abs(r - mean) for r in rates.values()) / mean

    t0 = min(joins.values())
    t1 = max(t for name, t in ends.items() if name != VICTIM or run.killed is None)
    total = sum(count(t, t0, t1 + 1e-3) for t in accepted.values())
    ideal = max(0.0, total - rate) / rate + args.latency  # the bucket's burst: one second's worth
    goodput = ideal / (t1 - t0)
    batch_received = sum(count(accepted.get(n), 0, math.inf) + count(rejected.get(n), 0, math.inf)
                         for n in BATCHES)
    batch_rejected = sum(count(rejected.get(n), 0, math.inf) for n in BATCHES)

    calls = {e["phase"]: e for e in run.events[CALLER] if e["event"] == "calls"}
    ttft = {phase: calls[phase]["ttft"] if phase in calls else [] for phase in ("idle", "busy")}
    caller_bad = sum(calls[p]["retried"] + len(calls[p]["errors"]) for p in calls)
    lost = sum(args.rows - e["answered"] for e in ends_of(run))
    take_up = (take_up_after(accepted, run.killed, t1, rate) if run.killed is not None else None)
    lease_gone = (run.lease_gone - run.killed if run.lease_gone is not None and run.killed is not None
                  else None)
    return Measures(
        key=run.key, window=window, rates=rates, deviation=deviation, goodput=goodput, span=t1 - t0,
        accepted_total=total, batch_429=batch_rejected / max(batch_received, 1),
        batch_received=batch_received, caller_429=count(rejected.get(CALLER), 0, math.inf),
        caller_bad=caller_bad, lost=lost, ttft=ttft, take_up=take_up, lease_gone=lease_gone,
        accepted=accepted, rejected=rejected, joins=joins, ends=ends, killed=run.killed, t0=t0)


# -- report --------------------------------------------------------------------------------------------

def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                          for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    print(f"| {line(header)} |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(f"| {line(row)} |")


def verdict(value: float | None, met: bool | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "never" if met is False else "-"
    shown = format(value, fmt)
    return shown if met is None else f"{shown} {'yes' if met else 'NO'}"


def report(ms: list[Measures], args: argparse.Namespace) -> bool:
    rate = args.rpm / 60
    names = [SCENARIOS[m.key] for m in ms]
    print(f"\n## 3 batch processes x {args.rows:,} distinct rows + 1 interactive process, one emulator at "
          f"{args.rpm:,.0f} RPM (burst {rate:g}), ~{args.latency:.2f} s per request\n")
    print(f"b3 joins {args.stagger:g} s after b1 and b2; {args.calls} streamed calls one every "
          f"{args.spacing:g} s, idle then {args.lead:g} s after b3 joined; {VICTIM} SIGKILLed after "
          f"{args.kill_at:.0%} of its rows.\n")
    print("Accepted requests per second while all three batches run:\n")
    rows = [[name, *(f"{m.rates[name]:.2f}" for m in ms)] for name in BATCHES]
    rows.append(["mean", *(f"{np.mean(list(m.rates.values())):.2f}" for m in ms)])
    rows.append(["max / min", *(f"{max(m.rates.values()) / min(m.rates.values()):.3f}" for m in ms)])
    rows.append(["interactive (calls)",
                 *(f"{count(m.accepted.get(CALLER), *m.window) / (m.window[1] - m.window[0]):.2f}"
                   for m in ms)])
    rows.append(["window (s)", *(f"{m.window[1] - m.window[0]:.1f}" for m in ms)])
    table(["process", *names], rows)

    rows = [
        ["largest deviation from the mean", "<= 10%",
         *(verdict(m.deviation, m.deviation <= 0.10, ".1%") for m in ms)],
        ["combined goodput, ideal/achieved", ">= 0.90",
         *(verdict(m.goodput, m.goodput >= 0.90, ".3f") for m in ms)],
        ["  accepted requests, span (s)", "", *(f"{m.accepted_total:,}, {m.span:.1f}" for m in ms)],
        ["batch requests answered 429", "<= 5%",
         *(verdict(m.batch_429, m.batch_429 <= 0.05, ".1%") for m in ms)],
        ["  of batch requests received", "", *(f"{m.batch_received:,}" for m in ms)],
        ["rows lost by the batches that ended", "0", *(verdict(m.lost, m.lost == 0, "d") for m in ms)],
        ["interactive 429s (retried/failed calls)", "0", *(f"{m.caller_429} ({m.caller_bad})" for m in ms)],
        ["TTFT p50 idle -> contended (ms)", "", *(f"{1e3 * p(m.ttft['idle'], 50):.0f} -> "
                                                   f"{1e3 * p(m.ttft['busy'], 50):.0f}" for m in ms)],
        ["TTFT p95 idle -> contended (ms)", "", *(f"{1e3 * p(m.ttft['idle'], 95):.0f} -> "
                                                   f"{1e3 * p(m.ttft['busy'], 95):.0f}" for m in ms)],
        ["TTFT p95 contended / idle", "<= 1.20",
         *(verdict(r, r <= 1.20, ".2f") for m in ms
           for r in [p(m.ttft["busy"], 95) / p(m.ttft["idle"], 95)])],
        ["killed kernel's lease gone after (s)", "<= 4", *(verdict(m.lease_gone, None, ".1f") for m in ms)],
        ["survivors at >= 0.9 of the limit after (s)", "<= 5",
         *(verdict(m.take_up, m.take_up is not None and m.take_up <= 5.0, ".1f") for m in ms)],
    ]
    # The baseline shows what coordination buys: its misses are not failures.
    missed = [row[2 + i] for row in rows for i, m in enumerate(ms) if m.key != "none"
              and (row[2 + i].endswith(" NO") or row[2 + i] == "never")]
    print()
    table(["measure", "goal", *names], rows)
    print(f"(accepted: the last request of each prompt, at the emulator; TTFT from calling complete() to "
          f"the first on_text; take-up: from the kill to the midpoint of the first {TAKE_UP:g} s window at "
          f">= 0.9 of the limit; goals apply to the coordinated scenarios, '{SCENARIOS['none']}' is the "
          "baseline)")
    return not missed


def plot(ms: list[Measures], rpm: float, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    colours = {"b1": "#6baed6", "b2": "#fc9272", "b3": "#74c476", CALLER: "#fd8d3c"}
    fig, axes = plt.subplots(len(ms), 1, figsize=(11, 3.4 * len(ms)), sharey=True, squeeze=False)
    for ax, m in zip(axes[:, 0], ms, strict=True):
        end = max(max(m.ends.values(), default=m.t0), m.killed or m.t0) - m.t0 + BIN
        edges = np.arange(0.0, end + BIN, BIN)
        below = np.zeros(len(edges) - 1)
        for name in (*BATCHES, CALLER):  # stacked: each band is one process, the top is the total
            counts = np.histogram(m.accepted.get(name, NONE) - m.t0, edges)[0] / BIN
            label = "interactive calls" if name == CALLER else name
            ax.stairs(below + counts, edges, baseline=below, fill=True, color=colours[name], label=label)
            below = below + counts
        bad = np.histogram(np.concatenate([m.rejected.get(n, NONE) for n in (*BATCHES, CALLER)]) - m.t0,
                           edges)[0] / BIN
        ax.stairs(-bad, edges, fill=True, color="0.35", label="answered 429 (below 0)")
        ax.axhline(rpm / 60, color="k", ls="--", lw=1, label=f"limit ({rpm / 60:g} req/s)")
        ax.axhline(0, color="k", lw=0.6)
        for name, t in m.joins.items():
            ax.axvline(t - m.t0, color=colours[name], ls="-.", lw=1.2)
        for name, t in m.ends.items():
            ax.axvline(t - m.t0, color=colours[name], ls=":", lw=1.2)
        if m.killed is not None:
            ax.axvline(m.killed - m.t0, color="#a50f15", lw=2, label=f"{VICTIM} SIGKILLed")
        ax.axvspan(m.window[0] - m.t0, m.window[1] - m.t0, ymin=0.96, color="0.6", alpha=0.5,
                   label="all three batches run")
        take_up = f", take-up {m.take_up:.1f} s" if m.take_up is not None else ""
        ax.set_title(f"{SCENARIOS[m.key]}: goodput {m.goodput:.3f}, deviation {m.deviation:.1%}, "
                     f"429s {m.batch_429:.1%}{take_up}", fontsize=10)
        ax.set_ylabel(f"accepted req/s ({BIN:g} s bins)")
        ax.set_xlim(0, end)
    axes[-1, 0].set_xlabel("seconds since the first batch request (dash-dot: first request; dotted: end)")
    axes[0, 0].set_ylim(-rpm / 60 * 0.5, rpm / 60 * 1.6)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=9, fontsize=8)
    fig.tight_layout(rect=(0, 0.05 / len(ms), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- main ----------------------------------------------------------------------------------------------

def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=600, help="distinct rows of each batch process")
    parser.add_argument("--rpm", type=float, default=600)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per request at the emulator")
    parser.add_argument("--calls", type=int, default=40, help="interactive calls, idle and again contended")
    parser.add_argument("--spacing", type=float, default=0.5, help="seconds between two interactive calls")
    parser.add_argument("--stagger", type=float, default=5.0, help="seconds b3 joins after b1 and b2")
    parser.add_argument("--lead", type=float, default=3.0,
                        help="seconds after b3 joins that the contended calls start")
    parser.add_argument("--kill-at", type=float, default=0.6,
                        help=f"share of its rows {VICTIM} has sent when it is SIGKILLed")
    parser.add_argument("--scenarios", default="dir,none,redis", help=f"of {', '.join(SCENARIOS)}")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one scenario may take at most")
    parser.add_argument("--quick", action="store_true", help="a short smoke run: 150 rows, 10 calls")
    parser.add_argument("--raw", type=Path, default=None,
                        help="write each run's records, events and store samples here (JSON)")
    parser.add_argument("--plot", type=Path,
                        default=Path(__file__).parent.parent / "artifacts" / "bench_fairness.png")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.calls = 150, 10
    keys = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    if unknown := [k for k in keys if k not in SCENARIOS]:
        parser.error(f"unknown scenario {unknown[0]!r}: choose from {', '.join(SCENARIOS)}")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench_fairness-") as name:
        tmp = Path(name)
        for key in keys:
            started = time.monotonic()
            if key == "redis":
                with redis_server(tmp / "redis") as url:
                    if url is None:
                        continue
                    runs.append(run_scenario(key, url, args, tmp))
            else:
                setting = str(tmp / "coordination") if key == "dir" else "none"
                runs.append(run_scenario(key, setting, args, tmp))
            print(f"{SCENARIOS[key]}: {time.monotonic() - started:.0f} s", flush=True)
            for note in runs[-1].warnings if runs and runs[-1].key == key else []:
                print(f"warning ({key}): {note}")
    if args.raw is not None:
        args.raw.parent.mkdir(parents=True, exist_ok=True)
        args.raw.write_text(json.dumps([vars(run) for run in runs]))
    ms = [measure(run, args) for run in runs]
    met = report(ms, args)
    if (saved := plot(ms, args.rpm, args.plot)) is not None:
        print(f"plot: {saved}")
    print("all goals met" if met else "some goals NOT met")


if __name__ == "__main__":
    main()
