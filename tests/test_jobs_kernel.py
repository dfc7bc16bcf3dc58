"""Background batch jobs in a real kernel (jupyter_client, as nbclient drives one), against the emulator
running inside it: DEST filled between cells and never under a running cell, .wait() and cancel,
two jobs at once, %claude_jobs, the stop button, interactive cells during a job, kernel shutdown.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)  # a hang guard: every wait below is for an event, bounded

SETUP = """\
%load_ext claude_magic
%claude_emulator start --ttft 0.05 rpm=600
%config ClaudeMagics.model = 'claude-haiku-5-5'
%config ClaudeMagics.max_tokens = 16
import pandas as pd
df = pd.DataFrame({'q': [f'question {i}' for i in range(20)], 'a': 'old'})
"""


class Kernel:
    def __init__(self, km: Any, kc: Any) -> None:
        self.km, self.kc = km, kc

    def run(self, code: str, timeout: float = 60) -> dict[str, Any]:
        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=lambda msg: None)
        return reply["content"]  # type: ignore[no-any-return]

    def ok(self, code: str, timeout: float = 60) -> None:
        content = self.run(code, timeout)
        assert content["status"] == "ok", content

    def value(self, expr: str) -> Any:
        reply = self.kc.execute_interactive("", user_expressions={"v": expr}, timeout=60,
                                            output_hook=lambda msg: None)
        result = reply["content"]["user_expressions"]["v"]
        assert result["status"] == "ok", result
        return eval(result["data"]["text/plain"])  # a literal: repr of a str, int, bool or list

    def iopub_until(self, found: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        """Read iopub while the kernel is idle until ``found(msg)``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if found(msg):
                return msg  # type: ignore[no-any-return]
        raise AssertionError("the kernel never sent the message awaited")


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    from jupyter_client.manager import start_new_kernel

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_MAGIC"))}
    env["CLAUDE_MAGIC_CACHE_DIR"] = str(tmp_path / "cache")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env=env)
    k = Kernel(km, kc)
    try:
        k.ok(SETUP)
        yield k
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _summary(msg: dict[str, Any]) -> bool:
    if msg["msg_type"] != "update_display_data":
        return False
    text = msg["content"].get("data", {}).get("text/plain", "")
    return text.startswith("claude_batch: ") and "rows" in text and "background" not in text


def test_dest_is_filled_while_the_kernel_is_idle_and_never_under_a_running_cell(kernel: Kernel) -> None:
    # in the launching cell itself (DEST is never written while a cell runs, so this cannot race)
    kernel.ok('%claude_batch df "Answer {q}" -o df.a --concurrency 2 --background\n'
              "at_once = (_claude_job.id, df.a.tolist() == ['old'] * 20)")
    assert kernel.value("at_once") == ("1", True)  # it returned at once: the job runs in the background
    # A cell that is running when the job ends does not see DEST change under it
    kernel.ok("_claude_job.exception()\nsame = df.a.tolist() == ['old'] * 20")
    assert kernel.value("same") is True
    assert kernel.value("bool((df.a != 'old').all())")  # ... and the next one finds it filled
    # While idle: a second job's answers arrive with no cell run (the summary replaces its bar)
    kernel.ok("df['b'] = None")
    kernel.ok('%claude_batch df "Again {q}" -o df.b --background')
    kernel.iopub_until(_summary)
    assert kernel.value("bool(df.b.notna().all())") is True
    assert kernel.value("_claude_batch.summary.rows") == 20


def test_wait_cancel_two_jobs_and_the_jobs_listing(kernel: Kernel) -> None:
    kernel.ok("big = pd.DataFrame({'q': [f'long question {i}' for i in range(400)], 'a': 'old'})")
    kernel.ok('%claude_batch big "Answer {q}" -o big.a --concurrency 1 --background')
    kernel.ok('%claude_batch df "Short {q}" -o df.a --background')
    kernel.ok("result = _claude_job.wait()")  # the second job: waits, fills its DEST at once
    assert kernel.value("bool((df.a != 'old').all()) and result.summary.rows == 20") is True
    listing = kernel.run("%claude_jobs")
    assert listing["status"] == "ok"
    kernel.ok("import io, contextlib\nbuf = io.StringIO()\n"
              "with contextlib.redirect_stdout(buf):\n    get_ipython().run_line_magic('claude_jobs', '')")
    table = kernel.value("buf.getvalue()")
    assert "running" in table and "Answer {q}" in table and "done" in table and "20/20" in table
    kernel.ok("%claude_jobs cancel 1")
    answered = kernel.value("int((big.a != 'old').sum())")
    assert 1 <= answered < 400  # the rows it answered are written; the others keep their old value
    assert kernel.value("int((big.a == 'old').sum())") == 400 - answered
    error = kernel.run("%claude_jobs cancel 9")
    assert error["status"] == "error" and "no batch job '9' in this kernel (jobs: 1, 2)" in error["evalue"]


def test_the_stop_button_stops_the_cell_not_the_job_and_shutdown_cancels_it_cleanly(
        kernel: Kernel, tmp_path: Path) -> None:
    threads = tmp_path / "threads.txt"
    # registered before the extension's own hook is not: atexit runs it after (last in, first out)
    kernel.ok(f"import atexit, threading\natexit.register(lambda: open({str(threads)!r}, 'w').write("
              "' '.join(t.name for t in threading.enumerate() if t.name.startswith('claude_magic'))))")
    kernel.ok("%unload_ext claude_magic\n%load_ext claude_magic\n%claude_emulator start --ttft 0.05 rpm=600\n"
              "%config ClaudeMagics.model = 'claude-haiku-5-5'")
    kernel.ok("big = pd.DataFrame({'q': [f'long question {i}' for i in range(400)], 'a': 'old'})")
    kernel.ok('%claude_batch big "Answer {q}" -o big.a --background')
    msg_id = kernel.kc.execute("import threading\nprint('waiting', flush=True)\nthreading.Event().wait()")
    # interrupted once the cell's own code runs: a SIGINT that lands while IPython still runs the
    # pre_run_cell hooks is caught there ("Error in callback") and the cell would then never end
    kernel.iopub_until(lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream"
                       and "waiting" in m["content"].get("text", ""))
    kernel.km.interrupt_kernel()
    reply = kernel.kc.get_shell_msg(timeout=30)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert kernel.value("_claude_job.running()") is True
    # an interactive cell during the job: admitted ahead of its rows, never a 429 or a retry-after pause
    kernel.ok("%%claude\nHello there")
    assert kernel.value("(_claude.retries, _claude.queued < 1, _claude.cached)") == (0, True, False)
    done_before = kernel.value("_claude_job.progress.done")
    kernel.ok("_claude_job.progress.done")  # let it move on
    kernel.km.shutdown_kernel(now=False)  # a clean shutdown: atexit runs
    assert not kernel.km.is_alive()
    assert threads.read_text() == ""  # no thread of ours left behind
    assert done_before < 400
