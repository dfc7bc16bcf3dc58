"""A live view of a streaming answer, and the final Markdown that stays in the notebook.

``StreamView`` collects text deltas and redraws at most ``max_rate`` times a second
(time-based: however fast tokens come, the front end gets ~20 updates a second; the
deltas are kept in a list and joined only on a redraw, so the cost does not grow with
the square of the answer). ``finish(reply)`` always renders the whole text once more.

Three back ends, chosen by ``detect_mode``:

- ``widget``: inside a Jupyter kernel, an ``ipywidgets.Output`` showing the text as
  Markdown, itself shown through a display handle. At the end the handle is updated
  with the final Markdown and the widget is closed, so the saved notebook holds only
  ``text/markdown`` + ``text/plain`` (no widget placeholder).
- ``handle``: ``display(..., display_id=True)`` and ``handle.update(...)`` (any front end
  that speaks ``update_display_data``, and plain ``InteractiveShell``).
- ``text``: terminal IPython or a script: the text is printed as it arrives.
- ``final``: nothing while streaming, then the final output in one ``display_data``; only
  chosen on request, for nbval, which ignores ``update_display_data`` and so would compare
  the placeholder instead of the answer.

``CLAUDE_MAGIC_DISPLAY=widget|handle|text|final`` (or ``%config ClaudeMagics.display``) forces
one, e.g. ``handle`` for headless nbclient runs, which otherwise record the (closed) widget's
state in the notebook metadata, or ``final`` under ``pytest --nbval``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from .reply import Reply

__all__ = [
    "Backend", "FinalBackend", "HandleBackend", "Rendered", "StreamView", "TextBackend", "WidgetBackend",
    "close_fences", "detect_mode", "footer", "render_final", "typed_markdown", "usage_table",
]

MODES = ("widget", "handle", "text", "final")
WAITING = "…"  # the placeholder; a live body that starts with it is a status, not the answer
THINKING_TAIL = 600  # characters of thinking shown live (the whole of it goes in the final <details>)
INCOMPLETE = "⚠ incomplete"


@dataclass
class Rendered:
    """The final output: the answer (``body``) and what follows it, as Markdown and as plain text."""

    body: str
    markdown: str
    plain: str
    tail: str  # plain-text lines after the body (thinking, incomplete mark, footer)


class Backend(Protocol):
    def live(self, body: str) -> None: ...
    def final(self, rendered: Rendered) -> None: ...


def detect_mode(shell: Any = None, requested: str | None = None) -> str:
    """``widget`` in a kernel with ipywidgets, ``text`` in a terminal or script, else ``handle``;
    ``final`` when replaying offline (answers come at once, and nbval compares first outputs)."""
    offline = os.environ.get("CLAUDE_MAGIC_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    requested = requested or os.environ.get("CLAUDE_MAGIC_DISPLAY") or ("final" if offline else "auto")
    if requested in MODES:
        return requested
    if shell is None:
        return "text"
    if getattr(shell, "kernel", None) is not None:
        return "widget" if _has_ipywidgets() else "handle"
    if type(shell).__name__ == "TerminalInteractiveShell":
        return "text"
    return "handle"


def _has_ipywidgets() -> bool:
    from importlib.util import find_spec

    return find_spec("ipywidgets") is not None


class StreamView:
    """Shows a stream as it arrives; ``finish`` or ``fail`` leaves the final output."""

    def __init__(
        self,
        mode: str = "handle",
        *,
        backend: Backend | None = None,
        max_rate: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
        show_thinking: bool = False,
        notes: Iterable[str] = (),
    ) -> None:
        self.mode = mode
        self.interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self.clock = clock
        self.show_thinking = show_thinking
        self.notes = list(notes)
        self.redraws = 0
        self._chunks: list[str] = []
        self._thought: list[str] = []
        self._last_draw = float("-inf")
        self._backend = backend
        self.rendered: Rendered | None = None

    @property
    def backend(self) -> Backend:
        # created on first use so that a view that never shows anything opens no widget
        if self._backend is None:
            self._backend = _make_backend(self.mode)
        return self._backend

    @property
    def text(self) -> str:
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""

    def start(self) -> None:
        """Show a placeholder until the first text arrives."""
        self.backend.live(WAITING)

    def update(self, delta: str) -> None:
        """Add streamed text; redraws only if the last redraw is at least ``1/max_rate`` s old."""
        if not delta:
            return
        self._chunks.append(delta)
        now = self.clock()
        if now - self._last_draw >= self.interval:
            self._draw(now)

    def think(self, delta: str) -> None:
        """Thinking streamed before the answer: the placeholder says how far it got (and, with
        ``show_thinking``, shows its last lines) until the first text replaces it."""
        if not delta or self._chunks:
            return
        self._thought.append(delta)
        now = self.clock()
        if now - self._last_draw >= self.interval:
            self._last_draw = now
            self.redraws += 1
            self.backend.live(self._thinking_status())

    def _thinking_status(self) -> str:
        thought = "".join(self._thought)
        self._thought = [thought]
        status = f"{WAITING} *thinking, {len(thought.split()):,} words so far*"
        if not self.show_thinking:
            return status
        tail = thought[-THINKING_TAIL:].strip().split("\n")
        return status + "\n\n" + "\n".join("> " + _escape_html(line) for line in tail)

    def _draw(self, now: float) -> None:
        self._last_draw = now
        self.redraws += 1
        self.backend.live(self.text)

    def finish(self, reply: Reply) -> Rendered:
        """Replace the live view with the whole answer and its footer."""
        thinking = reply.thinking if self.show_thinking else ""
        text = reply.text if reply.text or not self.text else self.text
        self.rendered = render_final(text, footer(reply), thinking=thinking, notes=self.notes)
        self.backend.final(self.rendered)
        return self.rendered

    def discard(self) -> None:
        """Remove the live view (a call that failed before any text arrived)."""
        if self._backend is not None:
            self._backend.final(Rendered(body="", markdown="", plain="", tail=""))

    def fail(self, reason: str, partial: str | None = None) -> Rendered:
        """Leave what arrived visible, marked incomplete with the one-line ``reason``."""
        body = self.text if partial is None or len(partial) < len(self.text) else partial
        self.rendered = render_final(body, "", incomplete=reason, notes=self.notes)
        self.backend.final(self.rendered)
        return self.rendered


def typed_markdown(value: Any) -> str:
    """A typed answer as a small Markdown table (field | value) rather than a wall of JSON: an object's
    fields (a pydantic model's or a dict's), one row per item of a list, or the value itself."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, dict) and value:
        rows = [f"| {_cell(k)} | {_cell(v)} |" for k, v in value.items()]
        return "\n".join(["| field | value |", "|---|---|", *rows])
    if isinstance(value, list) and value:
        return "\n".join(f"- {_cell(v)}" for v in value)
    return f"`{_cell(value)}`"


