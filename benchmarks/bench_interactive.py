"""Interactive calls beside a background batch: time to first token, 429s, the batch's goodput.

Run: .venv/bin/python benchmarks/bench_interactive.py [--rpm 600] [--calls 20] [--spacing 0.5]
     [--latency 0.3] [--lead 3] [--rows N] [--plot artifacts/bench_interactive.png]

The emulator runs in this process, limited to ``--rpm`` requests a minute (its bucket holds one
second's worth), each request taking about ``--latency`` seconds (as in bench_batch). Two runs,
each on a fresh emulator, a fresh client and a fresh cache directory, with distinct prompts:

1. Idle: ``--calls`` streamed ``client.complete`` calls (interactive, the default), one every
   ``--spacing`` seconds. Time to first token is the caller's wall clock, from calling ``complete``
   to the first ``on_text``.
2. Contended: the same calls while ``run_batch(..., background=True)`` on the same client keeps
   the limit saturated from ``--lead`` seconds before the first call until after the last one
   (``--rows`` by default: enough for that). With ``--lead 0`` the calls start with the batch,
   while the client knows nothing yet of the limit (its first requests to the model's bucket).

The scheduler admits interactive requests ahead of queued batch rows and keeps headroom in the
bucket for them, so the goal is a p95 time to first token within +20% or +100 ms of idle and no
429 for an interactive call. The batch must still use what the calls leave of the limit:
its ideal time is ``(rows + calls - burst) / rate + latency`` (every request of both classes
paced at the limit, after the burst), goal >= 0.90; the same ratio is shown for the window of the
interactive calls alone (rows answered there / (rate x window - calls)), which can pass 1 by what
the bucket held when the window opened (the headroom kept for interactive calls, a burst left over).

429s are counted at the emulator: requests received beyond one per answer, split between batch
rows and interactive calls by their prompt. A sampler thread reads the emulator's requests and the
job's progress every 0.1 s; the plot (``--plot``; without matplotlib the tables still print) shows
requests received per second of each class, and batch rows answered per second, during the
contended run.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from claude_magic.batch import BatchJob, run_batch
from claude_magic.client import Client
from claude_magic.emulator import Emulator

MODEL = "claude-haiku-5-5"
MAX_TOKENS = 16
KEY = "sk-bench"
BATCH_TAG = "batch row"
CALL_TAG = "interactive question"
SAMPLE = 0.1   # s between two samples of the emulator and the job
BIN = 0.5      # s: the plot's bins
TAIL = 3.0     # s the batch still has rows for after the last interactive call


def prompts(n: int, tag: str, run: str) -> list[str]:
    return [f"{tag} {run}-{i}: classify review number {i} as positive or negative" for i in range(n)]


@dataclass
class Calls:
    """What the interactive calls of one run saw."""

    ttft: list[float] = field(default_factory=list)     # s, caller's wall clock
    queued: list[float] = field(default_factory=list)   # s waited for admission (reply.queued)
    starts: list[float] = field(default_factory=list)   # time.monotonic() of each call
    retried: int = 0                                    # replies with retries > 0 or attempts > 1
    errors: list[str] = field(default_factory=list)

    @property
    def window(self) -> tuple[float, float]:
        return (self.starts[0], self.starts[-1]) if self.starts else (0.0, 0.0)


def interactive_calls(client: Client, n: int, spacing: float, run: str) -> Calls:
    """``n`` streamed calls from this thread, started ``spacing`` seconds apart (or back to back
    if one takes longer)."""
    out = Calls()
    begin = time.monotonic()
    for i, prompt in enumerate(prompts(n, CALL_TAG, run)):
        if (wait := begin + i * spacing - time.monotonic()) > 0:
            time.sleep(wait)
        first: list[float] = []

        def on_text(_text: str, first: list[float] = first) -> None:
            if not first:
                first.append(time.perf_counter())

        started = time.perf_counter()
        out.starts.append(time.monotonic())
        try:
            reply = client.complete(prompt, model=MODEL, max_tokens=MAX_TOKENS, stream=True, on_text=on_text)
        except Exception as exc:  # a failed call is counted, not fatal: the table says so
            out.errors.append(f"{type(exc).__name__}: {exc}")
            continue
        if first:
            out.ttft.append(first[0] - started)
        out.queued.append(reply.queued)
        out.retried += bool(reply.retries > 0 or reply.attempts > 1)
    return out


def prompt_of(body: Any) -> str:
    return json.dumps(body.get("messages", ""), ensure_ascii=False) if isinstance(body, dict) else ""


@dataclass
class Sample:
    at: float
    batch_posts: int
    call_posts: int
    rows_done: int


class Sampler(threading.Thread):
    """Every ``SAMPLE`` s: the emulator's POST /v1/messages so far, per class, and the job's rows
    answered. Records only grow, so each sample reads the new ones only.

    Every batch prompt is distinct, so a prompt received again is a retry: ``repeats`` holds when
    (to a sample) its first attempt arrived, i.e. when the request answered 429 was sent."""

    def __init__(self, emu: Emulator) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.emu = emu
        self.job: BatchJob | None = None
        self.samples: list[Sample] = []
        self.repeats: list[float] = []
        self.halt = threading.Event()
        self._first: dict[str, float] = {}
        self._seen = 0
        self._batch = 0
        self._calls = 0

    def run(self) -> None:
        while not self.halt.wait(SAMPLE):
            self.take()
        self.take()

    def take(self) -> None:
        now = time.monotonic()
        records = self.emu.requests
        for r in records[self._seen:]:
            if r.method == "POST" and r.path == "/v1/messages":
                text = prompt_of(r.json)
                self._calls += CALL_TAG in text
                if BATCH_TAG in text:
                    self._batch += 1
                    if text in self._first:
                        self.repeats.append(self._first[text])
                    else:
                        self._first[text] = now
        self._seen = len(records)
        done = self.job.progress.done if self.job is not None else 0
        self.samples.append(Sample(now, self._batch, self._calls, done))


def emulator(rpm: float, latency: float) -> Emulator:
    # ttft + output at token_rate: a 16-token reply takes about `latency` seconds (as bench_batch)
    token_rate = MAX_TOKENS / (latency * 0.25) if latency > 0 else None
    return Emulator(rpm=rpm, ttft=latency * 0.75, token_rate=token_rate)


def idle_run(args: argparse.Namespace) -> Calls:
    with (emulator(args.rpm, args.latency) as emu, tempfile.TemporaryDirectory() as tmp,
          Client(api_key=KEY, base_url=emu.url, cache_dir=tmp) as client):
        client.count_tokens("warm up the loop and the connection", model=MODEL)  # not the messages bucket
        return interactive_calls(client, args.calls, args.spacing, "idle")


@dataclass
class Contended:
    calls: Calls
    rows: int
    answered: int
    failed: int
    started: float
    ended: float
    batch_posts: int
    call_posts: int
    samples: list[Sample]
    repeats: list[float]  # when each batch request answered 429 (and sent again) was first sent


def contended_run(args: argparse.Namespace, rows: int) -> Contended:
    with (emulator(args.rpm, args.latency) as emu, tempfile.TemporaryDirectory() as tmp,
          Client(api_key=KEY, base_url=emu.url, cache_dir=tmp) as client):
        client.count_tokens("warm up the loop and the connection", model=MODEL)
        sampler = Sampler(emu)
        sampler.take()  # the zero of every count
        sampler.start()
        job: BatchJob | None = None
        try:
            started = time.monotonic()
            job = run_batch("{value}", prompts(rows, BATCH_TAG, "busy"), client=client, model=MODEL,
                            max_tokens=MAX_TOKENS, background=True)
            sampler.job = job
            time.sleep(args.lead)
            calls = interactive_calls(client, args.calls, args.spacing, "busy")
            late = job.progress.done >= rows
            result = job.result(timeout=120)
            ended = job.ended or time.monotonic()
        finally:
            if job is not None and job.cancel():
                job.exception(timeout=10)
            sampler.halt.set()
            sampler.join(timeout=5)
        if late:
            print("warning: the batch ended before the last interactive call: raise --rows")
        posts = [r for r in emu.requests if r.method == "POST" and r.path == "/v1/messages"]
        return Contended(
            calls=calls, rows=rows, answered=int(result.series.notna().sum()), failed=len(result.errors),
            started=started, ended=ended,
            batch_posts=sum(BATCH_TAG in prompt_of(r.json) for r in posts),
            call_posts=sum(CALL_TAG in prompt_of(r.json) for r in posts),
            samples=sampler.samples, repeats=sampler.repeats)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def done_at(samples: list[Sample], t: float) -> float:
    """Rows answered at time ``t``, interpolated between samples."""
    ats = [s.at for s in samples]
    return float(np.interp(t, ats, [s.rows_done for s in samples]))


def report(args: argparse.Namespace, idle: Calls, busy: Contended) -> bool:
    rate = args.rpm / 60
    burst = rate  # the emulator's default bucket: one second's worth
    n_calls = len(busy.calls.starts)
    ideal = max(0.0, busy.rows + n_calls - burst) / rate + args.latency
    took = busy.ended - busy.started
    w0, w1 = busy.calls.window
    w1 += args.spacing  # the last call's share of the window
    window_rows = done_at(busy.samples, w1) - done_at(busy.samples, w0)
    window_ideal = rate * (w1 - w0) - n_calls
    call_extra = busy.call_posts - n_calls  # requests beyond one per call: 429s (or other retries)
    call_bad = busy.calls.retried + len(busy.calls.errors)
    idle_bad = len(idle.errors) + idle.retried
    batch_429s = busy.batch_posts - busy.answered

    print(f"\n## {args.calls} interactive streamed calls, one every {args.spacing:g} s, emulator at "
          f"{args.rpm:,.0f} RPM (burst {burst:,.0f}), ~{args.latency:.2f} s per request\n")
    print(f"Contended: a background batch of {busy.rows:,} distinct rows on the same client, started "
          f"{args.lead:g} s before the first call.\n")
    print(f"| {'time to first token':<22} | {'idle (ms)':>9} | {'contended (ms)':>14} | {'ratio':>6} | "
          f"{'diff (ms)':>9} |")
    print(f"|{'-' * 24}|{'-' * 11}|{'-' * 16}|{'-' * 8}|{'-' * 11}|")
    for name, q in (("p50", 50), ("p95", 95), ("max", 100)):
        a, b = pct(idle.ttft, q), pct(busy.calls.ttft, q)
        print(f"| {name:<22} | {a * 1e3:>9.1f} | {b * 1e3:>14.1f} | {b / a:>6.2f} | {(b - a) * 1e3:>+9.1f} |")
    qa, qb = max(idle.queued, default=0.0), max(busy.calls.queued, default=0.0)
    print(f"| {'max queued (admission)':<22} | {qa * 1e3:>9.1f} | {qb * 1e3:>14.1f} | {'':>6} | "
          f"{(qb - qa) * 1e3:>+9.1f} |")

    p95_idle, p95_busy = pct(idle.ttft, 95), pct(busy.calls.ttft, 95)
    allowed = max(p95_idle * 1.2, p95_idle + 0.1)
    goodput = ideal / took
    window_ratio = window_rows / window_ideal if window_ideal > 0 else math.nan
    goals = [
        ("p95 TTFT, contended (ms)", f"{p95_busy * 1e3:.1f}", f"<= {allowed * 1e3:.0f}",
         allowed / p95_busy, p95_busy <= allowed),
        ("interactive 429s (emulator), contended", f"{call_extra}", "0", None, call_extra == 0),
        ("interactive calls retried/failed, contended", f"{call_bad}", "0", None, call_bad == 0),
        ("interactive calls retried/failed, idle", f"{idle_bad}", "0", None, idle_bad == 0),
        ("batch 429s (requests beyond rows)", f"{batch_429s} of {busy.batch_posts}", "", None, None),
        ("  sent before the first call", f"{sum(t < w0 for t in busy.repeats)}", "", None, None),
        ("  sent during the calls' window", f"{sum(w0 <= t <= w1 for t in busy.repeats)}", "", None,
         None),
        ("batch rows lost (failed)", f"{busy.rows - busy.answered} ({busy.failed})", "0", None,
         busy.answered == busy.rows),
        (f"batch time (s), ideal {ideal:.2f}", f"{took:.2f}", "", None, None),
        ("batch goodput, ideal/achieved", f"{goodput:.3f}", ">= 0.90", goodput / 0.90, goodput >= 0.90),
        (f"  in the calls' window ({window_rows:.0f} rows)", f"{window_ratio:.3f}", ">= 0.90",
         window_ratio / 0.90, window_ratio >= 0.90),
    ]
    width = max(len(g[0]) for g in goals)
    print(f"\n| {'measure':<{width}} | {'value':>12} | {'goal':>8} | {'vs goal':>7} | {'met':>3} |")
    print(f"|{'-' * (width + 2)}|{'-' * 14}|{'-' * 10}|{'-' * 9}|{'-' * 5}|")
    for name, value, goal, ratio, met in goals:
        shown = f"{ratio:.2f}x" if ratio is not None else ""
        verdict = "" if met is None else "yes" if met else "NO"
        print(f"| {name:<{width}} | {value:>12} | {goal:>8} | {shown:>7} | {verdict:>3} |")
    print("('vs goal' > 1 means the goal is met; TTFT from calling complete() to the first on_text)")
    return all(g[4] is not False for g in goals)


def plot(busy: Contended, rpm: float, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    samples = busy.samples
    t0 = busy.started
    edges = np.arange(0.0, samples[-1].at - t0 + BIN, BIN)
    at = np.array([s.at - t0 for s in samples])

    def per_second(counts: list[int]) -> np.ndarray:
        return np.diff(np.interp(edges, at, counts)) / BIN

    batch = per_second([s.batch_posts for s in samples])
    calls = per_second([s.call_posts for s in samples])
    rows = per_second([s.rows_done for s in samples])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    w0, w1 = busy.calls.window
    ax.axvspan(w0 - t0, w1 - t0, color="#fdd0a2", alpha=0.35, zorder=0, label="interactive calls made")
    ax.stairs(batch, edges, fill=True, color="#9ecae1", label="batch requests received")
    ax.stairs(batch + calls, edges, baseline=batch, fill=True, color="#e6550d",
              label="interactive requests received")
    ax.stairs(rows, edges, color="#08519c", lw=1.4, label="batch rows answered")
    ax.axhline(rpm / 60, color="k", ls="--", lw=1, label=f"limit ({rpm / 60:g} req/s)")
    ax.set_xlabel("seconds since the batch started")
    ax.set_ylabel(f"per second ({BIN:g} s bins, emulator side)")
    ax.set_title("Background batch and interactive calls on one client")
    ax.set_ylim(0, max(rpm / 60 * 1.6, float(np.max(batch + calls, initial=0.0)) * 1.1))
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rpm", type=float, default=600)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=0.5, help="seconds between two interactive calls")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per request at the emulator")
    parser.add_argument("--lead", type=float, default=3.0,
                        help="seconds the batch runs before the first call")
    parser.add_argument("--rows", type=int, default=None,
                        help=f"batch rows (default: enough to saturate until {TAIL:g} s after the last call)")
    parser.add_argument("--plot", type=Path, default=Path(__file__).parent.parent / "artifacts"
                        / "bench_interactive.png")
    args = parser.parse_args()
    rate = args.rpm / 60
    window = args.calls * args.spacing
    rows = args.rows or math.ceil(rate + rate * args.lead + (rate - 1 / args.spacing) * window + rate * TAIL)
    idle = idle_run(args)
    busy = contended_run(args, rows)
    met = report(args, idle, busy)
    if (saved := plot(busy, args.rpm, args.plot)) is not None:
        print(f"plot: {saved}")
    print("all goals met" if met else "some goals NOT met")


if __name__ == "__main__":
    main()
