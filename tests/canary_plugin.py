"""Loaded (``-p canary_plugin``) only by ``tests/test_canary.py``'s inner run: writes the text of
every exception the package made, and every magic failure, to ``$CLAUDE_MAGIC_CANARY_OUT``."""

from __future__ import annotations

import os
from typing import Any


def pytest_configure(config: Any) -> None:
    from IPython.core.error import UsageError

    from claude_magic.errors import ClaudeError

    out = open(os.environ["CLAUDE_MAGIC_CANARY_OUT"], "a", encoding="utf-8")  # noqa: SIM115 (session-long)
    config._canary_out = out

    def recording(cls: Any) -> None:
        original = cls.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            out.write(f"{type(self).__name__}: {self}\n{self!r}\n{self.args!r}\n"
                      f"{getattr(self, 'partial', '')}\n")

        cls.__init__ = __init__

    recording(ClaudeError)
    recording(UsageError)


def pytest_unconfigure(config: Any) -> None:
    out = getattr(config, "_canary_out", None)
    if out is not None:
        out.close()
