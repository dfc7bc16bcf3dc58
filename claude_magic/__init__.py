"""claude_magic: Claude in Jupyter — ``%%claude`` streaming, a response cache, batches over dataframes.

``import claude_magic`` stays light: the public names are imported on first access.
``%load_ext claude_magic`` registers the magics (``magics``, ``batch_magic``, ``session_magics``)
over one Session per shell (``_session``), which ``session()`` returns.
"""

from __future__ import annotations

import atexit
from importlib import import_module
from typing import TYPE_CHECKING, Any

# Each shell's Session and magics, kept below batch (which must not import this package).
from ._kernel import Loaded as _Loaded
from ._kernel import kernel_session as _kernel_session
from ._kernel import loaded as _loaded

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Reply",
    "ResponseCache",
    "Session",
    "Usage",
    "__version__",
    "errors",
    "get_client",
    "load_ipython_extension",
    "map_prompts",
    "session",
    "unload_ipython_extension",
]

# public name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "Client": (".client", "Client"),
    "Reply": (".reply", "Reply"),
    "Usage": (".reply", "Usage"),
    "ResponseCache": (".cache", "ResponseCache"),
    "Session": ("._session", "Session"),
    "map_prompts": (".batch", "map_prompts"),
    "errors": (".errors", None),
}

if TYPE_CHECKING:
    from . import errors
    from ._session import Session
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


_default_session: Session | None = None


def session() -> Session:
    """The Session to use from Python: in a shell where ``%load_ext claude_magic`` ran, the magics'
    own (their ``%config``, key, client, cache, emulator, chats and ``%claude_usage`` history);
    elsewhere one Session from the environment, made on first use and shared, closed at exit.
    (Its class is ``claude_magic.Session``; its module is private so that this function keeps the
    name.)"""
    global _default_session
    shared = _kernel_session()
    if shared is not None:
        return shared  # type: ignore[no-any-return]
    if _default_session is None:
        from ._session import Session

        _default_session = Session()
        atexit.register(_default_session.close)
    return _default_session


def get_client() -> Client:
    """The client to use from Python, ``session().client``: in a notebook where ``%load_ext
    claude_magic`` ran, the magics' own; elsewhere one ``Client`` from the environment, made on
    first use and shared (a new one if it was closed), closed at exit. (Not named ``client``: that
    is the module ``claude_magic.client``.)"""
    return session().client


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext claude_magic``: register the magics over a new Session (their heavy imports wait
    for first use)."""
    from .batch_magic import BatchMagics
    from .jobs_magic import Deliveries, JobsMagics
    from .magics import ClaudeMagics
    from .session_magics import SessionMagics

    if id(ipython) in _loaded:  # loaded twice without an unload: keep the one Session
        return
    settings = ClaudeMagics(shell=ipython)  # every setting, and the Session they build
    session = settings.session
    deliveries = Deliveries()  # background jobs' answers, written when no cell runs
    magics = (settings, BatchMagics(ipython, session, deliveries), JobsMagics(ipython, session),
              SessionMagics(ipython, session))
    ipython.register_magics(*magics)
    hooks = (("pre_run_cell", settings._warn_literal_key), ("post_run_cell", settings._scrub_config),
             ("pre_run_cell", deliveries.pre_run_cell), ("post_run_cell", deliveries.post_run_cell))
    for event, callback in hooks:
        ipython.events.register(event, callback)
    _loaded[id(ipython)] = _Loaded(session, magics, hooks)
    atexit.register(_at_exit, id(ipython))


def _at_exit(shell_id: int) -> None:
    """Kernel shutdown: cancel the shell's background jobs cleanly (each keeps what it answered,
    a Message Batch stays resumable from the cache) and close the client, cache and emulator."""
    loaded = _loaded.get(shell_id)
    if loaded is not None:
        loaded.session.close()


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext claude_magic``: close the Session (client, cache, emulator) and remove every
    magic and configurable that loading added."""
    loaded = _loaded.pop(id(ipython), None)
    if loaded is None:
        return
    loaded.session.close()
    for event, callback in loaded.hooks:
        try:
            ipython.events.unregister(event, callback)
        except ValueError:
            pass
    manager = ipython.magics_manager
    configurables = getattr(ipython, "configurables", [])
    for magics in loaded.magics:
        for kind, names in magics.magics.items():
            for name in names:
                if getattr(manager.magics[kind].get(name), "__self__", None) is magics:
                    del manager.magics[kind][name]
        if manager.registry.get(type(magics).__name__) is magics:
            del manager.registry[type(magics).__name__]
        if magics in configurables:
            configurables.remove(magics)
