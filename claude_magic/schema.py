"""Typed answers (structured outputs): a spec in, the API's ``output_config.format`` out, the
answer's text back as a typed value. Pure (no I/O, no IPython); pydantic is imported only when a
Python type is given, so ``import claude_magic`` stays fast.

Specs (:meth:`Schema.of`) and what :meth:`Schema.parse` returns for each:

- a pydantic model, or any type pydantic validates (``list[str]``, ``Literal["pos", "neg"]``,
  ``dict[str, int]``, an Enum, a dataclass): pydantic's value (a model instance…);
- a dict holding a JSON schema: the JSON value, checked here;
- an inline spec, ``"name: str, price: float, currency: str?, tags: list[str], label: pos|neg,
  when: date"`` (``?``: not required; ``a|b``: one of these strings; str, int, float, bool, date,
  datetime, list[T]): a dict, dates as ``date``/``datetime``, a float field's numbers as ``float``;
- a string naming any of these in a namespace (the magic's ``--schema Product``), or a type
  expression over its names (``"list[Product]"``, ``"Literal['a', 'b'] | None"``).

A type string never reaches ``eval``: :mod:`ast` parses it and :class:`_Evaluator` reads names
(the namespace's classes, typing forms and modules, else builtin types, ``date``, ``datetime``,
``time`` and typing's ``Literal``, ``Optional``, ``Union``…), attributes of modules and classes
(no private ones), subscripts of types, ``|`` and constants. Nothing is called, so text from a
notebook cannot run code. A name alone may also hold a schema dict or an inline spec string.

The wire schema is built as the official SDK's ``transform_schema`` builds it, except that:

- a type list (``["string", "null"]``, on which the SDK crashes) becomes ``anyOf``, one branch
  per type with the keywords of its type;
- keywords the API refuses (``minimum``, ``maxLength``, ``maxItems``, ``minItems`` > 1, a pattern
  that is not simple…) are described in the node's description (``{minimum: 1, maximum: 10}``) and
  checked on the answer (pydantic checks its own); ``const`` and ``default`` stay, as the API
  supports them;
- a map (``dict[str, int]``) is sent as a list of ``{key, value}`` pairs and parsed back into a
  dict: every object on the wire has ``additionalProperties: false``, so there are no open objects;
- a root that is not an object is wrapped as ``{"value": …}``, and unwrapped on parsing;
- what the API would refuse with a 400 is refused here first, in one line: recursion, a ``$ref``
  outside the schema, a node with no type (``Any``), an object with no properties, more than 24
  optional properties or 16 using unions (anyOf or type lists: ``Optional[X]`` is one), counted
  over the whole schema, each definition once.

The API does not guarantee the capitalization of ``enum`` and ``const`` values: answers are matched
case-insensitively and returned in the schema's spelling.
"""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import json
import math
import operator
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_origin

from .errors import AnswerInvalid, ConfigError

if TYPE_CHECKING:
    from pydantic import TypeAdapter

__all__ = ["MAX_OPTIONAL", "MAX_UNIONS", "Field", "Kind", "Schema"]

MAX_OPTIONAL = 24  # the API's limit on optional properties, summed over a request's schemas
MAX_UNIONS = 16  # the API's limit on properties using anyOf or a type list

Kind = Literal["int", "float", "bool", "str", "enum", "date", "datetime", "object"]

_ACCEPTED = ("give a pydantic model or its name, a type such as list[str] or Literal['pos', 'neg'], a JSON "
             "schema dict, or an inline spec such as 'name: str, price: float?, label: pos|neg'")
