"""Background batch jobs through the Python API: run_batch(..., background=True) against the emulator."""

from __future__ import annotations

import _thread
import threading
from pathlib import Path

import pandas as pd
import pytest
from canary import TEST_KEY

from claude_magic.batch import BatchJob, JobState, Progress, Stop, run_batch
from claude_magic.client import Client
from claude_magic.emulator import Emulator

MODEL = "claude-haiku-5-5"


def questions(n: int, tag: str = "q") -> pd.DataFrame:
    return pd.DataFrame({"q": [f"{tag} {i}" for i in range(n)]}, index=pd.RangeIndex(100, 100 + n))


class Reached:
    """A progress callback that sets an event once ``done`` rows reached ``rows``."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.event = threading.Event()
        self.calls = 0

    def __call__(self, p: Progress) -> None:
        self.calls += 1
        if p.done >= self.rows:
            self.event.set()


def test_a_background_job_returns_at_once_and_its_result_is_the_foreground_one(
        emu: Emulator, client: Client) -> None:
    emu.configure(ttft=0.05)
    df = questions(24)
    seen = Reached(24)
    job = run_batch("Answer {q}", df, client=client, model=MODEL, concurrency=4, background=True,
                    progress=seen)
    assert isinstance(job, BatchJob) and job.id == "1"
    assert client.scheduler.jobs() == {"1": job}
    result = job.result(timeout=60)
    assert job.done() and job.state is JobState.DONE and not job.cancelled()
    assert result.series.notna().all() and result.series.index.equals(df.index)
    assert seen.event.is_set()  # the progress callback saw the last row (the final call at least)
    again = run_batch("Answer {q}", df, client=client, model=MODEL)  # the same answers, from the cache
    assert again.summary.cached_rows == 24 and again.series.equals(result.series)
    assert job.wait() is result and job.exception() is None and "done" in repr(job)


def test_a_cancelled_job_keeps_the_rows_it_answered(emu: Emulator, client: Client) -> None:
    emu.configure(ttft=0.05)
    reached = Reached(3)
    job = run_batch("Answer {q}", questions(200), client=client, model=MODEL, concurrency=1, background=True,
                    progress=reached)
    assert reached.event.wait(60)
    assert job.cancel()
    result = job.result(timeout=30)
    answered = int(result.series.notna().sum())
    assert job.state is JobState.CANCELLED and job.cancelled() and not job.cancel()
    assert 3 <= answered < 200 and result.summary.stop is Stop.CANCELLED
    assert result.remaining.size == 200 - answered
    rerun = run_batch("Answer {q}", questions(200).iloc[:answered], client=client, model=MODEL, dry_run=True)
    assert rerun.summary.cached_prompts == answered  # what it answered is in the cache: never paid twice


def test_two_background_jobs_run_at_once_and_both_finish(emu: Emulator, client: Client) -> None:
    emu.configure(ttft=0.02)
    first = run_batch("A {q}", questions(30), client=client, model=MODEL, concurrency=3, background=True)
    second = run_batch("B {q}", questions(30), client=client, model=MODEL, concurrency=3, background=True)
    assert (first.id, second.id) == ("1", "2")
    assert first.result(timeout=60).series.notna().all()
    assert second.result(timeout=60).series.notna().all()
    assert all(p.json["messages"][0]["content"][:1] in "AB" for p in emu.requests if p.path == "/v1/messages")


def test_closing_the_client_cancels_its_jobs_and_leaves_no_thread(emu: Emulator, tmp_path: Path) -> None:
    emu.configure(ttft=0.05)
    c = Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "c", max_tokens=16)
    reached = Reached(1)
    job = run_batch("Answer {q}", questions(100), client=c, model=MODEL, concurrency=1, background=True,
                    progress=reached)
    assert reached.event.wait(60)
    c.close()  # what a kernel shutdown does
    assert job.done() and job.state is JobState.CANCELLED
    assert job.result().series.notna().sum() >= 1
    alive = [t.name for t in threading.enumerate() if t.name.startswith("claude_magic")]
    assert alive == []


def test_interrupting_a_wait_stops_the_wait_not_the_job(emu: Emulator, client: Client) -> None:
    emu.configure(ttft=0.05)
    reached = Reached(2)
    job = run_batch("Answer {q}", questions(100), client=client, model=MODEL, concurrency=1, background=True,
                    progress=reached)
    assert reached.event.wait(60)
    threading.Timer(0.2, _thread.interrupt_main).start()  # the kernel's stop button, as on Windows
    with pytest.raises(KeyboardInterrupt):
        job.wait()
    assert job.running()
    job.cancel()
    assert job.result(timeout=30).summary.stop is Stop.CANCELLED


def test_a_job_waited_for_with_a_timeout_says_how_far_it_got(emu: Emulator, client: Client) -> None:
    emu.configure(ttft=0.05)
    job = run_batch("Answer {q}", questions(100), client=client, model=MODEL, concurrency=1, background=True)
    with pytest.raises(TimeoutError, match=r"batch job 1 is still running \(\d+/100 rows"):
        job.result(timeout=0.01)
    job.cancel()
    job.wait(timeout=30)


def test_an_interactive_call_during_a_saturating_job_is_admitted_ahead_and_not_answered_429(
        emu: Emulator, client: Client) -> None:
    emu.configure(rpm=1200, ttft=0.02)  # 20 requests a second: the job alone would keep the bucket empty
    reached = Reached(40)
    job = run_batch("Answer {q}", questions(160), client=client, model=MODEL, background=True,
                    progress=reached)
    assert reached.event.wait(60)
    replies = [client.complete(f"hello {i}", model=MODEL) for i in range(4)]
    result = job.result(timeout=120)
    assert [r.retries for r in replies] == [0, 0, 0, 0]  # never a 429 (a retry), never a retry-after pause
    assert max(r.queued for r in replies) < 0.5
    assert result.series.notna().all()


def test_two_jobs_under_a_binding_limit_share_it_equally(emu: Emulator, client: Client) -> None:
    emu.configure(rpm=1200, ttft=0.02)  # 20 requests a second for both
    # the first may queue eight times as many requests: first come, first served would give it most
    first = run_batch("A {q}", questions(80), client=client, model=MODEL, concurrency=32, background=True)
    second = run_batch("B {q}", questions(80), client=client, model=MODEL, concurrency=4, background=True)
    other_when_first_ended: list[int] = []
    first.add_done_callback(lambda _: other_when_first_ended.append(second.progress.done))
    first.result(timeout=120)
    second.result(timeout=120)
    # taking turns, the second job had answered about as many rows when the first one ended
    assert other_when_first_ended[0] >= 60, other_when_first_ended
