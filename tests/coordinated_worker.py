"""A kernel stand-in for the tests of sharing one account between processes: runs one batch with a
client of its own, once the test says go, and writes when each row was answered.

    python coordinated_worker.py URL KEY CACHE_DIR COORDINATOR TAG ROWS CONCURRENCY GO_FILE OUT_FILE
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from claude_magic.batch import run_batch
from claude_magic.client import Client


def main(url: str, key: str, cache_dir: str, coordinator: str, tag: str, rows: str, concurrency: str,
         go: str, out: str) -> None:
    client = Client(api_key=key, base_url=url, cache_dir=cache_dir, coordinator=coordinator,
                    model="claude-haiku-5-5", max_tokens=8)
    Path(out + ".ready").write_text("ready")
    deadline = time.monotonic() + 60
    while not Path(go).exists():  # started together: the test is about sharing, not about who came first
        if time.monotonic() > deadline:
            sys.exit("no go from the test within 60 s")
        time.sleep(0.01)
    done: list[tuple[float, int]] = []
    shares: set[float] = set()

    def progress(p: object) -> None:
        done.append((time.time(), int(getattr(p, "done", 0))))
        for state in client.scheduler._buckets.values():
            if state.share is not None:
                shares.add(round(state.share, 2))

    frame = pd.DataFrame({"q": [f"{tag} question {i}" for i in range(int(rows))]})
    result = run_batch(tag + " {q}", frame, client=client, concurrency=int(concurrency), progress=progress)
    summary = {"done": done, "shares": sorted(shares), "answered": int(result.series.notna().sum()),
               "ended": time.time()}
    client.close()
    Path(out).write_text(json.dumps(summary))


if __name__ == "__main__":
    main(*sys.argv[1:])
