"""claude_magic._scheduler: buckets, priority, headroom, fair share, and queued time apart from max_wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from canary import TEST_KEY

from claude_magic._scheduler import Priority, Scheduler, bucket_of, job_context, resolve
from claude_magic.client import Client
from claude_magic.emulator import Emulator
from claude_magic.errors import ConfigError

MODEL = "claude-haiku-5-5"


def _reading(remaining: int, limit: int = 600) -> dict[str, object]:
    return {"requests-limit": str(limit), "requests-remaining": str(remaining), "at": time.monotonic()}


def test_requests_spend_from_the_bucket_their_model_class_or_endpoint_has() -> None:
    def of(model: str) -> str:
        return bucket_of("messages", model)

    assert of("claude-opus-4-6") == of("claude-opus-4-8") == "messages:opus-4"
    assert of("claude-sonnet-4-5-20250929") == "messages:sonnet-4"
    assert of("claude-fable-5-1") == of("claude-fable-5") == "messages:fable-5"
    # Opus 5, Opus 5.5 and Sonnet 5 each have their own
    assert len({of(m) for m in ("claude-opus-5", "claude-opus-5-5", "claude-sonnet-5")}) == 3
    assert of("my-finetune") == "messages:my-finetune"
    endpoints = ("count_tokens", "batches", "files")
    assert {bucket_of(e) for e in endpoints} == set(endpoints)


def test_priority_is_checked_in_one_line_and_a_job_context_sets_the_default() -> None:
    with pytest.raises(ConfigError, match="priority must be 'interactive' or 'batch', got 'urgent'"):
        Priority.of("urgent")
    assert resolve(None, None) == (Priority.INTERACTIVE, None)
    with job_context(Priority.BATCH, "7"):
        assert resolve(None, None) == (Priority.BATCH, "7")
        assert resolve("interactive", None) == (Priority.INTERACTIVE, "7")
    assert resolve("batch", "3") == (Priority.BATCH, "3")


def test_an_interactive_request_is_admitted_while_batch_requests_wait_for_the_headroom() -> None:
    async def scenario() -> tuple[bool, bool, float]:
        s = Scheduler()
        s.mirror("b").observe(_reading(10))  # 10 a second, the bucket holds 10
        reading = _reading(3)  # now 3 left: exactly the headroom batch work keeps
        s.mirror("b").observe(reading)
        job = s.open_job("rows")
        batch = asyncio.ensure_future(s.admit("b", Priority.BATCH, job))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        waited_first = not batch.done()
        ticket = await s.admit("b", Priority.INTERACTIVE)  # at once: the headroom is for it
        interactive_at_once = ticket.queued < 0.05
        await batch  # refill brings the bucket above the headroom again
        return waited_first, interactive_at_once, batch.result().admitted - float(reading["at"])  # type: ignore[arg-type]

    waited, at_once, after_reading = asyncio.run(scenario())
    assert waited and at_once
    # 3 left, 1 taken by the person: the batch waits until 3 + its own 1 are there (0.2 s at 10 a second)
    assert after_reading >= 0.199


def test_two_jobs_waiting_on_one_bucket_take_turns() -> None:
    async def scenario() -> list[str | None]:
        s = Scheduler()
        a, b = s.open_job("a"), s.open_job("b")
        order: list[str | None] = []

        async def one(job: str) -> None:
            ticket = await s.admit("b", Priority.BATCH, job)
            order.append(ticket.job)
            s.done(ticket)

        await asyncio.gather(*[one(a) for _ in range(6)], *[one(b) for _ in range(3)])
        return order

    order = asyncio.run(scenario())
    assert order[:6] == ["1", "2", "1", "2", "1", "2"]  # queued 6 then 3: they alternate while both wait
    assert order[6:] == ["1", "1", "1"]  # a lone job takes all of it


def test_a_pause_from_a_batch_request_holds_batch_work_but_not_a_person() -> None:
    s = Scheduler()
    now = time.monotonic()
    s.pause("b", now + 30, Priority.BATCH)
    assert s.paused("b", Priority.INTERACTIVE, now) == 0
    assert s.paused("b", Priority.BATCH, now) == pytest.approx(30)
    s.pause("b", now + 5, Priority.INTERACTIVE)  # a person's own 429: both wait for it
    assert s.paused("b", Priority.INTERACTIVE, now) == pytest.approx(5)
    assert s.paused("other", Priority.BATCH, now) == 0  # another bucket is not paused


@pytest.fixture
def client(claude_emulator: Emulator, tmp_path: Path) -> Iterator[Client]:
    c = Client(api_key=TEST_KEY, base_url=claude_emulator.url, cache_dir=tmp_path / "cache", max_tokens=16)
    yield c
    c.close()


def test_an_interactive_call_is_not_held_by_a_retry_after_a_batch_was_given(client: Client) -> None:
    bucket = bucket_of("messages", MODEL)
    client.scheduler.pause(bucket, time.monotonic() + 60, Priority.BATCH)
    reply = client.complete("hello", model=MODEL)
    assert reply.queued < 1 and reply.retries == 0  # not the 60 s the batch must wait


def test_time_queued_for_admission_is_not_part_of_max_wait(claude_emulator: Emulator, tmp_path: Path) -> None:
    # max_wait=0: no time at all for retries or pauses; the request still waits its turn and is answered.
    with Client(api_key=TEST_KEY, base_url=claude_emulator.url, cache_dir=tmp_path / "c", max_tokens=16,
                max_wait=0) as c:
        until = time.monotonic() + 0.3
        c.scheduler.pause(bucket_of("messages", MODEL), until, Priority.BATCH)
        reply = c.complete("hello", model=MODEL, priority="batch")
    # it waited its turn (the request left after the pause) and was answered all the same
    assert reply.text and reply.queued > 0 and reply.retries == 0
    assert reply.sent_at is not None and reply.sent_at >= until


def test_every_request_is_counted_by_its_priority(client: Client) -> None:
    client.complete("one", model=MODEL)
    client.complete("two", model=MODEL, priority="batch")
    client.count_tokens("three", model=MODEL)
    assert client.scheduler.admitted == {Priority.INTERACTIVE: 2, Priority.BATCH: 1}
    with pytest.raises(ConfigError, match="priority must be"):
        client.complete("four", model=MODEL, priority="high")


def test_a_job_on_an_unread_bucket_sends_one_probe_before_the_rest() -> None:
    # a bucket of 10 and a first window of 16 would be six 429s: the first answer tells its size
    async def scenario() -> tuple[bool, bool]:
        s = Scheduler()
        job = s.open_job("rows")
        probe = await s.admit("b", Priority.BATCH, job)
        rest = asyncio.ensure_future(s.admit("b", Priority.BATCH, job))
        for _ in range(5):
            await asyncio.sleep(0)
        held = not rest.done()
        s.done(probe, reading=_reading(9))
        second = await asyncio.wait_for(rest, 5)
        s.done(second)
        return held, second.queued < 1

    assert asyncio.run(scenario()) == (True, True)


def test_the_probe_ends_when_its_answer_headers_arrive_not_when_its_body_ends() -> None:
    async def scenario() -> bool:
        s = Scheduler()
        job = s.open_job("rows")
        probe = await s.admit("b", Priority.BATCH, job)
        rest = asyncio.ensure_future(s.admit("b", Priority.BATCH, job))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not rest.done()
        s.read(probe, _reading(9))  # the headers of a streamed answer: its body is still coming
        second = await asyncio.wait_for(rest, 5)
        s.done(second)
        s.done(probe)
        return second.queued < 1

    assert asyncio.run(scenario())
