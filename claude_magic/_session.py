"""A Session: what one IPython shell (or one Python process) keeps open for Claude, and when each
part is built, rebuilt and closed.

It owns the lifetimes the magics used to hold themselves:

* the ``Client``, built on first use from the settings and rebuilt (on the next use) after a
  setting it was built with changes, or after someone closed it;
* the ``ResponseCache``, reopened when ``cache``, ``cache_dir`` or ``offline`` changes;
* the bundled emulator (``start_emulator``/``stop_emulator``): while it runs the client talks to
  it with a dummy key and a new temporary cache, deleted on stop, on ``close`` or at exit;
* the chats of ``%%claude --chat``, and the usage history, kept across client rebuilds.

A Session reads its settings, it never stores them: every build asks ``settings`` (the
``ClaudeMagics`` instance, whose traitlets ``%config`` sets, or :class:`EnvironmentSettings`
outside a shell with the extension) for the current values. Knowing which change needs which
rebuild is the Session's job (``setting_changed``); checking a value, and keeping a key or a
password out of the config, stays with the traitlets that hold them.

The module is a separate private one because ``claude_magic.session()`` is the function that
returns the shell's Session: a public module ``claude_magic.session`` would replace it as an
attribute of the package as soon as it was imported. No IPython, httpx or diskcache import here:
loading the extension stays fast.
"""

from __future__ import annotations

import shutil
import threading
import weakref
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .cache import ResponseCache
    from .chat import ChatStore
    from .client import Client
    from .emulator import Emulator
    from .reply import Reply

__all__ = ["CACHE_SETTINGS", "CLIENT_SETTINGS", "EMULATOR_KEY", "EnvironmentSettings", "Session", "Settings"]

# the settings the Client is built with: changing one rebuilds it (on the next use)
CLIENT_SETTINGS = ("api_key", "base_url", "api_version", "cache_dir", "max_wait", "offline", "cache", "model",
                   "max_tokens", "coordinator")
# ... and those the response cache is opened with: changing one reopens it too
CACHE_SETTINGS = ("cache_dir", "offline", "cache")
EMULATOR_KEY = "sk-emulator-not-a-real-key"


class Settings(Protocol):
    """What a Session reads from its settings (``ClaudeMagics`` has them as traitlets)."""

    @property
    def model(self) -> str | None: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def system(self) -> str | None: ...
    @property
    def effort(self) -> str | None: ...
    @property
    def api_version(self) -> str | None: ...
    @property
    def max_wait(self) -> float | None: ...
    @property
    def cache(self) -> bool: ...
    @property
    def cache_dir(self) -> str | None: ...
    @property
    def offline(self) -> bool | None: ...

    def kept_key(self) -> Any:
        """The key set for this session (a ``_secrets.Secret``), or None: the environment's applies."""

    def kept_base_url(self) -> str | None:
        """The base URL set for this session, password included, or None: the environment's applies."""

    def kept_coordinator(self) -> str | None:
        """The coordinator set for this session, a password included, or None: the environment's applies."""


class EnvironmentSettings:
    """No setting of its own: the Client's defaults and the environment (``ANTHROPIC_API_KEY``,
    ``ANTHROPIC_BASE_URL``, ``CLAUDE_MAGIC_CACHE_DIR``, ``CLAUDE_MAGIC_OFFLINE``) decide."""

    model: str | None = None
    max_tokens = 1024
    system: str | None = None
    effort: str | None = None
    api_version: str | None = None
    max_wait: float | None = None
    cache = True
    cache_dir: str | None = None
    offline: bool | None = None

    def kept_key(self) -> Any:
        return None

    def kept_base_url(self) -> str | None:
        return None

    def kept_coordinator(self) -> str | None:
        return None