_FORMATS = {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
_DEF_KEYS = ("$defs", "definitions")
_DROPPED = {"$schema", "$id", "$comment", "discriminator", *_DEF_KEYS}
_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
_PRIMITIVE = (str, int, float, bool, type(None))
_NUMBER_KEYS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
# The keywords of each type: a type list's branch keeps those of its own type.
_TYPE_KEYS: dict[str, set[str]] = {
    "object": {"properties", "required", "additionalProperties", "propertyNames", "patternProperties",
               "minProperties", "maxProperties"},
    "array": {"items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains"},
    "string": {"minLength", "maxLength", "pattern", "format"},
    "integer": _NUMBER_KEYS, "number": _NUMBER_KEYS,
}
# A simple pattern, as the API documents it: literals, ^ $ . * + ?, \d \w \s, escaped punctuation,
# [classes], (groups), {n,m} with small bounds. Anything else (alternation, lookaround, \b,
# backreferences, (?...) groups) is moved and checked here, which costs nothing but the guarantee.
_PATTERN_TOKEN = re.compile(r"\\[dws]|\\[^A-Za-z0-9]|\[\^?(?:\\[dws]|\\[^A-Za-z0-9]|[^\\\]])+\]"
                            r"|\{(\d+)(?:,(\d*))?\}|\((?!\?)|\)|[^\\\[\]{}()|]")
_MAX_REPEAT = 50  # a {n,m} bound above this counts as big (the API does not say where big starts)


@dataclass(frozen=True)
class Field:
    """One column of a typed answer: a top-level property of an object root, or ``value`` for a
    wrapped root. ``values`` holds an enum's values, in the schema's spelling."""

    name: str
    kind: Kind
    required: bool
    nullable: bool = False
    values: tuple[Any, ...] | None = None


class Schema:
    """A spec made ready for the API: ``wire`` to send as ``output_config.format``, ``parse`` for the
    answer's text, ``fields`` for columns, ``key`` for cache keys, ``name`` for messages, ``wrapped``
    when the root is not an object. Build one with :meth:`of`."""

    def __init__(self, name: str, source: dict[str, Any], *, adapter: TypeAdapter[Any] | None = None,
                 python: bool = False) -> None:
        # the schema as given (moved keywords included) is what parse checks
        self.name, self._source, self._adapter, self._python = name, source, adapter, python
        _check_refs(source, name)
        body, self.wrapped = _wire_schema(source)
        _check_limits(body, name)
        self.wire: dict[str, Any] = {"type": "json_schema", "schema": body}
        self.key = json.dumps(self.wire, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self.fields: list[Field] = _fields(body)

    @classmethod
    def of(cls, spec: Any, namespace: Mapping[str, Any] | None = None) -> Schema:
        """The schema for ``spec`` (the forms are in the module's docstring); a string's names are
        looked up in ``namespace``. :class:`ConfigError` for anything else, or for a schema the API
        would refuse."""
        if isinstance(spec, Schema):
            return spec
        if isinstance(spec, str):
            return _from_text(spec, namespace or {})
        if isinstance(spec, dict):
            return cls("JSON schema", spec)
        if _is_type(spec):
            return _from_type(spec, _type_name(spec))
        raise ConfigError(f"cannot make a schema from {type(spec).__name__} {_show(spec)}: {_ACCEPTED}")

    def parse(self, text: str) -> Any:
        """The answer's value: decoded, unwrapped, enum values in the schema's spelling, validated.
        :class:`AnswerInvalid` (the text in ``.raw``) when it does not match."""
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, TypeError) as e:
            raise AnswerInvalid(f"the answer is not JSON ({e}): cut short by max_tokens (raise it), or a "
                                "refusal? (text in .raw)", raw=str(text)) from None
        path = ""
        if self.wrapped:
            if not (isinstance(value, dict) and "value" in value):
                raise self._invalid(text, "", f"expected an object with 'value', got {_show(value)}")
            value, path = value["value"], "value"
        checker = _Checker(self._source, strict=self._adapter is None, python=self._python)
        try:
            value = checker.walk(value, self._source, path)
        except _Mismatch as e:
            raise self._invalid(text, *e.args) from None
        if self._adapter is None:
            return value
        from pydantic import ValidationError

        try:
            return self._adapter.validate_json(json.dumps(value))
        except ValidationError as e:
            first = e.errors()[0]
            more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
            raise self._invalid(text, _loc([path, *first["loc"]]), first["msg"] + more) from None

    def _invalid(self, text: str, path: str, message: str) -> AnswerInvalid:
        where = path.lstrip(".") or "top level"
        return AnswerInvalid(f"the answer does not match {self.name}: {where}: {message} (text in .raw)",
                             raw=text)

    def __repr__(self) -> str:
        return f"Schema({self.name})"


# -- specs -----------------------------------------------------------------------------------------

def _from_type(spec: Any, name: str) -> Schema:
    import pydantic

    try:
        adapter: TypeAdapter[Any] = pydantic.TypeAdapter(spec)
        source = adapter.json_schema()
    except (pydantic.PydanticUserError, TypeError) as e:
        reason = str(e).strip().splitlines()[0].split(". ")[0]
        raise ConfigError(f"pydantic makes no JSON schema from {name} ({reason}): {_ACCEPTED}") from None
    return Schema(name, source, adapter=adapter)


def _from_text(text: str, namespace: Mapping[str, Any]) -> Schema:
    spec = text.strip()
    if spec.startswith("{"):
        try:
            return Schema.of(json.loads(spec))
        except json.JSONDecodeError as e:
            raise ConfigError(f"the schema starts with '{{' but is not JSON ({e}): {_ACCEPTED}") from None
    try:
        tree = ast.parse(spec, mode="eval").body
    except SyntaxError:
        if ":" in spec:
            return _inline(spec)
        raise ConfigError(f"cannot read the schema {_show(spec)}: {_ACCEPTED}") from None
    held = namespace.get(tree.id) if isinstance(tree, ast.Name) else None
    if isinstance(held, (str, dict)):  # a variable holding a spec (read without the namespace) or a schema
        return _from_text(held, {}) if isinstance(held, str) else Schema("JSON schema", held)
    value = _Evaluator(namespace, spec).eval(tree)
    if _is_type(value):
        return _from_type(value, spec)
    raise ConfigError(f"{spec!r} is a {type(value).__name__}, not a model, type or JSON schema: {_ACCEPTED}")


def _is_type(value: Any) -> bool:
    """A class, a subscripted generic or a typing form (``Literal``…) before its subscript."""
    if isinstance(value, type) or get_origin(value) is not None:
        return True
    return getattr(value, "__module__", None) in ("typing", "typing_extensions")


def _type_name(spec: Any) -> str:
    if isinstance(spec, type) and get_origin(spec) is None:
        return spec.__name__
    return repr(spec).replace("typing.", "").replace("__main__.", "")


_NAMES: dict[str, Any] = {
    **{t.__name__: t for t in (str, int, float, bool, list, dict, tuple, set, frozenset)},
    "None": None, "date": dt.date, "datetime": dt.datetime, "time": dt.time,
    **{n: getattr(typing, n) for n in ("Literal", "Optional", "Union", "List", "Dict", "Set", "Tuple")},
}
_MISSING = object()


class _Evaluator:
    """Reads a type expression's syntax tree: names, attributes, subscripts, ``|``, constants."""

    def __init__(self, namespace: Mapping[str, Any], text: str) -> None:
        self.namespace = namespace
        self.text = text

    def eval(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) in (str, int, float, bool, type(None)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            operand = self.eval(node.operand)
            if type(operand) in (int, float):
                return -operand
        if isinstance(node, ast.Name):
            return self.lookup(node.id)
        if isinstance(node, ast.Attribute) and not node.attr.startswith("_"):
            base = self.eval(node.value)
            if (inspect.ismodule(base) or isinstance(base, type)) and hasattr(base, node.attr):
                return getattr(base, node.attr)
        if isinstance(node, ast.Subscript):
            base = self.eval(node.value)
            elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            args = [self.eval(arg) for arg in elts]
            if _is_type(base):
                return self.apply(operator.getitem, base, args[0] if len(args) == 1 else tuple(args))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            left, right = self.eval(node.left), self.eval(node.right)
            if all(side is None or _is_type(side) for side in (left, right)):
                return self.apply(operator.or_, left, right)
        raise ConfigError(f"the schema {self.text!r} holds {ast.unparse(node)!r}, which is not a type: a "
                          "type string may use names, attributes, subscripts, | and constants, never calls")

    def apply(self, op: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
        try:
            return op(left, right)
        except TypeError as e:
            raise ConfigError(f"the schema {self.text!r} is not a valid type: {e}") from None

    def lookup(self, name: str) -> Any:
        value = self.namespace.get(name, _MISSING)
        if value is not _MISSING and (_is_type(value) or inspect.ismodule(value)):
            return value
        if name in _NAMES:
            return _NAMES[name]
        if value is not _MISSING:
            raise ConfigError(f"{name!r} in the schema {self.text!r} is {_show(value)}, not a type: "
                              + _ACCEPTED)
        raise ConfigError(f"unknown name {name!r} in the schema {self.text!r}: define it first, or use "
                          "str, int, float, bool, date, datetime, list[...], Literal[...]")


_INLINE_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
    "bool": {"type": "boolean"}, "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
}
_INLINE_HELP = "use str, int, float, bool, date, datetime, list[T] or a|b|c (one of these words)"


def _inline(text: str) -> Schema:
    properties: dict[str, Any] = {}
    required = []
    for number, part in enumerate(_split(text.rstrip().rstrip(",")), 1):
        name, colon, kind = (s.strip() for s in part.partition(":"))
        if not name:
            raise ConfigError(f"field {number} of the inline spec {text!r} has no name: write 'name: type'")
        if not re.fullmatch(r"[^\W\d]\w*", name):
            raise ConfigError(f"field name {name!r} in the inline spec is not a name: use letters, digits, _")
        if not colon or not kind.rstrip("?").strip():
            raise ConfigError(f"field {name!r} of the inline spec has no type: write '{name}: str' "
                              f"({_INLINE_HELP})")
        if name in properties:
            raise ConfigError(f"field {name!r} appears twice in the inline spec {text!r}: keep one")
        properties[name] = _inline_type(kind.removesuffix("?").strip(), name)
        if not kind.endswith("?"):
            required.append(name)
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return Schema("inline spec", schema, python=True)


def _inline_type(kind: str, field: str) -> dict[str, Any]:
    if kind in _INLINE_TYPES:
        return dict(_INLINE_TYPES[kind])
    inner = re.fullmatch(r"list\s*\[(.*)\]", kind, re.S)
    if inner:
        return {"type": "array", "items": _inline_type(inner.group(1).strip(), field)}
    values = [v.strip().strip("'\"") for v in kind.split("|")]
    if len(values) > 1 and all(values):
        return {"type": "string", "enum": list(dict.fromkeys(values))}
    raise ConfigError(f"unknown type {kind!r} for field {field!r} in the inline spec: {_INLINE_HELP}")


def _split(text: str) -> list[str]:
    """``text`` split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "[(") - (char in "])")
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


# -- the wire schema -------------------------------------------------------------------------------

def _wire_schema(source: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema to send (the API's subset) and whether its root is wrapped as ``{"value": …}``."""
    defs = {key: {name: _strict(sub, f"{key}.{name}") for name, sub in source[key].items()}
            for key in _DEF_KEYS if isinstance(source.get(key), dict)}
    root = source
    while isinstance(root.get("$ref"), str):  # ends: recursion was refused before
        root = _resolve(source, root["$ref"])
    body = _strict({k: v for k, v in root.items() if k not in _DEF_KEYS}, "")
    wrapped = body.get("type") != "object"
    if wrapped:
        body = {"type": "object", "properties": {"value": body}, "required": ["value"],
                "additionalProperties": False}
    return {**body, **defs}, wrapped


def _strict(node: Any, path: str) -> dict[str, Any]:
    """One node of the schema in the API's subset (see the module's docstring)."""
    if not isinstance(node, dict):
        raise ConfigError(f"the schema at {_where(path)} is {_show(node)}, not a JSON schema object")
    rest = {k: v for k, v in node.items() if k not in _DROPPED}
    if "$ref" in rest:
        return {"$ref": rest["$ref"]}  # its siblings dropped, as the SDK drops them
    all_of = rest.pop("allOf", None)
    if isinstance(all_of, list) and len(all_of) == 1:  # pydantic's wrapper for a described $ref
        return _strict({**rest, **all_of[0]}, path)
    out = {k: rest.pop(k) for k in ("title", "description", "default") if k in rest}
    _literals(rest, out, path)
    types, any_of = rest.pop("type", None), rest.pop("anyOf", None) or rest.pop("oneOf", None)
    types = None if "enum" in out or "const" in out else types  # the values say it all, as in the SDK
    types = types[0] if isinstance(types, list) and len(types) == 1 else types
    if any_of is not None:
        out["anyOf"] = [_strict(sub, f"{path}|{i}") for i, sub in enumerate(any_of)]
    elif all_of is not None:
        out["allOf"] = [_strict(sub, f"{path}&{i}") for i, sub in enumerate(all_of)]
    elif isinstance(types, list):
        own = {t: {k: v for k, v in rest.items() if k in _TYPE_KEYS.get(t, ())} for t in types}
        out["anyOf"] = [_strict({"type": t, **own[t]}, path) for t in types]
        rest = {k: v for k, v in rest.items() if not any(k in _TYPE_KEYS.get(t, ()) for t in types)}
    elif isinstance(types, str):
        _typed(types, rest, out, path)
    elif "enum" not in out and "const" not in out:
        raise ConfigError(f"the schema at {_where(path)} has no type (Any?): the API needs a type, anyOf, "
                          "enum or const on every node")
    if rest:
        moved = (f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in rest.items())
        _describe(out, "{" + ", ".join(moved) + "}")
    return out


def _describe(out: dict[str, Any], text: str) -> None:
    out["description"] = f"{out['description']}\n\n{text}" if out.get("description") else text


def _literals(rest: dict[str, Any], out: dict[str, Any], path: str) -> None:
    for key in ("enum", "const"):
        if key in rest:
            values = rest.pop(key) if key == "enum" else [rest.pop(key)]
            if not (isinstance(values, list) and values and all(isinstance(v, _PRIMITIVE) for v in values)):
                raise ConfigError(f"the {key} at {_where(path)} is {_show(values)}: the API accepts strings, "
                                  "numbers, booleans and null only")
            out[key] = values if key == "enum" else values[0]


def _typed(type_: str, rest: dict[str, Any], out: dict[str, Any], path: str) -> None:
    if type_ not in _TYPES:
        raise ConfigError(f"unknown type {type_!r} at {_where(path)}: the API accepts {', '.join(_TYPES)}")
    out["type"] = type_
    if type_ == "object":
        _object(rest, out, path)
    elif type_ == "array":
        if "items" in rest:
            out["items"] = _strict(rest.pop("items"), f"{path}[]")
        if rest.get("minItems") in (0, 1):
            out["minItems"] = rest.pop("minItems")
    elif type_ == "string":
        if rest.get("format") in _FORMATS:
            out["format"] = rest.pop("format")
        if isinstance(rest.get("pattern"), str) and _simple_pattern(rest["pattern"]):
            out["pattern"] = rest.pop("pattern")


def _object(rest: dict[str, Any], out: dict[str, Any], path: str) -> None:
    properties, extra = rest.pop("properties", None), rest.pop("additionalProperties", None)
    if properties is None and isinstance(extra, dict) and extra:  # a map: {key, value} pairs
        pair = {"key": _strict({"type": "string", **rest.pop("propertyNames", {})}, f"{path}.key"),
                "value": _strict(extra, f"{path}{{}}")}
        out.update(type="array", items={"type": "object", "properties": pair, "required": ["key", "value"],
                                        "additionalProperties": False})
        return _describe(out, "a map, as a list of {key, value} pairs with distinct keys")
    if properties is None and extra is not False:
        raise ConfigError(f"the object at {_where(path)} has no properties, so the API allows only {{}}: "
                          "list them, or give additionalProperties a schema for a map (dict[str, T])")
    out["properties"] = {name: _strict(sub, f"{path}.{name}") for name, sub in (properties or {}).items()}
    if "required" in rest:
        out["required"] = list(rest.pop("required"))
    out["additionalProperties"] = False


def _simple_pattern(pattern: str) -> bool:
    pos = 0
    while pos < len(pattern):
        token = _PATTERN_TOKEN.match(pattern, pos)
        if token is None or any(int(bound) > _MAX_REPEAT for bound in token.groups() if bound):
            return False
        pos = token.end()
    return True


# -- checks before any request ---------------------------------------------------------------------

def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    _, key, name = ref.split("/", 2)
    return root[key][name.replace("~1", "/").replace("~0", "~")]  # a JSON pointer (RFC 6901)


def _refs(node: Any) -> set[str]:
    """The ``$ref`` values inside ``node``, outside its definitions."""
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for k, v in node.items() if k not in _DEF_KEYS))
    return set().union(*map(_refs, node)) if isinstance(node, list) else set()


