"""How pytest runs the example notebooks (``pytest --nbval``, wired in pyproject.toml).

nbval starts each notebook's kernel while setting up its first cell; the kernel copies the
environment then. For that moment only, the environment is made the same on every machine:

- ``CLAUDE_MAGIC_DISPLAY=final``: each answer is shown once, when complete. nbval ignores
  ``update_display_data`` messages, so a live display would be compared as its placeholder.
- no ``ANTHROPIC_*`` or ``CLAUDE_MAGIC_OFFLINE`` from the caller's shell: the notebooks start the
  emulator themselves, and offline mode would turn their first prompts into errors.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

KERNEL_ENV = {"CLAUDE_MAGIC_DISPLAY": "final"}
SCRUBBED = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_MAGIC_OFFLINE")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: Any) -> Iterator[None]:
    if type(item).__name__ != "IPyNbCell":
        yield
        return
    saved = {name: os.environ.get(name) for name in (*KERNEL_ENV, *SCRUBBED)}
    os.environ.update(KERNEL_ENV)
    for name in SCRUBBED:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _is_cell(item: Any) -> bool:
    return type(item).__name__ == "IPyNbCell"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[Any]) -> None:
    """A notebook's cells share one kernel and run top to bottom: after a plugin that shuffles the
    tests (pytest-randomly), put them back in order, each notebook's cells together, in the places
    the cells were given."""
    notebooks: dict[str, list[Any]] = {}
    for item in items:
        if _is_cell(item):
            notebooks.setdefault(item.parent.nodeid, []).append(item)
    in_order = iter([c for cells in notebooks.values() for c in sorted(cells, key=lambda c: c.cell_num)])
    items[:] = [next(in_order) if _is_cell(item) else item for item in items]
