"""One canary for the whole suite: the fault matrix, the batch tests, the client's trust tests and
the example notebooks run again with a recognisable key, and every output, log record (DEBUG, every
logger: ours, httpx's, httpcore's), exception text, cache file and saved notebook is searched for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CANARY = "sk-ant-api03-CANARY-7f3a9c1e5b2d4086-tweet"
PIECES = (CANARY, CANARY[7:-4], "CANARY-7f3a9c1e")  # the whole key, and what masking must hide


def _leaks(text: str) -> list[str]:
    return [p for p in PIECES if p in text]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_MAGIC_"))}
    env.update(extra)
    return env


@pytest.mark.timeout(600)
def test_the_key_reaches_no_output_log_exception_cache_file_or_notebook(tmp_path: Path) -> None:
    base = tmp_path / "base"
    log = tmp_path / "debug.log"
    errors = tmp_path / "exceptions.txt"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-p", "canary_plugin", "-o", "addopts=", f"--basetemp={base}", f"--log-file={log}",
         "--log-file-level=DEBUG", "--log-level=DEBUG",
         "tests/test_faults.py", "tests/test_batch.py", "tests/test_client_trust.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=560,
        env=_clean_env(CLAUDE_MAGIC_TEST_KEY=CANARY, CLAUDE_MAGIC_CANARY_OUT=str(errors),
                       PYTHONPATH=str(ROOT / "tests")))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "passed" in done.stdout and log.stat().st_size > 100_000  # DEBUG records were written
    assert errors.read_text().count("\n") > 100  # the exceptions were recorded
    places = {"stdout": done.stdout, "stderr": done.stderr, "log": log.read_text(errors="replace"),
              "exceptions": errors.read_text()}
    files = [p for p in base.rglob("*") if p.is_file()]
    assert any(p.parent.name == "responses" or p.suffix == ".db" for p in files)  # caches were written
    places.update({str(p): p.read_bytes().decode("utf-8", "replace") for p in files})
    # the notebooks, in real kernels, with the key in their environment
    from claude_magic.demo import execute_notebook

    for name in ("quickstart", "batch_dataframe", "offline_ci"):
        out = tmp_path / f"{name}.ipynb"
        execute_notebook(ROOT / "notebooks" / f"{name}.ipynb", out, display="final",
                         env={"ANTHROPIC_API_KEY": CANARY, "CLAUDE_MAGIC_CACHE_DIR": str(tmp_path / "nb")})
        places[str(out)] = out.read_text()
    places.update({str(p): p.read_bytes().decode("utf-8", "replace")
                   for p in (tmp_path / "nb").rglob("*") if p.is_file()})
    leaked = {where: _leaks(text) for where, text in places.items() if _leaks(text)}
    assert not leaked, leaked
