"""Kernels as processes: each its own Client with the same key, against one emulator whose limit
binds, sharing through a store (a directory on this host; Redis for many hosts)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("coordinated_worker.py")
ROWS = 80


def run_workers(emu: Any, tmp_path: Path, coordinator: str | None, concurrency: tuple[int, ...],
                shared_cache: bool = True, meanwhile: Any = None) -> list[dict[str, Any]]:
    from canary import TEST_KEY

    go = tmp_path / "go"
    outs = [tmp_path / f"worker-{i}.json" for i in range(len(concurrency))]
    procs = []
    for i, (out, window) in enumerate(zip(outs, concurrency, strict=True)):
        cache = tmp_path / ("cache" if shared_cache else f"cache-{i}")
        store = coordinator if coordinator is not None else "auto"
        procs.append(subprocess.Popen(
            [sys.executable, str(WORKER), emu.url, TEST_KEY, str(cache), store, f"W{i}", str(ROWS),
             str(window), str(go), str(out)], cwd=WORKER.parent))
    try:
        deadline = time.monotonic() + 120
        while not all(Path(str(o) + ".ready").exists() for o in outs):
            assert all(p.poll() is None for p in procs), "a worker died before it was ready"
            assert time.monotonic() < deadline, "workers not ready within 120 s"
            time.sleep(0.05)
        go.write_text("go")
        if meanwhile is not None:
            meanwhile()
        for proc in procs:
            assert proc.wait(timeout=240) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return [json.loads(out.read_text()) for out in outs]


def answered_by(worker: dict[str, Any], when: float) -> int:
    return max((done for at, done in worker["done"] if at <= when), default=0)


def check_fair_share(emu: Any, workers: list[dict[str, Any]], sent: int | None = None) -> None:
    assert [w["answered"] for w in workers] == [ROWS] * len(workers)  # nothing lost
    if sent is None:
        sent = sum(1 for r in emu.requests if r.method == "POST" and r.path == "/v1/messages")
    assert sent - ROWS * len(workers) <= 0.05 * ROWS * len(workers)  # at most 5 % answered 429
    # each process knew it had half the limit while both ran...
    assert all(0.5 in w["shares"] for w in workers), [w["shares"] for w in workers]
    # ...and took it: when the greedy one ended, the modest one had answered about as many rows
    greedy, modest = workers
    assert answered_by(modest, greedy["ended"]) >= 0.75 * ROWS, (answered_by(modest, greedy["ended"]))


def test_two_processes_split_a_binding_limit_equally_through_a_shared_directory(
        emu: Any, tmp_path: Path) -> None:
    from canary import TEST_KEY

    from claude_magic._coordinator import Coordinator, group_of
    from claude_magic.client import Client

    emu.configure(rpm=1200, ttft=0.02)  # 20 requests a second for both
    store = str(tmp_path / "shared-store")
    replies = []
    analyst = Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "analyst", coordinator=store,
                     model="claude-haiku-5-5", max_tokens=8)

    def ask() -> None:  # a third kernel's person asks while both batches share the limit
        from claude_magic._coordinator import DirStore

        watcher = Coordinator(DirStore(store), group_of(emu.url.split("://")[1], TEST_KEY))
        deadline = time.monotonic() + 60
        while sorted(b.get("share") or 0 for s in watcher.members().values()
                     for b in s.get("buckets", {}).values()) != [0.5, 0.5]:
            assert time.monotonic() < deadline, "the two batches did not share the limit within 60 s"
            time.sleep(0.01)
        watcher.close()
        while len(replies) < 5:
            replies.append(analyst.complete(f"an analyst's question {len(replies)}"))

    try:
        # a window of 32 against one of 4
        workers = run_workers(emu, tmp_path, store, (32, 4), shared_cache=False, meanwhile=ask)
    finally:
        analyst.close()
    interactive = sum(1 for r in emu.requests if r.method == "POST" and "analyst" in json.dumps(r.json))
    assert interactive == 5 and all(r.retries == 0 for r in replies)  # never answered 429
    sent = sum(1 for r in emu.requests if r.method == "POST" and r.path == "/v1/messages") - interactive
    assert sent - 2 * ROWS <= 0.05 * 2 * ROWS
    check_fair_share(emu, workers, sent)


def test_two_hosts_split_a_binding_limit_equally_through_redis(emu: Any, tmp_path: Path,
                                                              redis_server: Any) -> None:
    emu.configure(rpm=1200, ttft=0.02)
    # no cache directory in common: as on two machines
    workers = run_workers(emu, tmp_path, redis_server.url, (32, 4), shared_cache=False)
    check_fair_share(emu, workers)
