"""Sharing a key's limits, as a notebook user meets it: the ``coordinator`` setting, ``%claude_jobs
--all-kernels``, and Redis failing (refused, restarting) under a running batch. Real IPython shells,
the emulator, real diskcache stores and a real redis-server."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from canary import TEST_KEY
from ipshell import configure, fails, loaded_shell, run

from claude_magic.batch import run_batch
from claude_magic.client import Client

MODEL = "claude-haiku-5-5"


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claude_emulator: Any) -> Iterator[Any]:
    with loaded_shell(monkeypatch, tmp_path / "cache", "df", "_claude_job", "_claude_batch") as shell:
        configure(shell, base_url=claude_emulator.url, api_key=TEST_KEY, display="text")
        yield shell


def rows(tag: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({"q": [f"{tag} question {i}" for i in range(n)]})


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout:g} s"
        time.sleep(0.02)


def test_a_redis_password_in_the_setting_stays_out_of_the_config_and_every_message(
        ip: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    from redis_server import free_port

    password = "pw-secret-0123456789"
    url = f"redis://:{password}@127.0.0.1:{free_port()}/0"  # nothing listens there
    run(ip, f"%config ClaudeMagics.coordinator = {url!r}")
    with caplog.at_level(logging.WARNING, logger="claude_magic"):
        run(ip, "%%claude -m claude-haiku-5-5\nhello while Redis is away")
        coordinator = ip.find_cell_magic("claude").__self__.client.scheduler.coordinator
        wait_for(lambda: coordinator.failure is not None, "the refused connection")
        fails(ip, "%claude_jobs --all-kernels")
    run(ip, "%config ClaudeMagics")
    shown = capsys.readouterr()
    text = shown.out + shown.err + str(ip.config) + caplog.text + coordinator.where
    assert password not in text and "redis://<redacted>@127.0.0.1" in text
    assert all(password not in str(c.config) for c in ip.configurables)
    warnings = [r.getMessage() for r in caplog.records if "coordinator at" in r.getMessage()]
    assert len(warnings) == 1 and "pacing alone" in warnings[0]


def test_a_bad_coordinator_setting_is_one_line_at_config_time_and_changes_nothing(
        ip: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    ip.run_cell("%config ClaudeMagics.coordinator = 'http://user:pw-secret-0123@host/'")  # %config logs it
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    assert ("coordinator must be 'auto', 'none', a directory or a redis:// URL, "
            "got 'http://<redacted>@host/'") in text
    assert "pw-secret-0123" not in text
    assert ip.find_cell_magic("claude").__self__.coordinator is None  # the setting kept its value


def test_with_sharing_off_all_kernels_says_how_to_turn_it_on(ip: Any) -> None:
    run(ip, "%config ClaudeMagics.coordinator = 'none'")
    error = fails(ip, "%claude_jobs --all-kernels")
    assert "coordinator is 'none'" in str(error) and "ClaudeMagics.coordinator = 'auto'" in str(error)


def test_all_kernels_lists_every_kernels_jobs_and_shares_without_their_prompts(
        ip: Any, claude_emulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    claude_emulator.configure(rpm=120, ttft=0.02)  # 2 a second: both jobs run for a while
    store = tmp_path / "shared"
    run(ip, f"%config ClaudeMagics.coordinator = {str(store)!r}")
    ip.user_ns["df"] = rows("mine", 40)
    # another kernel of the same key: a client of its own, in this process
    other = Client(api_key=TEST_KEY, base_url=claude_emulator.url, cache_dir=tmp_path / "other",
                   coordinator=store, model=MODEL, max_tokens=8)
    theirs = run_batch("Their private template {q}", rows("theirs", 40), client=other, background=True)
    try:
        run(ip, '%claude_batch df.q "My private template {q}" -o df.a -m claude-haiku-5-5 --background')
        mine = ip.user_ns["_claude_job"]
        coordinator = ip.find_cell_magic("claude").__self__.client.scheduler.coordinator

        def both_sharing() -> bool:
            members = coordinator.members()
            shares = [b.get("share") for s in members.values() for b in s.get("buckets", {}).values()]
            return len(members) == 2 and shares == [0.5, 0.5]

        wait_for(both_sharing, "two kernels with half the limit each")
        capsys.readouterr()
        run(ip, "%claude_jobs --all-kernels")
        out = capsys.readouterr().out
    finally:
        theirs.cancel()
        other.close()
        run(ip, "%claude_jobs cancel --all")
    lines = out.strip().splitlines()
    assert lines[0].split() == ["kernel", "job", "state", "rows", "limit", "share"]
    assert len(lines) == 3 and sum("(this kernel)" in line for line in lines) == 1
    assert all(line.split()[-2:] == ["haiku-5-5", "50%"] and "running" in line for line in lines[1:])
    assert mine.id in lines[1] + lines[2] and "/40" in out
    assert "template" not in out.lower() and "question" not in out


def test_a_batch_goes_on_alone_through_a_refused_redis_and_a_redis_restart(
        emu: Any, tmp_path: Path, redis_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    from redis_server import free_port

    emu.configure(rpm=600, ttft=0.02)
    with caplog.at_level(logging.WARNING, logger="claude_magic"):
        with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "a", model=MODEL, max_tokens=8,
                    coordinator=f"redis://127.0.0.1:{free_port()}/0") as client:
            result = run_batch("{q}", rows("refused", 20), client=client)
        assert result.summary.succeeded_rows == 20
        refused = [r.getMessage() for r in caplog.records if "coordinator at" in r.getMessage()]
        assert len(refused) == 1 and "ConnectionError" in refused[0]

        with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "b", model=MODEL, max_tokens=8,
                    coordinator=redis_server.url) as client:
            job = run_batch("{q}", rows("restart", 60), client=client, background=True)
            coordinator = client.scheduler.coordinator
            assert coordinator is not None
            wait_for(lambda: coordinator.last is not None and job.progress.done >= 10, "a shared start")
            redis_server.restart()
            result = job.result(timeout=120)
            assert result.summary.succeeded_rows == 60  # nothing lost, nothing hung
            wait_for(lambda: coordinator.failure is None and coordinator.member in coordinator.members(),
                     "the lease renewed after the restart")


def test_hosts_whose_clocks_differ_by_minutes_agree_on_leases_through_redis(
        redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from claude_magic._coordinator import Coordinator
    from claude_magic._redis_store import RedisStore

    here = Coordinator(RedisStore(redis_server.url), "g")
    there = Coordinator(RedisStore(redis_server.url), "g")

    async def beat(coordinator: Coordinator) -> Any:
        return await coordinator.beat_once(lambda: {"buckets": {}}, dict, lambda _: None)

    try:
        asyncio.run(beat(here))
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 300.0)  # the other host's clock: 5 minutes ahead
        seen = asyncio.run(beat(there))
        assert set(seen.members) == {here.member, there.member}  # its clock expired nobody
        monkeypatch.setattr(time, "time", lambda: real() - 300.0)
        seen = asyncio.run(beat(here))
        assert set(seen.members) == {here.member, there.member}
    finally:
        here.close()
        there.close()


def test_a_malformed_redis_url_is_refused_at_config_time_and_only_warned_about_from_the_environment(
        ip: Any, emu: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("redis")
    ip.run_cell("%config ClaudeMagics.coordinator = 'redis://127.0.0.1:not-a-port/0'")
    out = capsys.readouterr()
    assert "is not a Redis URL" in out.out + out.err + caplog.text
    assert ip.find_cell_magic("claude").__self__.coordinator is None
    # from the environment nothing can refuse it early: calls go on, pacing alone, after one warning
    monkeypatch.setenv("CLAUDE_MAGIC_COORDINATOR", "redis://127.0.0.1:not-a-port/0")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="claude_magic"):
        with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "c", max_tokens=8) as client:
            assert client.scheduler.coordinator is None
            assert client.complete("hello").stop_reason in ("end_turn", "max_tokens")
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("claude_magic: no sharing of the rate limits with other kernels: the "
                              "coordinator 'redis://127.0.0.1:not-a-port/0' is not a Redis URL (")
    assert warning.endswith("; pacing alone from the rate-limit headers") and "\n" not in warning


def test_without_redis_py_a_redis_coordinator_names_the_extra_to_install(
        ip: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "redis", None)
    ip.run_cell("%config ClaudeMagics.coordinator = 'redis://127.0.0.1:6379/0'")
    out = capsys.readouterr()
    assert "pip install 'claude_magic[redis]'" in out.out + out.err + caplog.text
