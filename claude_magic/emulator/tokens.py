"""The emulator's approximate tokenizer.

One rule used everywhere (usage, ``max_tokens`` cuts, count_tokens, text deltas): a run of up to
four ASCII letters/digits (with one leading space) is a token, so is a run of up to four whitespace
characters, any other ASCII character, and every non-ASCII code point (a CJK character, an emoji, an
emoji modifier or joiner). Joining the tokens of a text gives the text back exactly.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TOKEN = re.compile(r" ?[A-Za-z0-9]{1,4}|\s{1,4}|[\x00-\x7f]|[^\x00-\x7f]")


def tokenize(text: str) -> list[str]:
    """The tokens of ``text``; ``"".join(tokenize(t)) == t``."""
    return _TOKEN.findall(text)


def count(text: str) -> int:
    """The number of tokens in ``text``."""
    return len(_TOKEN.findall(text))


def count_json(value: Any) -> int:
    """Tokens of a JSON value (tool definitions, tool inputs) as compact JSON."""
    return count(json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True))


def cut(text: str, n: int) -> str:
    """The first ``n`` tokens of ``text``."""
    if n <= 0:
        return ""
    return "".join(_TOKEN.findall(text)[:n])
