"""Every code block of README.md runs, so the README cannot drift from the product.

Python blocks (magics included) run in order in one real IPython shell, in a temporary folder,
against the emulator the README itself starts (``%claude_emulator start``). Shell blocks run in a
folder holding the notebook they talk about (``analysis.ipynb``), against a running emulator for
the recording step. A block is skipped only when the line before it says
``<!-- not run: REASON -->`` with one of the reasons below, and only a shell block may be.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REASONS = {"setup", "long-running", "benchmark"}  # the set-up commands, the server, the benchmarks
_FENCE = re.compile(r"(?:^<!-- not run: (?P<reason>[^>]*?) -->\n)?^```(?P<lang>[\w-]*)\n(?P<code>.*?)^```$",
                    re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    line: int
    lang: str
    code: str
    skip: str | None

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    return [Block(text.count("\n", 0, m.start("lang")) + 1, m["lang"], m["code"], m["reason"])
            for m in _FENCE.finditer(text)]


def test_every_block_runs_unless_it_is_a_setup_server_or_benchmark_command() -> None:
    found = blocks()
    assert len(found) >= 15
    for block in found:
        assert block.lang in ("python", "bash", "text"), f"{block}: give the block a language"
        if block.skip is not None:
            assert block.skip in REASONS and block.lang == "bash", f"{block}: skipped for {block.skip!r}"
    skipped = [b.skip for b in found if b.skip]
    assert sorted(skipped) == ["benchmark", "long-running", "setup", "setup"]
    assert "python3 -m venv .venv" in found[0].code and "-m pytest" in found[1].code
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci.endswith(found[1].code.strip()), "CI runs the README's test command"


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import IPython
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.testing import globalipapp

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLAUDE_MAGIC_DISPLAY", "final")
    globalipapp.start_ipython()
    ip = IPython.get_ipython()
    saved, ip.display_pub = ip.display_pub, CapturingDisplayPublisher()
    names = set(ip.user_ns)
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "claude_magic")
        ip.display_pub = saved
        ip.config.pop("ClaudeMagics", None)
        for name in set(ip.user_ns) - names:
            ip.user_ns.pop(name, None)


@pytest.mark.timeout(300)
def test_the_python_blocks_run_in_order_in_ipython_against_the_emulator(shell: Any) -> None:
    python = [b for b in blocks() if b.lang == "python"]
    assert python[0].code.startswith("%load_ext claude_magic\n%claude_emulator start")
    for block in python:
        result = shell.run_cell(block.code)
        assert result.error_before_exec is None and result.error_in_exec is None, \
            f"{block} failed: {result.error_before_exec or result.error_in_exec!r}"
    ns = shell.user_ns
    # what the examples promise
    assert ns["summary"] and ns["_claude"].text
    assert ns["reviews"]["sentiment"].notna().sum() == 4 and ns["reviews"]["sentiment"].isna().sum() == 1
    assert ns["again"].cached and ns["other"].text and (Path.cwd() / "cassette.jsonl").exists()


@pytest.mark.timeout(300)
def test_the_ci_recipe_blocks_record_then_replay(tmp_path: Path, claude_emulator: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    shell_blocks = [b for b in blocks() if b.lang == "bash" and b.skip is None]
    assert len(shell_blocks) == 2 and "jupyter execute" in shell_blocks[0].code
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%load_ext claude_magic"),
        nbformat.v4.new_code_cell("%%claude -m claude-haiku-5-5\nName three rivers."),
        nbformat.v4.new_code_cell("%%claude -m claude-haiku-5-5\nName three rivers."),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "analysis.ipynb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_MAGIC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    record = {**env, "ANTHROPIC_BASE_URL": claude_emulator.url, "ANTHROPIC_API_KEY": "sk-ant-api03-readme",
              "CLAUDE_MAGIC_CACHE_DIR": str(tmp_path / "dev-cache")}
    replay = {**env, "CLAUDE_MAGIC_CACHE_DIR": str(tmp_path / "ci-cache")}
    for block, block_env in zip(shell_blocks, (record, replay), strict=True):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=tmp_path, env=block_env,
                              capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, f"{block}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "3 passed" in done.stdout
    recorded = nbformat.read(tmp_path / "analysis.ipynb", as_version=4)
    assert "cached, saved" in recorded.cells[2].outputs[0].data["text/plain"]
