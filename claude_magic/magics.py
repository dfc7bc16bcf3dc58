"""The IPython magics: ``%%claude``, ``%claude_chat``, ``%claude_usage``, ``%claude_cache``,
``%claude_emulator`` and ``%claude_batch``.

Settings are traitlets on ``ClaudeMagics`` (``%config ClaudeMagics.model = ...``).
Precedence: magic arguments, then ``%config``, then the environment (``ANTHROPIC_API_KEY``,
``ANTHROPIC_BASE_URL``, ``CLAUDE_MAGIC_CACHE_DIR``, ``CLAUDE_MAGIC_OFFLINE``), then defaults.

The last reply of ``%%claude`` is ``_claude`` in the user's namespace (as ``_`` is the
last output) and ``ClaudeMagics.last_reply``.

This module must import quickly: the client (httpx), the cache (diskcache), ipywidgets
and the emulator are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import keyword
import shlex
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Enum, Float, Int, Unicode, observe

from .errors import ClaudeError

if TYPE_CHECKING:
    from .cache import ResponseCache
    from .chat import ChatStore
    from .client import Client
    from .display import StreamView
    from .reply import Reply

__all__ = ["ClaudeMagics", "Secret"]

T = TypeVar("T")
EFFORTS = ("low", "medium", "high", "xhigh", "max")
DEFAULT_CHAT = "default"  # = chat.DEFAULT_NAME (chat.py is imported on first use)
EMULATOR_KEY = "sk-emulator-not-a-real-key"
# settings the Client is built with: changing one rebuilds it (the next use)
_CLIENT_TRAITS = ("api_key", "base_url", "api_version", "cache_dir", "max_wait", "offline", "cache", "model",
                  "max_tokens")


class _SecretStr(str):
    """A str whose repr never shows it (``%config ClaudeMagics`` prints reprs of values)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<hidden>'"


class Secret(Unicode):  # type: ignore[type-arg]
    """A Unicode trait holding a ``_SecretStr``, so config listings show ``'<hidden>'``."""

    def validate(self, obj: Any, value: Any) -> Any:
        value = super().validate(obj, value)
        return None if value is None else _SecretStr(value)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _unescape(text: str) -> str:
    # so that --stop "\n\nEND" means newlines, as users expect from the API docs
    return text.replace("\\n", "\n").replace("\\t", "\t")


def _cfg(trait: T) -> T:
    return trait.tag(config=True)  # type: ignore[no-any-return,attr-defined]