def _cell(value: Any) -> str:
    import json

    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def footer(reply: Reply) -> str:
    """``model · 1,234 in / 56 out tokens · $0.0123 · 2.1 s`` plus cached / retries / resumed marks."""
    from .pricing import format_cost

    u = reply.usage
    tokens = f"{u.total_input:,} in / {u.output_tokens:,} out tokens"
    if u.cache_read_input_tokens:
        tokens += f" ({u.cache_read_input_tokens:,} cache read)"
    parts = [reply.model or "unknown model", tokens]
    if reply.cached:
        # the client zeroes a hit's cost and keeps what the answer cost once in extra["saved_cost"]
        parts.append(f"cached, saved {format_cost(reply.extra.get('saved_cost', reply.cost))}")
    else:
        parts.append(format_cost(reply.cost))
    parts.append(f"{reply.latency:.1f} s")
    if reply.retries:
        parts.append(f"{reply.retries} {'retry' if reply.retries == 1 else 'retries'}")
    if reply.resumed:
        parts.append(f"resumed {reply.resumed}")
    if reply.stop_reason and reply.stop_reason not in ("end_turn", "stop_sequence"):
        parts.append(f"stop: {reply.stop_reason}")
    return " · ".join(parts)


def render_final(
    body: str,
    foot: str,
    *,
    thinking: str = "",
    incomplete: str | None = None,
    notes: Iterable[str] = (),
) -> Rendered:
    """The Markdown and plain text left in the notebook for an answer."""
    md: list[str] = []
    plain_tail: list[str] = []
    if thinking:
        safe = thinking.replace("</details>", "&lt;/details&gt;")
        md.append(f"<details><summary>Thinking</summary>\n\n{safe}\n\n</details>\n\n")
        plain_tail.append("[thinking]\n" + thinking)
    md.append(close_fences(body))
    small = [n for n in notes if n]
    if incomplete is not None:
        small.insert(0, f"{INCOMPLETE}: {incomplete}")
    if foot:
        small.append(foot)
    for line in small:
        md.append(f"\n\n<sub>{_escape_html(line)}</sub>")
        plain_tail.append(f"[{line}]")
    tail = "\n".join(plain_tail)
    plain = body + ("\n\n" + tail if tail else "")
    return Rendered(body=body, markdown="".join(md), plain=plain, tail=tail)


