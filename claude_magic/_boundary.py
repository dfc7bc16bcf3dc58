"""The boundary between the magics and the person: one-line failures that still fail the cell,
the splitting of a magic's line and a Markdown output. Shared by every magic module (no IPython
import beyond the error class, so loading the extension stays fast)."""

from __future__ import annotations

import shlex

from IPython.core.error import UsageError

__all__ = ["MagicError", "show_markdown", "split_args"]


class MagicError(UsageError):
    """A magic failed: one line for the person, and an ``error`` output for the kernel.

    IPython prints a plain ``UsageError`` to stderr with no ``error`` output, so nbval and other
    tools that read outputs miss the failure; an exception with ``_render_traceback_`` gives both
    (IPython's hook for custom tracebacks). ``kind`` names what failed (the package's error class,
    or ``UsageError`` for a bad argument).
    """

    def __init__(self, message: str, kind: str = "UsageError") -> None:
        from ._secrets import scrub

        super().__init__(scrub(" ".join(str(message).split())))
        self.kind = kind

    @classmethod
    def of(cls, exc: BaseException) -> MagicError:
        if isinstance(exc, MagicError):
            return exc
        kind = "UsageError" if isinstance(exc, UsageError) else type(exc).__name__
        return cls(str(exc), kind)

    def _render_traceback_(self) -> list[str]:
        return [f"{self.kind}: {self}"]


def split_args(line: str) -> list[str]:
    """Shell-like split of a magic's line, a ``#`` comment at a token's start ending it (IPython
    passes ``%magic args  # comment`` through to the magic)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            line = line[:i]
            break
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise MagicError(f"cannot parse the options {line.strip()!r}: {exc}") from None


def show_markdown(markdown: str, plain: str | None = None) -> None:
    """Display Markdown, with ``plain`` (else the Markdown itself) for text front ends."""
    from IPython.display import display

    display({"text/markdown": markdown, "text/plain": plain if plain is not None else markdown}, raw=True)
