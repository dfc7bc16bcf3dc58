"""Structured outputs: ``output_config.format = {"type": "json_schema", "schema": {...}}``.

Checks (400 ``invalid_request_error``, worded as the API words them where its wording is known):
the format's shape; the model (``ModelSpec.structured_outputs``); no assistant prefill, no
``max_tokens: 0``, no document citations alongside a format; the schema's subset (every object
``"additionalProperties": false``; no numeric or length bounds, no ``maxItems``, ``minItems`` only 0
or 1; primitive enums; local, non-recursive ``$ref``; the supported string formats; simple
patterns, see :mod:`.pattern`); and the limits summed over the format and the ``strict`` tools
(20 strict tools, 24 optional properties, 16 union-typed schemas). The deprecated top-level
``output_format`` is accepted only with its beta header. count_tokens checks the shape only: the API
does not compile the grammar there.

The answer is one JSON document in the text block, deterministic per request: values come from a
hash of the model, the system prompt, the turns and the schema. Objects give their required
properties first, then each optional one or not, by the hash; arrays hold 1 to 3 items; string enums
are picked like the free-text ``Answer with one of:`` options (by sentiment, by name, else by hash).
Bounds the API refuses but the SDK writes into a description (``{minimum: 1, maximum: 5}``) are kept
to, as a model reading the description would.
A last user turn ``Reply with exactly: <JSON>`` whose JSON fits the schema gets that JSON.

Input tokens: the API injects a system prompt for a format (billed as input), and the grammar comes
from the schema: a request with a format pays ``FORMAT_SYSTEM_TOKENS`` plus the schema's tokens as
compact JSON, as the first prompt segment, so a new format also misses the prompt cache.
"""

from __future__ import annotations

import datetime
import json
import math
import random
import re
import uuid
from dataclasses import dataclass
from typing import Any

from . import pattern, tokens
from .generate import WORDS, conversation, pick_option, seeded, special_answer
from .models import EFFORT_LEVELS, ModelSpec
from .validate import APIError, invalid

FORMAT_SYSTEM_TOKENS = 150
SUPPORTED_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
STRING_FORMATS = ("date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid")
UNSUPPORTED = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
               "maxLength", "maxItems")
MAX_STRICT_TOOLS = 20
MAX_OPTIONAL = 24
MAX_UNIONS = 16
LEGACY_BETAS = ("structured-outputs-2025-11-13", "structured-outputs-2025-12-15")
NO_ADDITIONAL = "For 'object' type, 'additionalProperties' must be explicitly set to false"
ARRAY_ITEMS = 3   # an array holds 1 to this many items, unless its description bounds it
EPOCH = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)   # dates fall in 2020-2026
_HINT = re.compile(r"\b(minimum|maximum|exclusiveMinimum|exclusiveMaximum|minLength|maxLength|minItems|"
                   r"maxItems): (-?\d+(?:\.\d+)?)\b")
TIME_FORMATS = {"date-time": "%Y-%m-%dT%H:%M:%SZ", "date": "%Y-%m-%d", "time": "%H:%M:%SZ"}


@dataclass(frozen=True)
class Format:
    """A checked format: its schema and where in the body it came from (for error messages)."""

    schema: dict
    where: str


# -- the format's shape ---------------------------------------------------------------------------

def raw_format(body: dict) -> tuple[str, Any] | None:
    """(where, format) as sent, unchecked: ``output_config.format`` or the legacy ``output_format``."""
    config = body.get("output_config")
    if isinstance(config, dict) and config.get("format") is not None:
        return "output_config.format", config["format"]
    if body.get("output_format") is not None:
        return "output_format", body["output_format"]
    return None


def schema_of(body: dict) -> dict | None:
    """The format's schema, for token counts (None without a format)."""
    found = raw_format(body)
    schema = found[1].get("schema") if found and isinstance(found[1], dict) else None
    return schema if isinstance(schema, dict) else None


def input_tokens(schema: dict) -> int:
    """What a format adds to the prompt: the injected system prompt and the schema."""
    return FORMAT_SYSTEM_TOKENS + tokens.count_json(schema)


