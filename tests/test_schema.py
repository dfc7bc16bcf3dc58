"""Typed answers: every spec form, the wire schema in the API's subset, the checks made before any
request, and the parsing of answers (unwrapped, case-insensitive enums, moved keywords checked)."""

from __future__ import annotations

import datetime as dt
import enum
import json
import pickle
import subprocess
import sys
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field, create_model

from claude_magic.errors import AnswerInvalid, ClaudeError, ConfigError
from claude_magic.schema import MAX_OPTIONAL, MAX_UNIONS, Schema
from claude_magic.schema import Field as Column

# Words the API refuses inside a format schema: none may reach the wire.
REFUSED = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
           "maxLength", "maxItems", "uniqueItems", "prefixItems", "oneOf", "minProperties", "maxProperties"}


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Price(BaseModel):
    amount: float = Field(ge=0, description="in the currency's unit")
    currency: str = Field(min_length=3, max_length=3)


class Product(BaseModel):
    name: str
    price: Price
    note: str | None = None
    tags: list[str] = []
    released: dt.date
    seen: dt.datetime | None = None
    label: Literal["new", "used"]
    color: Color
    stock: dict[str, int] = {}


PRODUCT = {
    "name": "Lamp", "price": {"amount": 12.5, "currency": "EUR"}, "tags": ["home"], "released": "2024-03-01",
    "seen": "2024-03-02T10:00:00Z", "label": "NEW", "color": "Red", "stock": [{"key": "Paris", "value": 3}],
}


def nodes(node: Any) -> list[dict[str, Any]]:
    """Every schema node inside ``node`` (property names and values are not nodes)."""
    if isinstance(node, list):
        return [n for item in node for n in nodes(item)]
    if not isinstance(node, dict):
        return []
    found = [node]
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions"):
            found += nodes(list(value.values()))
        elif key not in ("enum", "const", "default"):
            found += nodes(value)
    return found


def objects(node: Any) -> list[dict[str, Any]]:
    return [n for n in nodes(node) if n.get("type") == "object"]


def keywords(node: Any) -> set[str]:
    return {key for n in nodes(node) for key in n}


INLINE_HELP = "use str, int, float, bool, date, datetime, list[T] or a|b|c (one of these words)"


def invalid(schema: Schema, text: str) -> AnswerInvalid:
    with pytest.raises(AnswerInvalid) as info:
        schema.parse(text)
    assert "\n" not in str(info.value)
    return info.value


