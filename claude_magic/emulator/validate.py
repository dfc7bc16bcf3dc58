"""Request checks that answer 400/404 as the API does (api-notes §0, §1, §8, §10.3)."""

from __future__ import annotations

from typing import Any

from .generate import content_text
from .models import ModelSpec, find_model

API_VERSIONS = ("2023-06-01", "2026-10-21")
NEW_VERSION = "2026-10-21"
SAMPLING = ("temperature", "top_p", "top_k")
PREFILL_REFUSED = (
    "This model does not support assistant message prefill. The conversation must end with a user message."
)
TRAILING_WHITESPACE = "messages: final assistant content cannot end with trailing whitespace"


class APIError(Exception):
    """An error answer: HTTP status, error type, message, extra headers and ``error`` fields."""

    def __init__(self, status: int, type_: str, message: str, *, headers: dict[str, str] | None = None,
                 details: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = headers or {}
        self.details = details


def invalid(message: str) -> APIError:
    return APIError(400, "invalid_request_error", message)


def check_model(body: dict) -> ModelSpec:
    model = body.get("model")
    if model is None:
        raise invalid("model: Field required")
    if not isinstance(model, str) or not model:
        raise invalid(f"model: Input should be a valid string, got {model!r}")
    spec = find_model(model)
    if spec is None:
        raise APIError(404, "not_found_error", f"model: {model}")
    return spec


def check_messages(body: dict, version: str) -> None:
    messages = body.get("messages")
    if messages is None:
        raise invalid("messages: Field required")
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: at least one message is required")
    if len(messages) > 100_000:
        raise invalid(f"messages: at most 100000 messages are allowed, got {len(messages)}")
    for i, message in enumerate(messages):
        _check_message(i, message, version, final=i == len(messages) - 1)
    if "system" in body:
        _check_system(body["system"])


def _check_message(i: int, message: Any, version: str, *, final: bool) -> None:
    if not isinstance(message, dict):
        raise invalid(f"messages.{i}: Input should be a valid dictionary")
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise invalid(f"messages.{i}.role: Input should be 'user' or 'assistant', got {role!r}")
    content = message.get("content")
    if isinstance(content, str):
        if not content and not (final and role == "assistant"):
            raise invalid(f"messages.{i}: all messages must have non-empty content except for the "
                          "optional final assistant message")
        return
    if not isinstance(content, list):
        raise invalid(f"messages.{i}.content: Input should be a valid string or list of content blocks")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise invalid(f"messages.{i}.content.{j}: each content block needs a 'type'")
        _check_block(f"messages.{i}.content.{j}", block)
        if version == NEW_VERSION:
            _check_block_2026(i, j, role, block)


def _check_block(where: str, block: dict) -> None:
    """The fields the emulator reads from the block types it knows; other types pass as they are."""
    kind = block["type"]
    if kind == "text":
        _check_text(where, block)
    elif kind in ("image", "document"):
        source = block.get("source")
        if source is None:
            raise invalid(f"{where}.source: Field required")
        if not isinstance(source, dict):
            raise invalid(f"{where}.source: Input should be a valid dictionary, got {source!r:.40}")


def _check_text(where: str, block: dict) -> None:
    text = block.get("text")
    if text is None:
        raise invalid(f"{where}.text: Field required")
    if not isinstance(text, str):
        raise invalid(f"{where}.text: Input should be a valid string, got {text!r:.40}")
    if not text:
        raise invalid(f"{where}.text: text content blocks must be non-empty")


def _check_block_2026(i: int, j: int, role: str, block: dict) -> None:
    if role == "assistant" and block["type"] == "document":
        raise invalid(f"messages.{i}.content.{j}: document blocks are not allowed in assistant messages "
                      "in API version 2026-10-21")
    if role == "user" and block["type"] == "text" and block.get("citations"):
        raise invalid(f"messages.{i}.content.{j}.citations: citations on user text blocks were removed "
                      "in API version 2026-10-21")


def _check_system(system: Any) -> None:
    if isinstance(system, str):
        return
    if not isinstance(system, list) or not all(isinstance(b, dict) and b.get("type") == "text"
                                               for b in system):
        raise invalid("system: Input should be a valid string or a list of text blocks")
    for j, block in enumerate(system):
        _check_text(f"system.{j}", block)


def check_max_tokens(body: dict, spec: ModelSpec) -> None:
    value = body.get("max_tokens")
    if value is None:
        raise invalid("max_tokens: Field required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"max_tokens: Input should be a valid integer, got {value!r}")
    if value < 0:
        raise invalid(f"max_tokens: Input should be greater than or equal to 0, got {value}")
    if value > spec.max_output:
        raise invalid(f"max_tokens: {value} > {spec.max_output}, which is the maximum allowed number of "
                      f"output tokens for {spec.id}")


def check_sampling(body: dict, spec: ModelSpec, version: str) -> None:
    for name in SAMPLING:
        if name not in body:
            continue
        if version == NEW_VERSION:
            raise invalid(f"{name}: this parameter was removed in API version 2026-10-21; remove it, or send "
                          "anthropic-version: 2023-06-01 to use it with models that still support it")
        default = name == "temperature" and body[name] in (1, 1.0)
        if spec.strict_sampling and not default:
            raise invalid(f"{name}: {spec.id} only supports the default value of {name}; remove it")


def check_options(body: dict, spec: ModelSpec) -> None:
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise invalid("stop_sequences: Input should be a valid list of strings")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise invalid(f"stream: Input should be a valid boolean, got {body['stream']!r}")
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise invalid("tools: Input should be a valid list of tool objects")
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, dict):
        raise invalid(f"tool_choice: Input should be a valid dictionary, got {choice!r:.40}")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool") and spec.refuses_forced_tools:
        raise invalid(f"tool_choice: forced tool use (type '{choice.get('type')}') is not supported on "
                      f"{spec.id}; use tool_choice {{\"type\": \"auto\"}}")
    _check_thinking(body, spec)


def _check_thinking(body: dict, spec: ModelSpec) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "adaptive", "disabled"):
        raise invalid("thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'")
    if kind != "enabled":
        return
    if spec.refuses_manual_thinking:
        raise invalid("thinking.type.enabled is not supported for this model. Use thinking.type.adaptive "
                      "and output_config.effort instead.")
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        raise invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if budget >= body.get("max_tokens", 0):
        raise invalid("max_tokens must be greater than thinking.budget_tokens")


def check_prefill(body: dict, spec: ModelSpec) -> None:
    last = body["messages"][-1]
    if last.get("role") != "assistant":
        return
    text = content_text(last.get("content"))
    if text != text.rstrip():
        raise invalid(TRAILING_WHITESPACE)
    if not spec.accepts_prefill:
        raise invalid(PREFILL_REFUSED)


def check_messages_request(body: dict, version: str) -> ModelSpec:
    """All checks of POST /v1/messages (and of each Message Batches request); returns the model."""
    if not isinstance(body, dict):
        raise invalid("body: Input should be a JSON object")
    spec = check_model(body)
    check_max_tokens(body, spec)
    check_messages(body, version)
    check_sampling(body, spec, version)
    check_options(body, spec)
    check_prefill(body, spec)
    return spec


def check_count_request(body: dict, version: str) -> ModelSpec:
    """The checks of POST /v1/messages/count_tokens (no max_tokens)."""
    if not isinstance(body, dict):
        raise invalid("body: Input should be a JSON object")
    spec = check_model(body)
    check_messages(body, version)
    check_sampling(body, spec, version)
    return spec
