from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_magic.errors import ConfigError
from claude_magic.interpolate import InterpolationError, interpolate, placeholders

NS = {
    "name": "Ada",
    "n": 3,
    "a": "AAA",
    "b": "BBB",
    "obj": SimpleNamespace(title="Report", inner=SimpleNamespace(x=7)),
    "rows": [10, 20, 30],
    "d": {"k": "v", "two words": 2},
    "In": ["", "x = 1", "print(x)"],
    "Out": {3: 42},
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello {name}!", "Hello Ada!"),
        ("{obj.title}/{obj.inner.x}", "Report/7"),
        ("{rows[0]} {rows[-1]} {rows[ 1 ]}", "10 30 20"),
        ("{d['k']} {d[\"two words\"]}", "v 2"),
        ("cell: {In[1]}; out: {Out[3]}", "cell: x = 1; out: 42"),
        ("{{name}} stays", "{name} stays"),
        ("{{obj.title}}", "{obj.title}"),
        ("{name}{n}", "Ada3"),
    ],
)
def test_placeholders_are_replaced(text: str, expected: str) -> None:
    assert interpolate(text, NS) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"a": {1: 2}}',
        '{"a": {"b": {"c": 1}}}',
        "def f(x): return {k: v for k, v in x.items()}",
        "{unknown_name} and {also.unknown}",
        r"\frac{a}{b} + \sqrt[3]{n} + x^{n} + a_{b} + \begin{a}",
        "{ name }",  # spaces: not a placeholder
        "{name()}",  # calls are never made
        "{name + 1}",
        "{}",
        "{0}",
        "{{}}",
        "{{{",
        "}}}} {{{{",
        "set() == {1, 2}",
        "fmt = f'{{value}}'",
    ],
)
def test_everything_else_is_untouched(text: str) -> None:
    expected = text.replace("{{value}}", "{value}")  # the one escaped placeholder here
    assert interpolate(text, NS) == expected


def test_latex_argument_is_protected_but_the_same_name_elsewhere_is_not() -> None:
    assert interpolate(r"$\frac{a}{b}$ where a is {a}", NS) == r"$\frac{a}{b}$ where a is AAA"


def test_builtins_are_not_looked_up() -> None:
    assert interpolate("{print} {len}", NS) == "{print} {len}"


def test_bad_attribute_of_a_defined_name_is_an_error_naming_the_fix() -> None:
    with pytest.raises(InterpolationError) as info:
        interpolate("{obj.nope}", NS)
    message = str(info.value)
    assert "{obj.nope}" in message and "{{obj.nope}}" in message and "--no-interpolate" in message
    assert "\n" not in message
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize("text", ["{rows[9]}", "{d['zz']}", "{Out[99]}", "{n[0]}"])
def test_bad_index_or_key_is_an_error(text: str) -> None:
    with pytest.raises(InterpolationError, match=re.escape(text)):
        interpolate(text, NS)


def test_private_attributes_are_refused() -> None:
    with pytest.raises(InterpolationError, match="private"):
        interpolate("{obj.__class__}", NS)


def test_no_evaluation_happens() -> None:
    calls = []

    class Tripwire:
        def __getitem__(self, key: object) -> str:
            calls.append(key)
            return "item"

    ns = {"t": Tripwire()}
    assert interpolate("{t['__import__(\"os\")']}", ns) == "item"
    assert calls == ['__import__("os")']  # the key is a string literal, never evaluated


def test_placeholders_lists_what_would_be_replaced() -> None:
    assert placeholders(r"{a} {{b}} {c.d[1]} \frac{x}{y}") == ["a", "c.d[1]"]


IDENT_PLACEHOLDER = re.compile(r"\{[A-Za-z_]")


@given(st.text())
def test_text_without_an_identifier_placeholder_is_unchanged(text: str) -> None:
    if IDENT_PLACEHOLDER.search(text):
        text = IDENT_PLACEHOLDER.sub("{ ", text)
    assert interpolate(text, NS) == text


@given(st.text(alphabet=st.sampled_from(list('{}[]":,0123456789 \\^_xyz\n'))))
def test_brace_soup_with_undefined_names_is_unchanged(text: str) -> None:
    # x, y, z are not defined: whatever the braces, nothing may change, {{x}} aside
    escaped = re.compile(r'\{\{([A-Za-z_][A-Za-z0-9_]*(?:\[\s*(?:-?\d+|"[^"\\\n\]]*")\s*\])*)\}\}')
    expected = escaped.sub(lambda m: "{" + m[1] + "}", text)
    assert interpolate(text, {}) == expected


@given(st.text(alphabet=st.characters(blacklist_characters="{}")))
def test_values_are_inserted_verbatim(value: str) -> None:
    assert interpolate("<{v}>", {"v": value}) == f"<{value}>"