def _check_refs(source: dict[str, Any], name: str) -> None:
    """Refuse a ``$ref`` that is not one of the schema's definitions, and a cycle of them."""
    graph = {"#": _refs(source)}
    for key in _DEF_KEYS:
        for def_name, sub in (source.get(key) or {}).items():
            graph["#/" + key + "/" + def_name.replace("~", "~0").replace("/", "~1")] = _refs(sub)
    done: set[str] = set()

    def visit(ref: str, trail: list[str]) -> None:
        if ref in trail:
            loop = [*trail[trail.index(ref):], ref]
            cycle = " -> ".join(r.rsplit("/", 1)[-1].strip("#") or "the root" for r in loop)
            raise ConfigError(f"{name} is recursive ({cycle}): the API refuses recursive schemas; "
                              "unroll it to a fixed depth (a model per level)")
        if ref not in graph:
            raise ConfigError(f"the $ref {ref!r} in {name} is not one of its definitions: the API "
                              "accepts only local references such as '#/$defs/Name'")
        if ref not in done:
            for target in sorted(graph[ref]):
                visit(target, [*trail, ref])
            done.add(ref)

    visit("#", [])


def _counts(node: Any) -> tuple[int, int]:
    """Optional properties, and nodes using unions (anyOf), in a wire schema."""
    if isinstance(node, list):
        pairs = [_counts(item) for item in node]
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    if not isinstance(node, dict):
        return 0, 0
    optional = len(set(node["properties"]) - set(node.get("required", ()))) if "properties" in node else 0
    inner = _counts([v for k, v in node.items() if k not in ("enum", "const", "default", "required")])
    return optional + inner[0], ("anyOf" in node) + inner[1]


