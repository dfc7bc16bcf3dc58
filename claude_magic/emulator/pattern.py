"""The simple regular expressions structured outputs accept in a string's ``pattern``, and strings
that match them.

The supported subset: literals, ``.``, classes ``[a-z0-9_]`` and ``[^...]``, the escapes ``\\d \\w \\s``
(and their capitals), groups ``(...)`` and ``(?:...)`` with ``|``, the quantifiers ``* + ? {n}
{n,} {n,m}`` (lazy or not) and the anchors ``^ $``. Backreferences, lookaround and ``\\b`` are
refused, as the API refuses them. A generated string matches the whole pattern, so it matches it
anywhere too (JSON Schema's ``pattern`` is unanchored).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

DIGITS = string.digits
WORD = string.ascii_letters + string.digits + "_"
SPACE = " "
PRINTABLE = string.ascii_letters + string.digits + " -_.,:;!?@#%&/+=*"
ESCAPE_SETS = {"d": DIGITS, "w": WORD, "s": SPACE}
EXTRA_REPEATS = 3  # an open quantifier (* + {n,}) repeats at most this many times past its minimum


class PatternError(ValueError):
    """A pattern outside the supported subset; the message says what and where."""


@dataclass(frozen=True)
class _Chars:
    chars: str              # the characters the atom may be (for a negated class: those it may not)
    negated: bool = False


@dataclass(frozen=True)
class _Repeat:
    node: object
    low: int
    high: int | None


@dataclass(frozen=True)
class _Group:
    alternatives: list[list[object]]


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def fail(self, what: str) -> PatternError:
        return PatternError(f"{what} at position {self.i} of {self.p!r}")

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def take(self) -> str:
        ch = self.peek()
        self.i += 1
        return ch

    def alternatives(self) -> list[list[object]]:
        alts = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            alts.append(self.sequence())
        return alts

    def sequence(self) -> list[object]:
        seq: list[object] = []
        while self.peek() not in ("", "|", ")"):
            atom = self.atom()
            if atom is not None:
                seq.append(self.quantified(atom))
        return seq

    def atom(self) -> object | None:
        ch = self.take()
        if ch in "^$":
            return None
        if ch == ".":
            return _Chars(PRINTABLE)
        if ch == "[":
            return self.char_class()
        if ch == "(":
            return self.group()
        if ch == "\\":
            return self.escape()
        if ch in "*+?{":
            raise self.fail(f"nothing to repeat before {ch!r}")
        return _Chars(ch)

    def group(self) -> _Group:
        if self.p.startswith(("?=", "?!", "?<=", "?<!"), self.i):
            raise self.fail("lookaround is not supported")
        if self.p.startswith("?:", self.i):
            self.i += 2
        elif self.p.startswith(("?P<", "?<"), self.i):
            self.i = self.p.index(">", self.i) + 1 if ">" in self.p[self.i:] else len(self.p)
        elif self.peek() == "?":
            raise self.fail("this group syntax is not supported")
        alts = self.alternatives()
        if self.take() != ")":
            raise self.fail("missing ')'")
        return _Group(alts)

    def escape(self) -> _Chars:
        ch = self.take()
        if not ch:
            raise self.fail("a trailing backslash")
        if ch.isdigit() or ch == "k":
            raise self.fail("backreferences are not supported")
        if ch in "bB":
            raise self.fail(f"\\{ch} (word boundary) is not supported")
        if ch.lower() in ESCAPE_SETS:
            chars = ESCAPE_SETS[ch.lower()]
            return _Chars(chars, negated=ch.isupper())
        return _Chars({"n": "\n", "t": "\t", "r": "\r"}.get(ch, ch))

    def char_class(self) -> _Chars:
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        chars = ""
        first = True
        while first or self.peek() != "]":
            first = False
            ch = self.take()
            if not ch:
                raise self.fail("missing ']'")
            if ch == "\\":
                chars += self._class_escape(self.take())
            elif self.peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", ""):
                end = self.p[self.i + 1]
                self.i += 2
                if ord(end) < ord(ch):
                    raise self.fail(f"bad range {ch}-{end}")
                chars += "".join(map(chr, range(ord(ch), ord(end) + 1)))
            else:
                chars += ch
        self.i += 1
        return _Chars(chars, negated)

    def _class_escape(self, ch: str) -> str:
        if ch.lower() in ESCAPE_SETS:
            chars = ESCAPE_SETS[ch.lower()]
            return "".join(c for c in PRINTABLE if c not in chars) if ch.isupper() else chars
        return {"n": "\n", "t": "\t", "r": "\r"}.get(ch, ch)

    def quantified(self, atom: object) -> object:
        ch = self.peek()
        if ch in ("*", "+", "?"):
            self.i += 1
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
        elif ch == "{" and self._counted():
            low, high = self._counts()
        else:
            return atom
        if self.peek() == "?":  # lazy: the same strings match
            self.i += 1
        return _Repeat(atom, low, high)

    def _counted(self) -> bool:
        end = self.p.find("}", self.i)
        body = self.p[self.i + 1:end] if end > 0 else ""
        parts = body.split(",")
        return len(parts) <= 2 and parts[0].isdigit() and all(p.isdigit() or p == "" for p in parts[1:])

    def _counts(self) -> tuple[int, int | None]:
        end = self.p.index("}", self.i)
        parts = self.p[self.i + 1:end].split(",")
        self.i = end + 1
        low = int(parts[0])
        high = low if len(parts) == 1 else (int(parts[1]) if parts[1] else None)
        if high is not None and high < low:
            raise self.fail(f"bad repeat {{{low},{high}}}")
        return low, high


def parse(pattern: str) -> list[list[object]]:
    """The pattern's tree; PatternError if it is outside the supported subset."""
    parser = _Parser(pattern)
    alts = parser.alternatives()
    if parser.i < len(pattern):
        raise parser.fail("unbalanced ')'")
    return alts


def example(pattern: str, rng: random.Random) -> str:
    """A string that matches ``pattern`` (which must parse)."""
    return _alternatives(parse(pattern), rng)


def _alternatives(alts: list[list[object]], rng: random.Random) -> str:
    return "".join(_node(node, rng) for node in rng.choice(alts))


def _node(node: object, rng: random.Random) -> str:
    if isinstance(node, _Chars):
        pool = [c for c in PRINTABLE if c not in node.chars] if node.negated else list(node.chars)
        return rng.choice(pool) if pool else ""
    if isinstance(node, _Group):
        return _alternatives(node.alternatives, rng)
    assert isinstance(node, _Repeat)
    high = node.low + EXTRA_REPEATS if node.high is None else min(node.high, node.low + EXTRA_REPEATS)
    return "".join(_node(node.node, rng) for _ in range(rng.randint(node.low, high)))