def refused(spec: Any, namespace: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        Schema.of(spec, namespace)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- the forms of a spec ---------------------------------------------------------------------------

def test_a_pydantic_model_becomes_an_object_schema_and_parses_to_an_instance() -> None:
    schema = Schema.of(Product)
    assert schema.name == "Product" and not schema.wrapped
    body = schema.wire["schema"]
    assert schema.wire["type"] == "json_schema" and body["type"] == "object"
    assert set(body["$defs"]) == {"Color", "Price"}
    product = schema.parse(json.dumps(PRODUCT))
    assert isinstance(product, Product)
    assert product.price == Price(amount=12.5, currency="EUR")
    assert product.released == dt.date(2024, 3, 1) and product.seen is not None and product.seen.hour == 10
    assert (product.label, product.color, product.note) == ("new", Color.RED, None)
    assert product.stock == {"Paris": 3}


def test_a_model_named_in_the_namespace_is_found_by_its_name() -> None:
    schema = Schema.of("Product", {"Product": Product})
    assert schema.name == "Product" and schema.key == Schema.of(Product).key
    assert isinstance(schema.parse(json.dumps(PRODUCT)), Product)


def test_a_type_expression_over_the_namespace_is_read_without_eval() -> None:
    schema = Schema.of("list[Price] | None", {"Price": Price})
    assert schema.name == "list[Price] | None" and schema.wrapped
    assert schema.parse('{"value": [{"amount": 1, "currency": "usd"}]}') == [Price(amount=1, currency="usd")]
    assert schema.parse('{"value": null}') is None


def test_a_module_in_the_namespace_gives_its_classes() -> None:
    assert Schema.of("dt.date", {"dt": dt}).parse('{"value": "2024-01-31"}') == dt.date(2024, 1, 31)


@pytest.mark.parametrize(
    ("spec", "answer", "expected"),
    [
        (list[str], ["a", "b"], ["a", "b"]),
        ("list[str]", ["a"], ["a"]),
        (Literal["pos", "neg"], "NEG", "neg"),
        ("Literal['pos', 'neg']", "Pos", "pos"),
        (int, 3, 3),
        ("int", 3, 3),
        (dict[str, int], [{"key": "a", "value": 1}, {"key": "b", "value": 2}], {"a": 1, "b": 2}),
        ("dict[str, int]", [], {}),
        (int | None, None, None),
        ("Optional[date]", "2024-02-29", dt.date(2024, 2, 29)),
        (Color, "GREEN", Color.GREEN),
        (tuple[int, str], [1, "x"], (1, "x")),
    ],
)
def test_python_types_are_wrapped_as_value_and_unwrapped_when_parsing(spec: Any, answer: Any, expected: Any
                                                                      ) -> None:
    schema = Schema.of(spec)
    assert schema.wrapped
    body = schema.wire["schema"]
    assert body["required"] == ["value"] and body["additionalProperties"] is False
    assert list(body["properties"]) == ["value"]
    assert schema.parse(json.dumps({"value": answer})) == expected


def test_an_object_root_is_not_wrapped() -> None:
    assert not Schema.of(Price).wrapped
    assert not Schema.of({"type": "object", "properties": {"a": {"type": "string"}}}).wrapped
    assert not Schema.of("a: str").wrapped


def test_a_json_schema_dict_parses_to_a_checked_dict() -> None:
    spec = {"type": "object", "required": ["n"],
            "properties": {"n": {"type": "integer"}, "when": {"type": "string", "format": "date"}}}
    schema = Schema.of(spec)
    assert schema.name == "JSON schema"
    assert schema.parse('{"n": 2.0, "when": "2024-01-01"}') == {"n": 2, "when": "2024-01-01"}
    assert "JSON schema: n: expected integer, got 'two'" in str(invalid(schema, '{"n": "two"}'))
    assert "not an ISO 8601 date" in str(invalid(schema, '{"n": 1, "when": "tomorrow"}'))


def test_a_json_schema_given_as_text_or_held_in_a_variable_is_read() -> None:
    spec = {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]}
    assert Schema.of(json.dumps(spec)).key == Schema.of(spec).key
    assert Schema.of("spec", {"spec": spec}).parse('{"a": true}') == {"a": True}


def test_the_inline_spec_builds_an_object_with_required_and_optional_fields() -> None:
    schema = Schema.of("name: str, price: float, currency: str?, tags: list[str], label: pos|neg|neutral, "
                       "when: date, at: datetime?, n: int, ok: bool")
    assert schema.name == "inline spec"
    assert schema.wire == {"type": "json_schema", "schema": {
        "type": "object",
        "properties": {
            "name": {"type": "string"}, "price": {"type": "number"}, "currency": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "label": {"enum": ["pos", "neg", "neutral"]},
            "when": {"type": "string", "format": "date"}, "at": {"type": "string", "format": "date-time"},
            "n": {"type": "integer"}, "ok": {"type": "boolean"},
        },
        "required": ["name", "price", "tags", "label", "when", "n", "ok"],
        "additionalProperties": False,
    }}


def test_the_inline_spec_parses_to_python_values() -> None:
    schema = Schema.of("price: float, when: date, at: datetime?, label: pos|neg, n: int, days: list[date]")
    answer = {"price": 3, "when": "2024-05-06", "at": "2024-05-06T07:08:09Z", "label": "POS", "n": 4.0,
              "days": ["2024-01-01"]}
    assert schema.parse(json.dumps(answer)) == {
        "price": 3.0, "when": dt.date(2024, 5, 6), "label": "pos", "n": 4, "days": [dt.date(2024, 1, 1)],
        "at": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc),
    }
    assert type(schema.parse(json.dumps(answer))["price"]) is float
    missing = {k: v for k, v in answer.items() if k != "at"}
    assert "at" not in schema.parse(json.dumps(missing))


def test_commas_inside_brackets_do_not_split_an_inline_spec() -> None:
    assert refused("x: list[str, int], y: int") == (
        f"unknown type 'str, int' for field 'x' in the inline spec: {INLINE_HELP}")
    nested = Schema.of("grid: list[list[int]], tail: str,")
    assert list(nested.wire["schema"]["properties"]) == ["grid", "tail"]


