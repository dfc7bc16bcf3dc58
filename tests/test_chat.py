from __future__ import annotations

from typing import Any

import pytest

from claude_magic.chat import ChatStore, Conversation, build_messages, cell_key, estimate_tokens


def answer(conv: Conversation, key: str, prompt: str, text: str, budget: int | None = None) -> list[str]:
    plan = conv.plan(key, prompt, budget)
    conv.commit(plan, text)
    return plan.notes


def test_new_cells_append_turns_and_the_history_is_sent() -> None:
    conv = Conversation("c")
    answer(conv, "a", "hi", "hello")
    plan = conv.plan("b", "how are you?")
    assert [(m["role"], m["content"][0]["text"]) for m in plan.messages] == [
        ("user", "hi"), ("assistant", "hello"), ("user", "how are you?")]
    assert plan.notes == []
    assert len(conv.turns) == 1  # nothing changes before commit


def test_rerunning_a_cell_replaces_its_turn_and_drops_later_ones() -> None:
    conv = Conversation("c")
    for key in "abc":
        answer(conv, key, f"q{key}", f"r{key}")
    notes = answer(conv, "c", "qc2", "rc2")
    assert [t.prompt for t in conv.turns] == ["qa", "qb", "qc2"]
    assert notes == ["chat 'c': replaced this cell's turn 3"]
    notes = answer(conv, "a", "qa2", "ra2")
    assert [t.prompt for t in conv.turns] == ["qa2"]
    assert notes == ["chat 'c': replaced this cell's turn 1, dropped 2 later turn(s)"]


def test_cache_marks_are_on_the_new_prompt_and_the_previous_one() -> None:
    conv = Conversation("c")
    assert [("cache_control" in m["content"][-1]) for m in conv.plan("a", "x").messages] == [True]
    answer(conv, "a", "x", "y")
    answer(conv, "b", "z", "w")
    msgs = conv.plan("c", "v").messages
    assert [("cache_control" in m["content"][-1]) for m in msgs] == [False, False, True, False, True]
    assert msgs[-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}


def test_marks_do_not_stick_to_the_history() -> None:
    conv = Conversation("c")
    for key in "abc":
        answer(conv, key, f"q{key}", f"r{key}")
    conv.plan("d", "one")
    answer(conv, "d", "qd", "rd")
    msgs = conv.plan("e", "two").messages
    assert [i for i, m in enumerate(msgs) if "cache_control" in m["content"][-1]] == [6, 8]


def test_an_empty_answer_is_sent_as_a_mark_not_an_empty_block() -> None:
    msgs = build_messages([], "q")
    assert msgs[0]["content"][0]["text"] == "q"
    conv = Conversation("c")
    answer(conv, "a", "x", "")
    assert conv.plan("b", "y").messages[1]["content"][0]["text"] == "(no text)"


def test_budget_drops_the_oldest_turns_down_to_three_quarters() -> None:
    conv = Conversation("c")
    for i in range(10):
        answer(conv, f"k{i}", "p" * 35, "a" * 35)  # 20 estimated tokens a turn
    plan = conv.plan("new", "q" * 35, budget=100)
    kept = len(plan.history)
    assert sum(t.tokens for t in plan.history) + estimate_tokens("q" * 35) <= 75
    assert kept == 3
    assert plan.notes == ["chat 'c': dropped the 7 oldest turn(s) to stay under the 100-token budget "
                          "(%config ClaudeMagics.chat_token_budget)"]
    conv.commit(plan, "a" * 35)
    assert len(conv.turns) == 4
    assert conv.plan("next", "q" * 35, budget=100).notes == []  # the block drop leaves room: prefix stable


def test_a_prompt_over_the_budget_is_sent_alone() -> None:
    conv = Conversation("c")
    answer(conv, "a", "x", "y")
    plan = conv.plan("b", "q" * 1000, budget=10)
    assert len(plan.messages) == 1 and "dropped the 1 oldest" in plan.notes[0]


def test_no_budget_keeps_everything() -> None:
    conv = Conversation("c")
    for i in range(5):
        answer(conv, str(i), "p" * 1000, "a" * 1000, budget=0)
    assert len(conv.turns) == 5


def test_store_names_and_reset() -> None:
    store = ChatStore()
    assert store.get().name == "default" and store.get() is store.get("default")
    store.get("x")
    assert store.names() == ["default", "x"]
    assert store.reset("x") == ["x"] and store.names() == ["default"]
    store.get("y")
    assert store.reset() == ["default", "y"] and store.names() == []


def test_markdown_of_a_conversation() -> None:
    conv = Conversation("c")
    assert conv.to_markdown() == "*chat 'c' is empty*"
    answer(conv, "a", "hi", "hello")
    assert "**You (1):**\n\nhi\n\n**Claude:**\n\nhello" in conv.to_markdown()


class Kernel:
    def __init__(self, parent: Any) -> None:
        self.parent = parent

    def get_parent(self, channel: str = "shell") -> Any:
        return self.parent


@pytest.mark.parametrize(
    "shell, expected",
    [
        (type("S", (), {"kernel": Kernel({"metadata": {"cellId": "abc-1"}})})(), "cell:abc-1"),
        (type("S", (), {"parent_header": {"metadata": {"cellId": "vscode-2"}}})(), "cell:vscode-2"),
        (type("S", (), {"kernel": Kernel({"metadata": {}}), "parent_header": {}})(), None),
        (None, None),
    ],
)
def test_cell_key_uses_the_front_end_cell_id_else_the_source(shell: Any, expected: str | None) -> None:
    key = cell_key(shell, "%%claude\nhi")
    if expected:
        assert key == expected
    else:
        assert key.startswith("src:") and key == cell_key(shell, "%%claude\nhi") != cell_key(shell, "other")
