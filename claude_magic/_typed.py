"""Typed answers on the client's side: a ``schema=`` turned into the request's
``output_config.format``, and the answer's text into ``Reply.parsed``.

The schema itself (specs, the API's subset, checks, parsing) is :mod:`claude_magic.schema`; this
module only joins it to a request and a reply, so the client stays a façade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import AnswerInvalid, BadRequestError, ConfigError

if TYPE_CHECKING:
    from .reply import Reply
    from .schema import Schema

__all__ = ["check_supported", "explain", "schema_of", "typed_reply", "with_format"]

# Why an answer cannot be what the schema asked for, by stop_reason: the API's own words for it.
_UNUSABLE = {
    "max_tokens": "cut short by max_tokens, so its JSON is incomplete: raise max_tokens (--max-tokens)",
    "refusal": "a refusal (stop_reason 'refusal'), which need not match the schema",
}


def schema_of(spec: Any, namespace: Any = None) -> Schema | None:
    """``spec`` as a Schema (None for None); ConfigError for a spec that cannot be one."""
    if spec is None:
        return None
    from .schema import Schema

    return Schema.of(spec, namespace)


def with_format(options: dict[str, Any], schema: Schema | None) -> dict[str, Any]:
    """The request options with the schema in ``output_config.format`` (next to any ``effort``)."""
    if schema is None:
        return options
    if "output_format" in options:
        raise ConfigError("output_format is the deprecated form of structured outputs: pass schema= instead")
    config = options.get("output_config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"output_config must be a dict, got {type(config).__name__}")
    return {**options, "output_config": {**config, "format": schema.wire}}


def typed_reply(reply: Reply, schema: Schema | None) -> Reply:
    """Set ``reply.parsed`` from its text; AnswerInvalid (with ``.raw`` and ``.reply``) when the
    answer is unusable: truncated, a refusal, or not matching the schema."""
    if schema is None:
        return reply
    why = _UNUSABLE.get(reply.stop_reason or "")
    try:
        if why is not None:
            raise AnswerInvalid(f"the typed answer ({schema.name}) is {why} (text in .raw)", raw=reply.text)
        reply.parsed = schema.parse(reply.text)
    except AnswerInvalid as exc:
        exc.reply = reply
        raise
    return reply


# The 400s no local check can predict: the size of the grammar the API compiles from a schema.
_COMPILE = ("too complex for compilation", "grammar is too large", "grammar compilation timed out")


def explain(error: BaseException, schema: Schema | None) -> BaseException:
    """A 400 about compiling the schema, said in one line that names it and what to do; any other
    error as it is."""
    if schema is None or not isinstance(error, BadRequestError):
        return error
    if not any(phrase in str(error).lower() for phrase in _COMPILE):
        return error
    return BadRequestError(f"{error.message} (the schema {schema.name} is too big for the API's grammar: "
                           "fewer fields, shorter enums, fewer optional or union-typed fields)",
                           status=error.status, type=error.type, request_id=error.request_id)


def check_supported(model: str, capabilities: dict[str, Any] | None) -> None:
    """ConfigError when the models endpoint says ``model`` has no structured outputs (None: it did
    not say, and the API will)."""
    if not isinstance(capabilities, dict):
        return
    outputs = capabilities.get("structured_outputs")
    if isinstance(outputs, dict) and outputs.get("supported") is False:
        raise ConfigError(f"{model} does not support typed answers (structured outputs): use a model that "
                          "does, e.g. claude-haiku-5-5, or drop the schema")