def _check_limits(body: dict[str, Any], name: str) -> None:
    optional, unions = _counts(body)
    if optional > MAX_OPTIONAL:
        raise ConfigError(f"{name} contains too many optional parameters ({optional}; limit: "
                          f"{MAX_OPTIONAL}): make some required (no default in a model, no '?' inline)")
    if unions > MAX_UNIONS:
        raise ConfigError(f"{name} contains too many parameters with union types ({unions}; limit: "
                          f"{MAX_UNIONS}; Optional[X] counts): give some of them a single type")


# -- columns ---------------------------------------------------------------------------------------

_KINDS: dict[tuple[Any, Any], Kind] = {
    ("integer", None): "int", ("number", None): "float", ("boolean", None): "bool", ("string", None): "str",
    ("string", "date"): "date", ("string", "date-time"): "datetime",
}


def _fields(body: dict[str, Any]) -> list[Field]:
    required = set(body.get("required", ()))
    return [_field(name, sub, name in required, body) for name, sub in body["properties"].items()]


def _field(name: str, node: dict[str, Any], required: bool, root: dict[str, Any]) -> Field:
    node, nullable = _deref(root, node), False
    if "anyOf" in node:
        branches = [_deref(root, b) for b in node["anyOf"]]
        others = [b for b in branches if b.get("type") != "null"]
        node, nullable = others[0] if len(others) == 1 else {}, len(others) < len(branches)
    if "enum" in node or "const" in node:
        values = tuple(node["enum"]) if "enum" in node else (node["const"],)
        return Field(name, "enum", required, nullable or None in values, values)
    kind = _KINDS.get((node.get("type"), node.get("format"))) or _KINDS.get((node.get("type"), None))
    return Field(name, kind or "object", required, nullable)