@magics_class
class ClaudeMagics(Magics):
    """Magics that ask Claude from a notebook (``%%claude?`` for the options)."""

    api_key = _cfg(Secret(None, allow_none=True, help="API key (default: ANTHROPIC_API_KEY); never shown"))
    base_url = _cfg(Unicode(None, allow_none=True,
                            help="API URL (default: ANTHROPIC_BASE_URL, else https://api.anthropic.com)"))
    model = _cfg(Unicode(None, allow_none=True, help="model ID (default: claude-opus-5-5)"))
    max_tokens = _cfg(Int(1024, help="longest answer, in tokens"))
    system = _cfg(Unicode(None, allow_none=True, help="system prompt used when -s is not given"))
    effort = _cfg(Enum(EFFORTS, None, allow_none=True, help="output_config.effort (default: the model's)"))
    api_version = _cfg(Unicode(None, allow_none=True, help="anthropic-version (default: 2026-10-21)"))
    cache = _cfg(Bool(True, help="use the response cache (identical requests are answered from it)"))
    cache_dir = _cfg(Unicode(None, allow_none=True,
                             help="response cache directory (default: CLAUDE_MAGIC_CACHE_DIR, else the "
                             "user cache directory)"))
    offline = _cfg(Bool(None, allow_none=True,
                        help="a cache miss is an error (default: env CLAUDE_MAGIC_OFFLINE)"))
    max_wait = _cfg(Float(600.0, help="total seconds a call may wait to retry (retry-after, backoff)"))
    chat_token_budget = _cfg(Int(100_000, help="longest chat history sent, in estimated tokens; the oldest "
                                 "turns are dropped beyond it"))
    interpolate = _cfg(Bool(True, help="replace {name} in prompts with values from the namespace"))
    display = _cfg(Enum(("auto", "widget", "handle", "text", "final"), "auto",
                        help="how a stream is shown (auto: a widget in a kernel, text in a terminal; "
                        "final: only the finished answer, for nbval; env CLAUDE_MAGIC_DISPLAY)"))
    max_redraw_rate = _cfg(Float(20.0, help="most redraws a second while streaming"))

    last_reply: ClassVar[Reply | None] = None

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        # set before Magics.__init__, which applies the shell's config (and so the observers run)
        self._client: Client | None = None
        self._cache: ResponseCache | None = None
        self._emulator: Any = None
        self._emulator_cache_dir: str | None = None  # the emulator's own temporary response cache
        self._past_history: list[Reply] = []
        self._chats: ChatStore | None = None
        super().__init__(shell=shell, **kwargs)

    # -- the client and the cache ------------------------------------------------------------------

    @observe(*_CLIENT_TRAITS)
    def _settings_changed(self, change: Any) -> None:
        self._drop_client(close_cache=change["name"] in ("cache_dir", "offline", "cache"))

    def _drop_client(self, close_cache: bool = False) -> None:
        if self._client is not None:
            self._past_history.extend(self._client.history)
            self._client.close()
            self._client = None
        if close_cache and self._cache is not None:
            self._cache.close()
            self._cache = None

    @property
    def response_cache(self) -> ResponseCache | None:
        """The response cache (opened on first use; None with ``%config ClaudeMagics.cache = False``)."""
        if not self.cache:
            return None
        if self._cache is None:
            from .cache import ResponseCache

            # the emulator's fake answers go to its own temporary cache, never the user's real one
            self._cache = ResponseCache(self._emulator_cache_dir or self.cache_dir, offline=self.offline)
        return self._cache

    @property
    def chats(self) -> ChatStore:
        """The conversations of ``--chat``, by name."""
        if self._chats is None:
            from .chat import ChatStore

            self._chats = ChatStore()
        return self._chats

    def get_client(self) -> Client:
        """The kernel's Client, built from the settings on first use (raises ClaudeError on a bad one)."""
        if self._client is None:
            from .client import Client

            url, key = (self._emulator.url, EMULATOR_KEY) if self._emulator is not None else (None, None)
            cache = self.response_cache
            self._client = Client(
                api_key=key or self.api_key or None,
                base_url=url or self.base_url or None,
                api_version=self.api_version or None,
                model=self.model or None,
                max_tokens=self.max_tokens,
                max_wait=self.max_wait,
                cache=cache if cache is not None else False,
                offline=self.offline,
            )
        return self._client

    @property
    def client(self) -> Client:
        return self.get_client()

    def request_options(self, *, model: str | None = None, max_tokens: int | None = None,
                        system: str | None = None, effort: str | None = None) -> dict[str, Any]:
        """``complete`` keyword arguments: the given values, else the ``%config`` ones (else the client's)."""
        options: dict[str, Any] = {
            "model": model or self.model or None,
            "max_tokens": max_tokens or self.max_tokens,
            "system": system if system is not None else (self.system or None),
            "effort": effort or self.effort or None,
        }
        return {k: v for k, v in options.items() if v is not None}

    def history(self) -> list[Reply]:
        """Every reply of this kernel (kept across client rebuilds)."""
        current = self._client.history if self._client is not None else []
        return [*self._past_history, *current]

    def close(self) -> None:
        """Close the client, the cache and the emulator (``%unload_ext`` / ``%reload_ext``)."""
        self._drop_client(close_cache=True)
        if self._emulator is not None:
            self._stop_emulator()

    # -- %%claude ------------------------------------------------------------------------------------

    @magic_arguments()
    @argument("-m", "--model", help="model ID (default: %%config ClaudeMagics.model, else claude-opus-5-5)")
    @argument("--max-tokens", type=_positive_int, help="longest answer in tokens (default: 1024)")
    @argument("-s", "--system", help="system prompt")
    @argument("--stop", action="append", metavar="TEXT", help="stop sequence (repeatable; \\n is a newline)")
    @argument("--effort", choices=EFFORTS, help="how much effort the model spends")
    @argument("--thinking", action="store_true", help="show the model's thinking (collapsed)")
    @argument("-o", "--out", metavar="VAR", help="store the answer's text in the variable VAR")
    @argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    @argument("--refresh", action="store_true", help="ask again and overwrite the cached answer")
    @argument("--no-stream", action="store_true", help="wait for the whole answer instead of streaming")
    @argument("--chat", nargs="?", const=DEFAULT_CHAT, metavar="NAME",
              help="continue the conversation NAME (default: 'default'); re-running a cell replaces its turn")
    @argument("--no-interpolate", action="store_true", help="send {name} placeholders as written")
    @cell_magic
    def claude(self, line: str, cell: str) -> None:
        """Ask Claude the prompt in the cell body and stream the answer as Markdown.

        ``{name}``, ``{name.attr}``, ``{In[3]}``, ``{Out[3]}`` in the body are replaced by values
        from the namespace; ``{{name}}`` gives a literal ``{name}``; any other brace is sent as
        written. The whole Reply is ``_claude`` afterwards (and ``ClaudeMagics.last_reply``).
        """
        from . import chat
        from .display import StreamView, detect_mode

        args = _parse(self.claude, line)
        prompt = self._prompt(cell, args)
        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise UsageError(f"-o needs a variable name, got {args.out!r}")
        options = self.request_options(model=args.model, max_tokens=args.max_tokens, system=args.system,
                                       effort=args.effort)
        if args.stop:
            options["stop_sequences"] = [_unescape(s) for s in args.stop]
        if args.thinking:
            options["thinking"] = "summarized"
        plan = None
        if args.chat is not None:
            conversation = self.chats.get(args.chat)
            key = chat.cell_key(self.shell, f"{line}\n{cell}")
            plan = conversation.plan(key, prompt, self.chat_token_budget)
        view = StreamView(detect_mode(self.shell, None if self.display == "auto" else self.display),
                          max_rate=self.max_redraw_rate, show_thinking=args.thinking,
                          notes=plan.notes if plan else ())
        reply = self._ask(view, plan.messages if plan else prompt, args, options)
        if plan is not None:
            self.chats.get(args.chat).commit(plan, reply.text)
        self._remember(reply, args.out)

    def _prompt(self, cell: str, args: argparse.Namespace) -> str:
        prompt = cell.strip("\n").rstrip()
        if not prompt.strip():
            raise UsageError("the cell is empty: write the prompt on the lines below %%claude")
        if self.interpolate and not args.no_interpolate:
            from .interpolate import interpolate

            try:
                prompt = interpolate(prompt, self.shell.user_ns if self.shell is not None else {})
            except ClaudeError as exc:
                raise UsageError(str(exc)) from exc
        return prompt

    def _ask(self, view: StreamView, prompt: Any, args: argparse.Namespace, options: dict[str, Any]) -> Reply:
        try:
            client = self.get_client()
            view.start()
            reply = client.complete(prompt, stream=not args.no_stream, on_text=view.update,
                                    on_thinking=view.think, cache=not args.no_cache, refresh=args.refresh,
                                    **options)
        except KeyboardInterrupt:
            # the natural thing in IPython: the cell stops as any interrupted cell does
            self._leave(view, "interrupted")
            raise
        except ClaudeError as exc:
            self._leave(view, str(exc), getattr(exc, "partial", None))
            raise UsageError(str(exc)) from exc
        except BaseException as exc:
            self._leave(view, f"{type(exc).__name__}: {exc}")
            raise
        view.finish(reply)
        return reply

    @staticmethod
    def _leave(view: StreamView, reason: str, partial: str | None = None) -> None:
        """Keep what arrived visible, marked incomplete; or remove the placeholder if nothing did."""
        if view.text or partial:
            view.fail(reason, partial)
        else:
            view.discard()

    def _remember(self, reply: Reply, out: str | None) -> None:
        ClaudeMagics.last_reply = reply
        if self.shell is not None:
            self.shell.user_ns["_claude"] = reply
            if out:
                self.shell.user_ns[out] = reply.text

    # -- %claude_chat --------------------------------------------------------------------------------

    @line_magic
    def claude_chat(self, line: str) -> None:
        """%claude_chat [list | show [NAME] | reset [NAME|--all]]: the conversations of --chat."""
        words = shlex.split(line)
        action = words[0] if words else "list"
        name = words[1] if len(words) > 1 else None
        if action == "list":
            names = self.chats.names()
            lines = [f"{n}: {len(self.chats.chats[n].turns)} turn(s), ~{self.chats.chats[n].tokens:,} tokens"
                     for n in names]
            print("\n".join(lines) or "no conversations yet: use %%claude --chat [NAME]")
        elif action == "show":
            if name is not None and name not in self.chats.chats:
                raise UsageError(f"no chat named {name!r}; chats: {', '.join(self.chats.names()) or 'none'}")
            _display_markdown(self.chats.get(name).to_markdown())
        elif action == "reset":
            gone = self.chats.reset(None if name == "--all" else name or DEFAULT_CHAT)
            print(f"reset chat {', '.join(repr(n) for n in gone)}" if gone else "nothing to reset")
        else:
            raise UsageError(f"%claude_chat takes list, show [NAME] or reset [NAME|--all], got {action!r}")

    # -- %claude_usage -------------------------------------------------------------------------------

    @line_magic
    def claude_usage(self, line: str = "") -> None:
        """%claude_usage: this kernel's calls per model (tokens, cost, cache hits and savings, retries)."""
        from .display import usage_table

        markdown, plain = usage_table(self.history())
        _display_markdown(markdown, plain)

    # -- %claude_cache -------------------------------------------------------------------------------

    @line_magic
    def claude_cache(self, line: str) -> None:
        """%claude_cache stats | clear | export PATH | import PATH: the response cache."""
        words = shlex.split(line)
        action = words[0] if words else "stats"
        cache = self.response_cache
        if cache is None:
            raise UsageError("the response cache is off (%config ClaudeMagics.cache = True turns it on)")
        try:
            if action == "stats":
                print(_cache_stats(cache))
            elif action == "clear":
                print(f"removed {cache.clear():,} cached answers from {cache.directory}")
            elif action in ("export", "import") and len(words) == 2:
                if action == "export":
                    print(f"wrote {cache.export(words[1]):,} answers to {words[1]}")
                else:
                    print(f"read {cache.import_(words[1]):,} answers from {words[1]}")
            else:
                raise UsageError(
                    f"%claude_cache takes stats, clear, export PATH or import PATH, got {line!r}"
                )
        except (ClaudeError, OSError) as exc:
            raise UsageError(" ".join(str(exc).split())) from exc

    # -- %claude_emulator ----------------------------------------------------------------------------

    @line_magic
    def claude_emulator(self, line: str) -> None:
        """%claude_emulator start [--ttft S] [--token-rate N] [name=value ...] | stop | status

        start runs the bundled API emulator in this kernel and points the magics at it (with a
        dummy key and a new, empty temporary response cache, so fake answers never reach the real
        one); stop shuts it down, deletes that cache and restores the settings.
        """
        words = shlex.split(line)
        action = words[0] if words else "status"
        if action == "start":
            self._start_emulator(_knobs(words[1:]))
        elif action == "stop":
            if self._emulator is None:
                print("the emulator is not running")
                return
            self._stop_emulator()
            print("emulator stopped; the magics use the real API settings and cache again")
        elif action == "status":
            running = self._emulator is not None
            print(f"emulator running at {self._emulator.url}" if running else "the emulator is not running")
        else:
            raise UsageError(f"%claude_emulator takes start [knobs], stop or status, got {action!r}")

    def _start_emulator(self, knobs: dict[str, Any]) -> None:
        import tempfile

        from .emulator import Emulator

        if self._emulator is not None:
            raise UsageError(f"the emulator is already running at {self._emulator.url}: "
                             "%claude_emulator stop first")
        try:
            emulator = Emulator(**knobs)
        except TypeError as exc:
            raise UsageError(f"unknown emulator setting: {exc}") from exc
        emulator.start()
        self._drop_client(close_cache=True)
        self._emulator = emulator
        self._emulator_cache_dir = tempfile.mkdtemp(prefix="claude_magic_emulator_")
        print(f"emulator running at {emulator.url}; %%claude now talks to it, with an empty temporary "
              "cache (%claude_emulator stop to undo)")

    def _stop_emulator(self) -> None:
        import shutil

        emulator, self._emulator = self._emulator, None
        self._drop_client(close_cache=True)
        emulator.stop()
        if self._emulator_cache_dir is not None:
            shutil.rmtree(self._emulator_cache_dir, ignore_errors=True)
            self._emulator_cache_dir = None

    # -- %claude_batch -------------------------------------------------------------------------------

    @no_var_expand
    @line_cell_magic
    def claude_batch(self, line: str, cell: str | None = None) -> Any:
        from .batch_magic import claude_batch

        return claude_batch(self, line, cell)



