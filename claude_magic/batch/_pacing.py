"""The live engine's adaptive concurrency window (the rate-limit mirror that paces starts is the
scheduler's: :mod:`claude_magic._ratelimit`).
"""

from __future__ import annotations

import time

DEFAULT_MAX_CONCURRENCY = 64          # the adaptive window's ceiling when no --concurrency is given
START_WINDOW = 16
NEED_MARGIN = 1.25                    # in-flight requests beyond rate x latency, for latency jitter


class _Window:
    """AIMD concurrency: slow start (+1 per success) up to the first congestion signal, then
    +1 per window of successes; halved on a congestion signal, at most once per round trip
    (signals from requests started before the last cut are ignored).

    ``need`` (set once the rate limit and the latency are known) bounds it further: more than
    rate x latency requests in flight cannot go faster, they only hold connections.
    """

    def __init__(self, cap: int, start: int = START_WINDOW) -> None:
        self.cap = max(1, cap)
        self.size = float(min(start, self.cap))
        self.threshold = float(self.cap)
        self.last_cut = float("-inf")
        self.cuts = 0
        self.need = float("inf")

    @property
    def limit(self) -> int:
        return max(1, int(min(self.size, self.need)))

    def sized_for(self, per_second: float, latency: float) -> None:
        """Rate x latency requests in flight reach the limit (Little's law). Once the rate limit is
        known the window opens to that at once (the pacer still spaces the starts by the bucket):
        slow start is for an unknown limit. Before a congestion signal only: after one, AIMD rules."""
        self.need = per_second * latency * NEED_MARGIN + 2
        if not self.cuts:
            self.size = max(self.size, min(float(self.cap), self.need))

    def success(self) -> None:
        step = 1.0 if self.size < self.threshold else 1.0 / self.size
        self.size = min(float(self.cap), self.size + step)

    def congestion(self, started_at: float) -> bool:
        """Cut the window; False if the signal is from before the last cut (already answered)."""
        if started_at <= self.last_cut:
            return False
        self.threshold = max(1.0, self.size / 2)
        self.size = self.threshold
        self.last_cut = time.monotonic()
        self.cuts += 1
        return True
