"""What the running IPython shell loaded, for the layers below the magics (no IPython import
unless a shell loaded the extension).

``load_ipython_extension`` records each shell's Session and magics in ``loaded``; the Python API
(``session``, ``get_client``, ``batch.run_batch``) asks :func:`kernel_session` or
:func:`kernel_client` for them, so that code in a notebook shares the magics' settings, cache,
emulator and usage table. It lives below both so that ``batch`` need not import the package
above it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["Loaded", "kernel_client", "kernel_session", "loaded"]


@dataclass(frozen=True)
class Loaded:
    """What loading the extension in one shell made: its Session and the magics registered over it."""

    session: Any
    magics: tuple[Any, ...]
    hooks: tuple[tuple[str, Any], ...] = ()  # (event, callback) registered with the shell


# By shell, so that unloading closes and removes exactly what loading made.
loaded: dict[int, Loaded] = {}


def kernel_session() -> Any:
    """The Session of the running IPython shell, if it loaded the extension; else None."""
    if not loaded or "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    entry = loaded.get(id(get_ipython()))
    return entry.session if entry is not None else None


def kernel_client() -> Any:
    """The client of the running shell's Session, or None: the Python API called from a notebook
    then shares the magics' settings, cache, emulator and usage table."""
    session = kernel_session()
    return session.client if session is not None else None