def check_shape(body: dict, betas: list[str]) -> Format | None:
    """``output_config`` (effort, format) and the legacy ``output_format``; the format, if any."""
    config = body.get("output_config")
    if config is not None and not isinstance(config, dict):
        raise invalid(f"output_config: Input should be a valid dictionary, got {config!r:.40}")
    config = config or {}
    effort = config.get("effort")
    if effort is not None and effort not in EFFORT_LEVELS:
        raise invalid(f"output_config.effort: Input should be {', '.join(map(repr, EFFORT_LEVELS[:-1]))} or "
                      f"'{EFFORT_LEVELS[-1]}', got {effort!r:.40}")
    if body.get("output_format") is not None:
        if not any(b in LEGACY_BETAS for b in betas):
            raise invalid(f"output_format: Extra inputs are not permitted. output_format is deprecated: use "
                          f"output_config.format, or send anthropic-beta: {LEGACY_BETAS[0]}")
        if config.get("format") is not None:
            raise invalid("output_format and output_config.format cannot both be set: use "
                          "output_config.format only (output_format is deprecated)")
    found = raw_format(body)
    if found is None:
        return None
    where, fmt = found
    if not isinstance(fmt, dict):
        raise invalid(f"{where}: Input should be a valid dictionary, got {fmt!r:.40}")
    if "type" not in fmt:
        raise invalid(f"{where}.type: Field required")
    if fmt["type"] != "json_schema":
        raise invalid(f"{where}.type: Input should be 'json_schema', got {fmt['type']!r:.40}")
    if "schema" not in fmt:
        raise invalid(f"{where}.schema: Field required")
    if not isinstance(fmt["schema"], dict):
        raise invalid(f"{where}.schema: Input should be a valid dictionary, got {fmt['schema']!r:.40}")
    return Format(fmt["schema"], where)


# -- the request ----------------------------------------------------------------------------------

def check_request(body: dict, spec: ModelSpec, betas: list[str]) -> Format | None:
    """All structured-output checks of a Messages request (after the general ones); the format."""
    fmt = check_shape(body, betas)
    if fmt is not None:
        _check_combination(body, spec, fmt)
    schemas = [(f"{fmt.where}.schema", fmt.schema)] if fmt is not None else []
    strict = [(i, t) for i, t in enumerate(body.get("tools") or []) if t.get("strict") is True]
    if len(strict) > MAX_STRICT_TOOLS:
        raise invalid(f"Too many strict tools ({len(strict)}). The maximum number of strict tools supported "
                      f"is {MAX_STRICT_TOOLS}. Try reducing the number of tools marked as strict.")
    schemas += [(f"tools.{i}.input_schema", t.get("input_schema")) for i, t in strict]
    optional = unions = 0
    for where, schema in schemas:
        found = SchemaCheck(schema, where).run()
        optional, unions = optional + found.optional, unions + found.unions
    if optional > MAX_OPTIONAL:
        raise invalid(f"Schemas contains too many optional parameters ({optional}), which would make grammar "
                      "compilation inefficient. Reduce the number of optional parameters in your tool "
                      f"schemas or output format (limit: {MAX_OPTIONAL}).")
    if unions > MAX_UNIONS:
        raise invalid(f"Schemas contains too many parameters with union types ({unions} parameters with type "
                      f"arrays or anyOf) which exceeds the limit: {MAX_UNIONS}. Reduce the number of "
                      "parameters with union types in your tool schemas or output format.")
    return fmt


def _check_combination(body: dict, spec: ModelSpec, fmt: Format) -> None:
    if not spec.structured_outputs:
        raise invalid(f"{fmt.where}: model '{body['model']}' does not support structured outputs; use a "
                      "model whose capabilities.structured_outputs.supported is true in GET /v1/models")
    if body.get("max_tokens") == 0:
        raise invalid(f"max_tokens: must be at least 1 with {fmt.where}; max_tokens 0 (prompt cache "
                      "pre-warming) cannot be combined with structured outputs")
    if body["messages"][-1].get("role") == "assistant":
        raise invalid(f"Structured outputs ({fmt.where}) cannot be combined with assistant message "
                      "prefill. The conversation must end with a user message.")
    for i, message in enumerate(body["messages"]):
        content = message.get("content")
        for j, block in enumerate(content if isinstance(content, list) else []):
            citations = block.get("citations")
            if block.get("type") == "document" and isinstance(citations, dict) and citations.get("enabled"):
                raise invalid(f"messages.{i}.content.{j}.citations: citations cannot be enabled with "
                              f"structured outputs ({fmt.where}); turn citations off or remove the format")


