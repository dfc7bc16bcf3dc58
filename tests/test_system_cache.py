"""%%claude -s LONG: a long system prompt sent again in this kernel gets a prompt-cache mark."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ipshell import loaded_shell, run

from claude_magic.emulator import Emulator

MODEL = "claude-haiku-5-5"
LONG = " ".join(f"Rule {i}: answer in plain words, cite the table row you used." for i in range(400))


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claude_emulator: Emulator) -> Iterator[Any]:
    with loaded_shell(monkeypatch, tmp_path / "cache", "rules") as shell:
        run(shell, f"%config ClaudeMagics.base_url = {claude_emulator.url!r}")
        run(shell, "%config ClaudeMagics.api_key = 'sk-system-cache-test'")
        run(shell, f"%config ClaudeMagics.model = {MODEL!r}")
        run(shell, "%config ClaudeMagics.display = 'final'")
        shell.user_ns["rules"] = LONG
        yield shell


def systems(emu: Emulator) -> list[Any]:
    return [r.json.get("system") for r in emu.requests if r.method == "POST" and r.path == "/v1/messages"]


def test_a_long_system_prompt_is_marked_from_its_second_use_and_then_read_from_the_prompt_cache(
        ip: Any, claude_emulator: Emulator) -> None:
    for question in ("First question", "Second question", "Third question"):
        run(ip, f"%%claude -s {{rules}} --max-tokens 20\n{question}")
    first, second, third = systems(claude_emulator)
    assert first == LONG  # a one-off use pays no write premium
    assert second[-1]["cache_control"] == {"type": "ephemeral"} and second[-1]["text"] == LONG
    assert third == second
    assert ip.user_ns["_claude"].usage.cache_read_input_tokens > 0  # the third cell read it


def test_a_short_system_prompt_is_never_marked(ip: Any, claude_emulator: Emulator) -> None:
    for question in ("One", "Two"):
        run(ip, f"%%claude -s 'Be brief.' --max-tokens 20\n{question}")
    assert systems(claude_emulator) == ["Be brief.", "Be brief."]
