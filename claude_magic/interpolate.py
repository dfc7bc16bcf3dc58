"""``{name}`` placeholders in a ``%%claude`` cell, and nothing else.

The rules, chosen so that prompts full of code, JSON and LaTeX survive untouched
(``str.format`` would turn the ``}}`` that closes nested JSON into ``}``):

- ``{name}``, ``{name.attr}``, ``{seq[3]}``, ``{seq[-1]}``, ``{d['key']}``, ``{In[3]}``, ``{Out[3]}``
  are replaced by ``str()`` of the value, looked up in the user's namespace only
  (no builtins), with attribute access and integer/string subscripts only: nothing
  is ever evaluated, no call is made (a property may of course run its getter).
- ``{{name}}`` (any placeholder in double braces) gives the literal ``{name}``.
- A placeholder whose first name is not defined stays exactly as written.
- A placeholder that is a LaTeX argument stays as written: ``\\frac{a}{b}``, ``x^{n}``,
  ``a_{i}``, ``\\sqrt[3]{x}``, ``\\begin{equation}``.
- Everything else — any brace that does not enclose exactly one such expression —
  is left alone, including ``{{`` and ``}}`` around anything else.

What is left as written is never left silently: :func:`render` lists every ``{…}`` that looks
like a placeholder it could not fill (an undefined name, call syntax such as
``{df.describe()}``, a format spec such as ``{x:.2f}``), so the caller can warn in one line —
an answer built on a literal ``{df.describe()}`` looks normal, which is the danger.

Values become text with ``str()``, except tables: a pandas DataFrame or Series (or a polars
DataFrame) is sent whole as CSV up to :data:`TABLE_LIMIT` characters; beyond that the first rows
that fit are sent and a note says what was cut (pandas' own ``str()`` shows 10 of 240 rows).
A value that contains a secret (the configured API key: ``{os.environ}``) is refused, naming
the placeholder.

Images, figures and PDFs: with a ``media`` converter (see :func:`render`), a value the converter
recognises (a matplotlib figure, a PIL image, image or PDF bytes, a ``Path`` to one) becomes a
content block at that point of the prompt, and the text before and after stays in order
(:attr:`Rendered.parts`). A string is text, always, unless the placeholder says otherwise:
``{photo:image}``, ``{report:pdf}`` (a path or an http(s) URL). Without a converter a ``:kind``
placeholder is refused in one line.

A defined name whose attribute, index or key fails raises ``InterpolationError``:
the user clearly meant that variable, and silently sending the literal text would
hide the mistake. Private attributes (leading ``_``) are refused for the same
reason they are private.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = ["BLOCK_KINDS", "TABLE_LIMIT", "InterpolationError", "MediaHook", "Rendered", "interpolate",
           "placeholders", "render"]

TABLE_LIMIT = 100_000  # characters of CSV a table placeholder sends at most
_TABLE_ROWS = 5_000  # rows rendered at first (a bigger table is cut anyway)
BLOCK_KINDS = ("image", "pdf")  # {photo:image}, {report:pdf}
_MEDIA_MARK = "\x00media{}\x00"
_MEDIA_SPLIT = re.compile("\x00media(\\d+)\x00")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_INDEX = r"""\[\s*(?:-?\d+|'[^'\\\n\]]*'|"[^"\\\n\]]*")\s*\]"""
_EXPR = rf"{_IDENT}(?:\.{_IDENT}|{_INDEX})*"
_PLACEHOLDER = re.compile(rf"\{{\{{(?P<escaped>{_EXPR})\}}\}}"
                          rf"|\{{(?P<expr>{_EXPR})(?::(?P<kind>{'|'.join(BLOCK_KINDS)}))?\}}")
_STEP = re.compile(rf"\.(?P<attr>{_IDENT})|\[\s*(?P<index>[^\]]*?)\s*\]")

# Spans that are LaTeX arguments: a command with its brace groups (``\frac{a}{b}``,
# ``\sqrt[3]{x}``) or a super/subscript group (``x^{n}``, ``a_{i}``).
_LATEX = re.compile(r"\\[A-Za-z]+\*?(?:\s*\[[^\]\n]*\])?(?:\s*\{[^{}\n]*\})+|[\^_]\{[^{}\n]*\}")

