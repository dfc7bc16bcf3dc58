"""The magics loaded in the running IPython shell, for the layers below them (no IPython import
unless a shell loaded the extension).

``load_ipython_extension`` registers each shell's ``ClaudeMagics`` in ``loaded``; the Python API
(``get_client``, ``batch.run_batch``) asks :func:`kernel_client` for their client, so that code in
a notebook shares the magics' settings, cache, emulator and usage table. It lives below both so
that ``batch`` need not import the package above it.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["kernel_client", "loaded"]

# The instance registered in each shell, so that unloading closes exactly what loading opened.
loaded: dict[int, Any] = {}


def kernel_client() -> Any:
    """The client of the magics loaded in the running IPython shell, or None: the Python API
    called from a notebook then shares the magics' settings, cache, emulator and usage table."""
    if not loaded or "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    magics = loaded.get(id(get_ipython()))
    return magics.get_client() if magics is not None else None