def _deref(root: Mapping[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        node = _resolve(root, node["$ref"])
    return node


# -- the answer ------------------------------------------------------------------------------------

def _matches(value: str, pattern: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:  # an ECMA-262 pattern Python cannot read: the API enforced or described it
        return True


_LIMITS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "minimum": (operator.ge, "is less than the minimum {}"),
    "maximum": (operator.le, "is more than the maximum {}"),
    "exclusiveMinimum": (operator.gt, "is not more than the exclusive minimum {}"),
    "exclusiveMaximum": (operator.lt, "is not less than the exclusive maximum {}"),
    "multipleOf": (lambda v, m: math.isclose(v / m, round(v / m), rel_tol=0, abs_tol=1e-9),
                   "is not a multiple of {}"),
    "minLength": (lambda v, n: len(v) >= n, "is shorter than {} characters"),
    "maxLength": (lambda v, n: len(v) <= n, "is longer than {} characters"),
    "pattern": (_matches, "does not match the pattern {}"),
    "minItems": (lambda v, n: len(v) >= n, "has fewer than {} items"),
    "maxItems": (lambda v, n: len(v) <= n, "has more than {} items"),
    "uniqueItems": (lambda v, u: not u or len({json.dumps(x, sort_keys=True) for x in v}) == len(v),
                    "has repeated items (uniqueItems: {})"),
}
_JSON_TYPES: dict[str, Any] = {"object": dict, "array": list, "string": str, "boolean": bool,
                               "null": type(None)}


def _is_json_type(value: Any, type_: str) -> bool:
    if type_ == "integer":
        return type(value) is int or (type(value) is float and value.is_integer())
    if type_ == "number":
        return type(value) in (int, float)
    return isinstance(value, _JSON_TYPES.get(type_, object))


class _Mismatch(Exception):
    """``(path, message)``: where the answer first fails the schema, and how."""


class _Checker:
    """Walks an answer beside the schema as given: puts enum and const values in the schema's
    spelling and turns a map's ``{key, value}`` pairs back into a dict. When ``strict`` (no pydantic
    behind it) it also checks every constraint it knows, the moved keywords included, raising
    :class:`_Mismatch` at the first failure; when ``python``, dates become ``date``/``datetime``."""

    def __init__(self, root: dict[str, Any], strict: bool, python: bool) -> None:
        self.root, self.strict, self.python = root, strict, python

    def walk(self, value: Any, node: Any, path: str) -> Any:
        if not isinstance(node, dict):
            return value
        if isinstance(node.get("$ref"), str):
            node = {**_resolve(self.root, node["$ref"]), **{k: v for k, v in node.items() if k != "$ref"}}
        for sub in node.get("allOf", ()):
            value = self.walk(value, sub, path)
        if node.get("anyOf") or node.get("oneOf"):
            value = self.choose(value, node.get("anyOf") or node["oneOf"], path)
        for allowed in [node[k] if k == "enum" else [node[k]] for k in ("enum", "const") if k in node]:
            value = self.literal(value, allowed, path)
        types = node.get("type")
        if types is None:
            return value
        for type_ in types if isinstance(types, list) else [types]:
            pairs = type(value) is list and isinstance(node.get("additionalProperties"), dict)  # a map
            if _is_json_type(value, type_) or (type_ == "object" and pairs):
                return self.typed(value, type_, node, path)
        if self.strict:
            raise _Mismatch(path, f"expected {' or '.join(types) if isinstance(types, list) else types}, "
                                  f"got {_show(value)}")
        return value

    def choose(self, value: Any, choices: list[Any], path: str) -> Any:
        failures = []
        for sub in choices:
            try:
                return _Checker(self.root, True, self.python).walk(value, sub, path)
            except _Mismatch as e:
                failures.append(e.args[1])
        if self.strict:
            raise _Mismatch(path, f"{_show(value)} matches none of {len(choices)} choices ({failures[0]})")
        return value

    def literal(self, value: Any, allowed: list[Any], path: str) -> Any:
        for option in allowed:
            if option == value and isinstance(option, bool) == isinstance(value, bool):
                return option
        for option in allowed:
            if isinstance(option, str) and isinstance(value, str) and option.casefold() == value.casefold():
                return option
        if self.strict:
            raise _Mismatch(path, f"{_show(value)} is not one of {', '.join(map(_show, allowed))}")
        return value

    def typed(self, value: Any, type_: str, node: dict[str, Any], path: str) -> Any:
        if type_ == "object":
            return self.object(value, node, path)
        if type_ == "array":
            value = [self.walk(v, node.get("items"), f"{path}[{i}]") for i, v in enumerate(value)]
        if not self.strict:
            return value
        for key, bound in node.items():
            holds, message = _LIMITS.get(key, (None, ""))
            draft4 = type(bound) is bool and key in _NUMBER_KEYS  # exclusiveMinimum: true qualifies minimum
            if holds and key in _TYPE_KEYS.get(type_, ()) and not draft4 and not holds(value, bound):
                subject = f"the list of {len(value)}" if type_ == "array" else _show(value)
                raise _Mismatch(path, f"{subject} {message.format(bound)}")
        if type_ == "integer":
            return int(value)
        if type_ == "number" and self.python:
            return float(value)
        if type_ == "string" and node.get("format") in ("date", "date-time"):
            return self.date(value, node["format"], path)
        return value

    def object(self, value: Any, node: dict[str, Any], path: str) -> Any:
        if isinstance(value, list):  # a map sent as {key, value} pairs
            if not all(isinstance(p, dict) and set(p) == {"key", "value"} for p in value):
                if self.strict:
                    raise _Mismatch(path, "expected a map as a list of {key, value} pairs")
                return value
            value = {p["key"]: p["value"] for p in value}
        properties, extra = node.get("properties", {}), node.get("additionalProperties")
        out = {}
        for key, item in value.items():
            if key in properties or (isinstance(extra, dict) and extra):
                out[key] = self.walk(item, properties.get(key, extra), f"{path}.{key}")
            elif self.strict:
                allowed = ", ".join(properties) or "none"
                raise _Mismatch(path, f"unexpected property {key!r} (allowed: {allowed})")
            else:
                out[key] = item
        missing = [key for key in node.get("required", ()) if key not in value]
        if missing and self.strict:
            raise _Mismatch(path, f"missing required property {missing[0]!r}")
        return out

    def date(self, value: str, format_: str, path: str) -> Any:
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value  # Python 3.10 reads no Z
        try:
            parsed = dt.date.fromisoformat(text) if format_ == "date" else dt.datetime.fromisoformat(text)
        except ValueError:
            raise _Mismatch(path, f"{_show(value)} is not an ISO 8601 {format_}") from None
        return parsed if self.python else value


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where(path: str) -> str:
    return repr(path.lstrip(".")) if path else "the root"


def _loc(parts: Iterable[Any]) -> str:
    """pydantic's error location as a path: ``items[2].price``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts if p != "")