def test_a_variable_holding_an_inline_spec_is_read_by_its_name() -> None:
    schema = Schema.of("review", {"review": "sentiment: pos|neg, summary: str"})
    assert schema.name == "inline spec"
    assert schema.parse('{"sentiment": "Neg", "summary": "meh"}') == {"sentiment": "neg", "summary": "meh"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("name: flaot", f"unknown type 'flaot' for field 'name' in the inline spec: {INLINE_HELP}"),
        (": str", "field 1 of the inline spec ': str' has no name: write 'name: type'"),
        ("a: int, : str", "field 2 of the inline spec 'a: int, : str' has no name: write 'name: type'"),
        ("a: int, a: str", "field 'a' appears twice in the inline spec 'a: int, a: str': keep one"),
        ("a: int, b", f"field 'b' of the inline spec has no type: write 'b: str' ({INLINE_HELP})"),
        ("a b: int", "field name 'a b' in the inline spec is not a name: use letters, digits, _"),
        ("a: list[]", f"unknown type '' for field 'a' in the inline spec: {INLINE_HELP}"),
        ("a: x||y", f"unknown type 'x||y' for field 'a' in the inline spec: {INLINE_HELP}"),
    ],
)
def test_inline_spec_errors_are_one_line(spec: str, expected: str) -> None:
    assert refused(spec) == expected


ACCEPTED = ("give a pydantic model or its name, a type such as list[str] or Literal['pos', 'neg'], a JSON "
            "schema dict, or an inline spec such as 'name: str, price: float?, label: pos|neg'")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (42, f"cannot make a schema from int 42: {ACCEPTED}"),
        (None, f"cannot make a schema from NoneType None: {ACCEPTED}"),
        (Price(amount=1, currency="EUR"),
         f"cannot make a schema from Price Price(amount=1.0, currency='EUR'): {ACCEPTED}"),
        ("", f"cannot read the schema '': {ACCEPTED}"),
        ("list[str", f"cannot read the schema 'list[str': {ACCEPTED}"),
        ("{not json", "the schema starts with '{' but is not JSON (Expecting property name enclosed in "
                      f"double quotes: line 1 column 2 (char 1)): {ACCEPTED}"),
        ("Prodct", "unknown name 'Prodct' in the schema 'Prodct': define it first, or use str, int, float, "
                   "bool, date, datetime, list[...], Literal[...]"),
        ("list[3]", "pydantic makes no JSON schema from list[3] (Unable to generate pydantic-core schema for "
                    f"3): {ACCEPTED}"),
    ],
)
def test_anything_else_is_refused_in_one_line_naming_what_was_received(spec: Any, expected: str) -> None:
    assert refused(spec) == expected


def test_a_name_holding_a_value_that_is_not_a_type_is_refused() -> None:
    assert refused("x", {"x": 3}) == f"'x' in the schema 'x' is 3, not a type: {ACCEPTED}"


def test_type_strings_never_call_anything() -> None:
    calls: list[str] = []

    def boom(*args: Any) -> type:
        calls.append("called")
        return int

    namespace = {"boom": boom, "Price": Price, "os": __import__("os")}
    for text in ["boom()", "list[boom()]", "__import__('os').system('true')", "Price.__subclasses__",
                 "os.system('true')", "(lambda: int)", "[int][0]", "str | 3", "int if True else str"]:
        message = refused(text, namespace)
        assert message.startswith(f"the schema {text!r} holds "), message
        assert message.endswith("may use names, attributes, subscripts, | and constants, never calls")
    assert refused("os.getcwd", namespace).startswith("'os.getcwd' is a builtin_function_or_method, not a")
    assert calls == []


def test_names_that_are_not_types_fall_back_to_the_builtin_types() -> None:
    # a notebook often holds a variable named date: the type string still means datetime.date
    schema = Schema.of("list[date]", {"date": "2024-01-01", "list": [1, 2]})
    assert schema.parse('{"value": ["2024-01-02"]}') == [dt.date(2024, 1, 2)]


def test_a_schema_is_accepted_as_its_own_spec() -> None:
    schema = Schema.of(Price)
    assert Schema.of(schema) is schema
    assert repr(schema) == "Schema(Price)"