# -- the schema -----------------------------------------------------------------------------------

@dataclass
class SchemaCheck:
    """One schema checked against the supported subset; ``run`` returns it with its counts."""

    root: Any
    where: str
    optional: int = 0
    unions: int = 0

    def __post_init__(self) -> None:
        self._active: list[str] = []   # the $refs being walked, outermost first
        self._done: set[str] = set()

    def fail(self, message: str) -> APIError:
        return invalid(f"{self.where}: {message}")

    def run(self) -> SchemaCheck:
        if not isinstance(self.root, dict):
            raise self.fail(f"Input should be a valid dictionary, got {self.root!r:.40}")
        self.ref("#")
        for key in ("$defs", "definitions"):
            defs = self.root.get(key)
            if defs is not None and not isinstance(defs, dict):
                raise self.fail(f"'{key}' must be an object mapping names to schemas")
            for name in defs or {}:
                self.ref(f"#/{key}/{name.replace('~', '~0').replace('/', '~1')}")
        return self

    def ref(self, ref: str) -> None:
        if ref in self._active:
            raise self.fail(f"Recursive schemas are not supported: '{ref}' refers to itself")
        if ref in self._done:
            return
        target = resolve(self.root, ref)
        if target is None:
            raise self.fail(f"$ref '{ref}' does not resolve to a schema in this document")
        self._active.append(ref)
        if ref == "#":
            self.node({k: v for k, v in target.items() if k not in ("$defs", "definitions")})
        else:
            self.node(target)
        self._active.pop()
        self._done.add(ref)

    def node(self, schema: Any) -> None:
        if not isinstance(schema, dict):
            raise self.fail(f"each schema must be an object, got {schema!r:.40}")
        if "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise self.fail(f"only local $ref ('#/$defs/...') is supported, got {ref!r:.60}")
            self.ref(ref)
            return
        kinds = _types(schema)
        for kind in kinds:
            if kind not in SUPPORTED_TYPES:
                raise self.fail(f"Type {kind!r:.40} is not supported; use one of "
                                f"{', '.join(SUPPORTED_TYPES)}")
        if len(kinds) > 1 or "anyOf" in schema:
            self.unions += 1
        label = _label(schema, kinds)
        for key in UNSUPPORTED:
            if key in schema:
                raise self.fail(f"For '{label}' type, property '{key}' is not supported")
        self.values(schema, label)
        if "object" in kinds or (not kinds and "properties" in schema):
            self.object(schema)
        if "items" in schema:
            self.node(schema["items"])
        for key in ("anyOf", "allOf"):
            if key in schema:
                self.branches(schema, key)

    def values(self, schema: dict, label: str) -> None:
        """enum, const, minItems, format, pattern."""
        min_items = schema.get("minItems")
        if min_items is not None and (isinstance(min_items, bool) or min_items not in (0, 1)):
            raise self.fail(f"For '{label}' type, property 'minItems' with value {min_items!r:.20} is not "
                            "supported (only 0 or 1)")
        enum = schema.get("enum")
        if enum is not None and (not isinstance(enum, list) or not enum or not all(map(_primitive, enum))):
            raise self.fail("'enum' must be a non-empty list of strings, numbers, booleans or null "
                            "(complex enums are not supported)")
        if "const" in schema and not _primitive(schema["const"]):
            raise self.fail("'const' must be a string, number, boolean or null")
        fmt = schema.get("format")
        if fmt is not None and fmt not in STRING_FORMATS:
            raise self.fail(f"For '{label}' type, format {fmt!r:.40} is not supported; use one of "
                            f"{', '.join(STRING_FORMATS)}")
        if "pattern" in schema:
            try:
                pattern.parse(str(schema["pattern"]))
            except pattern.PatternError as exc:
                raise self.fail(f"For '{label}' type, pattern is not supported: {exc}") from None

    def object(self, schema: dict) -> None:
        if schema.get("additionalProperties") is not False:
            raise self.fail(NO_ADDITIONAL)
        props = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(props, dict):
            raise self.fail("'properties' must be an object mapping names to schemas")
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise self.fail("'required' must be a list of property names")
        for name in required:
            if name not in props:
                raise self.fail(f"required property {name!r} is not defined in 'properties'")
        self.optional += sum(name not in required for name in props)
        for sub in props.values():
            self.node(sub)

    def branches(self, schema: dict, key: str) -> None:
        branches = schema[key]
        if not isinstance(branches, list) or not branches:
            raise self.fail(f"'{key}' must be a non-empty list of schemas")
        if key == "allOf" and any(isinstance(b, dict) and "$ref" in b for b in branches):
            raise self.fail("'allOf' cannot be combined with '$ref'")
        for branch in branches:
            self.node(branch)


