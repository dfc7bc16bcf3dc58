"""The models the emulator knows (api-notes §9) and their per-model rules (§1, §8)."""

from __future__ import annotations

from dataclasses import dataclass


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
    lifecycle: str = "active"
    aliases: tuple[str, ...] = ()


_K = 1000
_M = 1_000_000

_SPECS = [
    ModelSpec("claude-fable-5-2", "Claude Fable 5.2", "fable", _M, 128 * _K, "2026-11-09T00:00:00Z",
              always_thinks=True),
    ModelSpec("claude-haiku-5-5", "Claude Haiku 5.5", "haiku", _M, 128 * _K, "2026-10-07T00:00:00Z"),
    ModelSpec("claude-opus-5-5", "Claude Opus 5.5", "opus", _M, 128 * _K, "2026-09-22T00:00:00Z",
              always_thinks=True, refuses_forced_tools=True),
    ModelSpec("claude-sonnet-5-5", "Claude Sonnet 5.5", "sonnet", _M, 128 * _K, "2026-09-15T00:00:00Z",
              refuses_forced_tools=True, refuses_manual_thinking=True, strict_sampling=True),
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
              "2025-05-22T00:00:00Z", accepts_prefill=True, lifecycle="deprecated",
              aliases=("claude-sonnet-4-0",)),
    ModelSpec("claude-opus-4-20250514", "Claude Opus 4", "opus", 200 * _K, 32 * _K,
              "2025-05-22T00:00:00Z", accepts_prefill=True, lifecycle="deprecated",
              aliases=("claude-opus-4-0",)),
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
        "capabilities": None,
    }