# -- the wire schema -------------------------------------------------------------------------------

def test_every_object_gets_additional_properties_false_at_every_level() -> None:
    spec = {"type": "object", "additionalProperties": True, "properties": {
        "a": {"type": "object", "properties": {"b": {"type": "array", "items": {
            "type": "object",
            "properties": {"c": {"anyOf": [{"type": "object", "properties": {}}, {"type": "null"}]}},
        }}}},
    }, "$defs": {"D": {"type": "object", "properties": {"x": {"type": "integer"}}}}}
    found = objects(Schema.of(spec).wire["schema"])
    assert len(found) == 5
    assert all(o["additionalProperties"] is False for o in found)
    assert all(o["additionalProperties"] is False for o in objects(Schema.of(Product).wire["schema"]))


def test_refused_keywords_are_described_as_the_sdk_describes_them() -> None:
    spec = {"type": "integer", "minimum": 1, "maximum": 10, "description": "A number"}
    body = Schema.of(spec).wire["schema"]["properties"]["value"]
    assert body == {"type": "integer", "description": "A number\n\n{minimum: 1, maximum: 10}"}
    spec = {"type": "array", "items": {"type": "string", "maxLength": 5, "format": "color"}, "minItems": 2,
            "maxItems": 4, "uniqueItems": True}
    assert Schema.of(spec).wire["schema"]["properties"]["value"] == {
        "type": "array", "items": {"type": "string", "description": "{maxLength: 5, format: color}"},
        "description": "{minItems: 2, maxItems: 4, uniqueItems: true}"}


def test_supported_keywords_are_kept() -> None:
    properties: dict[str, Any] = {
        "a": {"type": "string", "format": "email", "default": "x@y.z",
              "pattern": "^[a-z]+@[a-z]+\\.[a-z]{2,3}$"},
        "b": {"const": "fixed"}, "c": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        "d": {"enum": [1, "two", None, True]}, "e": {"allOf": [{"type": "string"}, {"type": "string"}]},
    }
    spec = {"type": "object", "title": "T", "description": "d", "required": ["a"], "properties": properties}
    body = Schema.of(spec).wire["schema"]
    assert body["title"] == "T" and body["description"] == "d" and body["required"] == ["a"]
    assert body["properties"] == properties


@pytest.mark.parametrize(
    ("pattern", "simple"),
    [
        ("^\\d{3}-\\d{4}$", True),
        ("[A-Z][a-z]*\\s\\w+", True),
        ("^(ab)+\\.?$", True),
        ("a{1,50}", True),
        ("a{1,500}", False),
        ("cat|dog", False),
        ("(?=x)y", False),
        ("(a)\\1", False),
        ("\\bword\\b", False),
        ("(?:x)", False),
    ],
)
def test_simple_patterns_stay_and_others_are_moved(pattern: str, simple: bool) -> None:
    body = Schema.of({"type": "string", "pattern": pattern}).wire["schema"]["properties"]["value"]
    if simple:
        assert body == {"type": "string", "pattern": pattern}
    else:
        assert body == {"type": "string", "description": "{pattern: " + pattern + "}"}


@pytest.mark.parametrize(
    ("node", "good", "bad", "message"),
    [
        ({"type": "integer", "minimum": 1}, 1, 0, "0 is less than the minimum 1"),
        ({"type": "number", "maximum": 2.5}, 2.5, 3, "3 is more than the maximum 2.5"),
        ({"type": "number", "exclusiveMinimum": 0}, 0.1, 0, "0 is not more than the exclusive minimum 0"),
        ({"type": "integer", "exclusiveMaximum": 10}, 9, 10, "10 is not less than the exclusive maximum 10"),
        ({"type": "number", "multipleOf": 0.5}, 1.5, 1.2, "1.2 is not a multiple of 0.5"),
        ({"type": "string", "minLength": 2}, "ab", "a", "'a' is shorter than 2 characters"),
        ({"type": "string", "maxLength": 2}, "ab", "abc", "'abc' is longer than 2 characters"),
        ({"type": "string", "pattern": "^x+|y$"}, "xx", "z", "'z' does not match the pattern ^x+|y$"),
        ({"type": "array", "minItems": 2}, [1, 2], [1], "the list of 1 has fewer than 2 items"),
        ({"type": "array", "maxItems": 1}, [1], [1, 2], "the list of 2 has more than 1 items"),
        ({"type": "array", "uniqueItems": True}, [1, 2], [1, 1],
         "the list of 2 has repeated items (uniqueItems: True)"),
    ],
)
def test_moved_keywords_are_checked_on_the_answer(node: dict[str, Any], good: Any, bad: Any, message: str
                                                  ) -> None:
    schema = Schema.of({"type": "object", "properties": {"x": node}, "required": ["x"]})
    assert schema.parse(json.dumps({"x": good})) == {"x": good}
    error = invalid(schema, json.dumps({"x": bad}))
    assert str(error) == f"the answer does not match JSON schema: x: {message} (text in .raw)"