def _types(schema: dict) -> list[Any]:
    kind = schema.get("type")
    return kind if isinstance(kind, list) else [] if kind is None else [kind]


def _label(schema: dict, kinds: list[Any]) -> str:
    named = [k for k in kinds if k != "null"] or kinds
    if named:
        return str(named[0])
    return "object" if "properties" in schema else "array" if "items" in schema else "any"


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def resolve(root: dict, ref: str) -> Any:
    """The target of a local ``$ref`` (a JSON Pointer, RFC 6901, after ``#``), or None."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node if isinstance(node, dict) else None


# -- the answer -----------------------------------------------------------------------------------

def answer(body: dict, fmt: Format) -> str:
    """The JSON text the emulated model answers a (checked) request with."""
    conv = conversation(body)
    last_user = conv.turns[-1][1] if conv.turns and conv.turns[-1][0] == "user" else ""
    special = special_answer(last_user)
    if special is not None:
        try:
            value = json.loads(special)
        except ValueError:
            pass
        else:
            if conforms(value, fmt.schema, fmt.schema):
                return json.dumps(value, ensure_ascii=False)
    rng = seeded("structured", conv.model, conv.system, conv.turns, fmt.schema)
    return json.dumps(Generator(fmt.schema, rng, last_user).value(fmt.schema), ensure_ascii=False)


class Generator:
    """Values for the schemas of one (checked, so finite) document."""

    def __init__(self, root: dict, rng: random.Random, text: str) -> None:
        self.root = root
        self.rng = rng
        self.text = text    # the user's words, for enums

    def value(self, schema: dict) -> Any:
        if "$ref" in schema:
            return self.value(resolve(self.root, schema["$ref"]))
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            options = schema["enum"]
            if all(isinstance(o, str) for o in options):
                return pick_option(options, self.text)
            return self.rng.choice(options)
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                return self.value(self.rng.choice(schema[key]))
        if isinstance(schema.get("allOf"), list):
            return self.value(_merge(schema))
        kinds = _types(schema)
        kind = self.rng.choice(kinds) if kinds else _label(schema, kinds)
        return getattr(self, "_" + ("string" if kind == "any" else kind))(schema)

    def _object(self, schema: dict) -> dict:
        props: dict = schema.get("properties") or {}
        required = schema.get("required") or []
        out = {name: self.value(sub) for name, sub in props.items() if name in required}
        for name, sub in props.items():
            if name not in required and self.rng.random() < 0.5:
                out[name] = self.value(sub)
        return out

    def _array(self, schema: dict) -> list:
        items = schema.get("items") or {"type": "string"}
        hints = _hints(schema)
        low = max(1, math.ceil(hints.get("minItems", 1)))
        high = max(low, math.floor(hints.get("maxItems", max(low, ARRAY_ITEMS))))
        return [self.value(items) for _ in range(self.rng.randint(low, high))]

    def _string(self, schema: dict) -> str:
        if "pattern" in schema:
            return pattern.example(str(schema["pattern"]), self.rng)
        if schema.get("format") in STRING_FORMATS:
            return self._formatted(str(schema["format"]))
        words = [self.rng.choice(WORDS) for _ in range(self.rng.randint(1, 4))]
        text = " ".join(words).capitalize()
        hints = _hints(schema)
        low, high = math.ceil(hints.get("minLength", 0)), math.floor(hints.get("maxLength", len(text)))
        return text.ljust(low, ".")[:max(low, high)]

    def _formatted(self, fmt: str) -> str:
        rng = self.rng
        if fmt == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if fmt in TIME_FORMATS:
            moment = EPOCH + datetime.timedelta(seconds=rng.randrange(7 * 365 * 86400))
            return moment.strftime(TIME_FORMATS[fmt])
        if fmt == "duration":
            return f"P{rng.randint(1, 30)}DT{rng.randint(0, 23)}H"
        if fmt == "ipv4":
            return f"192.0.2.{rng.randint(1, 254)}"      # TEST-NET-1 (RFC 5737)
        if fmt == "ipv6":
            return f"2001:db8::{rng.randint(1, 0xFFFF):x}"  # the documentation prefix (RFC 3849)
        word = rng.choice([w for w in WORDS if w.isalpha()])
        return {"email": f"{word}.{rng.randint(1, 99)}@example.com", "hostname": f"{word}.example.com",
                "uri": f"https://example.com/{word}/{rng.randint(1, 999)}"}[fmt]

    def _integer(self, schema: dict) -> int:
        low, high = _bounds(_hints(schema), 1)
        return self.rng.randint(math.ceil(low), max(math.ceil(low), math.floor(high)))

    def _number(self, schema: dict) -> float:
        low, high = _bounds(_hints(schema), 0.01)   # in hundredths: two decimals
        cents = self.rng.randint(math.ceil(low * 100), max(math.ceil(low * 100), math.floor(high * 100)))
        return cents / 100

    def _boolean(self, schema: dict) -> bool:
        return self.rng.random() < 0.5

    def _null(self, schema: dict) -> None:
        return None


def _hints(schema: dict) -> dict[str, float]:
    """Bounds written in the description, as the SDK writes those the API refuses (``{minimum: 1,
    maximum: 5}``): the emulated model reads them and keeps to them, as a model mostly does."""
    description = schema.get("description")
    return {k: float(v) for k, v in _HINT.findall(description)} if isinstance(description, str) else {}


def _bounds(hints: dict[str, float], step: float) -> tuple[float, float]:
    """The inclusive range of a number from its hints (exclusive bounds moved in by ``step``)."""
    low = hints.get("minimum", hints.get("exclusiveMinimum", -math.inf) + step)
    high = hints.get("maximum", hints.get("exclusiveMaximum", math.inf) - step)
    if math.isinf(low) and math.isinf(high):
        return 0, 100
    if math.isinf(low):
        return high - 100, high
    return low, (low + 100 if math.isinf(high) else high)


def _merge(schema: dict) -> dict:
    """An ``allOf`` as one schema: properties and required joined, other keys from the last branch."""
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for branch in schema["allOf"]:
        for key, value in branch.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged[key] = value
    return merged


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,), "number": (int, float),
    "boolean": (bool,), "null": (type(None),),
}


def conforms(value: Any, schema: dict, root: dict) -> bool:
    """Whether ``value`` fits a checked schema (string formats are not checked)."""
    if "$ref" in schema:
        target = resolve(root, schema["$ref"])
        return target is not None and conforms(value, target, root)
    if "const" in schema and not _same(value, schema["const"]):
        return False
    if "enum" in schema and not any(_same(value, o) for o in schema["enum"]):
        return False
    if "anyOf" in schema and not any(conforms(value, b, root) for b in schema["anyOf"]):
        return False
    if "allOf" in schema and not conforms(value, _merge(schema), root):
        return False
    kinds = _types(schema)
    if kinds and not any(_is(value, k) for k in kinds):
        return False
    if isinstance(value, dict) and ("properties" in schema or "object" in kinds):
        props = schema.get("properties") or {}
        if set(value) - set(props) or set(schema.get("required") or []) - set(value):
            return False
        return all(conforms(v, props[k], root) for k, v in value.items())
    if isinstance(value, list) and len(value) < schema.get("minItems", 0):
        return False
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return all(conforms(v, schema["items"], root) for v in value)
    if isinstance(value, str) and "pattern" in schema:
        return re.search(str(schema["pattern"]), value) is not None
    return True


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind not in ("boolean",):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES.get(kind, ()))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):  # True == 1 in Python, not in JSON
        return type(a) is type(b) and a == b
    return bool(a == b)
