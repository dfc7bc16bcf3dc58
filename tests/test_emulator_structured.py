"""Structured outputs in the emulator: ``output_config.format`` answers, refusals, faults, token
counts, batches and models, on the wire with plain httpx and through the official SDK.

Answers are checked by ``jsonschema`` (it comes with nbformat, a test dependency), string formats by
the standard library, never by the emulator's own checker.
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import json
import random
import re
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import anthropic
import httpx
import jsonschema
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_magic.emulator import Emulator, caching, pattern, structured, tokens
from claude_magic.emulator.faults import REFUSAL_TEXT
from claude_magic.emulator.models import MODEL_LIST

HEADERS = {"x-api-key": "sk-test", "anthropic-version": "2026-10-21"}
MODEL = "claude-sonnet-4-6"  # supports structured outputs and does not always think
SCHEMA_AT = "output_config.format.schema: "
NO_ADDITIONAL = SCHEMA_AT + "For 'object' type, 'additionalProperties' must be explicitly set to false"


def obj(required: dict[str, Any] | None = None, optional: dict[str, Any] | None = None, **extra: Any) -> dict:
    """An object schema as the API wants it: ``additionalProperties: false``."""
    props = {**(required or {}), **(optional or {})}
    return {
        "type": "object",
        "properties": props,
        "required": list(required or {}),
        "additionalProperties": False,
        **extra,
    }


PERSON = obj(
    {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "score": {"type": "number"},
        "active": {"type": "boolean"},
        "nothing": {"type": "null"},
    },
    {
        "nickname": {"type": "string"},
        "height": {"type": "number"},
        "email": {"type": "string", "format": "email"},
        "born": {"type": "string", "format": "date"},
        "code": {"type": "string", "pattern": r"^[A-Z]{3}-\d{2,4}$"},
    },
)
SCHEMAS = {
    "flat object, every type": PERSON,
    "enum and const": obj(
        {
            "label": {"enum": ["positive", "negative", "neutral"]},
            "version": {"const": 2},
            "level": {"type": "integer", "enum": [1, 2, 3]},
        }
    ),
    "nested $defs and $ref": {
        **obj(
            {
                "owner": {"$ref": "#/$defs/Person"},
                "pets": {"type": "array", "items": {"$ref": "#/$defs/Pet"}, "minItems": 1},
            }
        ),
        "$defs": {
            "Person": obj({"name": {"type": "string"}}),
            "Pet": obj({"kind": {"enum": ["cat", "dog"]}}, {"age": {"type": "integer"}}),
        },
    },
    "definitions and a pointer": {
        **obj({"a": {"$ref": "#/definitions/Item"}, "b": {"$ref": "#/definitions/Item/properties/id"}}),
        "definitions": {"Item": obj({"id": {"type": "string", "format": "uuid"}})},
    },
    "anyOf and type arrays": obj(
        {
            "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "either": {"type": ["integer", "string"]},
            "shape": {
                "anyOf": [
                    obj({"r": {"type": "number"}}),
                    obj({"w": {"type": "number"}, "h": {"type": "number"}}),
                ]
            },
        }
    ),
    "array at the root": {"type": "array", "items": obj({"id": {"type": "integer"}}), "minItems": 0},
    "string at the root": {"type": "string", "format": "date-time"},
    "every string format": obj({f: {"type": "string", "format": f} for f in structured.STRING_FORMATS}),
    "allOf": {"allOf": [obj({"x": {"type": "integer"}})]},
    "descriptions and defaults pass": obj(
        {"n": {"type": "integer", "description": "{minimum: 1}", "default": 3, "title": "N"}}
    ),
}


def validate(value: Any, schema: dict) -> None:
    """``value`` fits ``schema``: jsonschema for the structure, the standard library for formats."""
    checker = jsonschema.FormatChecker()
    for name, check in FORMATS.items():
        checker.checks(name, raises=(ValueError,))(check)
    jsonschema.Draft202012Validator(schema, format_checker=checker).validate(value)


def _parses(parse: Any) -> Any:
    def check(value: object) -> bool:
        if isinstance(value, str):
            parse(value)
        return True

    return check


FORMATS = {
    "date-time": _parses(lambda v: datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))),
    "date": _parses(datetime.date.fromisoformat),
    "time": _parses(lambda v: datetime.time.fromisoformat(v.replace("Z", "+00:00"))),
    "duration": _parses(lambda v: re.fullmatch(r"P(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?", v) or int("x")),
    "email": _parses(lambda v: re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", v) or int("x")),
    "hostname": _parses(lambda v: re.fullmatch(r"([a-z0-9-]+\.)+[a-z]+", v) or int("x")),
    "uri": _parses(lambda v: re.fullmatch(r"https?://[^\s/]+(/\S*)?", v) or int("x")),
    "ipv4": _parses(ipaddress.IPv4Address),
    "ipv6": _parses(ipaddress.IPv6Address),
    "uuid": _parses(uuid.UUID),
}


def request(schema: dict, prompt: str = "Describe a customer", model: str = MODEL, **extra: Any) -> dict:
    return {
        "model": model,
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": prompt}],
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
        **extra,
    }


def text_of(message: dict) -> str:
    texts = [b["text"] for b in message["content"] if b["type"] == "text"]
    assert len(texts) == 1, message["content"]
    return texts[0]


def sse(raw: str) -> list[tuple[str, dict]]:
    events = []
    for chunk in filter(str.strip, raw.split("\n\n")):
        lines = dict(line.split(": ", 1) for line in chunk.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def error_message(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return str(error["message"])


@pytest.fixture(scope="module")
def _client(_claude_emulator_server: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=_claude_emulator_server.url, headers=HEADERS, timeout=10) as client:
        yield client


@pytest.fixture
def http(claude_emulator: Emulator, _client: httpx.Client) -> httpx.Client:
    return _client


def create(http: httpx.Client, payload: dict, **kw: Any) -> dict:
    response = http.post("/v1/messages", json=payload, **kw)
    assert response.status_code == 200, response.text
    return dict(response.json())


def stream(http: httpx.Client, payload: dict, **kw: Any) -> list[tuple[str, dict]]:
    with http.stream("POST", "/v1/messages", json={**payload, "stream": True}, **kw) as response:
        assert response.status_code == 200
        return sse(response.read().decode())


# -- answers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
def test_the_answer_is_one_text_block_of_json_that_fits_the_schema(http, schema):
    for prompt in ("Describe a customer", "Another one, please", "数据 🙂"):
        message = create(http, request(schema, prompt))
        assert message["stop_reason"] == "end_turn" and message["stop_details"] is None
        validate(json.loads(text_of(message)), schema)


def test_always_thinking_models_think_first_then_answer_json(http):
    message = create(http, request(PERSON, model="claude-opus-5-5"))
    assert [b["type"] for b in message["content"]] == ["thinking", "text"]
    validate(json.loads(text_of(message)), PERSON)


def test_the_same_request_gets_the_same_json_and_another_prompt_other_json(http):
    first = text_of(create(http, request(PERSON, "Alice")))
    assert text_of(create(http, request(PERSON, "Alice"))) == first
    assert text_of(create(http, request(PERSON, "Bob"))) != first


def test_required_properties_come_first_then_some_optional_ones(http):
    optional = [k for k in PERSON["properties"] if k not in PERSON["required"]]
    present = {k: 0 for k in optional}
    for i in range(12):
        keys = list(json.loads(text_of(create(http, request(PERSON, f"customer {i}")))))
        assert keys[:5] == PERSON["required"] and keys[5:] == [k for k in optional if k in keys]
        for key in keys[5:]:
            present[key] += 1
    assert all(0 < n < 12 for n in present.values()), present  # each in some answers, not in all


def test_string_enums_follow_the_prompt_as_free_text_options_do(http):
    schema = obj({"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]}})
    assert json.loads(text_of(create(http, request(schema, "I loved it, great product!")))) == {
        "sentiment": "positive"
    }
    assert json.loads(text_of(create(http, request(schema, "Terrible, it broke, I want a refund")))) == {
        "sentiment": "negative"
    }


def test_reply_with_exactly_a_fitting_json_gives_that_json_and_other_json_is_ignored(http):
    schema = obj({"city": {"type": "string"}, "rank": {"type": "integer"}})
    wanted = {"city": "Oslo", "rank": 3}
    answer = text_of(create(http, request(schema, f"Reply with exactly: {json.dumps(wanted)}")))
    assert json.loads(answer) == wanted
    misfit = json.loads(text_of(create(http, request(schema, 'Reply with exactly: {"city": 1, "rank": 3}'))))
    validate(misfit, schema)
    assert misfit["city"] != 1


def test_usage_counts_the_json_and_input_adds_the_injected_system_prompt_and_schema(http):
    plain = {"model": MODEL, "messages": [{"role": "user", "content": "Describe a customer"}]}
    without = http.post("/v1/messages/count_tokens", json=plain).json()["input_tokens"]
    message = create(http, request(PERSON))
    usage = message["usage"]
    assert usage["output_tokens"] == tokens.count(text_of(message))
    assert usage["input_tokens"] == without + structured.FORMAT_SYSTEM_TOKENS + tokens.count_json(PERSON)
    counted = http.post(
        "/v1/messages/count_tokens", json={**plain, "output_config": request(PERSON)["output_config"]}
    )
    assert counted.json() == {"input_tokens": usage["input_tokens"]}


def test_count_tokens_checks_the_format_shape_but_does_not_compile_the_schema(http):
    plain = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    loose = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 1}}}
    counted = http.post("/v1/messages/count_tokens", json={**plain, **_format(loose)})
    assert counted.status_code == 200
    assert counted.json()["input_tokens"] == (
        http.post("/v1/messages/count_tokens", json=plain).json()["input_tokens"]
        + structured.FORMAT_SYSTEM_TOKENS
        + tokens.count_json(loose)
    )
    wrong = {**plain, "output_config": {"format": {"type": "json_object", "schema": loose}}}
    assert error_message(http.post("/v1/messages/count_tokens", json=wrong)) == (
        "output_config.format.type: Input should be 'json_schema', got 'json_object'"
    )


def test_a_new_format_misses_the_prompt_cache(http):
    system = [{"type": "text", "text": "Context. " * 700, "cache_control": {"type": "ephemeral"}}]
    first = create(http, request(PERSON, system=system))["usage"]
    again = create(http, request(PERSON, system=system))["usage"]
    other = create(http, request(obj({"x": {"type": "integer"}}), system=system))["usage"]
    assert first["cache_read_input_tokens"] == 0 and first["cache_creation_input_tokens"] > 0
    assert again["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert other["cache_read_input_tokens"] == 0 and other["cache_creation_input_tokens"] > 0


def test_max_tokens_cuts_the_json_as_it_cuts_text(http):
    full = text_of(create(http, request(PERSON)))
    cut = create(http, request(PERSON, max_tokens=7))
    assert cut["stop_reason"] == "max_tokens" and cut["usage"]["output_tokens"] == 7
    assert full.startswith(text_of(cut)) and text_of(cut) == tokens.cut(full, 7)


# -- streaming and batches ------------------------------------------------------------------------------


def test_a_stream_delivers_the_same_json_in_text_deltas(http):
    payload = request(SCHEMAS["nested $defs and $ref"])
    message = create(http, payload)
    events = stream(http, payload)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert len(deltas) > 3 and {d["type"] for d in deltas} == {"text_delta"}
    assert "".join(d["text"] for d in deltas) == text_of(message)
    final = dict(events)["message_delta"]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"]["output_tokens"] == message["usage"]["output_tokens"]
    assert final["usage"]["input_tokens"] == message["usage"]["input_tokens"]


def test_batches_carry_structured_answers_and_per_request_errors(claude_emulator, http, batch_clock):
    good = request(PERSON, "Alice")
    requests = [
        {"custom_id": "good", "params": good},
        {"custom_id": "loose", "params": request({"type": "object", "properties": {}}, "Bob")},
        {
            "custom_id": "legacy",
            "params": {
                **request(PERSON),
                "output_config": None,
                "output_format": _format(PERSON)["output_config"]["format"],
            },
        },
    ]
    batch = http.post(
        "/v1/messages/batches",
        json={"requests": requests},
        headers={"anthropic-beta": "files-api-2025-04-14, structured-outputs-2025-11-13"},
    ).json()
    batch_clock.now += claude_emulator.knobs["batch_duration"]
    done = http.get(f"/v1/messages/batches/{batch['id']}").json()
    assert done["request_counts"]["succeeded"] == 2 and done["request_counts"]["errored"] == 1
    lines = http.get(done["results_url"]).text.splitlines()
    results = {r["custom_id"]: r["result"] for r in map(json.loads, lines)}
    assert text_of(results["good"]["message"]) == text_of(create(http, good))
    assert results["loose"]["error"]["error"]["message"] == NO_ADDITIONAL
    validate(json.loads(text_of(results["legacy"]["message"])), PERSON)


# -- refusals: what the API answers 400 --------------------------------------------------------------


def _format(schema: dict) -> dict:
    return {"output_config": {"format": {"type": "json_schema", "schema": schema}}}


def _with(**extra: Any) -> dict:
    return obj({"n": {"type": "integer", **extra}})


UNSUPPORTED = [
    ({"type": "object", "properties": {"a": {"type": "string"}}}, NO_ADDITIONAL),
    (obj({"inner": {"type": "object", "properties": {}, "additionalProperties": True}}), NO_ADDITIONAL),
    ({"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}, NO_ADDITIONAL),
    (_with(minimum=0), SCHEMA_AT + "For 'integer' type, property 'minimum' is not supported"),
    (_with(maximum=9), SCHEMA_AT + "For 'integer' type, property 'maximum' is not supported"),
    (
        _with(exclusiveMinimum=0),
        SCHEMA_AT + "For 'integer' type, property 'exclusiveMinimum' is not supported",
    ),
    (
        _with(exclusiveMaximum=9),
        SCHEMA_AT + "For 'integer' type, property 'exclusiveMaximum' is not supported",
    ),
    (_with(multipleOf=2), SCHEMA_AT + "For 'integer' type, property 'multipleOf' is not supported"),
    (
        obj({"x": {"type": "number", "minimum": 0.5}}),
        SCHEMA_AT + "For 'number' type, property 'minimum' is not supported",
    ),
    (
        obj({"s": {"type": "string", "minLength": 1}}),
        SCHEMA_AT + "For 'string' type, property 'minLength' is not supported",
    ),
    (
        obj({"s": {"type": "string", "maxLength": 9}}),
        SCHEMA_AT + "For 'string' type, property 'maxLength' is not supported",
    ),
    (
        obj({"l": {"type": "array", "items": {"type": "string"}, "maxItems": 3}}),
        SCHEMA_AT + "For 'array' type, property 'maxItems' is not supported",
    ),
    (
        obj({"l": {"type": "array", "items": {"type": "string"}, "minItems": 2}}),
        SCHEMA_AT + "For 'array' type, property 'minItems' with value 2 is not supported (only 0 or 1)",
    ),
    (
        {
            **obj({"root": {"$ref": "#/$defs/Node"}}),
            "$defs": {"Node": obj({"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}})},
        },
        SCHEMA_AT + "Recursive schemas are not supported: '#/$defs/Node' refers to itself",
    ),
    (obj({"me": {"$ref": "#"}}), SCHEMA_AT + "Recursive schemas are not supported: '#' refers to itself"),
    (
        obj({"a": {"$ref": "https://example.com/a.json"}}),
        SCHEMA_AT + "only local $ref ('#/$defs/...') is supported, got 'https://example.com/a.json'",
    ),
    (
        obj({"a": {"$ref": "#/$defs/Missing"}}),
        SCHEMA_AT + "$ref '#/$defs/Missing' does not resolve to a schema in this document",
    ),
    (
        obj({"a": {"enum": [{"x": 1}]}}),
        SCHEMA_AT + "'enum' must be a non-empty list of strings, numbers, "
        "booleans or null (complex enums are not supported)",
    ),
    (
        obj({"a": {"type": "string", "format": "phone"}}),
        SCHEMA_AT
        + "For 'string' type, format 'phone' is not supported; use one of "
        + ", ".join(structured.STRING_FORMATS),
    ),
    (
        obj({"a": {"type": "string", "pattern": r"(a)\1"}}),
        SCHEMA_AT
        + "For 'string' type, pattern is not supported: backreferences are not supported at position 5 "
        r"of '(a)\\1'",
    ),
    (
        obj({"a": {"type": "date"}}),
        SCHEMA_AT + "Type 'date' is not supported; use one of object, array, string, "
        "integer, number, boolean, null",
    ),
    (
        {**obj({"a": {"type": "string"}}), "required": ["b"]},
        SCHEMA_AT + "required property 'b' is not defined in 'properties'",
    ),
]


UNSUPPORTED_IDS = [
    "no additionalProperties",
    "additionalProperties true",
    "additionalProperties schema",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "number minimum",
    "minLength",
    "maxLength",
    "maxItems",
    "minItems 2",
    "recursion through $defs",
    "recursion to #",
    "external $ref",
    "unresolved $ref",
    "complex enum",
    "unknown string format",
    "backreference",
    "unknown type",
    "required but undefined",
]


@pytest.mark.parametrize(("schema", "message"), UNSUPPORTED, ids=UNSUPPORTED_IDS)
def test_schemas_outside_the_supported_subset_get_the_apis_400(http, schema, message):
    assert error_message(http.post("/v1/messages", json=request(schema))) == message
    assert error_message(http.post("/v1/messages", json={**request(schema), "stream": True})) == message


def test_too_many_optional_properties(http):
    at_limit = obj({"id": {"type": "string"}}, {f"o{i}": {"type": "string"} for i in range(24)})
    assert http.post("/v1/messages", json=request(at_limit)).status_code == 200
    over = obj({}, {f"o{i}": {"type": "string"} for i in range(25)})
    assert error_message(http.post("/v1/messages", json=request(over))) == (
        "Schemas contains too many optional parameters (25), which would make grammar compilation "
        "inefficient. Reduce the number of optional parameters in your tool schemas or output format "
        "(limit: 24)."
    )


def test_too_many_union_typed_properties_counting_strict_tools_too(http):
    unions = {f"u{i}": {"type": ["string", "null"]} for i in range(10)}
    tool = {
        "name": "lookup",
        "description": "d",
        "strict": True,
        "input_schema": obj(
            {f"v{i}": {"anyOf": [{"type": "string"}, {"type": "integer"}]} for i in range(7)}
        ),
    }
    assert http.post("/v1/messages", json=request(obj(unions))).status_code == 200
    assert error_message(http.post("/v1/messages", json=request(obj(unions), tools=[tool]))) == (
        "Schemas contains too many parameters with union types (17 parameters with type arrays or anyOf) "
        "which exceeds the limit: 16. Reduce the number of parameters with union types in your tool schemas "
        "or output format."
    )


def test_strict_tools_are_checked_and_counted(http):
    loose = {"name": "t", "strict": True, "input_schema": {"type": "object", "properties": {}}}
    plain = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    assert error_message(http.post("/v1/messages", json={**plain, "tools": [loose]})) == (
        "tools.0.input_schema: For 'object' type, 'additionalProperties' must be explicitly set to false"
    )
    tools = [{"name": f"t{i}", "strict": True, "input_schema": obj()} for i in range(21)]
    assert error_message(http.post("/v1/messages", json={**plain, "tools": tools})) == (
        "Too many strict tools (21). The maximum number of strict tools supported is 20. Try reducing the "
        "number of tools marked as strict."
    )
    assert http.post("/v1/messages", json={**plain, "tools": tools[:20]}).status_code == 200


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"output_config": {"format": {"type": "json_object", "schema": PERSON}}},
            "output_config.format.type: Input should be 'json_schema', got 'json_object'",
        ),
        ({"output_config": {"format": {"schema": PERSON}}}, "output_config.format.type: Field required"),
        (
            {"output_config": {"format": {"type": "json_schema"}}},
            "output_config.format.schema: Field required",
        ),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": "{}"}}},
            "output_config.format.schema: Input should be a valid dictionary, got '{}'",
        ),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": PERSON}, "effort": "huge"}},
            "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max', got 'huge'",
        ),
        (
            {"output_config": None, "output_format": {"type": "json_schema", "schema": PERSON}},
            "output_format: Extra inputs are not permitted. output_format is deprecated: use "
            "output_config.format, or send anthropic-beta: structured-outputs-2025-11-13",
        ),
        (
            {"max_tokens": 0},
            "max_tokens: must be at least 1 with output_config.format; max_tokens 0 (prompt cache "
            "pre-warming) cannot be combined with structured outputs",
        ),
        (
            {"model": "claude-sonnet-4-0"},
            "output_config.format: model 'claude-sonnet-4-0' does not support structured outputs; use a "
            "model whose capabilities.structured_outputs.supported is true in GET /v1/models",
        ),
        (
            {"model": "claude-sonnet-5-5"},
            "output_config.format: model 'claude-sonnet-5-5' does not support structured outputs; use a "
            "model whose capabilities.structured_outputs.supported is true in GET /v1/models",
        ),
        (
            {
                "model": "claude-sonnet-4-5",
                "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": '{"name":'}],
            },
            "Structured outputs (output_config.format) cannot be combined with assistant message prefill. "
            "The conversation must end with a user message.",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "source": {"type": "text", "media_type": "text/plain", "data": "doc"},
                                "citations": {"enabled": True},
                            },
                            {"type": "text", "text": "summarise"},
                        ],
                    }
                ]
            },
            "messages.0.content.0.citations: citations cannot be enabled with structured outputs "
            "(output_config.format); turn citations off or remove the format",
        ),
    ],
    ids=[
        "format type",
        "no type",
        "no schema",
        "schema string",
        "effort",
        "legacy output_format",
        "max_tokens 0",
        "Sonnet 4",
        "Sonnet 5.5",
        "prefill",
        "citations",
    ],
)
def test_requests_the_api_refuses_with_a_format(http, change, message):
    payload = {**request(PERSON), **change}
    assert error_message(http.post("/v1/messages", json=payload)) == message


def test_the_legacy_output_format_works_with_its_beta_header_alone(http):
    legacy = {
        **request(PERSON),
        "output_config": None,
        "output_format": _format(PERSON)["output_config"]["format"],
    }
    beta = {"anthropic-beta": "structured-outputs-2025-11-13"}
    answer = create(http, legacy, headers=beta)
    assert text_of(answer) == text_of(create(http, request(PERSON)))
    both = {**legacy, **_format(PERSON)}
    assert error_message(http.post("/v1/messages", json=both, headers=beta)) == (
        "output_format and output_config.format cannot both be set: use output_config.format only "
        "(output_format is deprecated)"
    )
    assert error_message(http.post("/v1/messages", json=_legacy_bad(legacy), headers=beta)) == (
        "output_format.schema: For 'object' type, 'additionalProperties' must be explicitly set to false"
    )


def _legacy_bad(legacy: dict) -> dict:
    bad = copy.deepcopy(legacy)
    del bad["output_format"]["schema"]["additionalProperties"]
    return bad


# -- faults -----------------------------------------------------------------------------------------


def test_fault_truncate_json_cuts_the_answer_with_stop_reason_max_tokens(claude_emulator, http):
    full = text_of(create(http, request(PERSON)))
    for kw in ({"headers": {"x-emulator-fault": "truncate-json"}}, {}):
        if not kw:
            claude_emulator.inject("truncate-json")
        cut = create(http, request(PERSON), **kw)
        assert cut["stop_reason"] == "max_tokens" and cut["stop_details"] is None
        text = text_of(cut)
        assert full.startswith(text) and 0 < len(text) < len(full)
        assert cut["usage"]["output_tokens"] == tokens.count(text)
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    events = stream(http, request(PERSON), headers={"x-emulator-fault": "truncate-json"})
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == text
    assert dict(events)["message_delta"]["delta"]["stop_reason"] == "max_tokens"
    assert [n for n, _ in events][-1] == "message_stop"


def test_fault_refusal_answers_200_with_stop_details_and_a_short_text(http):
    refused = create(http, request(PERSON, model="claude-opus-5-5"), headers={"x-emulator-fault": "refusal"})
    assert refused["stop_reason"] == "refusal"
    assert (
        refused["stop_details"]["type"] == "refusal"
        and refused["stop_details"]["category"] == "general_harms"
    )
    assert refused["stop_details"]["explanation"]
    assert [b["type"] for b in refused["content"]] == ["thinking", "text"]
    assert text_of(refused) == REFUSAL_TEXT
    with pytest.raises(json.JSONDecodeError):
        json.loads(REFUSAL_TEXT)
    thought = refused["content"][0]["thinking"]
    assert refused["usage"]["output_tokens"] == tokens.count(thought) + tokens.count(REFUSAL_TEXT)
    events = stream(http, request(PERSON), headers={"x-emulator-fault": "refusal"})
    assert dict(events)["message_delta"]["delta"] == {
        "stop_reason": "refusal",
        "stop_sequence": None,
        "stop_details": refused["stop_details"],
    }
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == REFUSAL_TEXT


# -- models -----------------------------------------------------------------------------------------


def test_models_say_which_support_structured_outputs_and_the_emulator_agrees(http):
    listed = http.get("/v1/models", params={"limit": 1000}).json()["data"]
    assert [m["id"] for m in listed] == [m.id for m in MODEL_LIST]
    supported = {m["id"]: m["capabilities"]["structured_outputs"]["supported"] for m in listed}
    assert not supported["claude-sonnet-4-20250514"] and not supported["claude-opus-4-20250514"]
    assert supported["claude-opus-5-5"] and supported["claude-haiku-4-5-20251001"]
    assert http.get("/v1/models/claude-opus-4-0").json()["capabilities"]["structured_outputs"] == {
        "supported": False
    }
    for model_id, ok in supported.items():
        response = http.post("/v1/messages", json=request(obj({"a": {"type": "integer"}}), model=model_id))
        assert (response.status_code == 200) is ok, (model_id, response.text)


def test_model_capabilities_reflect_the_thinking_rules(http):
    opus = http.get("/v1/models/claude-opus-5-5").json()["capabilities"]
    assert opus["thinking"]["types"]["disabled"] == {"supported": False}  # always thinks
    sonnet = http.get("/v1/models/claude-sonnet-5").json()["capabilities"]
    assert sonnet["thinking"]["types"]["enabled"] == {"supported": False}  # adaptive only


# -- the official SDK -------------------------------------------------------------------------------


class Review(pydantic.BaseModel):
    # the bounds the API refuses the SDK moves into descriptions: the emulated model keeps to them
    sentiment: Literal["positive", "negative", "neutral"]
    stars: int = pydantic.Field(ge=1, le=5)
    confidence: float = pydantic.Field(gt=0, lt=1)
    headline: str = pydantic.Field(min_length=12, max_length=15)
    reviewer: Reviewer | None = None
    topics: list[str] = pydantic.Field(default=[], min_length=2, max_length=4)


class Reviewer(pydantic.BaseModel):
    name: str
    email: str = pydantic.Field(json_schema_extra={"format": "email"})


Review.model_rebuild()


@pytest.fixture
def sdk(claude_emulator: Emulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=claude_emulator.url, api_key="x", max_retries=0) as client:
        yield client


def test_the_sdk_sends_output_config_and_reads_the_json(sdk, http):
    schema = SCHEMAS["nested $defs and $ref"]
    message = sdk.messages.create(
        model=MODEL,
        max_tokens=500,
        messages=[{"role": "user", "content": "hi"}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"
    validate(json.loads(message.content[0].text), schema)
    assert message.content[0].text == text_of(create(http, request(schema, "hi")))
    with sdk.messages.stream(
        model=MODEL,
        max_tokens=500,
        messages=[{"role": "user", "content": "hi"}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
    ) as streamed:
        assert streamed.get_final_text() == message.content[0].text


def test_the_sdk_parse_helper_gets_typed_answers_within_the_described_bounds(sdk):
    for prompt in ["Loved it, works great!", *(f"review {i}" for i in range(15))]:
        parsed = sdk.messages.parse(
            model="claude-opus-5-5",
            max_tokens=500,
            output_format=Review,
            messages=[{"role": "user", "content": prompt}],
        )
        assert isinstance(parsed.parsed_output, Review)  # parse raises ValidationError otherwise
    first = sdk.messages.parse(
        model="claude-opus-5-5",
        max_tokens=500,
        output_format=Review,
        messages=[{"role": "user", "content": "Loved it, works great!"}],
    )
    assert first.parsed_output is not None and first.parsed_output.sentiment == "positive"


def test_the_sdk_sees_a_refusal_and_a_400(sdk, claude_emulator):
    claude_emulator.inject("refusal")
    refused = sdk.messages.create(
        model=MODEL,
        max_tokens=500,
        messages=[{"role": "user", "content": "hi"}],
        output_config={"format": {"type": "json_schema", "schema": PERSON}},
    )
    assert refused.stop_reason == "refusal" and refused.stop_details is not None
    assert refused.stop_details.category == "general_harms"
    with pytest.raises(anthropic.BadRequestError, match="additionalProperties"):
        sdk.messages.create(
            model=MODEL,
            max_tokens=500,
            messages=[{"role": "user", "content": "hi"}],
            output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
        )


# -- the generator on its own -----------------------------------------------------------------------

PRIMITIVE = st.sampled_from(
    [
        {"type": "string"},
        {"type": "integer"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": ["string", "null"]},
        {"enum": ["a", "b", 3, None]},
        {"const": "fixed"},
        {"type": "string", "format": "uuid"},
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": r"^[a-z]{2,5}(-\d+)?$"},
    ]
)
NAMES = st.text("abcdefgh", min_size=1, max_size=4)


def _extend(children: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    objects = st.dictionaries(NAMES, children, max_size=4).flatmap(
        lambda props: st.sets(st.sampled_from(sorted(props)) if props else st.nothing()).map(
            lambda required: {
                "type": "object",
                "properties": props,
                "required": sorted(required),
                "additionalProperties": False,
            }
        )
    )
    arrays = st.tuples(children, st.sampled_from([None, 0, 1])).map(
        lambda t: {"type": "array", "items": t[0], **({} if t[1] is None else {"minItems": t[1]})}
    )
    unions = st.lists(children, min_size=1, max_size=3).map(lambda branches: {"anyOf": branches})
    return objects | arrays | unions


@given(schema=st.recursive(PRIMITIVE, _extend, max_leaves=12), seed=st.integers(0, 2**32))
def test_generated_values_fit_any_supported_schema(schema, seed):
    structured.SchemaCheck(schema, "schema").run()
    value = structured.Generator(schema, random.Random(seed), "").value(schema)
    validate(value, schema)
    assert structured.conforms(value, schema, schema)


@pytest.mark.parametrize(
    "regex",
    [
        r"^[A-Z]{2}-\d{3,5}$",
        r"^(foo|bar)+baz?$",
        r"\w+@\w+\.com",
        r"^[^a-z\s]{1,4}$",
        r"^(?:\d{3}-)?\d{4}$",
        r"a.b",
        r"[\D]x",
        r"^$",
        r"(?P<n>ab)+c*?",
        r"[a-]x{2,}",
    ],
)
def test_pattern_examples_match_their_pattern(regex):
    for seed in range(100):
        assert re.search(regex, pattern.example(regex, random.Random(seed)))


def test_the_prompt_segment_of_a_format_comes_first():
    segs = caching.segments(request(PERSON, tools=[{"name": "t", "input_schema": obj()}]))
    assert segs[0].tokens == structured.FORMAT_SYSTEM_TOKENS + tokens.count_json(PERSON)
