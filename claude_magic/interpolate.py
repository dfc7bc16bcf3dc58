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

A defined name whose attribute, index or key fails raises ``InterpolationError``:
the user clearly meant that variable, and silently sending the literal text would
hide the mistake. Private attributes (leading ``_``) are refused for the same
reason they are private.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

__all__ = ["InterpolationError", "interpolate", "placeholders"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_INDEX = r"""\[\s*(?:-?\d+|'[^'\\\n\]]*'|"[^"\\\n\]]*")\s*\]"""
_EXPR = rf"{_IDENT}(?:\.{_IDENT}|{_INDEX})*"
_PLACEHOLDER = re.compile(rf"\{{\{{(?P<escaped>{_EXPR})\}}\}}|\{{(?P<expr>{_EXPR})\}}")
_STEP = re.compile(rf"\.(?P<attr>{_IDENT})|\[\s*(?P<index>[^\]]*?)\s*\]")

# Spans that are LaTeX arguments: a command with its brace groups (``\frac{a}{b}``,
# ``\sqrt[3]{x}``) or a super/subscript group (``x^{n}``, ``a_{i}``).
_LATEX = re.compile(r"\\[A-Za-z]+\*?(?:\s*\[[^\]\n]*\])?(?:\s*\{[^{}\n]*\})+|[\^_]\{[^{}\n]*\}")

_MISSING = object()


class InterpolationError(ConfigError):
    """A placeholder names a defined variable but its attribute/index/key cannot be read."""


def placeholders(text: str) -> list[str]:
    """The expressions ``interpolate`` would try to replace, in order (escaped ones excluded)."""
    protected = _protected_spans(text)
    return [m["expr"] for m in _PLACEHOLDER.finditer(text) if m["expr"] and not _inside(m, protected)]


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{expr}`` placeholders in ``text`` with values from ``namespace`` (see module doc)."""
    if "{" not in text:
        return text
    protected = _protected_spans(text)

    def substitute(m: re.Match[str]) -> str:
        if _inside(m, protected):
            return m[0]
        if m["escaped"] is not None:
            return "{" + m["escaped"] + "}"
        value = _resolve(m["expr"], namespace)
        return m[0] if value is _MISSING else str(value)

    return _PLACEHOLDER.sub(substitute, text)


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


def _failed(expr: str, exc: Exception) -> InterpolationError:
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    reason = " ".join(reason.split())
    return InterpolationError(
        f"cannot interpolate {{{expr}}} ({reason}); write {{{{{expr}}}}} for a literal "
        "or use %%claude --no-interpolate"
    )