_MISSING = object()
# Braces that look like a placeholder the grammar cannot fill: a name or dotted path followed by a
# call, an operator-free index or a format spec. JSON ({"a": 1}), sets ({1, 2}), dict displays
# ({k: v}) and code blocks with spaces do not match.
_LOOKS_LIKE = re.compile(
    rf"(?<!{{){{(?!{{)(?P<expr>{_IDENT}(?:\.{_IDENT}|\[[^\[\]{{}}\n]*\]|\([^(){{}}\n]*\))*"
    rf"(?::[A-Za-z0-9_.<>^=+\-,%#]*)?)}}(?!}})")
_KIND = re.compile(rf"^(?P<expr>{_EXPR}):(?P<kind>{_IDENT})$")


# media(value, kind, where) -> a content object for the value, or None (it is text); raises for a value
# that cannot be sent (``where`` names the placeholder). ``kind`` is "image", "pdf" or None.
MediaHook = Callable[[Any, "str | None", str], Any]


@dataclass
class Rendered:
    """A prompt after interpolation: ``text``, the ``{…}`` left as written that look like
    placeholders (``unresolved``, each with why), and ``notes`` (what was cut from a table).
    ``parts``: the text pieces and the media objects (what the ``media`` hook returned) in prompt
    order; ``[text]`` when there is no media. In ``text`` a medium stands as ``[image {name}]``."""

    text: str
    unresolved: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parts: list[Any] = field(default_factory=list)

    @property
    def media(self) -> list[Any]:
        return [p for p in self.parts if not isinstance(p, str)]

    def warning(self) -> str | None:
        """One line naming every unresolved placeholder and the fix, or None."""
        if not self.unresolved:
            return None
        return ("left as written, not filled: " + ", ".join(self.unresolved)
                + " (assign the value to a variable and use {name}; write {{...}} to send braces literally)")


class InterpolationError(ConfigError):
    """A placeholder names a defined variable but its attribute/index/key cannot be read."""


