"""ruff and mypy are part of the test suite, so the one test command keeps the code clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
                    reason="ruff is in the test extra")
def test_ruff_is_clean() -> None:
    out = run("ruff", "check", "claude_magic", "tests", "benchmarks")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy")
    out = run("mypy", "claude_magic")
    assert out.returncode == 0, out.stdout + out.stderr