class Session:
    """The client, response cache, emulator and chats of one shell, built from ``settings`` on
    first use; ``close()`` releases them (a later use builds them again)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings: Settings = settings if settings is not None else EnvironmentSettings()
        self._client: Client | None = None
        self._cache: ResponseCache | None = None
        self._emulator: Emulator | None = None
        self._emulator_cache_dir: str | None = None  # the emulator's own temporary response cache
        self._emulator_cleanup: weakref.finalize | None = None
        self._past_history: list[Reply] = []
        self._chats: ChatStore | None = None
        self._systems: dict[tuple[str, str], int] = {}  # (model, system prompt) -> cells that sent it
        self._retired: list[Client] = []  # replaced while background jobs ran on them: closed after

    def __repr__(self) -> str:
        state = f"emulator at {self._emulator.url}" if self._emulator is not None else "real API"
        return f"<Session: {state}, client {'built' if self.client_if_built else 'not built'}>"

    # -- the client -------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The Client, built from the settings on first use (raises ClaudeError on a bad one)."""
        if self._client is not None and self._client.closed:  # closed by its user: a fresh one
            self._drop_client()
        if self._client is None:
            self._client = self._build_client()
        return self._client

    @property
    def client_if_built(self) -> Client | None:
        """The Client if one is built and open, else None (never builds one)."""
        return self._client if self._client is not None and not self._client.closed else None

    def _build_client(self) -> Client:
        from .client import Client

        s = self.settings
        url, key = (self._emulator.url, EMULATOR_KEY) if self._emulator is not None else (None, None)
        cache = self.response_cache
        return Client(
            api_key=key or s.kept_key() or None,
            base_url=url or s.kept_base_url(),
            api_version=s.api_version or None,
            model=s.model or None,
            max_tokens=s.max_tokens,
            max_wait=s.max_wait,
            cache=cache if cache is not None else False,
            offline=s.offline,
            coordinator=s.kept_coordinator(),
        )

    def setting_changed(self, name: str) -> None:
        """A setting changed: the client is rebuilt if it depends on it (and the cache reopened)."""
        if name in CLIENT_SETTINGS:
            self._drop_client(close_cache=name in CACHE_SETTINGS)

    def _drop_client(self, close_cache: bool = False) -> None:
        """Close the client (and the cache); a client with background jobs still running is retired
        instead: its jobs finish on it (and on its cache), then it is closed."""
        client, self._client = self._client, None
        running = [] if client is None else [j for j in client.scheduler.jobs().values() if not j.done()]
        if client is not None and running:
            self._retire(client, running, self._cache if close_cache else None)
        elif client is not None:
            self._past_history.extend(client.history)
            client.close()
        if close_cache and self._cache is not None:
            if not running:
                self._cache.close()
            self._cache = None

    def _retire(self, client: Client, running: list[Any], cache: ResponseCache | None) -> None:
        self._retired.append(client)
        left = set(running)
        lock = threading.Lock()

        def ended(job: Any) -> None:
            with lock:
                left.discard(job)
                if left:
                    return
            if client in self._retired:
                self._retired.remove(client)
                self._past_history.extend(client.history)
            client.close()
            if cache is not None:
                cache.close()

        for job in running:
            job.add_done_callback(ended)

    def jobs(self) -> list[Any]:
        """The batch jobs of this session's clients (the current one and any retired one still
        running jobs), oldest first: :class:`~claude_magic.batch.BatchJob` handles."""
        clients = [*self._retired, *([self._client] if self._client is not None else [])]
        return [job for c in clients for job in c.scheduler.jobs().values() if job is not None]

    def request_options(self, *, model: str | None = None, max_tokens: int | None = None,
                        system: str | None = None, effort: str | None = None) -> dict[str, Any]:
        """``complete`` keyword arguments: the given values, else the settings' (else the client's)."""
        s = self.settings
        options: dict[str, Any] = {
            "model": model or s.model or None,
            "max_tokens": max_tokens or s.max_tokens,
            "system": system if system is not None else (s.system or None),
            "effort": effort or s.effort or None,
        }
        return {k: v for k, v in options.items() if v is not None}

    def repeated_long_system(self, options: dict[str, Any]) -> bool:
        """Count this request's system prompt; True when it is long enough for the model's prompt cache
        and this session sent it before: a prompt run again and again with one long system prompt
        then pays its write once and reads it at a tenth of the input price after (a first, one-off
        use is not marked, so it never pays the write premium for nothing)."""
        system = options.get("system")
        if not isinstance(system, str) or not system:
            return False
        from .pricing import min_cacheable_tokens

        model = options.get("model") or (self._client.model if self._client is not None else "")
        if len(system.encode("utf-8")) / 3 < min_cacheable_tokens(model):  # a generous estimate:
            return False  # a mark below the minimum does nothing, one missing pays the whole prompt
        key = (model, system)
        self._systems[key] = self._systems.get(key, 0) + 1
        return self._systems[key] > 1

    def history(self) -> list[Reply]:
        """Every reply of this session (kept across client rebuilds)."""
        current = self._client.history if self._client is not None else []
        retired = [reply for client in list(self._retired) for reply in client.history]
        return [*self._past_history, *retired, *current]

    # -- the cache and the chats ------------------------------------------------------------------

    @property
    def response_cache(self) -> ResponseCache | None:
        """The response cache (opened on first use; None when the ``cache`` setting is off)."""
        if not self.settings.cache:
            return None
        if self._cache is None:
            from .cache import ResponseCache

            # the emulator's fake answers go to its own temporary cache, never the user's real one
            self._cache = ResponseCache(self._emulator_cache_dir or self.settings.cache_dir,
                                        offline=self.settings.offline)
        return self._cache

    @property
    def chats(self) -> ChatStore:
        """The conversations of ``%%claude --chat``, by name."""
        if self._chats is None:
            from .chat import ChatStore

            self._chats = ChatStore()
        return self._chats

    # -- the emulator -----------------------------------------------------------------------------

    @property
    def emulator(self) -> Emulator | None:
        """The emulator the client talks to, or None (the real API)."""
        return self._emulator

    def start_emulator(self, **knobs: Any) -> Emulator:
        """Start the bundled API emulator and point the client at it, with a dummy key and a new,
        empty temporary response cache (fake answers never reach the real one).

        Raises RuntimeError if one is running, TypeError for an unknown knob, ValueError for a
        bad value (``Emulator``'s own checks).
        """
        import tempfile

        from .emulator import Emulator

        if self._emulator is not None:
            raise RuntimeError(f"the emulator is already running at {self._emulator.url}")
        emulator = Emulator(**knobs)
        emulator.start()
        self._drop_client(close_cache=True)
        self._emulator = emulator
        self._emulator_cache_dir = tempfile.mkdtemp(prefix="claude_magic_emulator_")
        # removed at exit too, if the process ends without stop_emulator
        self._emulator_cleanup = weakref.finalize(emulator, shutil.rmtree, self._emulator_cache_dir, True)
        return emulator

    def stop_emulator(self) -> bool:
        """Stop the emulator, delete its temporary cache and go back to the settings' API and
        cache; False if it was not running."""
        emulator, self._emulator = self._emulator, None
        if emulator is None:
            return False
        self._drop_client(close_cache=True)
        emulator.stop()
        if self._emulator_cleanup is not None:
            self._emulator_cleanup()
            self._emulator_cleanup = None
        self._emulator_cache_dir = None
        return True

    # -- the end ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Cancel the background jobs (each keeps what it answered), close the client and the cache
        and stop the emulator (``%unload_ext``, kernel shutdown, exit)."""
        for client in [*self._retired, *([self._client] if self._client is not None else [])]:
            client.close()  # cancels its jobs and waits for them to keep their rows
        self._retired.clear()
        self._drop_client(close_cache=True)
        self.stop_emulator()
