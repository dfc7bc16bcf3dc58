"""Conversations across cells (``%%claude --chat [NAME]``).

A conversation is a list of turns (prompt, answer), each keyed by the cell that
produced it: the cell id the front end sends (JupyterLab, Notebook 7 and VS Code put
``cellId`` in the execute request's metadata), else a hash of the cell's source.

Re-running a cell replaces its turn and drops the turns after it, as editing a message
in a chat app does: the notebook read top to bottom is the conversation, and a later
answer that was built on the old turn no longer holds. (With the source-hash fallback,
an edited cell is a new turn.) A failed or interrupted call changes nothing.

Each request marks the new prompt and the previous one with ``cache_control`` so that a
long conversation pays the cache-read price for its prefix. The history is kept under a
token budget: when a request would pass it, the oldest turns are dropped until the
history fits in three quarters of the budget — dropping in a block, not one turn per
request, keeps the cached prefix valid for the next few turns — and a note says so.
Tokens are estimated at 3.5 characters each (no request is spent on counting).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChatStore", "Conversation", "Plan", "Turn", "build_messages", "cell_key", "estimate_tokens"]

DEFAULT_NAME = "default"
_EPHEMERAL = {"type": "ephemeral"}


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 3.5)


@dataclass
class Turn:
    key: str
    prompt: str
    answer: str

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.prompt) + estimate_tokens(self.answer)


@dataclass
class Plan:
    """What one request sends, and how the conversation changes if it succeeds."""

    key: str
    prompt: str
    history: list[Turn]
    messages: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


@dataclass
class Conversation:
    name: str
    turns: list[Turn] = field(default_factory=list)

    def plan(self, key: str, prompt: str, budget: int | None = None) -> Plan:
        """The messages for ``prompt`` from the cell ``key`` (nothing changes until ``commit``)."""
        notes: list[str] = []
        index = next((i for i, t in enumerate(self.turns) if t.key == key), None)
        history = self.turns if index is None else self.turns[:index]
        if index is not None:
            later = len(self.turns) - index - 1
            note = f"chat {self.name!r}: replaced this cell's turn {index + 1}"
            notes.append(note + (f", dropped {later} later turn(s)" if later else ""))
        history, dropped = _fit(history, estimate_tokens(prompt), budget)
        if dropped:
            notes.append(
                f"chat {self.name!r}: dropped the {dropped} oldest turn(s) to stay under "
                f"the {budget:,}-token budget (%config ClaudeMagics.chat_token_budget)"
            )
        return Plan(key, prompt, list(history), build_messages(history, prompt), notes)

    def commit(self, plan: Plan, answer: str) -> None:
        self.turns = [*plan.history, Turn(plan.key, plan.prompt, answer)]

    @property
    def tokens(self) -> int:
        return sum(t.tokens for t in self.turns)

    def to_markdown(self) -> str:
        if not self.turns:
            return f"*chat {self.name!r} is empty*"
        parts = [f"**chat {self.name!r}: {len(self.turns)} turn(s), ~{self.tokens:,} tokens**"]
        for i, t in enumerate(self.turns, 1):
            parts.append(f"**You ({i}):**\n\n{t.prompt}\n\n**Claude:**\n\n{t.answer}")
        return "\n\n---\n\n".join(parts)


def _fit(history: list[Turn], prompt_tokens: int, budget: int | None) -> tuple[list[Turn], int]:
    if not budget or budget <= 0:
        return history, 0
    total = sum(t.tokens for t in history) + prompt_tokens
    if total <= budget:
        return history, 0
    target = budget * 3 // 4
    start = 0
    while start < len(history) and total > target:
        total -= history[start].tokens
        start += 1
    return history[start:], start


def build_messages(history: list[Turn], prompt: str) -> list[dict[str, Any]]:
    """User/assistant messages with cache marks on the new prompt and on the previous one."""
    messages: list[dict[str, Any]] = []
    for t in history:
        messages.append(_message("user", t.prompt))
        # the API refuses empty text blocks; an answer with no text (tool use, max_tokens 0) keeps a mark
        messages.append(_message("assistant", t.answer or "(no text)"))
    messages.append(_message("user", prompt))
    # previous prompt: where the last request wrote the cache, so this one reads it;
    # new prompt: writes the whole conversation for the next turn.
    marked = [messages[-1]] + ([messages[-3]] if len(messages) >= 3 else [])
    for m in marked:
        m["content"][-1]["cache_control"] = dict(_EPHEMERAL)
    return messages


def _message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": text}]}


class ChatStore:
    """The kernel's named conversations."""

    def __init__(self) -> None:
        self.chats: dict[str, Conversation] = {}

    def get(self, name: str | None = None) -> Conversation:
        name = name or DEFAULT_NAME
        if name not in self.chats:
            self.chats[name] = Conversation(name)
        return self.chats[name]

    def reset(self, name: str | None = None) -> list[str]:
        """Forget one conversation, or all of them (``name=None``); returns the names forgotten."""
        names = [name] if name else list(self.chats)
        for n in names:
            self.chats.pop(n, None)
        return names

    def names(self) -> list[str]:
        return list(self.chats)


def cell_key(shell: Any, source: str) -> str:
    """The front end's cell id when it sent one, else a hash of the cell's source."""
    cell_id = _front_end_cell_id(shell)
    if cell_id:
        return f"cell:{cell_id}"
    return "src:" + hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _front_end_cell_id(shell: Any) -> str | None:
    for message in _parent_messages(shell):
        if isinstance(message, dict):
            meta = message.get("metadata") or {}
            cell_id = meta.get("cellId") or meta.get("cell_id")
            if cell_id:
                return str(cell_id)
    return None


def _parent_messages(shell: Any) -> list[Any]:
    found = []
    kernel = getattr(shell, "kernel", None)
    get_parent = getattr(kernel, "get_parent", None)
    if callable(get_parent):
        try:
            found.append(get_parent("shell"))
        except Exception:  # older ipykernel: get_parent() takes no channel
            try:
                found.append(get_parent())
            except Exception:
                pass
    found.append(getattr(shell, "parent_header", None))
    return found
