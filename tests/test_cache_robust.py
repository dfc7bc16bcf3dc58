"""The response cache against what the disk and the people editing it can do. First the shape
of a reply: values in the cache and in cassettes are JSON that anyone can edit."""

from __future__ import annotations

import re
from typing import Any

import pytest
from test_cache import make_reply

from claude_magic.reply import Reply, Usage, check_dict

# --- Reply: one definition of a well-formed reply dict ---------------------------------------------

def test_a_reply_round_trips_with_the_reason_it_is_incomplete() -> None:
    reply = Reply.from_dict({**make_reply("Hel"), "incomplete": "interrupted"})
    assert reply.incomplete == "interrupted"
    assert Reply.from_dict(reply.to_dict()) == reply
    assert Reply.from_dict(make_reply()).incomplete is None  # a complete answer, and old entries


def test_from_dict_ignores_fields_it_does_not_know() -> None:
    d = make_reply()
    d["from_the_future"] = 1
    d["usage"]["new_kind_of_tokens"] = 4
    assert Reply.from_dict(d).usage == Usage(input_tokens=100, output_tokens=20)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"text": 5}, "reply field 'text' must be a string, got int 5"),
        ({"usage": "x"}, "reply field 'usage' must be an object of token counts, got str 'x'"),
        ({"usage": {"input_tokens": "3"}}, "'usage.input_tokens' must be an integer"),
        ({"content": [1]}, "'content' must be a list of objects"),
        ({"cached": "yes"}, "'cached' must be true or false"),
        ({"cost": True}, "'cost' must be a number or null"),
        ({"incomplete": 5}, "'incomplete' must be a string or null"),
        ({"content": None}, "'content' must be a list"),
    ],
)
def test_a_reply_of_the_wrong_shape_is_refused_naming_the_field(change: dict[str, Any],
                                                                complaint: str) -> None:
    d = {**make_reply(), **change}
    with pytest.raises(ValueError, match=re.escape(complaint)):
        check_dict(d)
    with pytest.raises(ValueError, match="reply field"):
        Reply.from_dict(d)


def test_a_reply_that_is_not_an_object_or_lacks_a_field_is_refused() -> None:
    with pytest.raises(ValueError, match="a reply is a JSON object, got list"):
        check_dict(["a"])
    with pytest.raises(ValueError, match="reply field 'content' is missing"):
        check_dict({"text": "hi"})
    check_dict({**make_reply(), "usage": {}})  # no tokens counted is still a reply


def test_every_reply_field_has_a_check() -> None:
    from claude_magic import reply

    assert set(reply._CHECKS) == {f for f in Reply.__dataclass_fields__}