def close_fences(text: str) -> str:
    """Close a code fence left open (a cut answer) so the footer is not swallowed by it."""
    fence = None
    for line in text.splitlines():
        stripped = line.lstrip()
        for mark in ("```", "~~~"):
            if stripped.startswith(mark):
                if fence is None:
                    fence = mark
                elif fence == mark and stripped.strip() == mark * (len(stripped.strip()) // 3):
                    fence = None
    if fence is None:
        return text
    return text + ("" if text.endswith("\n") else "\n") + fence


def _escape_html(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _bundle(markdown: str, plain: str) -> dict[str, str]:
    return {"text/markdown": markdown, "text/plain": plain}


class HandleBackend:
    """``display(..., display_id=True)`` once, then ``handle.update`` (no widgets needed)."""

    def __init__(self) -> None:
        self.handle: Any = None

    def _show(self, data: dict[str, str]) -> None:
        if self.handle is None:
            from IPython.display import display

            self.handle = display(data, raw=True, display_id=True)
        else:
            self.handle.update(data, raw=True)

    def live(self, body: str) -> None:
        self._show(_bundle(body, body))

    def final(self, rendered: Rendered) -> None:
        self._show(_bundle(rendered.markdown, rendered.plain))


class WidgetBackend(HandleBackend):
    """An ``ipywidgets.Output`` updated in place; replaced by plain Markdown at the end.

    The placeholder and the first text go through the display handle; the widget takes
    that output's place from the second redraw on, so an answer that arrives at once (a
    cache hit, ``--no-stream``) never creates a widget.
    """

    def __init__(self) -> None:
        super().__init__()
        self.widget: Any = None
        self._texts = 0

    def live(self, body: str) -> None:
        if body != WAITING:
            self._texts += 1
        if self._texts < 2:
            super().live(body)
            return
        if self.widget is None:
            import ipywidgets

            self.widget = ipywidgets.Output()
            if self.handle is None:
                from IPython.display import display

                self.handle = display(self.widget, display_id=True)
            else:
                self.handle.update(self.widget)
        # Setting the trait syncs one comm message; no output capture (thread-safe, no msg routing).
        self.widget.outputs = (
            {"output_type": "display_data", "data": _bundle(body, body), "metadata": {}},
        )

    def final(self, rendered: Rendered) -> None:
        if self.widget is not None:
            self.widget.outputs = ()
            self.widget.close()
            self.widget = None
        self._show(_bundle(rendered.markdown, rendered.plain))


class FinalBackend:
    """Shows nothing live, then the final output once, as a plain ``display_data``."""

    def live(self, body: str) -> None:
        pass

    def final(self, rendered: Rendered) -> None:
        if rendered.markdown or rendered.plain:
            from IPython.display import display

            display(_bundle(rendered.markdown, rendered.plain), raw=True)


class TextBackend:
    """Terminal or script: print text as it arrives, then the footer lines."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.printed = 0

    def _write(self, s: str) -> None:
        out = self.stream or sys.stdout
        out.write(s)
        out.flush()

    def live(self, body: str) -> None:
        if body.startswith(WAITING) and not self.printed:
            return  # a placeholder or status: a terminal shows the answer only
        self._write(body[self.printed :])
        self.printed = len(body)

    def final(self, rendered: Rendered) -> None:
        rest = rendered.body[self.printed :]
        self.printed = len(rendered.body)
        end = "" if rendered.body.endswith("\n") or not rendered.body else "\n"
        self._write(rest + end + ("\n" + rendered.tail + "\n" if rendered.tail else ""))


def _make_backend(mode: str) -> Backend:
    if mode == "widget":
        return WidgetBackend()
    if mode == "text":
        return TextBackend()
    if mode == "final":
        return FinalBackend()
    return HandleBackend()


_USAGE_COLUMNS = ("model", "calls", "cache hits", "input", "output", "cache write", "cache read", "cost",
                  "saved", "prompt cache saved", "retries")


def usage_table(replies: Iterable[Reply]) -> tuple[str, str]:
    """Per-model totals of ``replies`` as (Markdown table, plain-text table).

    Tokens and cost count what was paid for (calls answered by the API); ``cache hits``
    are calls answered by the response cache and ``saved`` what they would have cost;
    ``prompt cache saved`` what the API's prompt cache saved on the calls paid for (its reads at the
    input price rather than the read price, less the premium its writes paid).
    """
    from .pricing import format_cost, prompt_cache_saved

    rows: dict[str, list[float]] = {}
    for r in replies:
        row = rows.setdefault(r.model or "unknown", [0.0] * 10)
        row[0] += 1
        if r.cached:
            row[1] += 1
            row[7] += r.extra.get("saved_cost") or 0.0
            continue
        u = r.usage
        row[2] += u.input_tokens
        row[3] += u.output_tokens
        row[4] += u.cache_creation_input_tokens
        row[5] += u.cache_read_input_tokens
        row[6] += r.cost or 0.0
        row[8] += r.retries
        if u.cache_creation_input_tokens or u.cache_read_input_tokens:
            row[9] += prompt_cache_saved(r.model, u, batch=r.batch) or 0.0
    if len(rows) > 1:
        rows["total"] = [sum(col) for col in zip(*rows.values(), strict=True)]

    def cells(model: str, v: list[float]) -> list[str]:
        ints = [f"{int(x):,}" for x in v[:6]]
        return [model, *ints, format_cost(v[6]), format_cost(v[7]), format_cost(v[9]), f"{int(v[8]):,}"]

    table = [list(_USAGE_COLUMNS)] + [cells(m, v) for m, v in rows.items()]
    if not rows:
        text = "no calls yet in this kernel"
        return f"*{text}*", text
    md = ["| " + " | ".join(table[0]) + " |", "|" + "---|" + "---:|" * (len(table[0]) - 1)]
    md += ["| " + " | ".join(row) + " |" for row in table[1:]]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    plain = [
        "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)])
        for row in table
    ]
    return "\n".join(md), "\n".join(plain)
