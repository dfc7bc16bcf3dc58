"""``%claude_usage``, ``%claude_cache``, ``%claude_files`` and ``%claude_emulator``: the state of the
shell's Session.

Each is a few lines over :class:`~claude_magic._session.Session`, which owns the client whose
history the usage table reads, the response cache and the emulator; this module only parses the
line, turns the package's errors into one-line ``MagicError`` s and prints what happened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_magic, magics_class

from ._boundary import MagicError, show_markdown, split_args
from .errors import ClaudeError

if TYPE_CHECKING:
    from ._session import Session
    from .cache import ResponseCache

__all__ = ["SessionMagics"]


@magics_class
class SessionMagics(Magics):
    """What this kernel spent, its response cache and the local API emulator."""

    def __init__(self, shell: Any, session: Session, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session = session

    @line_magic
    def claude_usage(self, line: str = "") -> None:
        """%claude_usage: this kernel's calls per model (tokens, cost, cache hits and savings, retries)."""
        from .display import usage_table

        markdown, plain = usage_table(self.session.history())
        show_markdown(markdown, plain)

    @line_magic
    def claude_cache(self, line: str) -> None:
        """%claude_cache stats | clear | export PATH | import PATH [--host HOST]: the response cache.

        import --host maps a cassette recorded against one API host (the emulator's 127.0.0.1) to
        another (api.anthropic.com, what CI uses): answers are never shared across hosts otherwise.
        """
        words = split_args(line)
        action = words[0] if words else "stats"
        cache = self.session.response_cache
        if cache is None:
            raise MagicError("the response cache is off (%config ClaudeMagics.cache = True turns it on)")
        try:
            if action == "stats" and len(words) <= 1:
                print(_cache_stats(cache))
            elif action == "clear" and len(words) == 1:
                reason = cache.broken
                removed = cache.clear()
                print(f"rebuilt the response cache at {cache.directory} (it was unusable: {reason})" if reason
                      else f"removed {removed:,} cached answers from {cache.directory}")
            elif action == "export" and len(words) == 2:
                print(f"wrote {cache.export(words[1]):,} answers to {words[1]}")
            elif action == "import" and len(words) == 2:
                print(f"read {cache.import_(words[1]):,} answers from {words[1]}")
            elif action == "import" and len(words) == 4 and words[2] == "--host":
                print(f"read {cache.import_(words[1], host=words[3]):,} answers from {words[1]} "
                      f"for host {words[3]}")
            else:
                raise MagicError(f"%claude_cache takes stats, clear, export PATH or import PATH "
                                 f"[--host HOST], got {line.strip()!r}")
        except (ClaudeError, OSError) as exc:
            raise MagicError.of(exc) from None

    @line_magic
    def claude_files(self, line: str) -> None:
        """%claude_files [list] | delete ID | clear: what went up once through the Files API (content
        sent more than once is uploaded and referenced by file_id after that)."""
        words = split_args(line)
        action = words[0] if words else "list"
        uploads = self.session.client.uploads
        try:
            if action == "list" and len(words) <= 1:
                files = uploads.list()
                print("\n".join(f"{f['id']}  {f.get('media_type', '?')}  {f.get('bytes', 0):,} bytes  "
                                f"sha256 {f['sha256'][:12]}…" for f in files)
                      or "no files uploaded: content sent a second time goes up once (images, PDFs)")
            elif action == "delete" and len(words) == 2:
                known = uploads.delete(words[1])
                print(f"deleted {words[1]}" + ("" if known else " (it was not uploaded from here)"))
            elif action == "clear" and len(words) == 1:
                print(f"deleted {uploads.clear():,} uploaded files")
            else:
                raise MagicError(f"%claude_files takes list, delete ID or clear, got {line.strip()!r}")
        except ClaudeError as exc:
            raise MagicError.of(exc) from None

    @line_magic
    def claude_emulator(self, line: str) -> None:
        """%claude_emulator start [--ttft S] [--token-rate N] [name=value ...] | stop | status

        start runs the bundled API emulator in this kernel and points the magics at it (with a
        dummy key and a new, empty temporary response cache, so fake answers never reach the real
        one); stop shuts it down, deletes that cache and restores the settings.
        """
        words = split_args(line)
        action = words[0] if words else "status"
        running = self.session.emulator
        if action == "start":
            if running is not None:
                raise MagicError(f"the emulator is already running at {running.url}: "
                                 "%claude_emulator stop first")
            try:
                emulator = self.session.start_emulator(**_knobs(words[1:]))
            except TypeError as exc:
                raise MagicError(f"unknown emulator setting: {exc}") from exc
            except ValueError as exc:
                raise MagicError(str(exc)) from exc
            print(f"emulator running at {emulator.url}; %%claude now talks to it, with an empty temporary "
                  "cache (%claude_emulator stop to undo)")
        elif action == "stop":
            if self.session.stop_emulator():
                print("emulator stopped; the magics use the real API settings and cache again")
            else:
                print("the emulator is not running")
        elif action == "status":
            print("the emulator is not running" if running is None else f"emulator running at {running.url}")
        else:
            raise MagicError(f"%claude_emulator takes start [knobs], stop or status, got {action!r}")


def _knobs(words: list[str]) -> dict[str, Any]:
    """``--token-rate 200 ttft=0.5`` -> ``{"token_rate": 200, "ttft": 0.5}`` (values as Python literals)."""
    import ast

    knobs: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if "=" in word:
            name, raw = word.split("=", 1)
        elif word.startswith("--") and i + 1 < len(words):
            name, raw = word, words[i + 1]
            i += 1
        else:
            raise MagicError(f"emulator settings are --name VALUE or name=VALUE, got {word!r}")
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        knobs[name.lstrip("-").replace("-", "_")] = value
        i += 1
    return knobs


def _cache_stats(cache: ResponseCache) -> str:
    from .pricing import format_cost

    if cache.broken:
        return (f"the response cache at {cache.directory} is unusable ({cache.broken}): calls run without "
                "it; %claude_cache clear rebuilds it")
    s = cache.stats
    return (f"{s.entries:,} cached answers, {s.volume_bytes / 1e6:.1f} MB in {cache.directory}"
            f"{' (offline)' if cache.offline else ''}; this kernel: {s.hits:,} hits, {s.misses:,} misses, "
            f"{s.tokens_saved:,} tokens and {format_cost(s.dollars_saved)} saved")
