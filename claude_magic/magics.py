"""``%%claude``, ``%claude_chat`` and ``%claude_key``, and every setting of the magics.

Settings are traitlets on ``ClaudeMagics`` (``%config ClaudeMagics.model = ...``), for all the
magics (``%claude_batch`` and ``%claude_usage`` / ``%claude_cache`` / ``%claude_emulator`` live in
``batch_magic`` and ``session_magics``). Precedence: magic arguments, then ``%config``, then the
environment (``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``, ``CLAUDE_MAGIC_CACHE_DIR``,
``CLAUDE_MAGIC_OFFLINE``), then defaults. The traitlets also keep a key, and a password in
``base_url``, out of the config object (which anyone can print).

What the settings build — the client, the response cache, the emulator, the chats — belongs to
the shell's :class:`~claude_magic._session.Session` (``self.session``, also
``claude_magic.session()``), told by the observers here when a setting changes.

The last reply of ``%%claude`` is ``_claude`` in the user's namespace (as ``_`` is the
last output) and ``ClaudeMagics.last_reply``.

This module must import quickly: the client (httpx), the cache (diskcache), ipywidgets
and the emulator are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import keyword
import os
import re
import sys
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, observe, validate

from ._boundary import MagicError, show_markdown, split_args
from ._secrets import redact_url
from ._session import CLIENT_SETTINGS, Session
from .errors import AnswerInvalid, ClaudeError

if TYPE_CHECKING:
    from .cache import ResponseCache
    from .chat import ChatStore
    from .client import Client
    from .display import StreamView
    from .reply import Reply

__all__ = ["MagicError", "ClaudeMagics", "Secret", "split_args"]

T = TypeVar("T")
EFFORTS = ("low", "medium", "high", "xhigh", "max")
DEFAULT_CHAT = "default"  # = chat.DEFAULT_NAME (chat.py is imported on first use)
KEY_MARKER = "<hidden: set>"  # what the config holds once a key was set (the key itself is kept apart)
# A literal key typed into a cell (Anthropic keys start sk-ant-): it is now in In, the history
# database and the saved notebook.
_LITERAL_KEY = re.compile(r"sk-ant-[A-Za-z0-9_-]{20,}")
# The keys set with %config or %claude_key, by shell: not in the config object, which anyone can print;
# and base URLs set with a password in them.
_KEYS: dict[int, Any] = {}
_URLS: dict[int, Any] = {}
_COORDINATORS: dict[int, Any] = {}


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


def _unquote_spec(spec: str) -> str:
    """An inline spec typed in quotes arrives with them when it holds no space (shlex keeps them)."""
    if len(spec) >= 2 and spec[0] == spec[-1] and spec[0] in "\"'":
        return spec[1:-1]
    return spec


def _unescape(text: str) -> str:
    # so that --stop "\n\nEND" means newlines, as users expect from the API docs
    return text.replace("\\n", "\n").replace("\\t", "\t")


class _SettingError(TraitError):
    """A refused setting, in one line. A TraitError, because traitlets restores the previous value
    only for one (any other error leaves the refused value in the trait: a bad key would stay in
    the config listing)."""


def _cfg(trait: T) -> T:
    return trait.tag(config=True)  # type: ignore[no-any-return,attr-defined]


@magics_class
class ClaudeMagics(Magics):
    """Magics that ask Claude from a notebook (``%%claude?`` for the options)."""

    api_key = _cfg(Secret(None, allow_none=True, help="API key (default: ANTHROPIC_API_KEY); never shown, "
                          "kept out of the config object; %claude_key asks for it without echoing"))
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
    coordinator = _cfg(Unicode(None, allow_none=True,
                               help="where kernels using the same key share its rate limits: 'auto' (the "
                               "cache directory), a shared directory, a redis:// URL, or 'none' (default: "
                               "env CLAUDE_MAGIC_COORDINATOR, else auto)"))

    last_reply: ClassVar[Reply | None] = None

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        # made before Magics.__init__, which applies the shell's config (and so the observers run)
        self.session = Session(self)
        super().__init__(shell=shell, **kwargs)

    # -- the key ----------------------------------------------------------------------------------------

    @validate("api_key")
    def _keep_key_apart(self, proposal: Any) -> Any:
        """Check the key, keep it apart from the config (``print(get_ipython().config)`` shows
        anything there) and leave a marker in its place."""
        from ._secrets import check_api_key

        value = proposal["value"]
        if value is None or str(value) == KEY_MARKER:
            if value is None:
                _KEYS.pop(id(self.shell), None)
            return value
        try:
            key = check_api_key(str(value), "%config ClaudeMagics.api_key")
        except ClaudeError as exc:
            raise _SettingError(str(MagicError.of(exc))) from None
        if key is None:
            _KEYS.pop(id(self.shell), None)
            return None
        if _KEYS.get(id(self.shell)) != key:
            _KEYS[id(self.shell)] = key
            # the trait keeps the marker: no change event tells the session
            self.session.setting_changed("api_key")
        self._scrub_config()
        return KEY_MARKER

    @validate("base_url")
    def _keep_password_apart(self, proposal: Any) -> Any:
        """A ``user:password@`` in base_url stays out of the config and of ``%config ClaudeMagics``,
        as the key does: the trait shows the URL redacted, the whole URL is kept apart."""
        return self._apart("base_url", _URLS, proposal["value"])

    @validate("coordinator")
    def _keep_redis_password_apart(self, proposal: Any) -> Any:
        """As for base_url: a Redis URL's password is kept apart, the trait shows it redacted. The
        value is checked here, so a typo is one line at ``%config`` time."""
        from ._coordinator import coordinator_setting, open_store

        value = proposal["value"]
        if value is not None:
            kept = _COORDINATORS.get(id(self.shell))
            whole = kept.reveal() if kept is not None and redact_url(kept.reveal()) == str(value) else value
            try:
                store = open_store(coordinator_setting(whole))  # a malformed URL, redis-py missing
                if store is not None:
                    store.close()
            except ClaudeError as exc:
                raise _SettingError(str(MagicError.of(exc))) from None
        return self._apart("coordinator", _COORDINATORS, value)

    def _apart(self, name: str, kept_values: dict[int, Any], value: Any) -> Any:
        from ._secrets import Secret

        shell = id(self.shell)
        if value is None:
            kept_values.pop(shell, None)
            return None
        shown = redact_url(str(value))
        if shown == str(value):  # no password given: a plain value, or the redacted one re-applied
            kept = kept_values.get(shell)
            if kept is None or redact_url(kept.reveal()) != shown:
                kept_values.pop(shell, None)
            return value
        if (kept := kept_values.get(shell)) is None or kept.reveal() != str(value):
            kept_values[shell] = Secret(str(value))
            # the shown value may not change: no change event tells the session
            self.session.setting_changed(name)
        self._scrub_config()
        return shown

    def kept_base_url(self) -> str | None:
        """The base URL to use: the whole one (password included) when it was set here (the
        Session builds the client with it)."""
        kept = _URLS.get(id(self.shell))
        return kept.reveal() if kept is not None and self.base_url else (self.base_url or None)

    def kept_coordinator(self) -> str | None:
        """The coordinator setting, a Redis password included (None: the environment's applies)."""
        kept = _COORDINATORS.get(id(self.shell))
        return kept.reveal() if kept is not None and self.coordinator else (self.coordinator or None)

    def update_config(self, config: Any) -> None:
        # %config loads the traits, then merges the raw value into the config object: scrub after
        super().update_config(config)
        self._scrub_config()

    def _scrub_config(self, *_: Any) -> None:
        """Replace a key or a password in every config object that holds the ClaudeMagics section:
        %config merges it into a copy of each configurable's config (the shell's included), after
        ours; so this also runs after each cell (post_run_cell)."""
        holders = [self, self.shell, *getattr(self.shell, "configurables", ())]
        for config in {id(c): c for h in holders if (c := getattr(h, "config", None)) is not None}.values():
            section = config.get("ClaudeMagics")
            if section is None:
                continue
            if section.get("api_key") not in (None, KEY_MARKER):
                section["api_key"] = KEY_MARKER
            for name in ("base_url", "coordinator"):
                if isinstance(section.get(name), str):
                    section[name] = redact_url(section[name])

    def kept_key(self) -> Any:
        """The key set in this kernel (a Secret), or None: the environment's is the client's default
        (the Session builds the client with it)."""
        return _KEYS.get(id(self.shell)) if self.api_key == KEY_MARKER else None

    def _warn_literal_key(self, info: Any) -> None:
        """pre_run_cell: a key typed into a cell is now in In, the history and the notebook."""
        cell = getattr(info, "raw_cell", "") or ""
        if "sk-ant-" in cell and _LITERAL_KEY.search(cell):
            print("claude_magic: this cell holds what looks like an API key; it is now in In, the history "
                  "database and the saved notebook: rotate it, and use %claude_key to type a key unseen",
                  file=sys.stderr)

    @line_magic
    def claude_key(self, line: str = "") -> None:
        """%claude_key [--clear]: type the API key without echoing it (it stays out of In, the history,
        the notebook and the config); --clear forgets it."""
        words = split_args(line)
        if words == ["--clear"]:
            self.api_key = None
            print("forgot the key set in this kernel (ANTHROPIC_API_KEY, if set, applies again)")
            return
        if words:
            raise MagicError(f"%claude_key takes no argument or --clear, got {line.strip()!r}")
        import getpass

        typed = getpass.getpass("Anthropic API key (not shown): ")
        if not typed.strip():
            raise MagicError("no key typed: nothing changed")
        self.api_key = typed
        from ._secrets import masked

        print(f"key set for this kernel ({masked(typed)}); it is not saved anywhere")

    # -- what the settings build: the Session's -------------------------------------------------------

    @observe(*CLIENT_SETTINGS)
    def _settings_changed(self, change: Any) -> None:
        self.session.setting_changed(change["name"])

    @property
    def client(self) -> Client:
        """The session's client (``claude_magic.session().client``)."""
        return self.session.client

    @property
    def response_cache(self) -> ResponseCache | None:
        """The session's response cache (None with ``%config ClaudeMagics.cache = False``)."""
        return self.session.response_cache

    @property
    def chats(self) -> ChatStore:
        """The session's conversations of ``--chat``, by name."""
        return self.session.chats

    def history(self) -> list[Reply]:
        """Every reply of this kernel (kept across client rebuilds)."""
        return self.session.history()

    # -- %%claude ------------------------------------------------------------------------------------

    @magic_arguments(name="%claude")  # the usage then reads %%claude (there is no line magic %claude)
    @argument("-m", "--model", help="model ID (default: %%config ClaudeMagics.model, else claude-opus-5-5)")
    @argument("--max-tokens", type=_positive_int, help="longest answer in tokens (default: 1024)")
    @argument("-s", "--system", help="system prompt")
    @argument("--stop", action="append", metavar="TEXT", help="stop sequence (repeatable; \\n is a newline)")
    @argument("--effort", choices=EFFORTS, help="how much effort the model spends")
    @argument("--thinking", action="store_true", help="show the model's thinking (collapsed)")
    @argument("-o", "--out", metavar="VAR",
              help="store the answer's text in the variable VAR (with --schema: the validated object)")
    @argument("--schema", metavar="SPEC", help="a typed answer: a pydantic model or type in the namespace "
              "(Product, list[str]), a dict holding a JSON schema, or an inline spec in quotes "
              "(\"name: str, price: float, currency: str?, label: a|b\")")
    @argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    @argument("--refresh", action="store_true", help="ask again and overwrite the cached answer")
    @argument("--no-stream", action="store_true", help="wait for the whole answer instead of streaming")
    @argument("--chat", nargs="?", const=DEFAULT_CHAT, metavar="NAME",
              help="continue the conversation NAME (default: 'default'); re-running a cell replaces its turn")
    @argument("--no-interpolate", action="store_true", help="send {name} placeholders as written")
    @argument("--image", action="append", metavar="NAME_OR_PATH",
              help="send an image or PDF before the prompt: a variable (a figure, a PIL image, bytes) or a "
              "file (repeatable; a variable wins over a file of the same name)")
    @no_var_expand  # IPython's own {}/$ expansion of the line would evaluate anything, {os.environ} too
    @cell_magic
    def claude(self, line: str, cell: str) -> None:
        """Ask Claude the prompt in the cell body and stream the answer as Markdown.

        ``{name}``, ``{name.attr}``, ``{In[3]}``, ``{Out[3]}`` in the body are replaced by values
        from the namespace; ``{{name}}`` gives a literal ``{name}``; any other brace is sent as
        written. The whole Reply is ``_claude`` afterwards (and ``ClaudeMagics.last_reply``).
        """
        from . import chat
        from .display import StreamView, detect_mode
        from .media import describe

        args = _parse(self.claude, line)
        if args.out is not None:
            self._check_out(args.out)
        system = self._interpolated(args.system, args, "-s") if args.system is not None else None
        options = self.session.request_options(model=args.model, max_tokens=args.max_tokens, system=system,
                                               effort=args.effort)
        prompt, sent = self._prompt(cell, args, options.get("model") or self.session.client.model)
        if sent and args.chat is not None:
            raise MagicError("--chat does not take images or PDFs yet: ask about them without --chat")
        if self.session.repeated_long_system(options):
            options["cache_system"] = True  # the prompt cache keeps it: later cells read it at a tenth
        if args.stop:
            options["stop_sequences"] = [_unescape(s) for s in args.stop]
        if args.thinking:
            options["thinking"] = "summarized"
        if args.schema is not None:
            options["schema"] = self._schema(args.schema)
        plan = None
        if args.chat is not None:
            conversation = self.session.chats.get(args.chat)
            key = chat.cell_key(self.shell, f"{line}\n{cell}")
            plan = conversation.plan(key, prompt, self.chat_token_budget)
        requested = self.display if self.display != "auto" else ("final" if self.offline else None)
        view = StreamView(detect_mode(self.shell, requested),
                          max_rate=self.max_redraw_rate, show_thinking=args.thinking,
                          notes=plan.notes if plan else [f"sent {describe(m)}" for m in sent])
        reply = self._ask(view, plan.messages if plan else prompt, args, options)
        if plan is not None:
            self.session.chats.get(args.chat).commit(plan, reply.text)
        self._remember(reply, args.out, typed="schema" in options)

    def _schema(self, spec: str) -> Any:
        """``--schema SPEC``: names in it are the namespace's (a pydantic model, a dict, a type)."""
        from .schema import Schema

        try:
            return Schema.of(_unquote_spec(spec), self.shell.user_ns if self.shell is not None else {})
        except ClaudeError as exc:
            raise MagicError(f"--schema {spec}: {exc}") from None

    def _check_out(self, name: str) -> None:
        """``-o NAME`` may bind a new name or replace text; never a frame, a module or a function."""
        if not name.isidentifier() or keyword.iskeyword(name):
            raise MagicError(f"-o needs a variable name, got {name!r}")
        import builtins

        ns = self.shell.user_ns if self.shell is not None else {}
        if name in ns or hasattr(builtins, name):
            refused = _unsafe_to_replace(ns[name] if name in ns else getattr(builtins, name))
            if refused:
                raise MagicError(f"-o {name} would replace {refused} with the answer's text: "
                                       "choose a new variable name")

    def _interpolated(self, text: str, args: argparse.Namespace, where: str,
                      model: str | None = None) -> Any:
        """``text`` with its placeholders filled (unless turned off); one line on stderr for each
        placeholder left as written and each table cut. With ``model``, images and PDFs become
        media (sized for it) and the result is the ``Rendered`` parts."""
        if not self.interpolate or args.no_interpolate:
            return text if model is None else [text]
        from ._secrets import values
        from .interpolate import render
        from .media import as_media

        def media(value: Any, kind: str | None, name: str) -> Any:
            return as_media(value, kind=kind, where=name, model=model) if model is not None else None

        secrets = [*values(), os.environ.get("ANTHROPIC_API_KEY", "").strip()]
        try:
            out = render(text, self.shell.user_ns if self.shell is not None else {}, secrets=secrets,
                         media=media if model is not None else None)
        except ClaudeError as exc:
            raise MagicError(f"{exc} (or send the cell as written with --no-interpolate)") from None
        for line in filter(None, [out.warning(), *out.notes]):
            print(f"claude ({where}): {line}", file=sys.stderr)
        return out.text if model is None else out.parts

    def _prompt(self, cell: str, args: argparse.Namespace, model: str) -> tuple[Any, list[Any]]:
        """The prompt (its text, or a user turn of content blocks when it holds images or PDFs) and the
        media it sends."""
        from .media import user_content

        prompt = cell.strip("\n").rstrip()
        if not prompt.strip():
            raise MagicError("the cell is empty: write the prompt on the lines below %%claude")
        parts = [*self._images(args.image or [], model), *self._interpolated(prompt, args, "prompt", model)]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts), []
        try:
            blocks, sent = user_content(parts, model=model, file_id=self._uploaded)
        except ClaudeError as exc:
            raise MagicError.of(exc) from None
        return [{"role": "user", "content": blocks}], sent

    def _uploaded(self, media: Any) -> str | None:
        """Content sent before goes up once through the Files API and is referenced after that (a
        one-off image costs no upload); if the upload fails the bytes go as they are."""
        uploads = self.session.client.uploads
        if media.data is None or not uploads.seen_before(media):
            return None
        try:
            return uploads.file_id(media)
        except ClaudeError as exc:
            print(f"claude: {media.where} sent as it is: the Files API upload failed ({exc})",
                  file=sys.stderr)
            return None

    def _images(self, names: list[str], model: str) -> list[Any]:
        """``--image NAME_OR_PATH``: a variable (a figure, an image, bytes, a path) or else a file."""
        from pathlib import Path

        from .media import as_media

        ns = self.shell.user_ns if self.shell is not None else {}
        found = []
        for name in names:
            where = f"--image {name}"
            if name in ns:
                value = ns[name]
                kind = None
                if isinstance(value, str):  # a path or URL held in a variable
                    kind = "pdf" if value.lower().endswith(".pdf") else "image"
            elif Path(name).expanduser().is_file():
                value, kind = Path(name).expanduser(), None
            else:
                raise MagicError(f"{where}: no variable or file named {name!r}")
            try:
                item = as_media(value, kind=kind, where=where, model=model)
            except ClaudeError as exc:
                raise MagicError.of(exc) from None
            if item is None:
                raise MagicError(f"{where}: a {type(value).__name__} is not an image or a PDF (give a "
                                 "figure, a PIL image, image or PDF bytes, or a path to one)")
            found.append(item)
        return found

    def _ask(self, view: StreamView, prompt: Any, args: argparse.Namespace, options: dict[str, Any]) -> Reply:
        try:
            client = self.session.client
            view.start()
            reply = client.complete(prompt, stream=not args.no_stream, on_text=view.update,
                                    on_thinking=view.think, cache=not args.no_cache, refresh=args.refresh,
                                    **options)
        except KeyboardInterrupt:
            # the natural thing in IPython: the cell stops as any interrupted cell does
            self._leave(view, "interrupted")
            self._keep_partial(view.text, "interrupted", args.out, options)
            raise
        except AnswerInvalid as exc:  # the answer came, whole, but is not the typed value asked for
            self._leave(view, str(exc), exc.raw)
            if exc.reply is not None:
                self._remember(exc.reply, None)  # _claude.text holds the raw answer, -o is left alone
            raise MagicError.of(exc) from None
        except ClaudeError as exc:
            self._leave(view, str(exc), getattr(exc, "partial", None))
            partial = getattr(exc, "partial", None) or view.text
            self._keep_partial(partial, str(exc), args.out, options)
            raise MagicError.of(exc) from None
        except BaseException as exc:
            self._leave(view, f"{type(exc).__name__}: {exc}")
            raise
        if "schema" in options:
            from dataclasses import replace

            from .display import typed_markdown

            view.finish(replace(reply, text=typed_markdown(reply.parsed)))  # a small table, not JSON
        else:
            view.finish(reply)
        return reply

    def _keep_partial(self, text: str, reason: str, out: str | None, options: dict[str, Any]) -> None:
        """Text that arrived before a failure stays in ``_claude`` (``.incomplete`` says why) and in
        ``-o VAR``: never lost because the end did not come."""
        if not text:
            return
        from .reply import Reply, Usage

        built = self.session.client_if_built
        model = options.get("model") or (built.model if built is not None else "")
        reply = Reply(text=text, content=[{"type": "text", "text": text}], stop_reason=None,
                      stop_sequence=None, usage=Usage(), model=model, id="",
                      incomplete=" ".join(reason.split()))
        self._remember(reply, out)

    @staticmethod
    def _leave(view: StreamView, reason: str, partial: str | None = None) -> None:
        """Keep what arrived visible, marked incomplete; or remove the placeholder if nothing did."""
        if view.text or partial:
            view.fail(reason, partial)
        else:
            view.discard()

    def _remember(self, reply: Reply, out: str | None, typed: bool = False) -> None:
        ClaudeMagics.last_reply = reply
        if self.shell is not None:
            self.shell.user_ns["_claude"] = reply
            if out:
                self.shell.user_ns[out] = reply.parsed if typed else reply.text

    # -- %claude_chat --------------------------------------------------------------------------------

    @line_magic
    def claude_chat(self, line: str) -> None:
        """%claude_chat [list | show [NAME] | reset [NAME|--all]]: the conversations of --chat."""
        words = split_args(line)
        action = words[0] if words else "list"
        name = words[1] if len(words) > 1 else None
        chats = self.session.chats
        if action == "list":
            names = chats.names()
            lines = [f"{n}: {len(chats.chats[n].turns)} turn(s), ~{chats.chats[n].tokens:,} tokens"
                     for n in names]
            print("\n".join(lines) or "no conversations yet: use %%claude --chat [NAME]")
        elif action == "show":
            if name is not None and name not in chats.chats:
                raise MagicError(f"no chat named {name!r}; chats: {', '.join(chats.names()) or 'none'}")
            show_markdown(chats.get(name).to_markdown())
        elif action == "reset":
            gone = chats.reset(None if name == "--all" else name or DEFAULT_CHAT)
            print(f"reset chat {', '.join(repr(n) for n in gone)}" if gone else "nothing to reset")
        else:
            raise MagicError(f"%claude_chat takes list, show [NAME] or reset [NAME|--all], got {action!r}")


def _parse(magic: Any, line: str) -> argparse.Namespace:
    """Like ``parse_argstring`` but with shell quoting: ``-s "Be terse."`` gives ``Be terse.``
    (IPython's own splitter keeps the quotes), comments dropped, errors one line."""
    argv = split_args(line)
    try:
        return magic.parser.parse_args(argv)  # type: ignore[no-any-return]
    except UsageError as exc:
        raise MagicError.of(exc) from None


def _unsafe_to_replace(value: Any) -> str | None:
    """What a value is, if binding a name to text would destroy something (else None)."""
    import types

    if isinstance(value, types.ModuleType):
        return f"the module {value.__name__}"
    if callable(value):
        what = "class" if isinstance(value, type) else "function"
        return f"the {what} {getattr(value, '__name__', '')}".rstrip()
    module = type(value).__module__.split(".")[0]
    if module in ("pandas", "polars", "pyarrow") and hasattr(value, "columns"):
        return f"a {type(value).__name__} (to add a column, use %claude_batch ... -o NAME.column)"
    return None
