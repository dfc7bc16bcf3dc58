"""The state of one call across its attempts: the text shown so far, the seam where a broken
stream is continued, and the two clocks that bound the call.

The clocks (the rule behind ``max_wait``): a call may spend at most ``max_wait`` seconds *not
receiving content* — retry sleeps, ``retry-after`` pauses, connecting, waiting for the first token,
silent or ping-only stretches, attempts that failed — and at most ``read_timeout(max_tokens)``
seconds receiving it, so that a legitimate long answer is never cut while a server that answers
and then only pings (or says nothing) cannot hold a call for longer than its budget. Between two
pieces of content, up to ``GRACE`` seconds (at most the stream's idle timeout) count as producing;
a longer gap counts as idle beyond it.
The first attempt may always wait ``first_wait`` seconds for its first content, whatever is left of
``max_wait`` (so ``max_wait=0`` means "no retries", not "no answer").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import _wire
from ._loop import Thought
from .reply import Usage

__all__ = ["CONTINUE_PROMPT", "GRACE", "MAX_RESUMES", "Call", "Seam", "read_timeout"]

# Non-streaming read timeout: 60 s for the time to first byte, plus 30 ms per token of
# max_tokens (the official SDK expects 128,000 tokens an hour, 28 ms a token).
READ_TIMEOUT_BASE = 60.0
READ_TIMEOUT_PER_TOKEN = 0.030
GRACE = 10.0  # s between two pieces of content that still count as producing
MAX_RESUMES = 8
CONTINUE_PROMPT = (
    "Your previous answer was cut off. Continue exactly where it stopped, mid-sentence or mid-word if "
    "need be, without repeating anything and without any preamble."
)


def read_timeout(max_tokens: int) -> float:
    """Read timeout of a non-streaming request, and the most a call may spend receiving an answer."""
    return READ_TIMEOUT_BASE + READ_TIMEOUT_PER_TOKEN * max_tokens


class Seam:
    """Joins the continuation of a broken stream onto the text already shown.

    ``base`` is what was sent back (the shown text, trailing whitespace stripped as the
    API demands). With ``overlap`` (a follow-up turn) the continuation may repeat the
    end of ``base``: the longest such repeat of at least ``MIN_OVERLAP`` characters is
    dropped. Then whitespace the continuation repeats from the stripped tail is dropped.
    Text is held back only until the seam is decided, then passes straight through.
    """

    MIN_OVERLAP = 4
    WINDOW = 400

    def __init__(self, shown: str, *, overlap: bool) -> None:
        self.base = shown.rstrip()
        self.ws = shown[len(self.base) :]
        self.tail = self.base[-self.WINDOW :]
        self.overlap = overlap
        self.pending = ""
        self.open = True

    def feed(self, delta: str, final: bool = False) -> str:
        if not self.open:
            return delta
        self.pending += delta
        p = self.pending
        k = 0
        if self.overlap:
            if not final and p in self.tail:
                return ""  # the continuation may still be repeating us
            k = next(
                (
                    n
                    for n in range(min(len(p), len(self.tail)), self.MIN_OVERLAP - 1, -1)
                    if self.tail.endswith(p[:n])
                ),
                0,
            )
        rest = p[k:]
        common = 0
        for a, b in zip(rest, self.ws):  # noqa: B905 (stops at the shorter on purpose)
            if a != b:
                break
            common += 1
        if common == len(rest) and common < len(self.ws) and not final:
            return ""  # so far only whitespace we already showed
        self.open = False
        return rest[common:] if common else rest

    def flush(self) -> str:
        return self.feed("", final=True) if self.open and self.pending else ""


class Call:
    """The state of one ``complete`` across its attempts."""

    def __init__(self, body: dict[str, Any], emit: Callable[[str], Any] | None, *, max_wait: float,
                 on_sent: Callable[[float], Any] | None = None, first_wait: float = 90.0,
                 grace: float = GRACE) -> None:
        self.body = body  # as asked; attempts send ``sending`` (the resumed body after a break)
        self.sending = body
        self.emit = emit
        self.started = time.perf_counter()
        self.parts: list[str] = []
        self.seam: Seam | None = None
        self.retries = 0
        self.resumed = 0
        self.malformed = 0
        self.connect_failures = 0
        self.usage = Usage()
        self.earlier_blocks: list[dict[str, Any]] = []
        self.ttft: float | None = None
        self.request_id: str | None = None
        self.on_sent = on_sent  # called with time.monotonic() when an attempt's request has left
        self.sent_at: float | None = None  # when the last attempt's request left (time.monotonic())
        self.ratelimit: dict[str, Any] | None = None  # the reading of the last answer (see _http)
        # called with each answer's reading as soon as its headers arrive (before a streamed body)
        self.on_reading: Callable[[dict[str, Any]], Any] | None = None
        self.last_error: BaseException | None = None
        # the clocks (module docstring)
        self.max_wait = max_wait
        self.first_wait = first_wait
        self.grace = grace
        self.attempts = 0
        self.attempt_start = time.monotonic()
        self.content_budget = read_timeout(int(body.get("max_tokens") or 0))
        self.idle = 0.0
        self.producing = 0.0
        self.mark = time.monotonic()
        self.attempt_content = False
        self.fixed_deadline: float | None = None

    # -- text ------------------------------------------------------------------------------------
    @property
    def shown(self) -> str:
        return "".join(self.parts)

    def text(self, delta: str) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.started
        if self.seam is not None:
            delta = self.seam.feed(delta)
        if delta:
            self.parts.append(delta)
            if self.emit is not None:
                self.emit(delta)

    def think(self, delta: str) -> None:
        if self.emit is not None:
            self.emit(Thought(delta))

    def end_attempt(self) -> None:
        if self.seam is not None and (rest := self.seam.flush()):
            self.parts.append(rest)
            if self.emit is not None:
                self.emit(rest)

    def resume_body(self, model: str) -> dict[str, Any] | None:
        """The body that continues from what was shown, or None to start over."""
        shown = self.shown
        base = shown.rstrip()
        if not base or self.resumed >= MAX_RESUMES:
            return None
        messages = list(self.body["messages"])
        if _wire.accepts_prefill(model):
            last = messages[-1]
            if last["role"] == "assistant" and isinstance(last["content"], str):
                messages[-1] = {"role": "assistant", "content": last["content"] + base}
            else:
                messages.append({"role": "assistant", "content": base})
            self.seam = Seam(shown, overlap=False)
        else:
            messages += [{"role": "assistant", "content": base}, {"role": "user", "content": CONTINUE_PROMPT}]
            self.seam = Seam(shown, overlap=True)
        self.resumed += 1
        return {**self.body, "messages": messages}

    def sent(self, at: float) -> None:
        """An attempt's request left whole at ``at`` (``time.monotonic()``)."""
        self.sent_at = at
        if self.on_sent is not None:
            self.on_sent(at)

    # -- the clocks --------------------------------------------------------------------------------
    @property
    def idle_left(self) -> float:
        return self.max_wait - self.idle

    def waited(self, seconds: float) -> None:
        """A retry sleep or a pause: idle time."""
        self.idle += seconds
        self.mark = time.monotonic()

    def begin_attempt(self, deadline: float | None = None) -> None:
        """An attempt starts now; ``deadline`` (monotonic) bounds it as a whole (a non-streamed
        request, whose answer comes at once or not at all)."""
        self.mark = self.attempt_start = time.monotonic()
        self.attempt_content = False
        self.fixed_deadline = deadline
        self.attempts += 1

    def content(self, now: float | None = None) -> None:
        """Content arrived (a stream's delta, start or stop of a block): settle the gap before it."""
        self._settle(time.monotonic() if now is None else now)
        self.attempt_content = True

    def end(self, produced: bool) -> None:
        """The attempt ended; a whole non-streamed answer counts as produced, a failure as idle."""
        now = time.monotonic()
        if self.fixed_deadline is not None:
            gap = now - self.mark
            if produced:
                self.producing += gap
            else:
                self.idle += gap
            self.mark = now
        else:
            self._settle(now)

    def _settle(self, now: float) -> None:
        gap = max(0.0, now - self.mark)
        if self.attempt_content:
            self.producing += min(gap, self.grace)
            self.idle += max(0.0, gap - self.grace)
        else:
            self.idle += gap
        self.mark = now

    def deadline(self) -> float:
        """When the current attempt runs out of one of the two budgets (monotonic)."""
        if self.fixed_deadline is not None:
            return self.fixed_deadline
        if not self.attempt_content:
            floor = self.attempt_start + self.first_wait if self.attempts == 1 else 0.0
            return max(self.mark + self.idle_left, floor)
        return min(self.mark + self.grace + self.idle_left, self.mark + self.content_budget - self.producing)

    def expired_reason(self, base_url: str) -> str:
        """Why the deadline passed, in words, for the one-line error."""
        now = time.monotonic()
        if self.fixed_deadline is not None:
            return (f"no complete answer from {base_url} within {now - self.mark:.0f} s, the limit for "
                    f"max_tokens={self.body.get('max_tokens')}")
        self._settle(now)
        if self.producing >= self.content_budget - 1e-3:
            return (f"the answer from {base_url} took longer than {self.content_budget:.0f} s, the limit for "
                    f"max_tokens={self.body.get('max_tokens')}")
        what = "sent no content" if not self.attempt_content else "stopped sending content"
        return (f"{base_url} {what} for too long: {self.idle:.0f} s without content passes "
                f"max_wait={self.max_wait:g} s")
