"""Helpers for tests that drive a real IPython InteractiveShell."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def run(ip: Any, code: str) -> Any:
    """Run ``code`` in the shell; any error is raised here."""
    result = ip.run_cell(code)
    result.raise_error()
    return result.result


def configure(ip: Any, **settings: Any) -> None:
    """``%config ClaudeMagics.NAME = VALUE`` for each setting, in order."""
    for name, value in settings.items():
        run(ip, f"%config ClaudeMagics.{name} = {value!r}")


def fails(ip: Any, code: str) -> BaseException:
    """Run ``code``, which must fail; return the error the shell caught."""
    result = ip.run_cell(code)
    assert result.error_in_exec is not None, f"{code!r} should have failed"
    return result.error_in_exec


_SETTINGS = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CLAUDE_MAGIC_OFFLINE", "CLAUDE_MAGIC_DISPLAY")


@contextmanager
def loaded_shell(monkeypatch: Any, cache_dir: Path, *user_names: str) -> Iterator[Any]:
    """The global InteractiveShell with claude_magic loaded, no settings from the caller's environment,
    a response cache in ``cache_dir`` and displays captured (``shell.display_pub.outputs``).

    On exit: the extension unloaded, ``%config`` settings, the last reply and ``user_names`` removed.
    """
    import IPython
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.testing import globalipapp

    from claude_magic.magics import ClaudeMagics

    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLAUDE_MAGIC_CACHE_DIR", str(cache_dir))
    globalipapp.start_ipython()  # once per process; then the shell is the global instance
    shell = IPython.get_ipython()
    saved = shell.display_pub
    shell.display_pub = CapturingDisplayPublisher()
    shell.run_line_magic("load_ext", "claude_magic")
    try:
        yield shell
    finally:
        shell.run_line_magic("unload_ext", "claude_magic")
        shell.display_pub = saved
        shell.config.pop("ClaudeMagics", None)  # %config settings live in the shell's config
        ClaudeMagics.last_reply = None
        for name in ("_claude", *user_names):
            shell.user_ns.pop(name, None)