def _parse(magic: Any, line: str) -> argparse.Namespace:
    """Like ``parse_argstring`` but with shell quoting: ``-s "Be terse."`` gives ``Be terse.``
    (IPython's own splitter keeps the quotes)."""
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot parse the options {line!r}: {exc}") from exc
    return magic.parser.parse_args(argv)  # type: ignore[no-any-return]


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
            raise UsageError(f"emulator settings are --name VALUE or name=VALUE, got {word!r}")
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        knobs[name.lstrip("-").replace("-", "_")] = value
        i += 1
    return knobs


def _cache_stats(cache: ResponseCache) -> str:
    from .pricing import format_cost

    s = cache.stats
    return (f"{s.entries:,} cached answers, {s.volume_bytes / 1e6:.1f} MB in {cache.directory}"
            f"{' (offline)' if cache.offline else ''}; this kernel: {s.hits:,} hits, {s.misses:,} misses, "
            f"{s.tokens_saved:,} tokens and {format_cost(s.dollars_saved)} saved")


def _display_markdown(markdown: str, plain: str | None = None) -> None:
    from IPython.display import display

    display({"text/markdown": markdown, "text/plain": plain if plain is not None else markdown}, raw=True)


def _batch_usage() -> None:
    # %claude_batch? shows the whole usage; batch_magic itself imports no pandas (about 5 ms)
    from .batch_magic import claude_batch

    ClaudeMagics.claude_batch.__doc__ = claude_batch.__doc__


_batch_usage()