def test_pydantic_checks_its_own_constraints_after_the_move() -> None:
    schema = Schema.of(Price)
    assert "{minimum: 0}" in schema.wire["schema"]["properties"]["amount"]["description"]
    error = invalid(schema, '{"amount": -1, "currency": "EURO"}')
    assert str(error) == ("the answer does not match Price: amount: Input should be greater than or equal "
                          "to 0 (and 1 more) (text in .raw)")


def test_a_type_list_with_null_becomes_any_of() -> None:
    spec = {"type": "object", "required": ["s"], "properties": {
        "s": {"type": ["string", "null"], "maxLength": 3, "description": "short"},
        "n": {"type": ["integer"]},
    }}
    schema = Schema.of(spec)
    assert schema.wire["schema"]["properties"] == {
        "s": {"description": "short", "anyOf": [{"type": "string", "description": "{maxLength: 3}"},
                                                {"type": "null"}]},
        "n": {"type": "integer"},
    }
    assert schema.parse('{"s": null, "n": 1}') == {"s": None, "n": 1}
    assert schema.parse('{"s": "abc"}') == {"s": "abc"}
    assert str(invalid(schema, '{"s": "abcd"}')) == (
        "the answer does not match JSON schema: s: 'abcd' is longer than 3 characters (text in .raw)")
    assert "s: expected string or null, got 7" in str(invalid(schema, '{"s": 7}'))
    choices = Schema.of({"anyOf": [{"type": "string", "maxLength": 1}, {"type": "integer"}]})
    assert str(invalid(choices, '{"value": "ab"}')) == (
        "the answer does not match JSON schema: value: 'ab' matches none of 2 choices ('ab' is longer than 1 "
        "characters) (text in .raw)")


def test_one_of_becomes_any_of() -> None:
    schema = Schema.of({"oneOf": [{"type": "integer"}, {"type": "string"}]})
    assert schema.wire["schema"]["properties"]["value"] == {"anyOf": [{"type": "integer"},
                                                                      {"type": "string"}]}
    assert schema.parse('{"value": "x"}') == "x"


