"""claude_magic: Claude in Jupyter — ``%%claude`` streaming, a response cache, batches over dataframes.

``import claude_magic`` stays light: the public names are imported on first access.
``%load_ext claude_magic`` registers the magics (see ``claude_magic.magics``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Each shell's magics and their client, kept below batch (which must not import this package).
from ._kernel import kernel_client as _kernel_client
from ._kernel import loaded as _loaded

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Reply",
    "ResponseCache",
    "Usage",
    "__version__",
    "errors",
    "get_client",
    "load_ipython_extension",
    "map_prompts",
    "unload_ipython_extension",
]

# public name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "Client": (".client", "Client"),
    "Reply": (".reply", "Reply"),
    "Usage": (".reply", "Usage"),
    "ResponseCache": (".cache", "ResponseCache"),
    "map_prompts": (".batch", "map_prompts"),
    "errors": (".errors", None),
}

if TYPE_CHECKING:
    from . import errors
    from .batch import map_prompts
    from .cache import ResponseCache
    from .client import Client
    from .reply import Reply, Usage


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'claude_magic' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = import_module(module, __name__)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


_default_client: Any = None


def get_client() -> Client:
    """The client to use from Python: in a notebook where ``%load_ext claude_magic`` ran, the
    magics' own (their ``%config``, key, cache, emulator and ``%claude_usage`` table); elsewhere one
    ``Client()`` from the environment, made on first use and shared, closed at exit. (Not named
    ``client``: that is the module ``claude_magic.client``.)"""
    global _default_client
    shared = _kernel_client()
    if shared is not None:
        return shared  # type: ignore[no-any-return]
    if _default_client is None or _default_client.closed:
        import atexit

        from .client import Client

        _default_client = Client()
        atexit.register(_default_client.close)
    return _default_client  # type: ignore[no-any-return]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext claude_magic``: register the magics (their heavy imports wait for first use)."""
    from .magics import ClaudeMagics

    if id(ipython) in _loaded:  # loaded twice without an unload: keep the one instance
        return
    magics = ClaudeMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics._warn_literal_key)
    ipython.events.register("post_run_cell", magics._scrub_config)
    _loaded[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext claude_magic``: remove the magics and close the client, cache and emulator."""
    magics = _loaded.pop(id(ipython), None)
    if magics is None:
        return
    magics.close()
    try:
        ipython.events.unregister("pre_run_cell", magics._warn_literal_key)
        ipython.events.unregister("post_run_cell", magics._scrub_config)
    except ValueError:
        pass
    manager = ipython.magics_manager
    for kind, names in magics.magics.items():
        for name in names:
            if getattr(manager.magics[kind].get(name), "__self__", None) is magics:
                del manager.magics[kind][name]
    manager.registry.pop(type(magics).__name__, None)
    if magics in getattr(ipython, "configurables", []):
        ipython.configurables.remove(magics)
