"""The Session: what it builds from the settings, when it rebuilds, what ``close`` releases, and
how ``claude_magic.session()`` finds the shell's (or the environment's) one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from canary import TEST_KEY
from ipshell import loaded_shell, run

import claude_magic
from claude_magic._session import EnvironmentSettings, Session

ROOT = Path(__file__).resolve().parents[1]
MODEL = "claude-haiku-5-5"


class Settings(EnvironmentSettings):
    """Plain settings, as ``ClaudeMagics`` holds them, pointed at the emulator."""

    def __init__(self, url: str, cache_dir: Path) -> None:
        self.url = url
        self.cache_dir = str(cache_dir)
        self.model = MODEL
        self.max_tokens = 16

    def kept_key(self) -> Any:
        return TEST_KEY

    def kept_base_url(self) -> str | None:
        return self.url


@pytest.fixture
def settings(claude_emulator: Any, tmp_path: Path) -> Settings:
    return Settings(claude_emulator.url, tmp_path / "cache")


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    s = Session(settings)
    yield s
    s.close()


def closing(monkeypatch: pytest.MonkeyPatch, cache: Any) -> list[bool]:
    """Record each ``cache.close()`` (and still close it)."""
    calls: list[bool] = []
    original = cache.close
    monkeypatch.setattr(cache, "close", lambda: (calls.append(True), original())[1])
    return calls


# -- building and rebuilding ------------------------------------------------------------------------


def test_the_client_is_built_once_from_the_settings(session: Session, settings: Settings) -> None:
    assert session.client_if_built is None  # nothing is built before it is used
    client = session.client
    assert session.client is client and session.client_if_built is client
    assert client.model == MODEL and client.max_tokens == 16 and client.cache is session.response_cache
    assert session.response_cache is not None
    assert Path(session.response_cache.directory) == Path(settings.cache_dir)


def test_a_client_setting_change_rebuilds_the_client_and_keeps_the_cache(
        session: Session, settings: Settings) -> None:
    old, cache = session.client, session.response_cache
    settings.model = "claude-sonnet-5-5"
    session.setting_changed("model")
    assert old.closed and session.client_if_built is None  # rebuilt on the next use, not now
    assert session.client is not old and session.client.model == "claude-sonnet-5-5"
    assert session.response_cache is cache  # the model is not a setting of the cache


def test_a_cache_setting_change_reopens_the_cache(session: Session, settings: Settings, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    old = session.client
    cache = session.response_cache
    closed = closing(monkeypatch, cache)
    settings.cache_dir = str(tmp_path / "elsewhere")
    session.setting_changed("cache_dir")
    assert old.closed and closed == [True]
    assert session.response_cache is not cache and session.client.cache is session.response_cache
    assert Path(session.response_cache.directory) == tmp_path / "elsewhere"


def test_other_settings_leave_the_client_alone(session: Session, settings: Settings) -> None:
    client = session.client
    settings.system = "Be terse."
    session.setting_changed("system")  # read for each call (request_options), not built in
    assert session.client is client and not client.closed
    assert session.request_options() == {"model": MODEL, "max_tokens": 16, "system": "Be terse."}
    assert session.request_options(model="m", system="") == {"model": "m", "max_tokens": 16, "system": ""}


def test_no_cache_setting_means_no_cache(session: Session, settings: Settings) -> None:
    settings.cache = False
    assert session.response_cache is None and session.client.cache is None


def test_the_history_is_kept_across_rebuilds_and_a_closed_client_is_replaced(
        session: Session, settings: Settings) -> None:
    session.client.complete("first")
    settings.max_wait = 30.0
    session.setting_changed("max_wait")
    session.client.complete("second")
    closed_by_its_user = session.client
    closed_by_its_user.close()  # e.g. ``with claude_magic.get_client() as c:``
    assert session.client_if_built is None
    assert session.client is not closed_by_its_user and not session.client.closed
    assert len(session.history()) == 2


# -- the emulator and close() -------------------------------------------------------------------------


def test_the_emulator_gets_its_own_key_url_and_temporary_cache(session: Session, settings: Settings) -> None:
    real = session.client
    emulator = session.start_emulator(token_rate=2000)
    assert session.emulator is emulator and real.closed
    assert session.client.base_url.startswith(emulator.url)
    temporary = Path(session.response_cache.directory)  # type: ignore[union-attr]
    assert temporary != Path(settings.cache_dir) and temporary.is_dir()
    with pytest.raises(RuntimeError, match="already running"):
        session.start_emulator()
    assert session.stop_emulator() is True
    assert not temporary.exists() and "stopped" in repr(emulator) and session.emulator is None
    assert Path(session.response_cache.directory) == Path(settings.cache_dir)  # type: ignore[union-attr]
    assert session.stop_emulator() is False  # nothing to stop


def test_a_bad_emulator_knob_starts_nothing(session: Session) -> None:
    with pytest.raises(TypeError):
        session.start_emulator(bogus=1)
    assert session.emulator is None


def test_close_closes_the_client_the_cache_and_the_emulator(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = session.start_emulator()
    client, cache = session.client, session.response_cache
    temporary = Path(cache.directory)  # type: ignore[union-attr]
    closed = closing(monkeypatch, cache)
    session.close()
    assert client.closed and closed == [True]
    assert "stopped" in repr(emulator) and session.emulator is None and not temporary.exists()
    session.close()  # twice is fine


# -- claude_magic.session() ---------------------------------------------------------------------------


def test_outside_a_shell_session_is_one_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(claude_magic, "_default_session", None)
    shared = claude_magic.session()
    try:
        assert isinstance(shared, claude_magic.Session) and claude_magic.session() is shared
        assert isinstance(shared.settings, EnvironmentSettings)
        assert claude_magic.get_client() is shared.client
    finally:
        shared.close()


def test_in_a_shell_session_is_the_magics_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with loaded_shell(monkeypatch, tmp_path / "cache", "s", "c") as ip:
        run(ip, f"%config ClaudeMagics.model = {MODEL!r}")
        run(ip, "import claude_magic\ns = claude_magic.session()\nc = claude_magic.get_client()")
        settings = ip.magics_manager.registry["ClaudeMagics"]
        assert ip.user_ns["s"] is settings.session and ip.user_ns["s"].settings is settings
        assert claude_magic.session().client is claude_magic.get_client() is ip.user_ns["c"]
        assert ip.user_ns["c"].model == MODEL
        run(ip, "%config ClaudeMagics.model = 'claude-sonnet-5-5'")  # %config rebuilds it
        assert ip.user_ns["c"].closed and claude_magic.get_client().model == "claude-sonnet-5-5"
        run(ip, "%config ClaudeMagics.system = 'Be terse.'")  # not a client setting
        assert claude_magic.session().client_if_built is not None


def test_the_session_module_is_light_and_leaves_the_function_its_name() -> None:
    code = ("import sys, claude_magic, claude_magic._session\n"
            "s = claude_magic._session.Session()\n"
            "print(callable(claude_magic.session), [m for m in ('IPython', 'httpx', 'diskcache') "
            "if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True []"
