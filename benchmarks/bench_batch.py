"""Batch throughput under a rate limit, and the cost of many rows with few distinct prompts.

Run: .venv/bin/python benchmarks/bench_batch.py [--rows 1000] [--rpm 6000] [--latency 0.3]

Part 1 — N distinct prompts against the emulator limited to ``--rpm`` requests a minute (its
bucket holds one second's worth, so a client may burst that many first). Each request takes
about ``--latency`` seconds, as a short real answer does, so a client must keep
rate x latency requests in flight to reach the limit. The ideal time is what any client
could reach: ``(N - burst) / rate + latency``. Contenders, each on a fresh limiter:

- claude_magic ``run_batch`` (adaptive window, paced by the rate-limit headers);
- the official SDK's ``AsyncAnthropic`` with ``asyncio.Semaphore(8)`` (its default 2 retries);
- a plain sequential loop with the SDK's ``Anthropic`` client, run on fewer rows and
  extrapolated linearly to N (said so in the table).

429s are counted on the server (every request the emulator received beyond one per row);
lost rows are rows with no answer at the end.

Then the same for claude_magic alone with a tokens-per-minute limit (``--tpm``) that binds
before the requests one, on half the rows: the ideal is set by the tokens each request costs.

Part 2 — 100,000 rows with 100 distinct prompts through ``run_batch``: time beyond the 100
requests (the same 100 prompts alone, on a fresh cache, are the baseline), the time of a
re-run served from the cache, and peak memory (tracemalloc) of the run.

The emulator runs in this process (so the server can count what it received); its threads
share the interpreter with the clients, which slightly handicaps every contender alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anthropic
import pandas as pd

from claude_magic.batch import run_batch
from claude_magic.client import Client
from claude_magic.emulator import Emulator

MODEL = "claude-haiku-5-5"
MAX_TOKENS = 16
KEY = "sk-bench"


def prompts(n: int, tag: str) -> list[str]:
    return [f"{tag}: classify review number {i} as positive or negative" for i in range(n)]


def posts(emu: Emulator) -> int:
    return sum(1 for r in emu.requests if r.method == "POST" and r.path == "/v1/messages")


def bench_claude_magic(emu: Emulator, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, Client(api_key=KEY, base_url=emu.url, cache_dir=tmp) as client:
        started = time.perf_counter()
        result = run_batch("{value}", prompts(n, "cm"), client=client, model=MODEL, max_tokens=MAX_TOKENS)
        elapsed = time.perf_counter() - started
    return {"time": elapsed, "lost": int(result.series.isna().sum()), "rows": n}


def bench_sdk_semaphore(emu: Emulator, n: int, width: int = 8) -> dict[str, Any]:
    async def main() -> int:
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=emu.url)
        gate = asyncio.Semaphore(width)

        async def one(prompt: str) -> bool:
            async with gate:
                try:
                    await client.messages.create(model=MODEL, max_tokens=MAX_TOKENS,
                                                 messages=[{"role": "user", "content": prompt}])
                    return True
                except anthropic.APIError:
                    return False

        done = await asyncio.gather(*(one(p) for p in prompts(n, "sdk")))
        await client.close()
        return sum(1 for ok in done if not ok)

    started = time.perf_counter()
    lost = asyncio.run(main())
    return {"time": time.perf_counter() - started, "lost": lost, "rows": n}


def bench_sequential(emu: Emulator, n: int) -> dict[str, Any]:
    client = anthropic.Anthropic(api_key=KEY, base_url=emu.url)
    lost = 0
    started = time.perf_counter()
    for prompt in prompts(n, "seq"):
        try:
            client.messages.create(model=MODEL, max_tokens=MAX_TOKENS,
                                   messages=[{"role": "user", "content": prompt}])
        except anthropic.APIError:
            lost += 1
    client.close()
    return {"time": time.perf_counter() - started, "lost": lost, "rows": n}


def part1(rows: int, rpm: float, latency: float, seq_rows: int) -> None:
    rate = rpm / 60
    burst = rate  # the emulator's default bucket: one second's worth
    ideal = max(0.0, rows - burst) / rate + latency
    # ttft + output at token_rate: the emulator answers a 16-token reply in about `latency` seconds
    token_rate = MAX_TOKENS / (latency * 0.25) if latency > 0 else None
    print(f"\n## {rows:,} distinct prompts, emulator at {rpm:,.0f} RPM (burst {burst:,.0f}), "
          f"~{latency:.2f} s per request; ideal {ideal:.2f} s\n")
    print(f"| {'client':<38} | {'rows':>6} | {'time (s)':>9} | {'ideal/achieved':>14} | {'429s':>6} | "
          f"{'lost rows':>9} |")
    print(f"|{'-' * 40}|{'-' * 8}|{'-' * 11}|{'-' * 16}|{'-' * 8}|{'-' * 11}|")
    with Emulator(rpm=rpm, ttft=latency * 0.75, token_rate=token_rate) as emu:
        contenders = [
            ("claude_magic run_batch (adaptive)", lambda: bench_claude_magic(emu, rows), rows),
            ("AsyncAnthropic + Semaphore(8)", lambda: bench_sdk_semaphore(emu, rows), rows),
            (f"sequential loop (SDK), {seq_rows} rows x{rows / seq_rows:g}",
             lambda: bench_sequential(emu, seq_rows), seq_rows),
        ]
        for name, run, n in contenders:
            emu.reset()
            gc.collect()
            out = run()
            received = posts(emu)
            too_many = received - (n - out["lost"])
            scale = rows / n
            achieved = out["time"] * scale
            pct = 100 * too_many / max(received, 1)
            lost = out["lost"] * scale
            print(f"| {name:<38} | {rows:>6,} | {achieved:>9.2f} | {ideal / achieved:>14.3f} "
                  f"| {pct:>5.1f}% | {lost:>9,.0f} |")


def part1_tokens(rows: int, rpm: float, tpm: float, latency: float) -> None:
    """claude_magic alone, with a tokens-per-minute limit that binds before the requests one:
    pacing must follow the tokens bucket (whose ``remaining`` the API rounds to the thousand)."""
    token_rate = MAX_TOKENS / (latency * 0.25) if latency > 0 else None
    with (Emulator(rpm=rpm, tpm=tpm, ttft=latency * 0.75, token_rate=token_rate) as emu,
          tempfile.TemporaryDirectory() as tmp,
          Client(api_key=KEY, base_url=emu.url, cache_dir=tmp) as client):
        started = time.perf_counter()
        result = run_batch("{value}", prompts(rows, "tpm"), client=client, model=MODEL, max_tokens=MAX_TOKENS)
        elapsed = time.perf_counter() - started
        received = posts(emu)
    s = result.summary
    per_request = (s.input_tokens + s.output_tokens) / max(s.sent, 1)  # what the emulator's bucket charges
    by_requests = max(0.0, rows - rpm / 60) / (rpm / 60)
    by_tokens = max(0.0, rows * per_request - tpm / 60) / (tpm / 60)
    ideal = max(by_requests, by_tokens) + latency
    lost = int(result.series.isna().sum())
    pct = 100 * (received - (rows - lost)) / max(received, 1)
    print(f"\n## {rows:,} distinct prompts at {rpm:,.0f} RPM and {tpm:,.0f} TPM (~{per_request:.0f} tokens a "
          f"request: the tokens limit binds); ideal {ideal:.2f} s\n")
    print(f"| {'client':<38} | {'time (s)':>9} | {'ideal/achieved':>14} | {'429s':>6} | {'lost rows':>9} |")
    print(f"|{'-' * 40}|{'-' * 11}|{'-' * 16}|{'-' * 8}|{'-' * 11}|")
    print(f"| {'claude_magic run_batch (adaptive)':<38} | {elapsed:>9.2f} | {ideal / elapsed:>14.3f} "
          f"| {pct:>5.1f}% | {lost:>9,} |")


def part2(rows: int = 100_000, distinct: int = 100) -> None:
    print(f"\n## {rows:,} rows, {distinct} distinct prompts (emulator without limits)\n")
    df = pd.DataFrame({"review": [f"review {i % distinct}: the product was fine" for i in range(rows)]})
    small = df.head(distinct)
    with Emulator() as emu:
        def timed(frame: pd.DataFrame, cache_dir: Path, trace: bool = False) -> tuple[float, int]:
            with Client(api_key=KEY, base_url=emu.url, cache_dir=cache_dir) as client:
                client.count_tokens("warm up the loop and the connection", model=MODEL)
                gc.collect()
                if trace:
                    tracemalloc.start()
                started = time.perf_counter()
                result = run_batch("Classify: {review}", frame, client=client, model=MODEL,
                                   max_tokens=MAX_TOKENS)
                elapsed = time.perf_counter() - started
                peak = tracemalloc.get_traced_memory()[1] if trace else 0
                if trace:
                    tracemalloc.stop()
                assert result.series.notna().all()
            return elapsed, peak

        with tempfile.TemporaryDirectory() as tmp:
            base, _ = timed(small, Path(tmp) / "a")
            full, _ = timed(df, Path(tmp) / "b")
            cached, _ = timed(df, Path(tmp) / "b")
            _, peak = timed(df, Path(tmp) / "c", trace=True)
    print(f"| {'measure':<44} | {'value':>10} | {'target':>8} |")
    print(f"|{'-' * 46}|{'-' * 12}|{'-' * 10}|")
    print(f"| {'the 100 prompts alone (s)':<44} | {base:>10.3f} | {'':>8} |")
    print(f"| {'100,000 rows (s)':<44} | {full:>10.3f} | {'':>8} |")
    print(f"| {'time beyond the 100 requests (s)':<44} | {full - base:>10.3f} | {'< 3':>8} |")
    print(f"| {'100,000 rows again, all from cache (s)':<44} | {cached:>10.3f} | {'':>8} |")
    print(f"| {'peak memory of the run, tracemalloc (MB)':<44} | {peak / 1e6:>10.1f} | {'< 200':>8} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rpm", type=float, default=6000)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per request at the emulator")
    parser.add_argument("--tpm", type=float, default=120_000, help="tokens per minute, for the second table")
    parser.add_argument("--sequential-rows", type=int, default=40)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    if not args.skip_throughput:
        part1(args.rows, args.rpm, args.latency, args.sequential_rows)
        part1_tokens(args.rows // 2, args.rpm, args.tpm, args.latency)
    part2()


if __name__ == "__main__":
    main()
