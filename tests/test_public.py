"""The public surface: what each module offers is exactly its ``__all__`` (httpx's habit), so a
helper cannot become public by accident, and ``import claude_magic`` offers only the listed names."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import claude_magic

# Private modules (``_wire``, ``batch._pacing`` …) are out of scope, and so are the emulator's
# parts: its surface is ``claude_magic.emulator.__all__`` (and the pytest plugin's fixtures).
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(claude_magic.__path__, "claude_magic.")
    if not any(part.startswith("_") for part in m.name.split(".")[1:])
    and not m.name.startswith("claude_magic.emulator.")
)


def test_the_package_offers_exactly_its_all() -> None:
    assert sorted(claude_magic.__all__) == sorted([
        "Client", "Reply", "ResponseCache", "Session", "Usage", "__version__", "errors", "get_client",
        "load_ipython_extension", "map_prompts", "session", "unload_ipython_extension",
    ])
    for name in claude_magic.__all__:
        assert getattr(claude_magic, name) is not None
    with pytest.raises(AttributeError):
        claude_magic.run_batch  # noqa: B018 — reachable as claude_magic.batch.run_batch, not here


@pytest.mark.parametrize("name", MODULES)
def test_every_public_module_lists_what_it_defines(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"
    defined_here = [
        n for n, value in vars(module).items()
        if not n.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == name
    ]
    unlisted = sorted(set(defined_here) - set(exported))
    assert not unlisted, f"{name} defines public names outside its __all__: {unlisted} (prefix them with _)"


def test_the_batch_package_keeps_its_engines_private() -> None:
    assert "claude_magic.batch" in MODULES
    assert not [m for m in MODULES if m.startswith("claude_magic.batch.")]
