from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_magic.errors import ConfigError
from claude_magic.interpolate import TABLE_LIMIT, InterpolationError, interpolate, placeholders, render

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
    assert "{obj.nope}" in message and "{{obj.nope}}" in message
    assert "--no-interpolate" not in message  # a %%claude option: the magic says it, not batch templates
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


# -- nothing is left as written silently; tables whole; secrets refused ---------------------------------


@pytest.mark.parametrize(("text", "left"), [
    ("Summarise {df.describe()} now", "{df.describe()} (a call: nothing is evaluated)"),
    ("{len(rows)} items", "{len(rows)} (a call: nothing is evaluated)"),
    ("{unknown_name}", "{unknown_name} (not defined)"),
    ("{also.unknown}", "{also.unknown} (not defined)"),
    ("{n:.2f}", "{n:.2f} (a format spec)"),
])
def test_what_looks_like_a_placeholder_but_is_left_is_listed(text: str, left: str) -> None:
    out = render(text, NS)
    assert out.text == text and out.unresolved == [left]
    warning = out.warning()
    assert warning is not None and left in warning and "\n" not in warning and "{{...}}" in warning


@pytest.mark.parametrize("text", ['{"a": {1: 2}}', "def f(x): return {k: v for k, v in x.items()}",
                                  "set() == {1, 2}", r"\frac{a}{b} x^{n}", "{{name}}", "{ name }", "{}",
                                  "Hello {name}"])
def test_code_json_latex_and_filled_placeholders_are_not_listed(text: str) -> None:
    assert render(text, NS).unresolved == []


def test_a_kind_without_a_media_converter_is_refused_in_one_line() -> None:
    with pytest.raises(InterpolationError, match=r"\{photo:image\}: images and PDFs are not sent from here"):
        render("What is in {photo:image}?", {"photo": "x.png"})
    with pytest.raises(InterpolationError, match=r"the kinds of content are :image and :pdf"):
        render("Summarise {report:document}", {"report": "x.pdf"}, media=lambda v, k, w: None)


class Shown:
    def __init__(self, value: object, kind: str | None, where: str) -> None:
        self.value, self.kind, self.where = value, kind, where

    def __str__(self) -> str:
        return f"shown {self.where}"


def test_media_become_parts_in_prompt_order_and_strings_stay_text_unless_the_kind_says() -> None:
    def hook(value: object, kind: str | None, where: str) -> Shown | None:
        return Shown(value, kind, where) if kind or isinstance(value, bytes) else None

    ns = {"fig": b"\x89PNG...", "name": "a.png", "photo": "b.png"}
    out = render("Compare {fig} with {photo:image}, named {name}.", ns, media=hook)
    assert [p if isinstance(p, str) else (p.value, p.kind, p.where) for p in out.parts] == [
        "Compare ", (b"\x89PNG...", None, "{fig}"), " with ", ("b.png", "image", "{photo:image}"),
        ", named a.png."]
    assert out.text == "Compare [shown {fig}] with [shown {photo:image}], named a.png."
    assert [m.where for m in out.media] == ["{fig}", "{photo:image}"]
    assert render("{fig}", ns, media=hook).parts[0].where == "{fig}"  # no empty text around it
    assert render("plain {name}", ns, media=hook).parts == ["plain a.png"]
    assert render("no braces", ns).parts == ["no braces"]


def test_a_value_holding_the_key_is_refused_and_named() -> None:
    key = "sk-ant-api03-secret-value-123456"
    env = {"ANTHROPIC_API_KEY": key, "HOME": "/root"}
    for text in ("{env}", "{env['ANTHROPIC_API_KEY']}"):
        with pytest.raises(InterpolationError) as info:
            render(text, {"env": env}, secrets=[key])
        assert key not in str(info.value) and "holds the API key" in str(info.value)
    assert render("{env['HOME']}", {"env": env}, secrets=[key]).text == "/root"


def test_a_str_that_raises_is_one_line() -> None:
    class Bad:
        def __str__(self) -> str:
            raise RuntimeError("no\ntext\nfor you")

    with pytest.raises(InterpolationError) as info:
        interpolate("{bad}", {"bad": Bad()})
    assert "{bad}" in str(info.value) and "str() failed: RuntimeError: no text for you" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_dataframe_is_sent_whole_as_csv_and_a_cut_is_noted() -> None:
    pd = pytest.importorskip("pandas")
    small = pd.DataFrame({"city": [f"c{i}" for i in range(240)], "mm": range(240)})
    out = render("{small}", {"small": small})
    assert out.text == small.to_csv(index=False) and out.text.count("\n") == 241 and out.notes == []
    big = pd.DataFrame({"text": ["x" * 500] * 1000}, index=pd.Index(range(1000), name="id"))
    out = render("{big}", {"big": big})
    assert len(out.text) <= TABLE_LIMIT and out.text.startswith("id,text\n0,")
    kept = out.text.count("\n") - 1
    assert 0 < kept < 1000 and out.notes == [
        f"{{big}}: sent the first {kept:,} of 1,000 rows as CSV ({TABLE_LIMIT:,}-character limit); "
        "slice or summarise the table to send what matters"]
    assert render("{s}", {"s": small.mm}).text == small.mm.to_csv(index=False)
