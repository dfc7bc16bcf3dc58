"""The models the emulator knows and their per-model rules.

``capabilities`` in GET /v1/models describe what the emulator accepts from each model: thinking types
from the flags below, structured outputs from ``structured_outputs``; the API's other capabilities
(batch, citations, images, PDFs, effort levels, server tools, context management) are accepted from
every model, so they read ``supported: true``.

Structured outputs follow the docs' model list (Fable 5/5.1, Mythos 5/5.1/Preview, Opus 4.5-4.8, 5
and 5.5, Sonnet 4.5, 4.6 and 5, Haiku 4.5). That list was written before Haiku 5.5, Fable 5.2 and
Mythos 5.2 were released, so those are taken to support them as their predecessors do; Sonnet 5.5 was
out and is not on it, nor are Sonnet 4 and Opus 4: those three answer a format with 400.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import paging


@dataclass(frozen=True)
class ModelSpec:
    id: str
    display_name: str
    line: str
    context: int                    # max input tokens
    max_output: int                 # max value of max_tokens
    created_at: str                 # RFC 3339 release date
    accepts_prefill: bool = False   # only models before 4.6 continue a final assistant turn
    always_thinks: bool = False     # thinking cannot be turned off; a thinking block comes first
    refuses_forced_tools: bool = False   # tool_choice any/tool -> 400
    refuses_manual_thinking: bool = False  # thinking.type "enabled" -> 400 (Sonnet 5+)
    strict_sampling: bool = False   # non-default temperature/top_p/top_k -> 400 even under 2023-06-01
    structured_outputs: bool = True  # output_config.format (JSON outputs) is accepted
    lifecycle: str = "active"
    aliases: tuple[str, ...] = ()


EFFORT_LEVELS = ("low", "medium", "high", "xhigh", "max")
_K = 1000
_M = 1_000_000

_SPECS = [
    ModelSpec("claude-fable-5-2", "Claude Fable 5.2", "fable", _M, 128 * _K, "2026-11-09T00:00:00Z",
              always_thinks=True),
    ModelSpec("claude-haiku-5-5", "Claude Haiku 5.5", "haiku", _M, 128 * _K, "2026-10-07T00:00:00Z"),
    ModelSpec("claude-opus-5-5", "Claude Opus 5.5", "opus", _M, 128 * _K, "2026-09-22T00:00:00Z",
              always_thinks=True, refuses_forced_tools=True),
    ModelSpec("claude-sonnet-5-5", "Claude Sonnet 5.5", "sonnet", _M, 128 * _K, "2026-09-15T00:00:00Z",
              refuses_forced_tools=True, refuses_manual_thinking=True, strict_sampling=True,
              structured_outputs=False),
    ModelSpec("claude-fable-5-1", "Claude Fable 5.1", "fable", _M, 128 * _K, "2026-09-01T00:00:00Z",
              always_thinks=True, refuses_forced_tools=True),
    ModelSpec("claude-mythos-5-2", "Claude Mythos 5.2", "mythos", _M, 128 * _K, "2026-11-09T00:00:00Z"),
    ModelSpec("claude-mythos-5-1", "Claude Mythos 5.1", "mythos", _M, 128 * _K, "2026-09-01T00:00:00Z"),
    ModelSpec("claude-mythos-5", "Claude Mythos 5", "mythos", _M, 128 * _K, "2026-06-01T00:00:00Z"),
    ModelSpec("claude-opus-5", "Claude Opus 5", "opus", _M, 128 * _K, "2026-06-01T00:00:00Z"),
    ModelSpec("claude-sonnet-5", "Claude Sonnet 5", "sonnet", _M, 128 * _K, "2026-06-01T00:00:00Z",
              refuses_manual_thinking=True, strict_sampling=True),
    ModelSpec("claude-mythos-preview", "Claude Mythos Preview", "mythos", _M, 128 * _K,
              "2026-04-07T00:00:00Z"),
    ModelSpec("claude-opus-4-8", "Claude Opus 4.8", "opus", _M, 128 * _K, "2026-04-01T00:00:00Z"),
    ModelSpec("claude-opus-4-7", "Claude Opus 4.7", "opus", _M, 128 * _K, "2026-03-01T00:00:00Z"),
    ModelSpec("claude-sonnet-4-6", "Claude Sonnet 4.6", "sonnet", _M, 64 * _K, "2026-02-17T00:00:00Z"),
    ModelSpec("claude-opus-4-6", "Claude Opus 4.6", "opus", _M, 128 * _K, "2026-02-05T00:00:00Z"),
    ModelSpec("claude-opus-4-5-20251101", "Claude Opus 4.5", "opus", 200 * _K, 64 * _K,
              "2025-11-24T00:00:00Z", accepts_prefill=True, aliases=("claude-opus-4-5",)),
    ModelSpec("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "haiku", 200 * _K, 64 * _K,
              "2025-10-15T00:00:00Z", accepts_prefill=True, aliases=("claude-haiku-4-5",)),
    ModelSpec("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "sonnet", 200 * _K, 64 * _K,
              "2025-09-29T00:00:00Z", accepts_prefill=True, aliases=("claude-sonnet-4-5",)),
    ModelSpec("claude-sonnet-4-20250514", "Claude Sonnet 4", "sonnet", 200 * _K, 64 * _K,
              "2025-05-22T00:00:00Z", accepts_prefill=True, structured_outputs=False,
              lifecycle="deprecated", aliases=("claude-sonnet-4-0",)),
    ModelSpec("claude-opus-4-20250514", "Claude Opus 4", "opus", 200 * _K, 32 * _K,
              "2025-05-22T00:00:00Z", accepts_prefill=True, structured_outputs=False,
              lifecycle="deprecated", aliases=("claude-opus-4-0",)),
]

MODELS: dict[str, ModelSpec] = {}
for _spec in _SPECS:
    MODELS[_spec.id] = _spec
    for _alias in _spec.aliases:
        MODELS[_alias] = _spec

#: newest first, as GET /v1/models lists them
MODEL_LIST: list[ModelSpec] = list(_SPECS)


def find_model(model_id: str) -> ModelSpec | None:
    """The spec for an API model ID or alias, or None if the emulator does not know it."""
    return MODELS.get(model_id)


def model_info(spec: ModelSpec) -> dict:
    """The ModelInfo object of GET /v1/models."""
    return {
        "type": "model",
        "id": spec.id,
        "display_name": spec.display_name,
        "created_at": spec.created_at,
        "line": spec.line,
        "lifecycle": spec.lifecycle,
        "deprecated_at": None,
        "retires_at": None,
        "max_input_tokens": spec.context,
        "max_tokens": spec.max_output,
        "capabilities": capabilities(spec),
    }


def _yes(supported: bool = True) -> dict:
    return {"supported": supported}


def capabilities(spec: ModelSpec) -> dict:
    """The ModelCapabilities object (every key present, as the API sends it)."""
    return {
        "batch": _yes(),
        "citations": _yes(),
        "code_execution": _yes(),
        "context_management": {"supported": True, "clear_thinking_20251015": _yes(),
                               "clear_tool_uses_20250919": _yes(), "compact_20260112": _yes()},
        "effort": {"supported": True, **{level: _yes() for level in EFFORT_LEVELS}},
        "image_input": _yes(),
        "pdf_input": _yes(),
        "server_tools": {"supported": True, "code_execution": _yes(), "web_search": _yes()},
        "structured_outputs": _yes(spec.structured_outputs),
        "thinking": {"supported": True, "types": {
            "adaptive": _yes(), "between_tools": _yes(False), "disabled": _yes(not spec.always_thinks),
            "enabled": _yes(not spec.refuses_manual_thinking)}},
    }


def page(after_id: str | None, before_id: str | None, limit: int) -> tuple[list[ModelSpec], bool]:
    """One page of GET /v1/models (newest first) and whether more follow; ValueError names a bad ID."""
    return paging.page(MODEL_LIST, [m.id for m in MODEL_LIST], after_id, before_id, limit, "model")
