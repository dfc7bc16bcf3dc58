"""The one place that knows the Messages API's JSON (no I/O).

Request bodies are built and checked here, replies and error bodies parsed here,
and ``MessageAssembler`` turns the server-sent events of a stream into a message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import pricing
from .errors import APIError, ConfigError, MalformedResponseError, SpendLimitReached, error_for_status
from .reply import Reply, Usage

DEFAULT_MODEL = "claude-opus-5-5"
DEFAULT_API_VERSION = "2026-10-21"
LEGACY_API_VERSION = "2023-06-01"
API_VERSIONS = (LEGACY_API_VERSION, DEFAULT_API_VERSION)
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
EFFORTS = ("low", "medium", "high", "xhigh", "max")
# Fields that never change the answer: left out of cache keys (``cache_control`` anywhere in the
# body too: see ``cache_fields``).
NOT_IN_CACHE_KEY = frozenset({"stream", "metadata"})
COUNT_TOKENS_FIELDS = (
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "cache_control",
)

# The status an `error` event inside a stream stands for, so it reads and retries like the HTTP error.
_STATUS_OF_TYPE = {
    "overloaded_error": 529,
    "api_error": 500,
    "rate_limit_error": 429,
    "timeout_error": 504,
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "billing_error": 402,
}

_NEW_MODEL_ID = re.compile(r"claude-([a-z]+)-(\d+)(?:-(\d{1,2}))?(?:-\d{8})?$")


def accepts_prefill(model: str) -> bool:
    """Whether the model continues a final assistant turn (api-notes §8).

    Claude 4.6 and later, every 5.x model, Fable and Mythos refuse prefill with a 400;
    older models (``claude-3-…``, ``claude-sonnet-4-5``) accept it. An ID we cannot
    read is taken as new: a follow-up turn works on every model, a prefill does not.
    """
    if re.match(r"claude-\d", model):
        return True
    m = _NEW_MODEL_ID.match(model)
    if not m or m.group(1) in ("fable", "mythos"):
        return False
    return (int(m.group(2)), int(m.group(3) or 0)) < (4, 6)


def _cache_mark(ttl: bool | str) -> dict[str, str]:
    if ttl is True or ttl == "5m":
        return {"type": "ephemeral"}
    if ttl == "1h":
        return {"type": "ephemeral", "ttl": "1h"}
    raise ConfigError(f"cache TTL must be True, '5m' or '1h', got {ttl!r}")


def _messages(prompt_or_messages: Any) -> list[dict[str, Any]]:
    if isinstance(prompt_or_messages, str):
        if not prompt_or_messages.strip():
            raise ConfigError("the prompt is empty: write something to ask")
        return [{"role": "user", "content": prompt_or_messages}]
    if not isinstance(prompt_or_messages, (list, tuple)) or not prompt_or_messages:
        raise ConfigError(
            "pass a prompt string or a non-empty list of {'role': ..., 'content': ...} messages, "
            f"got {type(prompt_or_messages).__name__}"
        )
    out = []
    for i, m in enumerate(prompt_or_messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant") or "content" not in m:
            raise ConfigError(
                f"message {i} must be a dict with role 'user' or 'assistant' and content, got {m!r:.80}"
            )
        out.append(m)
    return out


def _thinking(thinking: Any) -> dict[str, Any] | None:
    if thinking is None:
        return None
    if thinking is True or thinking == "adaptive":
        return {"type": "adaptive"}
    if thinking is False or thinking == "disabled":
        return {"type": "disabled"}
    if thinking in ("summarized", "omitted"):
        return {"type": "adaptive", "display": thinking}
    if isinstance(thinking, int):
        return {"type": "enabled", "budget_tokens": thinking}
    if isinstance(thinking, dict):
        return thinking
    raise ConfigError(
        f"thinking must be True, False, 'adaptive', 'summarized', 'omitted', a token budget "
        f"or a dict, got {thinking!r}"
    )


def _check_sampling(params: dict[str, Any], api_version: str) -> None:
    used = [p for p in SAMPLING_PARAMS if p in params]
    if used and api_version != LEGACY_API_VERSION:
        raise ConfigError(
            f"{', '.join(used)} no longer exist{'s' if len(used) == 1 else ''} in API version {api_version}: "
            "use effort= or thinking= instead, or pass api_version='2023-06-01' to use them with older models"
        )


def build_body(
    prompt_or_messages: Any,
    *,
    model: str,
    max_tokens: int,
    api_version: str = DEFAULT_API_VERSION,
    system: str | list[dict[str, Any]] | None = None,
    stop_sequences: list[str] | None = None,
    thinking: Any = None,
    effort: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: dict[str, Any] | None = None,
    cache_system: bool | str | None = None,
    cache_prefix: bool | str | None = None,
    **params: Any,
) -> dict[str, Any]:
    """A ``/v1/messages`` body (without ``stream``), checked before anything is sent.

    ``cache_system`` marks the system prompt, ``cache_prefix`` the conversation before the
    last user turn, with ``cache_control`` (True or '5m' for the 5-minute cache, '1h').
    Other keyword arguments go into the body as they are.
    """
    if api_version not in API_VERSIONS:
        raise ConfigError(f"api_version must be one of {', '.join(API_VERSIONS)}, got {api_version!r}")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"model must be a model ID such as {DEFAULT_MODEL!r}, got {model!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    _check_sampling(params, api_version)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": _messages(prompt_or_messages),
    }
    if system:
        body["system"] = system
        if cache_system:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": system}] if isinstance(system, str) else [dict(b) for b in system]
            )
            blocks[-1]["cache_control"] = _cache_mark(cache_system)
            body["system"] = blocks
    if cache_prefix:
        body["messages"] = _mark_prefix(body["messages"], _cache_mark(cache_prefix))
    if stop_sequences:
        if isinstance(stop_sequences, str) or not all(isinstance(s, str) and s for s in stop_sequences):
            raise ConfigError(f"stop_sequences must be a list of non-empty strings, got {stop_sequences!r}")
        body["stop_sequences"] = list(stop_sequences)
    if (t := _thinking(thinking)) is not None:
        body["thinking"] = t
    if effort is not None:
        if effort not in EFFORTS:
            raise ConfigError(f"effort must be one of {', '.join(EFFORTS)}, got {effort!r}")
        body["output_config"] = {**params.pop("output_config", {}), "effort": effort}
    if tools:
        body["tools"] = tools
    if tool_choice:
        body["tool_choice"] = tool_choice
    body.update({k: v for k, v in params.items() if v is not None})
    return body


def _mark_prefix(messages: list[dict[str, Any]], mark: dict[str, str]) -> list[dict[str, Any]]:
    """Put ``mark`` on the last block before the final user turn (the part that repeats)."""
    if len(messages) < 2:
        return messages
    out = list(messages)
    i = len(out) - 2
    content = out[i]["content"]
    blocks: list[dict[str, Any]] = (
        [{"type": "text", "text": content}] if isinstance(content, str) else [dict(b) for b in content]
    )
    if not blocks:
        return messages
    blocks[-1]["cache_control"] = mark
    out[i] = {**out[i], "content": blocks}
    return out


def count_tokens_body(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in COUNT_TOKENS_FIELDS if k in body}


class CacheFields(dict[str, Any]):
    """What :func:`cache_fields` returns: the fields (a plain dict to every reader), plus ``legacy``,
    the fields as keys were computed before ``cache_control`` was left out of them, or None when
    those are the same. The response cache reads an entry under the legacy key once, when the new
    key misses, so answers stored (or recorded in cassettes) by earlier versions stay reachable."""

    legacy: dict[str, Any] | None = None


def cache_fields(body: dict[str, Any], files: Mapping[str, str] | None = None) -> CacheFields:
    """The part of a request body that shapes the answer, in one form for requests that differ only
    in how they are written: without ``stream`` and ``metadata``, without any ``cache_control``
    (top level, tools, system and message blocks, blocks inside a tool result: a mark changes the
    price, not the answer), and with a system prompt or a turn's content that is a list of plain
    text blocks written as the text they join (the API reads a string as one text block; a batch
    that splits a turn to mark its shared head asks the same question as the string).
    Images and documents are keyed by their content's SHA-256 (see ``_addressed``; ``files``: file id
    -> sha256 of what was uploaded under it).
    Idempotent: fields given back to it come back equal, their ``legacy`` kept."""
    legacy = {k: v for k, v in body.items() if k not in NOT_IN_CACHE_KEY}
    fields = CacheFields({k: v for k, v in legacy.items() if k != "cache_control"})
    if isinstance(system := fields.get("system"), list):
        fields["system"] = _plain(system)
    if isinstance(tools := fields.get("tools"), list):
        fields["tools"] = [_unmarked(t) for t in tools]
    if isinstance(messages := fields.get("messages"), list):
        fields["messages"] = [_unmarked_message(m, files) for m in messages]
    previous = getattr(body, "legacy", None)
    fields.legacy = previous if previous is not None else (legacy if legacy != fields else None)
    return fields


def _unmarked(block: Any) -> Any:
    """``block`` without ``cache_control`` (and so the blocks of a tool result's content)."""
    if not isinstance(block, dict):
        return block
    out = {k: v for k, v in block.items() if k != "cache_control"}
    if isinstance(content := out.get("content"), list):
        out["content"] = [_unmarked(b) for b in content]
    return out


def _plain(blocks: list[Any]) -> Any:
    """Blocks without marks; plain text blocks only (``type`` and ``text``) become the text they join."""
    unmarked = [_unmarked(b) for b in blocks]
    if unmarked and all(isinstance(b, dict) and b.keys() == {"type", "text"} and b["type"] == "text"
                        and isinstance(b["text"], str) for b in unmarked):
        return "".join(b["text"] for b in unmarked)
    return unmarked


def _unmarked_message(message: Any, files: Mapping[str, str] | None = None) -> Any:
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return message
    return {**message, "content": _plain([_addressed(b, files) for b in message["content"]])}


def _addressed(block: Any, files: Mapping[str, str] | None) -> Any:
    """An image or document block keyed by its content: base64 data, and an uploaded file whose
    content ``files`` knows (file id -> sha256), become the content's SHA-256, so the same bytes sent
    either way (or uploaded again under a new id) are one cache entry, and no file id or base64 is
    part of a key."""
    if not isinstance(block, dict) or block.get("type") not in ("image", "document"):
        return block
    source = block.get("source")
    if not isinstance(source, dict):
        return block
    digest = None
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        try:
            digest = hashlib.sha256(base64.b64decode(source["data"], validate=True)).hexdigest()
        except ValueError:
            return block
    elif source.get("type") == "file" and files is not None:
        digest = files.get(str(source.get("file_id")))
    if digest is None:
        return block
    return {**block, "source": {"type": "content", "sha256": digest}}


def text_of(content: list[dict[str, Any]]) -> str:
    return "".join(b.get("text", "") for b in content if b.get("type") == "text")


def status_of_type(error_type: str | None) -> int:
    """The HTTP status an error type stands for (for errors that arrive without one)."""
    return _STATUS_OF_TYPE.get(error_type or "", 500)


def reply_from_message(message: dict[str, Any], *, model: str = "", batch: bool = False,
                       usage: Usage | None = None, **fields: Any) -> Reply:
    """A priced ``Reply`` from a Messages API message (``usage`` replaces the message's own)."""
    content = message.get("content") or []
    usage = usage if usage is not None else Usage.from_api(message.get("usage"))
    name = message.get("model") or model
    return Reply(text=fields.pop("text", None) or text_of(content), content=content,
                 stop_reason=message.get("stop_reason"), stop_sequence=message.get("stop_sequence"),
                 usage=usage, model=name, id=message.get("id", ""),
                 cost=pricing.cost(name, usage, batch=batch), batch=batch, **fields)


def _peek(text: str, n: int = 60) -> str:
    one = " ".join(text.split())
    return repr(one[:n] + ("…" if len(one) > n else ""))


def malformed(what: str, request_id: str | None = None) -> MalformedResponseError:
    return MalformedResponseError(what, status=200, type="malformed_response", request_id=request_id)


def parse_json(raw: bytes, source: str) -> Any:
    """The JSON document of a 200 answer; MalformedResponseError naming what came instead."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed(f"the answer from {source} is not UTF-8 text ({len(raw):,} bytes)") from None
    if not text.strip():
        raise malformed(f"the answer from {source} is empty (expected JSON)")
    try:
        return json.loads(text)
    except ValueError:
        raise malformed(f"the answer from {source} is not JSON: {_peek(text)}") from None
    except RecursionError:
        raise malformed(f"the answer from {source} is JSON nested too deeply to read") from None


def parse_message(raw: bytes, source: str) -> dict[str, Any]:
    """A Messages API message from the bytes of a 200 answer, checked (see :func:`check_message`)."""
    message = parse_json(raw, source)
    check_message(message, source)
    return message  # type: ignore[no-any-return]


def _kind(value: Any) -> str:
    return {list: "a JSON list", dict: "an object", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), f"a {type(value).__name__}")


def check_usage(usage: Any, where: str) -> None:
    """Usage counts are integers (or null); anything else is not the protocol."""
    if usage is None:
        return
    if not isinstance(usage, dict):
        raise malformed(f"{where}: usage is {_kind(usage)}, not an object")
    for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        value = usage.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise malformed(f"{where}: usage.{name} is {value!r}, not an integer")
    split = usage.get("cache_creation")
    if split is not None:
        if not isinstance(split, dict):
            raise malformed(f"{where}: usage.cache_creation is {_kind(split)}, not an object")
        for name, value in split.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise malformed(f"{where}: usage.cache_creation.{name} is {value!r}, not an integer")


def check_message(message: Any, source: str) -> None:
    """MalformedResponseError unless ``message`` has the shape of a Messages API message (the fields
    this package reads: content blocks, their text, usage, stop reason, model, id)."""
    where = f"the answer from {source}"
    if not isinstance(message, dict):
        raise malformed(f"{where} is {_kind(message)}, not a message object")
    content = message.get("content")
    if not isinstance(content, list):
        raise malformed(f"{where}: content is {_kind(content)}, not a list of blocks")
    for i, block in enumerate(content):
        if not isinstance(block, dict):
            raise malformed(f"{where}: content[{i}] is {_kind(block)}, not a block")
        if block.get("type") == "text" and not isinstance(block.get("text"), str):
            raise malformed(f"{where}: content[{i}].text is {_kind(block.get('text'))}, not a string")
    check_usage(message.get("usage"), where)
    for name in ("model", "id", "stop_reason", "stop_sequence"):
        value = message.get(name)
        if value is not None and not isinstance(value, str):
            raise malformed(f"{where}: {name} is {_kind(value)}, not a string")


def parse_error(status: int, content: bytes, headers: Any) -> APIError:
    """The exception for an error response (body as documented in api-notes §3, or anything else)."""
    request_id = headers.get("request-id") if headers is not None else None
    err: dict[str, Any] = {}
    try:
        body = json.loads(content)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            request_id = body.get("request_id") or request_id
    except ValueError:
        body = None
    etype = err.get("type")
    message = err.get("message") or (content[:200].decode("utf-8", "replace").strip() or "no error message")
    cls = error_for_status(status, etype)
    if status == 429 and (err.get("details") or {}).get("error_code") == "enforced_spend_limit_reached":
        cls = SpendLimitReached
        message = (
            f"{message} (the monthly spend limit is reached: raise it in the Console or wait for the reset)"
        )
    return cls(message, status=status, type=etype, request_id=request_id, body=body)


def error_from_event(data: dict[str, Any], request_id: str | None) -> APIError:
    """The exception for an ``error`` event that arrived inside a 200 stream."""
    err = data.get("error") or {}
    etype = err.get("type")
    status = status_of_type(etype)
    message = f"{err.get('message') or 'error'} (mid-stream)"
    return error_for_status(status, etype)(
        message, status=status, type=etype, request_id=request_id, body=data
    )


_DELTA_FIELDS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json",
                 "signature_delta": "signature"}


def _index(obj: dict[str, Any], data: str) -> int:
    index = obj.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 10_000:
        raise malformed(f"a {obj.get('type')} event has no valid block index: {_peek(data)}")
    return index


def _field(obj: dict[str, Any], name: str, kind: type, data: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind):
        raise malformed(f"a {obj.get('type')} event has {name} {_kind(value)}: {_peek(data)}")
    return value


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Text the event added to the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """Thinking the event added (a ``thinking_delta``)."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamError:
    """An ``error`` event inside a 200 stream; :func:`error_from_event` makes it the exception
    (the assembler does not know the request id, which the caller adds)."""

    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Stop:
    """``message_stop``: the message is whole."""


StreamEvent = TextDelta | ThinkingDelta | StreamError | Stop
_STOP = Stop()


class MessageAssembler:
    """Builds a message from the events of one Messages stream.

    ``feed`` takes an event name and its data line and returns what the caller acts on (httpx-sse's
    ``decode(line) -> ServerSentEvent | None``): a :class:`TextDelta`, a :class:`ThinkingDelta`, a
    :class:`StreamError` for an ``error`` event, :class:`Stop` for ``message_stop``, or None for an
    event that only builds the message (starts and stops of blocks, usage, pings, signatures).
    A stream that ends before ``Stop`` is truncated (``done`` says whether it came). Unknown
    events and delta types are ignored, as the API asks.
    """

    def __init__(self) -> None:
        self.message: dict[str, Any] = {}
        self.blocks: list[dict[str, Any]] = []
        self._parts: dict[int, list[str]] = {}
        self.usage: dict[str, Any] = {}
        self.done = False

    def feed(self, event: str, data: str) -> StreamEvent | None:
        if event == "ping" or not data:
            return None
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError):
            raise malformed(f"a stream event is not JSON: {_peek(data)}") from None
        if not isinstance(obj, dict):
            raise malformed(f"a stream event is {_kind(obj)}, not an object: {_peek(data)}")
        kind = obj.get("type", event)
        if kind == "content_block_delta":  # the per-token path: checks inlined
            index, delta = obj.get("index"), obj.get("delta")
            if type(index) is not int or type(delta) is not dict or not 0 <= index < 10_000:
                index = _index(obj, data)  # raises, naming what came
                delta = _field(obj, "delta", dict, data)
            return self._delta(index, delta)
        if kind == "content_block_start":
            self._start(_index(obj, data), _field(obj, "content_block", dict, data))
        elif kind == "content_block_stop":
            self._stop(_index(obj, data), data)
        elif kind == "message_start":
            self.message = dict(_field(obj, "message", dict, data))
            check_usage(self.message.get("usage"), "the message_start event")
            self.usage = dict(self.message.get("usage") or {})
        elif kind == "message_delta":
            delta = obj.get("delta") or {}
            if not isinstance(delta, dict):
                raise malformed(f"a message_delta event has a delta that is {_kind(delta)}: {_peek(data)}")
            check_usage(obj.get("usage"), "a message_delta event")
            self.message.update(delta)
            self.usage.update({k: v for k, v in (obj.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self.done = True
            return _STOP
        elif kind == "error":
            return StreamError(obj)
        return None

    def _start(self, index: int, block: dict[str, Any]) -> None:
        while len(self.blocks) <= index:
            self.blocks.append({})
        self.blocks[index] = dict(block)
        self._parts[index] = []

    def _delta(self, index: int, delta: dict[str, Any]) -> TextDelta | ThinkingDelta | None:
        kind = delta.get("type")
        parts = self._parts.get(index)
        if parts is None:  # a delta without its start: keep going, the block stays partial
            self._start(index, {"type": "text" if kind == "text_delta" else "unknown"})
            parts = self._parts[index]
        field = _DELTA_FIELDS.get(kind)  # type: ignore[arg-type]
        value = delta.get(field) if field is not None else None
        if field is not None and not isinstance(value, str):
            raise malformed(f"a {kind} has {field} {_kind(value)}, not a string")
        if kind == "text_delta":
            parts.append(value)  # type: ignore[arg-type]
            return TextDelta(value) if value else None  # type: ignore[arg-type]
        if kind == "thinking_delta":
            parts.append(value)  # type: ignore[arg-type]
            return ThinkingDelta(value) if value else None  # type: ignore[arg-type]
        if kind == "input_json_delta":
            parts.append(value)  # type: ignore[arg-type]
        elif kind == "signature_delta":
            self.blocks[index]["signature"] = self.blocks[index].get("signature", "") + value  # type: ignore[operator]
        elif kind == "citations_delta":
            self.blocks[index].setdefault("citations", []).append(delta.get("citation"))
        return None

    def _stop(self, index: int, data: str) -> None:
        if index >= len(self.blocks):
            raise malformed(f"a content_block_stop for block {index}, which never started: {_peek(data)}")
        block = self.blocks[index]
        joined = "".join(self._parts.pop(index, []))
        kind = block.get("type")
        if kind == "text":
            block["text"] = str(block.get("text") or "") + joined
        elif kind == "thinking":
            block["thinking"] = str(block.get("thinking") or "") + joined
        elif kind in ("tool_use", "server_tool_use") and joined:
            try:
                block["input"] = json.loads(joined)
            except ValueError:
                raise malformed(f"the input of tool call {block.get('name')!r} is not JSON: {_peek(joined)}"
                                ) from None

    @property
    def text(self) -> str:
        """All text so far, complete blocks and the one still arriving."""
        out = []
        for i, b in enumerate(self.blocks):
            if b.get("type") == "text":
                out.append(b.get("text", ""))
                out.extend(self._parts.get(i, ()))
        return "".join(out)

    def content(self) -> list[dict[str, Any]]:
        """The finished blocks (a block still open is left out)."""
        return [b for i, b in enumerate(self.blocks) if b and i not in self._parts]
