"""Trust through the magics and the Python API a user touches: a corrupt cache degrades, a planted
bad cache value is a miss, the emulator's temporary cache goes with the kernel, and comments after
a magic's arguments are comments. Real IPython shells, the emulator, real diskcache stores."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from canary import TEST_KEY
from ipshell import fails, loaded_shell, run

from claude_magic.batch import run_batch
from claude_magic.client import Client

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claude_emulator: Any) -> Iterator[Any]:
    with loaded_shell(monkeypatch, tmp_path / "cache", "df") as shell:
        run(shell, f"%config ClaudeMagics.base_url = {claude_emulator.url!r}")
        shell.magics_manager.registry["ClaudeMagics"].api_key = TEST_KEY
        run(shell, "%config ClaudeMagics.display = 'handle'")
        yield shell


def sent(emu: Any) -> int:
    return sum(r.path == "/v1/messages" for r in emu.requests)


def test_a_corrupt_cache_warns_once_and_calls_run_without_it_until_clear_rebuilds_it(
        ip: Any, tmp_path: Path, claude_emulator: Any, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%%claude -m claude-haiku-5-5\nfirst")
    run(ip, "%config ClaudeMagics.cache_dir = " + repr(str(tmp_path / "other")))  # closes the store
    db = tmp_path / "cache" / "responses" / "cache.db"
    with open(db, "r+b") as f:
        f.write(b"this is not a database" * 8)
    run(ip, "%config ClaudeMagics.cache_dir = " + repr(str(tmp_path / "cache")))
    with caplog.at_level(logging.WARNING, logger="claude_magic"):
        for _ in range(2):
            run(ip, "%%claude -m claude-haiku-5-5\nfirst")
            assert not ip.user_ns["_claude"].cached
        run(ip, "%%claude -m claude-haiku-5-5 --no-cache\nsecond")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unusable" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage() and str(db.parent.parent) in warnings[0].getMessage()
    capsys.readouterr()
    run(ip, "%claude_cache stats")
    assert "is unusable" in capsys.readouterr().out
    run(ip, "%claude_cache clear")
    assert "rebuilt the response cache" in capsys.readouterr().out
    run(ip, "%%claude -m claude-haiku-5-5\nfirst")
    run(ip, "%%claude -m claude-haiku-5-5\nfirst")
    assert ip.user_ns["_claude"].cached  # the cache works again
    ip.user_ns.pop("_claude", None)


def test_a_planted_value_of_the_wrong_shape_is_a_miss_for_a_batch(claude_emulator: Any,
                                                                   tmp_path: Path) -> None:
    with Client(api_key=TEST_KEY, base_url=claude_emulator.url, cache_dir=tmp_path, max_tokens=16) as client:
        key = client.cache_key(client.build_body("Say a", max_tokens=16))
        client.cache._responses.run(lambda c: c.set(str(key), {"text": 5}), None)  # valid JSON, wrong shape
        result = run_batch("Say {value}", ["a", "b"], client=client)
    assert result.series.notna().all() and result.summary.sent == 2


def test_the_emulators_temporary_cache_goes_with_the_kernel(tmp_path: Path) -> None:
    code = ("from IPython.testing.globalipapp import start_ipython\n"
            "ip = start_ipython()\n"
            "ip.run_line_magic('load_ext', 'claude_magic')\n"
            "ip.run_line_magic('claude_emulator', 'start')\n"
            "print(ip.find_cell_magic('claude').__self__.response_cache.directory)\n")  # exits, no stop
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_MAGIC_"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    folder = Path(done.stdout.strip().splitlines()[-1])
    assert "claude_magic_emulator_" in folder.name and not folder.exists()


def test_a_comment_after_batch_arguments_is_a_comment(ip: Any, claude_emulator: Any) -> None:
    ip.user_ns["df"] = pd.DataFrame({"review": ["great", "awful"]})
    run(ip, '%claude_batch df.review "Say {review}" -o df.label -m claude-haiku-5-5   # label them')
    assert ip.user_ns["df"]["label"].notna().all() and sent(claude_emulator) == 2
    err = fails(ip, '%claude_batch df.review "Say {review}"  # no DEST')
    assert "give -o DEST" in str(err)


def test_a_password_in_base_url_stays_out_of_the_config(ip: Any, claude_emulator: Any,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    password = "pw-secret-0123456789"
    url = claude_emulator.url.replace("http://", f"http://analyst:{password}@")
    run(ip, f"%config ClaudeMagics.base_url = {url!r}")
    run(ip, "%%claude -m claude-haiku-5-5\nhello through a gateway")
    assert claude_emulator.requests[-1].headers["authorization"] == "REDACTED"  # Basic credentials went
    run(ip, "%config ClaudeMagics")
    shown = capsys.readouterr().out + str(ip.config) + repr(ip.find_cell_magic("claude").__self__.client)
    assert password not in shown and "<redacted>@127.0.0.1" in shown
    assert all(password not in str(c.config) for c in ip.configurables)  # %config copies it to each
    ip.user_ns.pop("_claude", None)
