"""Pytest fixtures for the emulator (registered as a ``pytest11`` entry point).

``claude_emulator``: a running :class:`Emulator`, one server per test session, reset (faults,
records, rate limits, batches, uploaded files, prompt cache and knobs) before each test.
``claude_emulator_env``: the same, with ``ANTHROPIC_BASE_URL`` and a dummy ``ANTHROPIC_API_KEY`` set.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .app import Emulator

DUMMY_KEY = "sk-ant-emulator-dummy-key"


@pytest.fixture(scope="session")
def _claude_emulator_server() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def claude_emulator(_claude_emulator_server: Emulator) -> Emulator:
    _claude_emulator_server.reset(knobs=True)
    return _claude_emulator_server


@pytest.fixture
def claude_emulator_env(claude_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", claude_emulator.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", DUMMY_KEY)
    return claude_emulator
