"""Client benchmarks: cache-hit latency, stream decoding against the official SDK, extension load time.

Run: .venv/bin/python benchmarks/bench_client.py

Prints a table of measures, targets and ratios. Both stream decoders read the same
bytes from an in-memory transport (no network, no server), so the table compares
decoding, not I/O: events per second through ``Client.complete(stream=True)`` and
through the SDK's ``messages.stream()`` (``for event in stream``, with its message
snapshot accumulation, which is what ``text_stream`` does too).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx

from claude_magic.client import Client

N_DELTAS = 20_000
REPEATS = 3


def stream_bytes(n: int) -> bytes:
    def ev(name: str, data: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    out = [
        ev(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_b",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "claude-opus-5-5",
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 10, "output_tokens": 1},
                },
            },
        ),
        ev(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
    ]
    words = ["Hello", " wörld", " 日本", " 🌍", " data", " frame"]
    for i in range(n):
        out.append(
            ev(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": words[i % len(words)]},
                },
            )
        )
        if i % 500 == 0:
            out.append(ev("ping", {"type": "ping"}))
    out += [
        ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ev(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": n},
            },
        ),
        ev("message_stop", {"type": "message_stop"}),
    ]
    return "".join(out).encode()


def chunked(raw: bytes, size: int = 4096) -> list[bytes]:
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def bench_ours(raw: bytes) -> float:
    chunks = chunked(raw)

    def handler(request: httpx.Request) -> httpx.Response:
        async def body():
            for c in chunks:
                yield c

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    client = Client(api_key="bench", transport=httpx.MockTransport(handler), cache=False)
    client.complete("warm up", max_tokens=10)
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        reply = client.complete("bench", max_tokens=N_DELTAS + 10, on_text=lambda _t: None)
        best = min(best, time.perf_counter() - started)
        assert reply.usage.output_tokens == N_DELTAS
    client.close()
    return best


def bench_sdk(raw: bytes) -> float | None:
    try:
        import anthropic
        import httpx2
    except ImportError:
        return None
    chunks = chunked(raw)

    def handler(request: Any) -> Any:
        return httpx2.Response(200, content=iter(chunks), headers={"content-type": "text/event-stream"})

    sdk = anthropic.Anthropic(
        api_key="bench", max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(handler))
    )
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        with sdk.messages.stream(
            model="claude-opus-5-5", max_tokens=N_DELTAS + 10, messages=[{"role": "user", "content": "bench"}]
        ) as stream:
            for _event in stream:
                pass
            stream.get_final_message()
        best = min(best, time.perf_counter() - started)
    return best


def bench_cache_hit() -> tuple[float, float]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stream_bytes(20), headers={"content-type": "text/event-stream"})

    with tempfile.TemporaryDirectory() as d:
        client = Client(api_key="bench", transport=httpx.MockTransport(handler), cache_dir=d)
        prompt = "Summarise this quarter's sales by region in three bullet points."
        client.complete(prompt)
        times = []
        for _ in range(20_000):
            t = time.perf_counter()
            client.complete(prompt)
            times.append(time.perf_counter() - t)
        client.close()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def bench_load_ext() -> float | None:
    code = (
        "import time; from IPython.core.interactiveshell import InteractiveShell; "
        "sh = InteractiveShell.instance(); t = time.perf_counter(); sh.run_line_magic('load_ext', "
        "'claude_magic'); print(time.perf_counter() - t)"
    )
    samples = []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode != 0:
            return None
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    raw = stream_bytes(N_DELTAS)
    events = raw.count(b"\nevent: ") + 1
    ours = bench_ours(raw)
    sdk = bench_sdk(raw)
    p50, p99 = bench_cache_hit()
    load = bench_load_ext()
    rows = [
        ("cache hit via Client.complete, p50", f"{p50 * 1e6:.1f} µs", "< 50 µs", f"{50e-6 / p50:.2f}x"),
        ("cache hit via Client.complete, p99", f"{p99 * 1e6:.1f} µs", "", ""),
        ("stream decoding, claude_magic", f"{events / ours:,.0f} ev/s", "", ""),
    ]
    if sdk is not None:
        rows.append(("stream decoding, anthropic SDK", f"{events / sdk:,.0f} ev/s", "", ""))
        rows.append(("  ratio claude_magic / SDK", f"{sdk / ours:.1f}x", ">= 4x", f"{sdk / ours / 4:.2f}x"))
    if load is not None:
        rows.append(("%load_ext claude_magic", f"{load * 1e3:.1f} ms", "< 30 ms", f"{0.030 / load:.2f}x"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>16}  {'target':>8}  {'vs target':>9}")
    for name, value, target, ratio in rows:
        print(f"{name:<{width}}  {value:>16}  {target:>8}  {ratio:>9}")
    print(f"({events:,} events of one stream, best of {REPEATS}; 'vs target' > 1 means the target is met)")


if __name__ == "__main__":
    main()