def placeholders(text: str) -> list[str]:
    """The expressions ``interpolate`` would try to replace, in order (escaped ones excluded)."""
    protected = _protected_spans(text)
    return [m["expr"] for m in _PLACEHOLDER.finditer(text) if m["expr"] and not _inside(m, protected)]


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{expr}`` placeholders in ``text`` with values from ``namespace`` (see module doc)."""
    return render(text, namespace).text


def render(text: str, namespace: Mapping[str, Any], *, secrets: Iterable[str] = (),
           media: MediaHook | None = None) -> Rendered:
    """``text`` with its placeholders filled (see the module doc), what was left and what was cut.
    ``media``: turns a value into a content object (None: it is text); without it, a ``:kind``
    placeholder is refused. Raises InterpolationError for a value holding one of ``secrets``, a
    ``:kind`` without ``media``, or a defined name whose attribute, index or ``str()`` fails."""
    if "{" not in text:
        return Rendered(text, parts=[text])
    protected = _protected_spans(text)
    secrets = [s for s in secrets if s]
    out = Rendered("")
    found: list[Any] = []

    def substitute(m: re.Match[str]) -> str:
        if _inside(m, protected):
            return m[0]
        if m["escaped"] is not None:
            return "{" + m["escaped"] + "}"
        kind = m["kind"]
        if kind is not None and media is None:
            raise InterpolationError(f"cannot interpolate {m[0]}: images and PDFs are not sent from here; "
                                     f"drop :{kind} to send the value as text")
        value = _resolve(m["expr"], namespace)
        if value is _MISSING:
            out.unresolved.append(f"{m[0]} (not defined)")
            return m[0]
        if media is not None:
            item = media(value, kind, m[0])
            if item is not None:
                found.append(item)
                return _MEDIA_MARK.format(len(found) - 1)
        return _text_of(m["expr"], value, secrets, out.notes)

    marked = _PLACEHOLDER.sub(substitute, text)
    out.parts = [found[int(piece)] if i % 2 else piece
                 for i, piece in enumerate(_MEDIA_SPLIT.split(marked)) if i % 2 or piece]
    out.text = _MEDIA_SPLIT.sub(lambda mark: f"[{found[int(mark[1])]!s}]", marked)
    filled = {m.span() for m in _PLACEHOLDER.finditer(text)}
    for m in _LOOKS_LIKE.finditer(text):
        if m.span() in filled or _inside(m, protected):
            continue
        kind = _KIND.match(m["expr"])
        if kind and kind["kind"] in ("document", "file", "img", "photo", "figure"):
            raise InterpolationError(f"cannot interpolate {m[0]}: the kinds of content are :image and :pdf; "
                                     f"write {{{kind['expr']}:image}} or {{{kind['expr']}:pdf}}")
        why = "a call: nothing is evaluated" if "(" in m["expr"] else (
            "a format spec" if ":" in m["expr"] else "not defined")
        out.unresolved.append(f"{m[0]} ({why})")
    return out


def _text_of(expr: str, value: Any, secrets: list[str], notes: list[str]) -> str:
    try:
        text = _table(expr, value, notes)
        if text is None:
            text = str(value)
    except Exception as exc:
        raise _failed(expr, exc, "str()") from None
    if not isinstance(text, str):
        raise InterpolationError(f"cannot interpolate {{{expr}}}: str() gave a {type(text).__name__}")
    for secret in secrets:
        if secret in text:
            raise InterpolationError(
                f"{{{expr}}} holds the API key (or another secret in use): it was not sent (a prompt "
                "never includes the key; interpolate only the value you mean)")
    return text


def _table(expr: str, value: Any, notes: list[str]) -> str | None:
    """CSV of a pandas DataFrame/Series or a polars DataFrame, cut at TABLE_LIMIT; None otherwise."""
    module = type(value).__module__.split(".")[0]
    if module == "pandas" and hasattr(value, "to_csv"):
        import pandas as pd

        index = value.index  # the default 0..n-1 index says nothing; any other index is data
        keep_index = not (isinstance(index, pd.RangeIndex) and index.name is None and index.start == 0
                          and index.step == 1)

        def csv(n: int) -> str:
            return str(value.head(n).to_csv(index=keep_index))
    elif module == "polars" and hasattr(value, "write_csv"):
        def csv(n: int) -> str:
            return str(value.head(n).write_csv())
    else:
        return None
    total = len(value)
    n = min(total, _TABLE_ROWS)
    text = csv(n)
    while len(text) > TABLE_LIMIT and n > 1:
        n = max(1, int(n * TABLE_LIMIT / len(text) * 0.95))
        text = csv(n)
    if n < total:
        notes.append(f"{{{expr}}}: sent the first {n:,} of {total:,} rows as CSV ({TABLE_LIMIT:,}-character "
                     "limit); slice or summarise the table to send what matters")
    return text


def _protected_spans(text: str) -> list[tuple[int, int]]:
    if "\\" not in text and "^" not in text and "_{" not in text:
        return []
    return [m.span() for m in _LATEX.finditer(text)]


def _inside(m: re.Match[str], spans: list[tuple[int, int]]) -> bool:
    start, end = m.span()
    return any(a <= start and end <= b for a, b in spans)


def _resolve(expr: str, namespace: Mapping[str, Any]) -> Any:
    name = re.match(_IDENT, expr)
    assert name is not None  # the placeholder pattern guarantees it
    value = namespace.get(name[0], _MISSING)
    if value is _MISSING:
        return _MISSING
    for step in _STEP.finditer(expr, name.end()):
        value = _step(value, step, expr)
    return value


def _step(value: Any, step: re.Match[str], expr: str) -> Any:
    if step["attr"] is not None:
        attr = step["attr"]
        if attr.startswith("_"):
            raise InterpolationError(
                f"cannot interpolate {{{expr}}}: private attribute {attr!r} is not allowed; "
                f"write {{{{{expr}}}}} for a literal"
            )
        try:
            return getattr(value, attr)
        except Exception as exc:
            raise _failed(expr, exc) from exc
    key = ast.literal_eval(step["index"])  # an int or a quoted string, by the pattern
    try:
        return value[key]
    except Exception as exc:
        raise _failed(expr, exc) from exc


def _failed(expr: str, exc: Exception, step: str = "") -> InterpolationError:
    try:
        detail = str(exc)
    except Exception:
        detail = ""
    reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    reason = " ".join(reason.split())
    if len(reason) > 200:
        reason = reason[:200] + "…"
    where = f" ({step} failed: {reason})" if step else f" ({reason})"
    return InterpolationError(
        f"cannot interpolate {{{expr}}}{where}; write {{{{{expr}}}}} for a literal brace")
