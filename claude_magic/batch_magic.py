"""``%claude_batch``: the magic over :func:`claude_magic.batch.run_batch`.

``BatchMagics`` registers it (``@no_var_expand``, so ``{review}`` and ``$x`` in the template reach
us untouched) and calls :func:`claude_batch` with the shell's Session, which gives the client and
the ``%config ClaudeMagics`` settings. This module only parses, resolves SOURCE and DEST in the
user's namespace and shows progress; pandas and the engine are imported on first use so that
loading the extension stays fast.

The line is split with a bracket-aware splitter rather than ``parse_argstring``'s shell rules,
which would turn ``df["col"]`` into ``df[col]``; the tokens then go to the same
``magic_arguments`` parser, so ``%claude_batch?`` shows the usage and bad arguments are
one-line ``MagicError`` s (an ``error`` output in a kernel).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from ._boundary import MagicError
from .errors import ClaudeError, ConfigError

if TYPE_CHECKING:
    from ._session import Session
    from .batch import BatchResult, Progress
    from .jobs_magic import Deliveries

__all__ = ["BatchMagics", "ProgressView", "claude_batch", "dest_writer", "resolve_source", "split_line",
           "summary_line"]

RESULT_NAME = "_claude_batch"  # the last BatchResult, in the user's namespace (as _ is the last output)
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# df  |  df.col  |  df["col"]  |  df['col']
_REF = re.compile(rf"""^(?P<name>{_NAME})(?:\.(?P<attr>{_NAME})|\[\s*(?P<q>["'])(?P<key>.*)(?P=q)\s*\])?$""")
_OPEN = {"(": ")", "[": "]", "{": "}"}


def split_line(line: str) -> list[str]:
    """Split at whitespace outside quotes and brackets. A token that is entirely one quoted
    string loses its quotes (``\\"`` and ``\\\\`` inside are unescaped); any other token is kept
    exactly as typed, so ``df["my col"]`` stays one token with its quotes."""
    tokens: list[str] = []
    current: list[str] = []
    depth: list[str] = []
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            current.append(ch)
            if ch == "\\" and i + 1 < len(line):
                current.append(line[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == "#" and not depth and not current:
            break  # a comment (IPython passes ``%magic args  # comment`` through)
        elif ch in _OPEN:
            depth.append(_OPEN[ch])
            current.append(ch)
        elif depth and ch == depth[-1]:
            depth.pop()
            current.append(ch)
        elif ch.isspace() and not depth:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(ch)
        i += 1
    if quote:
        raise MagicError(f"unclosed {quote} quote in: {line.strip()}")
    if current:
        tokens.append("".join(current))
    return [_unquote(t) for t in tokens]


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] in "\"'" and token[-1] == token[0]:
        body = token[1:-1]
        q = token[0]
        # the whole token must be one quoted string: no unescaped quote inside
        if not re.search(rf"(?<!\\)(?:\\\\)*{q}", body):
            return re.sub(rf"\\([\\{q}])", r"\1", body)
    return token


@magic_arguments()
@argument("source", help="the rows: df.col, df['col'], a DataFrame, a Series or a list of strings "
          "(any expression without spaces)")
@argument("template", nargs="?", default=None,
          help="the prompt, quoted, with {column} placeholders ({value} for a Series or list); a column "
          "of images, PDFs, figures or Paths is sent as image or document blocks, a column of paths or "
          "URLs when written {photo:image} or {report:pdf}; or the cell body with %%%%claude_batch")
@argument("-o", "--out", dest="dest", default=None,
          help="where the answers go: df.new_col, df['new_col'] (a column: pandas aligned to the index, "
          "polars and Arrow by position, their name rebound to a copy) or a variable name (a series); "
          "rows this run does not answer keep their value")
@argument("-m", "--model", default=None, help="model ID (default: %%config ClaudeMagics.model)")
@argument("--max-tokens", type=int, default=None, help="longest answer per row, in tokens")
@argument("-s", "--system", default=None, help="system prompt for every row")
@argument("--concurrency", type=int, default=None,
          help="most requests at once (default: adapts to the rate limit, up to 64)")
@argument("--api", choices=("live", "batch"), default="live",
          help="live: Messages API now; batch: Message Batches at half price, results within 24 h")
@argument("--dry-run", action="store_true", help="send nothing: count tokens and show the cost range")
@argument("--budget", type=float, default=None,
          help="USD: start no request that could take the spend past it")
@argument("--no-cache", action="store_true", help="neither read nor write the response cache")
@argument("--refresh", action="store_true", help="ask again and overwrite the cached answers")
@argument("--no-prompt-cache", action="store_true",
          help="send no prompt-cache marks (by default the prefix the rows share is marked when long enough)")
@argument("--schema", metavar="SPEC", default=None,
          help="typed answers: a pydantic model or type in the namespace, a dict holding a JSON schema, or "
          "an inline spec in quotes (\"name: str, price: float, currency: str?\"); DEST df takes every "
          "field as a column, df[['name', 'price']] those fields, df.col the validated objects")
@argument("--column-prefix", metavar="P", default="", help="with --schema and DEST df: name the new "
          "columns P + field (to avoid clashing with the frame's own)")
@argument("--background", action="store_true",
          help="return at once: the job is _claude_job, DEST is filled when it ends (after the running "
          "cell), interactive calls go first meanwhile; %%claude_jobs lists and cancels jobs")
def claude_batch(session: Session, shell: Any, line: str, cell: str | None = None,
                 deliveries: Deliveries | None = None) -> None:
    """Ask Claude one prompt template per row and store the answers.

    %claude_batch SOURCE "TEMPLATE" -o DEST [options]
    %%claude_batch SOURCE -o DEST [options]   (the template is the cell body)

    Identical prompts are sent once (images and PDFs compared by content), cached answers are not
    sent at all. Only the rows answered change DEST: rows skipped (missing or empty values), failed
    (listed in _claude_batch.errors: a cell that cannot be sent, such as an unreadable file, fails its
    row alone) or not run keep what DEST held. The whole result is _claude_batch.
    """
    try:
        args = claude_batch.parser.parse_args(split_line(line))  # type: ignore[attr-defined]
    except UsageError as exc:
        raise MagicError.of(exc) from None
    template = _template(args.template, cell)
    if args.dest is None and not args.dry_run:
        raise MagicError("give -o DEST (df.new_col, df['new_col'] or a variable name) for the answers, "
                         "or use --dry-run")
    ns = shell.user_ns
    data = resolve_source(args.source, ns, shell)
    schema = _schema(args.schema, ns) if args.schema is not None else None
    if args.column_prefix and schema is None:
        raise MagicError("--column-prefix names the columns of --schema's fields: give --schema SPEC too")
    write = dest_writer(args.dest, ns, schema, args.column_prefix) if args.dest is not None else None
    options = session.request_options(model=args.model, max_tokens=args.max_tokens, system=args.system)
    if schema is not None:
        options["schema"] = schema
    if args.no_prompt_cache:
        options["prompt_cache"] = False
    if args.max_tokens is not None and args.max_tokens < 1:
        raise MagicError(f"--max-tokens must be a positive integer, got {args.max_tokens}")
    if args.budget is not None and not args.budget > 0:
        raise MagicError(f"--budget must be a positive number of US dollars, got {args.budget:g}")
    if args.concurrency is not None and args.concurrency < 1:
        raise MagicError(f"--concurrency must be a positive integer, got {args.concurrency}")
    if args.background and args.dry_run:
        raise MagicError("--dry-run sends nothing to wait for: drop --background (or --dry-run)")
    if args.background:
        return _launch(session, shell, args, template, data, options, deliveries)

    from .batch import BatchInterrupted, run_batch

    view = ProgressView(_mode(shell, session.settings)) if not args.dry_run else None
    try:
        client = session.client
        result = run_batch(template, data, client=client, concurrency=args.concurrency, api=args.api,
                           dry_run=args.dry_run, budget=args.budget, cache=not args.no_cache,
                           refresh=args.refresh, progress=view, **options)
    except BatchInterrupted as stop:
        _deliver(stop.result, write, ns, view, interrupted=True)
        raise
    except ClaudeError as exc:
        if view is not None:
            view.close(None)
        raise MagicError.of(exc) from None
    if result.dry_run is not None:
        ns[RESULT_NAME] = result
        print(result.dry_run)
        return
    _deliver(result, write, ns, view)
    if result.aborted is not None:
        raise MagicError.of(result.aborted) from None


@magics_class
class BatchMagics(Magics):
    """``%claude_batch`` and ``%%claude_batch`` over the shell's Session."""

    def __init__(self, shell: Any, session: Session, deliveries: Deliveries | None = None,
                 **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session = session
        self.deliveries = deliveries

    @no_var_expand
    @line_cell_magic
    def claude_batch(self, line: str, cell: str | None = None) -> None:
        # the module's claude_batch (a class body's names are not seen from its methods)
        return claude_batch(self.session, self.shell, line, cell, self.deliveries)


BatchMagics.claude_batch.__doc__ = claude_batch.__doc__  # %claude_batch? shows the whole usage


def _template(on_line: str | None, cell: str | None) -> str:
    if cell is not None:
        if on_line is not None:
            raise MagicError("give the template on the line or in the cell body, not both")
        if not cell.strip():
            raise MagicError("the cell is empty: write the prompt template in it, with {column} placeholders")
        return cell.strip("\n")
    if on_line is None:
        raise MagicError('give the template: %claude_batch SOURCE "TEMPLATE with {column}" -o DEST, '
                         "or use %%claude_batch with the template in the cell")
    return on_line


def _launch(session: Session, shell: Any, args: Any, template: str, data: Any, options: dict[str, Any],
            deliveries: Deliveries | None) -> None:
    """``--background``: start the job, bind it to ``_claude_job``, leave its bar in this cell."""
    from .batch import run_batch
    from .jobs_magic import JOB_NAME

    mode = _mode(shell, session.settings)
    # a bar redrawn with \r from another thread would garble a terminal's prompt: the summary only
    view = ProgressView("final" if mode == "text" else mode)
    try:
        job = run_batch(template, data, client=session.client, concurrency=args.concurrency, api=args.api,
                        budget=args.budget, cache=not args.no_cache, refresh=args.refresh, progress=view,
                        background=True, **options)
    except ClaudeError as exc:
        raise MagicError.of(exc) from None
    shell.user_ns[JOB_NAME] = job
    if view.mode == "final":
        # One line, and it stays: the summary comes with .wait() (printed in a terminal). In a saved
        # notebook (display 'final' is for nbval) a display updated later would differ by run.
        print(f"claude_batch: job {job.id} runs in the background ({job.progress.total:,} rows): "
              f"{JOB_NAME}.wait() waits for it, %claude_jobs lists jobs")
    else:
        view(job.progress)  # the bar is drawn here, in this cell; the job's thread moves it
    if deliveries is not None:
        schema, prefix = options.get("schema"), args.column_prefix
        deliveries.add(job, lambda: dest_writer(args.dest, shell.user_ns, schema, prefix)
                       if args.dest is not None else None,
                       shell.user_ns, None if view.mode == "final" else view, announce=mode == "text")


def summary_line(result: BatchResult, interrupted: bool = False) -> str:
    """The line a run leaves: its summary, and where to look next."""
    line = f"claude_batch: {result.summary}"
    if result.summary.failed_rows:
        line += f" · {RESULT_NAME}.errors lists the failures"
    if interrupted and result.summary.remaining_rows:
        line += " · run again to send only what is missing"
    return line


def _deliver(result: BatchResult, write: Any, ns: dict[str, Any], view: ProgressView | None,
             interrupted: bool = False) -> None:
    """Put the answers in DEST, keep the result as ``_claude_batch`` and leave the summary line."""
    note = write(result) if write is not None else None
    ns[RESULT_NAME] = result
    line = summary_line(result, interrupted) + (f" · {note}" if note else "")
    if view is not None:
        view.close(line)
    else:
        print(line)


# --------------------------------------------------------------------------------------------------
# SOURCE and DEST


def resolve_source(source: str, ns: dict[str, Any], shell: Any = None) -> Any:
    """The rows SOURCE names: a DataFrame, a Series or a list (pandas, polars or Arrow), or for
    ``df.col`` / ``df["col"]`` that column of the frame with its other columns beside it (a
    :class:`~claude_magic.frames.ColumnOf`), so the template may name them too. A LazyFrame is
    collected, with a one-line note. MagicError for anything else."""
    m = _REF.match(source)
    if m and m["name"] not in ns:
        raise MagicError(f"SOURCE {source}: {m['name']!r} is not defined")
    try:
        if not m:
            return _check_rows(source, _evaluate(source, ns, shell))
        value = ns[m["name"]]
        column = m["attr"] if m["attr"] is not None else m["key"]
        if column is not None:
            value = _source_column(source, m["name"], value, column, by_attribute=m["attr"] is not None)
        return _check_rows(source, value)
    except ConfigError as exc:  # e.g. a pandas frame with duplicate column names
        raise MagicError(f"SOURCE {source}: {exc}") from None


def _evaluate(source: str, ns: dict[str, Any], shell: Any) -> Any:
    """SOURCE as any expression, evaluated as the user typed it."""
    try:
        return shell.ev(source) if shell is not None else eval(source, ns)
    except Exception as exc:
        raise MagicError(f"SOURCE {source} could not be evaluated: {type(exc).__name__}: {exc}") from exc


def _source_column(source: str, name: str, value: Any, column: str, by_attribute: bool) -> Any:
    """``name.column``: a column of a frame (with its siblings), else an attribute of ``value``."""
    from . import frames

    if frames.is_table(value):
        columns = frames.column_names(value)
        if column not in columns:
            have = ", ".join(map(str, columns[:30]))
            raise MagicError(f"SOURCE {source}: {name} has no column {column!r}; columns: {have}")
        return frames.ColumnOf(_collected(name, value), column)
    if not by_attribute:
        raise MagicError(f"SOURCE {source}: {name} is {frames.describe(value)}, not a DataFrame")
    try:
        return getattr(value, column)
    except AttributeError as exc:
        raise MagicError(f"SOURCE {source}: {exc}") from exc


def _collected(label: str, value: Any) -> Any:
    """A LazyFrame's rows, collected now with a one-line note; any other value as it is."""
    from . import frames

    if not frames.is_lazy(value):
        return value
    frame = frames.collect(value)
    rows = len(frame)
    print(f"claude_batch: {label} is {frames.describe(value)}: collected its {rows:,} rows to read them")
    return frame


def _check_rows(source: str, value: Any) -> Any:
    from . import frames

    if frames.supports(value):
        return _collected(source, value)
    raise MagicError(f"SOURCE {source} is {frames.describe(value)}: give {frames.SUPPORTED}, or a column "
                     "(df.col)")


def _schema(spec: str, ns: dict[str, Any]) -> Any:
    from .schema import Schema

    if len(spec) >= 2 and spec[0] == spec[-1] and spec[0] in "\"'":
        spec = spec[1:-1]
    try:
        return Schema.of(spec, ns)
    except ClaudeError as exc:
        raise MagicError(f"--schema {spec}: {exc}") from None


_COLUMNS = re.compile(rf"^(?P<name>{_NAME})\[\s*\[(?P<list>.*)\]\s*\]$")


def dest_writer(dest: str, ns: dict[str, Any], schema: Any = None,
                prefix: str = "") -> Callable[[BatchResult], str | None]:
    """A function that stores a run's answers (its :class:`BatchResult`) in DEST and returns a note
    for the summary line, or None; DEST is checked now, before anything is sent.

    With a schema (typed answers), DEST may also be ``df`` (every field as a column, named ``prefix
    + field``: a clash with the frame's own columns is refused now, in one line) or
    ``df[["name", "price"]]`` (those fields), each column typed by the schema; ``df.col`` or a
    variable gets the validated objects. Otherwise see :func:`_writer`."""
    if schema is not None and (fields := _typed_dest(dest, ns, schema, prefix)) is not None:
        return fields
    plain = _writer(dest, ns)
    return lambda result: plain(result.series)


def _typed_dest(dest: str, ns: dict[str, Any], schema: Any,
                prefix: str) -> Callable[[BatchResult], str | None] | None:
    from . import frames

    known = [f.name for f in schema.fields]
    if (m := _COLUMNS.match(dest)) is not None:
        name = m["name"]
        try:
            import ast

            wanted = ast.literal_eval(f"[{m['list']}]")
        except (ValueError, SyntaxError):
            wanted = None
        if not wanted or not all(isinstance(w, str) for w in wanted):
            raise MagicError(f"DEST {dest}: give field names in quotes, e.g. {name}[['name', 'price']]")
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise MagicError(f"DEST {dest}: {', '.join(map(repr, unknown))} not in {schema.name}'s fields "
                             f"({', '.join(known)})")
        _dest_frame(dest, name, ns)
        targets = list(wanted)
    elif _REF.match(dest) and "." not in dest and "[" not in dest and frames.is_table(ns.get(dest)):
        name, targets = dest, known
        clash = sorted(set(frames.column_names(ns[name])) & {prefix + t for t in targets})
        if clash:
            fix = "choose another --column-prefix" if prefix else "give --column-prefix (e.g. p_)"
            raise MagicError(f"DEST {dest}: the fields {', '.join(clash)} would overwrite {name}'s own "
                             f"columns: {fix}")
    else:
        return None

    def to_columns(result: BatchResult) -> str | None:
        frame = original = _dest_frame(dest, name, ns)  # the name as it is now
        columns = result.columns(prefix)
        try:
            for field in targets:
                frame = frames.with_typed(frame, prefix + field, columns[prefix + field])
        except ValueError as exc:
            raise MagicError(f"DEST {dest}: {exc}") from exc
        if frame is original:
            return None
        ns[name] = frame
        return f"{name} rebound to a copy with columns {', '.join(prefix + t for t in targets)}"

    return to_columns


def _writer(dest: str, ns: dict[str, Any]) -> Callable[[Any], str | None]:
    """A function that stores the answers (``BatchResult.series``) in DEST and returns a note for
    the summary line, or None; DEST is checked now, before anything is sent.

    Only the rows answered in this run (cached ones included) change DEST: a row skipped, failed
    or not run (budget, interrupt, early stop) keeps what DEST held, so a partial run never wipes
    earlier answers. DEST never replaces a frame, a module or a callable: ``-o df`` for
    ``-o df.label`` would lose the table, ``-o get_ipython`` would break the shell.

    ``df.col``: a pandas DataFrame gets the column in place, aligned on its index. A polars
    DataFrame or an Arrow Table cannot change: the name is rebound to a copy with the column
    (rows by position) and the note says so, ``"pldf rebound to a copy with column label"``, for
    the caller to add to the summary line. The frame is looked up by name when the answers are
    written, not when checked, so two background jobs writing columns of one frame each extend
    the frame the other left. A variable gets the answers in the source's library (a pandas Series
    for a list), named after it.
    """
    m = _REF.match(dest)
    if not m:
        raise MagicError(f"DEST {dest} must be a variable name, df.new_col or df['new_col']")
    column = m["attr"] if m["attr"] is not None else m["key"]
    name = m["name"]
    if column is None:
        _check_variable(name, ns)

        def to_variable(answers: Any) -> str | None:
            from . import frames

            ns[name] = frames.as_variable(ns.get(name), answers, name)
            return None

        return to_variable
    _dest_frame(dest, name, ns)

    def to_column(answers: Any) -> str | None:
        from . import frames

        frame = _dest_frame(dest, name, ns)  # the name as it is now
        existed = column in frames.column_names(frame)
        try:
            written = frames.with_answers(frame, column, answers)
        except ValueError as exc:
            raise MagicError(f"DEST {dest}: {exc}") from exc
        if written is frame:  # changed in place (pandas), or nothing answered
            return None
        ns[name] = written
        return f"{name} rebound to a copy with column {column}" + (" updated" if existed else "")

    return to_column


def _dest_frame(dest: str, name: str, ns: dict[str, Any]) -> Any:
    """The frame DEST ``name.column`` names, or a one-line MagicError."""
    from . import frames

    frame = ns.get(name)
    if name not in ns or not frames.is_table(frame):
        what = "not defined" if name not in ns else frames.describe(frame)
        raise MagicError(f"DEST {dest}: {name} is {what}; a column needs an existing DataFrame")
    if frames.is_lazy(frame):
        raise MagicError(f"DEST {dest}: {name} is {frames.describe(frame)}, whose rows exist only when its "
                         f"query runs: write {name} = {name}.collect() first, or give a variable")
    return frame


def _check_variable(name: str, ns: dict[str, Any]) -> None:
    import builtins
    import types

    from . import frames

    value = ns[name] if name in ns else getattr(builtins, name, None)  # -o print would shadow print()
    if frames.is_table(value):
        raise MagicError(f"DEST {name} holds {frames.describe(value)}, which a Series of answers would "
                         f"replace: write -o {name}.label for a new column, or give another name")
    if isinstance(value, types.ModuleType) or callable(value):
        kind = "a module" if isinstance(value, types.ModuleType) else f"a {type(value).__name__}"
        raise MagicError(f"DEST {name} holds {kind}, which the answers would replace: give another name")


# --------------------------------------------------------------------------------------------------
# Progress


def _mode(shell: Any, settings: Any) -> str:
    from .display import detect_mode

    requested = getattr(settings, "display", None)  # %config ClaudeMagics.display; none outside the magics
    return detect_mode(shell, None if requested in (None, "auto") else requested)


class ProgressView:
    """Draws :class:`~claude_magic.batch.Progress` at most ``rate`` times a second.

    ``widget``: an ipywidgets progress bar and a label; ``handle``: a display handle updated in
    place; ``text``: one line rewritten with ``\\r`` on stderr. ``close(line)`` leaves only the
    summary line (the bar is removed, so the saved notebook holds plain text).
    """

    def __init__(self, mode: str = "text", rate: float = 4.0, stream: Any = None) -> None:
        self.mode = mode
        self.interval = 1.0 / rate
        self.stream = stream
        self._last = float("-inf")
        self._handle: Any = None
        self._bar: Any = None
        self._label: Any = None
        self._box: Any = None
        self._width = 0
        self.draws = 0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and not progress.finished:
            return
        self._last = now
        self.draws += 1
        getattr(self, f"_draw_{self.mode}")(progress)

    def _draw_widget(self, p: Progress) -> None:
        if self._bar is None:
            try:
                import ipywidgets
                from IPython.display import display
            except ImportError:
                self.mode = "handle"
                return self._draw_handle(p)
            self._bar = ipywidgets.IntProgress(min=0, max=max(1, p.total), description="claude_batch")
            self._label = ipywidgets.HTML()
            self._box = ipywidgets.HBox([self._bar, self._label])
            self._handle = display(self._box, display_id=True)
        self._bar.value = p.done + p.failed + p.skipped
        self._bar.bar_style = "danger" if p.failed else ""
        self._label.value = _escape(p.line())

    def _draw_handle(self, p: Progress) -> None:
        text = f"claude_batch: {_bar(p)} {p.line()}"
        if self._handle is None:
            from IPython.display import display

            self._handle = display({"text/plain": text}, raw=True, display_id=True)
        else:
            self._handle.update({"text/plain": text}, raw=True)

    def _draw_final(self, p: Progress) -> None:
        """Nothing while running (``display = 'final'``, for nbval): ``close`` prints the summary."""

    def _draw_text(self, p: Progress) -> None:
        out = self.stream or sys.stderr
        text = f"claude_batch: {_bar(p)} {p.line()}"
        out.write("\r" + text + " " * max(0, self._width - len(text)))
        out.flush()
        self._width = len(text)

    def close(self, line: str | None) -> None:
        """Replace the bar with ``line`` (None: just remove it)."""
        if self.mode == "text":
            out = self.stream or sys.stderr
            if self._width:
                out.write("\r" + " " * self._width + "\r")
                out.flush()
            if line:
                print(line)
            return
        if self._box is not None:
            self._box.close()
        if self._handle is not None:
            self._handle.update({"text/plain": line or ""}, raw=True)
        elif line:  # the same kind of output as a live run leaves (record and replay save alike)
            from IPython.display import display

            display({"text/plain": line}, raw=True)


def _bar(p: Progress, width: int = 20) -> str:
    finished = p.done + p.failed + p.skipped
    filled = int(width * finished / p.total) if p.total else width
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