def test_a_map_is_sent_as_key_value_pairs_and_parsed_back() -> None:
    schema = Schema.of({"type": "object", "properties": {"m": {
        "type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}}, "required": ["m"]})
    assert schema.wire["schema"]["properties"]["m"] == {
        "type": "array", "description": "a map, as a list of {key, value} pairs with distinct keys",
        "items": {"type": "object", "required": ["key", "value"], "additionalProperties": False,
                  "properties": {"key": {"type": "string"},
                                 "value": {"type": "integer", "description": "{minimum: 0}"}}},
    }
    assert schema.parse('{"m": [{"key": "a", "value": 1}]}') == {"m": {"a": 1}}
    assert "m.a: -1 is less than the minimum 0" in str(invalid(schema, '{"m": [{"key": "a", "value": -1}]}'))
    assert "m: expected a map as a list of {key, value} pairs" in str(invalid(schema, '{"m": [1]}'))
    keyed = Schema.of(dict[Literal["a", "b"], int]).wire["schema"]["properties"]["value"]
    assert keyed["items"]["properties"]["key"] == {"enum": ["a", "b"]}


def test_the_schemas_definitions_stay_and_references_stay_local() -> None:
    body = Schema.of(list[Product]).wire["schema"]
    assert body["properties"]["value"] == {"type": "array", "items": {"$ref": "#/$defs/Product"}}
    assert set(body["$defs"]) == {"Color", "Price", "Product"}
    legacy = {"definitions": {"P": {"type": "object", "properties": {"a": {"type": "integer"}}}},
              "$ref": "#/definitions/P"}
    schema = Schema.of(legacy)
    assert not schema.wrapped and schema.wire["schema"]["properties"] == {"a": {"type": "integer"}}
    assert schema.parse('{"a": 1}') == {"a": 1}


@given(st.recursive(
    st.sampled_from([{"type": "string", "maxLength": 4}, {"type": ["integer", "null"], "minimum": 2},
                     {"type": "boolean"}, {"enum": ["a", "b"]}, {"type": "number", "multipleOf": 2}]),
    lambda inner: st.one_of(
        st.builds(lambda items: {"type": "array", "items": items, "minItems": 3, "maxItems": 5}, inner),
        st.dictionaries(st.sampled_from("abcdef"), inner, min_size=1, max_size=3).map(
            lambda props: {"type": "object", "properties": props, "minProperties": 1}),
        st.lists(inner, min_size=2, max_size=3).map(lambda options: {"oneOf": options}),
        inner.map(lambda value: {"type": "object", "additionalProperties": value}),
    ),
    max_leaves=8,
))
def test_any_schema_reaches_the_wire_in_the_apis_subset(spec: dict[str, Any]) -> None:
    try:
        body = Schema.of(spec).wire["schema"]
    except ConfigError as e:
        assert "too many" in str(e)  # a big random schema may pass the API's limits
        return
    assert all(o["additionalProperties"] is False for o in objects(body))
    assert not keywords(body) & REFUSED


# -- refused before any request --------------------------------------------------------------------

def optional_fields(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(n)}, "required": []}


def test_more_than_24_optional_properties_are_refused_before_any_request() -> None:
    assert MAX_OPTIONAL == 24
    Schema.of(optional_fields(24))
    assert refused(optional_fields(25)) == (
        "JSON schema contains too many optional parameters (25; limit: 24): make some required (no default "
        "in a model, no '?' inline)")
    inline = ", ".join(f"f{i}: int?" for i in range(25))
    assert refused(inline).startswith("inline spec contains too many optional parameters (25; limit: 24)")


def test_optional_properties_are_counted_over_the_whole_schema() -> None:
    inner = create_model("Inner", **{f"i{i}": (int, 0) for i in range(13)})  # type: ignore[call-overload]
    outer = create_model("Outer", inner=(inner, ...), **{f"o{i}": (int, 0) for i in range(12)})  # type: ignore
    assert refused(outer).startswith("Outer contains too many optional parameters (25; limit: 24)")


def test_more_than_16_union_properties_are_refused_before_any_request() -> None:
    assert MAX_UNIONS == 16
    fields = {f"f{i}": (int | None, ...) for i in range(16)}
    Schema.of(create_model("Sixteen", **fields))  # type: ignore[call-overload]
    seventeen = create_model("Seventeen", **fields, extra=(str | None, ...))  # type: ignore[call-overload]
    assert refused(seventeen) == ("Seventeen contains too many parameters with union types (17; limit: 16; "
                                  "Optional[X] counts): give some of them a single type")
    type_lists = {"type": "object", "required": [f"f{i}" for i in range(17)],
                  "properties": {f"f{i}": {"type": ["string", "null"]} for i in range(17)}}
    assert refused(type_lists).startswith("JSON schema contains too many parameters with union types (17;")


def test_a_recursive_model_is_refused_before_any_request() -> None:
    class Node(BaseModel):
        children: list[Node] = []

    assert refused(Node) == ("Node is recursive (Node -> Node): the API refuses recursive schemas; unroll it "
                             "to a fixed depth (a model per level)")
    assert refused(list[Node]).startswith("list[")


def test_a_cycle_through_several_definitions_or_the_root_is_refused() -> None:
    spec = {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {
        "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
        "B": {"type": "object", "properties": {"a": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]}}},
    }}
    assert refused(spec).startswith("JSON schema is recursive (A -> B -> A)")
    assert refused({"type": "object", "properties": {"me": {"$ref": "#"}}}).startswith(
        "JSON schema is recursive (the root -> the root)")


def test_a_reference_outside_the_schema_is_refused() -> None:
    assert refused({"type": "object", "properties": {"x": {"$ref": "https://example.com/x.json"}}}) == (
        "the $ref 'https://example.com/x.json' in JSON schema is not one of its definitions: the API accepts "
        "only local references such as '#/$defs/Name'")
    assert refused({"$ref": "#/$defs/Missing"}).startswith("the $ref '#/$defs/Missing' in JSON schema")


def test_what_the_api_cannot_express_is_refused_in_one_line() -> None:
    class Loose(BaseModel):
        anything: Any

    assert refused(Loose) == ("the schema at 'anything' has no type (Any?): the API needs a type, anyOf, "
                              "enum or const on every node")
    assert refused(dict).startswith("the object at the root has no properties, so the API allows only {}")
    assert refused({"enum": [{"a": 1}]}) == ("the enum at the root is [{'a': 1}]: the API accepts strings, "
                                             "numbers, booleans and null only")
    assert refused({"type": "strin"}) == ("unknown type 'strin' at the root: the API accepts object, array, "
                                          "string, integer, number, boolean, null")


# -- answers ---------------------------------------------------------------------------------------

def test_enum_and_const_values_match_case_insensitively_in_the_schemas_spelling() -> None:
    spec = {"type": "object", "properties": {"e": {"enum": ["Yes", "no", 1]}, "c": {"const": "OK"}}}
    schema = Schema.of(spec)
    assert schema.parse('{"e": "YES", "c": "ok"}') == {"e": "Yes", "c": "OK"}
    assert schema.parse('{"e": 1}') == {"e": 1}
    assert "e: True is not one of 'Yes', 'no', 1" in str(invalid(schema, '{"e": true}'))
    assert Schema.of(Color).parse('{"value": "gReEn"}') is Color.GREEN
    assert Schema.of(Color | None).parse('{"value": "RED"}') is Color.RED


@given(st.sampled_from(["positive", "negative", "Mixed Feelings"]), st.randoms(use_true_random=False))
def test_any_capitalization_of_an_enum_value_parses(value: str, random: Any) -> None:
    answer = "".join(c.upper() if random.random() < 0.5 else c.lower() for c in value)
    inline = Schema.of("label: positive|negative|Mixed Feelings")
    typed = Schema.of(Literal["positive", "negative", "Mixed Feelings"])
    assert inline.parse(json.dumps({"label": answer})) == {"label": value}
    assert typed.parse(json.dumps({"value": answer})) == value


def test_an_answer_that_is_not_json_keeps_the_raw_text() -> None:
    error = invalid(Schema.of(Price), '{"amount": 1, "curr')
    assert isinstance(error, ClaudeError) and error.raw == '{"amount": 1, "curr'
    assert str(error).startswith("the answer is not JSON (Unterminated string starting at: line 1 column 15 "
                                 "(char 14)): cut short by max_tokens (raise it), or a refusal?")


def test_an_answer_that_does_not_match_names_the_first_error_and_keeps_the_raw_text() -> None:
    text = json.dumps({**PRODUCT, "price": {"amount": "cheap", "currency": "EUR"}})
    error = invalid(Schema.of(Product), text)
    assert error.raw == text
    assert str(error) == ("the answer does not match Product: price.amount: Input should be a valid number, "
                          "unable to parse string as a number (text in .raw)")
    assert pickle.loads(pickle.dumps(error)).raw == text


def test_a_wrapped_answer_reports_locations_inside_value() -> None:
    schema = Schema.of(list[int])
    assert str(invalid(schema, '{"value": [1, "x"]}')) == (
        "the answer does not match list[int]: value[1]: Input should be a valid integer, unable to parse "
        "string as an integer (text in .raw)")
    assert str(invalid(schema, "[1, 2]")) == ("the answer does not match list[int]: top level: expected an "
                                              "object with 'value', got [1, 2] (text in .raw)")


def test_a_dict_schema_refuses_unexpected_and_missing_properties() -> None:
    schema = Schema.of({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                        "required": ["a"]})
    assert str(invalid(schema, '{"a": "x", "z": 1}')) == (
        "the answer does not match JSON schema: top level: unexpected property 'z' (allowed: a, b) "
        "(text in .raw)")
    assert str(invalid(schema, '{"b": "x"}')) == (
        "the answer does not match JSON schema: top level: missing required property 'a' (text in .raw)")


def test_a_model_with_optional_nested_list_date_literal_and_enum_fields_round_trips() -> None:
    schema = Schema.of(Product)
    product = Product(name="Desk", price=Price(amount=99, currency="GBP"), tags=["a", "b"], seen=None,
                      released=dt.date(2023, 12, 31), label="used", color=Color.GREEN, stock={"x": 1})
    answer = json.loads(product.model_dump_json())
    answer["stock"] = [{"key": k, "value": v} for k, v in answer["stock"].items()]
    assert schema.parse(json.dumps(answer)) == product
    del answer["note"], answer["seen"], answer["tags"]
    assert schema.parse(json.dumps(answer)) == product.model_copy(update={"tags": []})


identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
inline_types = st.sampled_from([
    ("str", st.text(max_size=5), lambda v: v),
    ("int", st.integers(-5, 5), lambda v: v),
    ("float", st.integers(-5, 5) | st.floats(-1e6, 1e6), float),
    ("bool", st.booleans(), lambda v: v),
    ("date", st.dates(), dt.date.isoformat),
    ("list[int]", st.lists(st.integers(), max_size=3), lambda v: v),
    ("a|B|c", st.sampled_from(["a", "B", "c"]), lambda v: v),
])


@given(st.lists(st.tuples(identifiers, inline_types, st.booleans()), min_size=1, max_size=6,
                unique_by=lambda field: field[0]), st.data())
def test_any_inline_spec_parses_its_own_answers(fields: list[Any], data: Any) -> None:
    spec = ", ".join(f"{name}: {kind}{'?' if optional else ''}" for name, (kind, _, _), optional in fields)
    schema = Schema.of(spec)
    answer, expected = {}, {}
    for name, (kind, values, _), optional in fields:
        if optional and data.draw(st.booleans()):
            continue
        value = data.draw(values)
        expected[name] = value
        answer[name] = value.isoformat() if kind == "date" else value
    parsed = schema.parse(json.dumps(answer))
    assert parsed == expected
    floats = [name for name, (kind, _, _), _ in fields if kind == "float" and name in parsed]
    assert all(type(parsed[name]) is float for name in floats)


# -- columns, keys, names --------------------------------------------------------------------------

def test_fields_describe_the_top_level_properties_for_columns() -> None:
    assert Schema.of(Product).fields == [
        Column("name", "str", True), Column("price", "object", True),
        Column("note", "str", False, nullable=True), Column("tags", "object", False),
        Column("released", "date", True), Column("seen", "datetime", False, nullable=True),
        Column("label", "enum", True, values=("new", "used")),
        Column("color", "enum", True, values=("red", "green")), Column("stock", "object", False),
    ]
    assert Schema.of("n: int, x: float?, ok: bool, s: pos|neg").fields == [
        Column("n", "int", True), Column("x", "float", False), Column("ok", "bool", True),
        Column("s", "enum", True, values=("pos", "neg")),
    ]


def test_a_wrapped_root_has_one_field_named_value() -> None:
    assert Schema.of(Literal["a", "b"]).fields == [Column("value", "enum", True, values=("a", "b"))]
    assert Schema.of(dt.datetime | None).fields == [Column("value", "datetime", True, nullable=True)]
    assert Schema.of(list[str]).fields == [Column("value", "object", True)]


def test_the_key_is_canonical_json_of_the_wire_schema() -> None:
    a = Schema.of({"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "string"}}})
    b = Schema.of({"properties": {"y": {"type": "string"}, "x": {"type": "integer"}}, "type": "object"})
    assert a.key == b.key == json.dumps(a.wire, sort_keys=True, separators=(",", ":"))
    assert " " not in a.key and a.key != Schema.of("x: int, y: str").key


@pytest.mark.parametrize(
    ("spec", "name"),
    [(Product, "Product"), ("a: int", "inline spec"), (list[str], "list[str]"), ("list[str]", "list[str]"),
     ({"type": "integer"}, "JSON schema"), (Literal["pos", "neg"], "Literal['pos', 'neg']"), (int, "int")],
)
def test_names_label_the_spec_for_messages(spec: Any, name: str) -> None:
    assert Schema.of(spec).name == name


def test_importing_the_module_leaves_pydantic_unimported() -> None:
    code = ("import sys, claude_magic.schema as s; s.Schema.of('a: int').parse('{\"a\": 1}'); "
            "print('pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
