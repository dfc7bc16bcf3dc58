"""The prefix a batch's requests share, paid once: marks for the API's prompt cache.

A batch usually repeats a long instruction (the system prompt, then the template's text before its
first placeholder: a rubric, few-shot examples) before a short row value. The API bills a prefix that
ends at a ``cache_control`` mark at 1.25x the input price when it writes it to its prompt cache, and
at the read price (0.1x or less) in every request that starts with it within five minutes (a read
restarts the five minutes). So a live run sends each request with:

- the system prompt marked, when it alone reaches the model's minimum cacheable length;
- its user turn as two text blocks, the template's head (marked) and the rest, when the system
  prompt and the head together reach it. Every rendered prompt starts with the head; one that did
  not would be sent whole, with at most the system mark.

The prefix order is the API's (tools, system, messages), so the shared part already comes first.
Nothing is marked below the minimum (the API ignores such a mark), for fewer than two requests (a
write nobody reads costs a quarter more than no cache), or with ``prompt_cache=False``. Message
Batches get one-hour marks, and their first marked row is sent live first, so that the prefix is
written before the batch runs (their cache hits are best effort: see ``_batches``). Tokens are estimated
from the UTF-8 size, four bytes a token and 30 % more tokens on the tokenizer of Claude 4.7 and later
(no request is spent on counting): a rough figure, so the first answer settles it. When it shows that
its mark neither wrote nor read the cache, the prefix was below the model's real minimum and the rest
of the run goes without marks.

An entry is readable only once the response that wrote it has begun, so the live engine sends the
first marked request alone and the others once it has answered. The response cache's key leaves
marks and the split out (``_wire.cache_fields``): a marked request finds answers stored without
marks, and an unmarked run finds the answers a marked one stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import pricing
from .._wire import _cache_mark
from ..reply import Usage
from ._media import MediaPrompt, text_of
from ._plan import PromptPlan
from ._report import _Options

BYTES_PER_TOKEN = 4
NEW_TOKENIZER_FACTOR = 1.3  # Claude 4.7 and later (5.x, Fable, Mythos) count ~30 % more tokens
_MODEL = re.compile(r"claude-([a-z]+)-(\d+)(?:-(\d{1,2}))?(?:-\d{8})?$")


def estimate_tokens(text: str, model: str) -> int:
    """About the tokens ``text`` takes on ``model``, from its size (no request is spent on counting)."""
    tokens = _size(text) / BYTES_PER_TOKEN
    return int(tokens * NEW_TOKENIZER_FACTOR) if _new_tokenizer(model) else int(tokens)


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _new_tokenizer(model: str) -> bool:
    """Whether ``model`` uses the tokenizer of Claude 4.7 and later; an ID we cannot read does not
    (the lower estimate is the prudent one)."""
    m = _MODEL.match(model.strip().lower())
    if m is None:
        return False
    return m.group(1) in ("fable", "mythos") or (int(m.group(2)), int(m.group(3) or 0)) >= (4, 7)


# Message Batches: the prefix is written live (full price, a one-hour write at 2x input) before the
# batch reads it at half the read price; below about ten rows that costs more than it saves (measured
# on the emulator: four rows cost $0.000300 marked against $0.000276 unmarked).
BATCH_MIN_PROMPTS = 10


@dataclass(frozen=True)
class SharedPrefix:
    """Where a run's requests carry marks. ``head``: the template's head, marked at the end of the
    user turn's first block ('' when only the system prompt is marked); ``system``: whether the system
    prompt is marked; ``head_tokens`` and ``system_tokens``: estimated tokens of the prefix each mark
    closes (the head's includes the system prompt)."""

    head: str
    system: bool
    head_tokens: int = 0
    system_tokens: int = 0
    ttl: bool | str = True  # the marks' lifetime: five minutes (True), or "1h" for Message Batches

    def splits(self, prompt: str | MediaPrompt) -> bool:
        """Whether ``prompt`` is sent as the marked head and the rest (a non-blank rest). A prompt with
        images or PDFs is not split: only the system prompt's mark applies to it."""
        return (bool(self.head) and isinstance(prompt, str) and prompt.startswith(self.head)
                and bool(prompt[len(self.head):].strip()))

    def marks(self, prompt: str | MediaPrompt) -> bool:
        return self.system or self.splits(prompt)

    def request(self, prompt: str | MediaPrompt) -> tuple[Any, dict[str, Any]]:
        """What ``client.acomplete`` takes for ``prompt``: the prompt or its messages, and options (a
        media prompt comes back as it is: ``_media.request_content`` builds its blocks)."""
        options = {"cache_system": self.ttl} if self.system else {}
        if not isinstance(prompt, str) or not self.splits(prompt):
            return prompt, options
        content = [{"type": "text", "text": self.head, "cache_control": _cache_mark(self.ttl)},
                   {"type": "text", "text": prompt[len(self.head):]}]
        return [{"role": "user", "content": content}], options


def shared_prefix(plan: PromptPlan, opts: _Options, todo: Iterable[int]) -> SharedPrefix | None:
    """The marks a run of ``todo`` (unique prompts to send) carries, or None for no mark: five-minute
    marks in a live run; one-hour marks in Message Batches, whose requests may run long after the
    live request that writes the prefix first (see ``_batches``)."""
    if not opts.prompt_cache:
        return None
    prompts = [plan.prompts[uid] for uid in todo]
    if len(prompts) < (BATCH_MIN_PROMPTS if opts.api == "batch" else 2):
        return None
    minimum = pricing.min_cacheable_tokens(opts.model)
    system_tokens = estimate_tokens(opts.system, opts.model) if opts.system else 0
    head_tokens = system_tokens + estimate_tokens(plan.head, opts.model)
    candidate = SharedPrefix(plan.head, False)
    split = sum(candidate.splits(p) for p in prompts)
    head = plan.head if split >= 2 and head_tokens >= minimum else ""
    system = system_tokens >= minimum
    if not head and not system:
        return None
    return SharedPrefix(head, system, head_tokens if head else 0, system_tokens if system else 0,
                        ttl="1h" if opts.api == "batch" else True)


def expected_use(plan: PromptPlan, opts: _Options, todo: list[int],
                 input_tokens: int = 0) -> tuple[int, int, float | None]:
    """Estimated (tokens written, tokens read, USD saved) of the prompt cache in a live run of ``todo``
    within its five minutes: the first request of a prefix writes it, the others read it.
    ``input_tokens``: a count of those prompts' input (a dry run's), which scales the prefix's size."""
    prefix = shared_prefix(plan, opts, todo)
    if prefix is None:
        return 0, 0, 0.0
    prompts = [plan.prompts[uid] for uid in todo]
    system = _size(opts.system or "")
    total = sum(_size(text_of(p)) for p in prompts) + system * len(prompts)
    head_tokens, system_tokens = prefix.head_tokens, prefix.system_tokens
    if input_tokens and total:
        per_byte = input_tokens / total
        head_tokens = round((system + _size(prefix.head)) * per_byte) if prefix.head else 0
        system_tokens = round(system * per_byte) if prefix.system else 0
    split = sum(prefix.splits(p) for p in prompts)
    whole = len(prompts) - split if prefix.system else 0  # requests with the system mark alone
    written = read = 0
    if split:
        written += head_tokens
        read += head_tokens * (split - 1)
    if whole:
        # after a split request (which writes the system prompt at its first mark) all of them read
        written += 0 if split else system_tokens
        read += system_tokens * (whole if split else whole - 1)
    usage = Usage(cache_creation_input_tokens=written, cache_read_input_tokens=read)
    return written, read, pricing.prompt_cache_saved(opts.model, usage)
