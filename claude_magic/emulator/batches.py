"""Message Batches (api-notes §5): create, retrieve, list, cancel, delete, results.

A batch is ``in_progress`` for ``batch_duration`` seconds after creation, then ``ended``. Its requests
finish one by one over that time, in the (shuffled) order of the results file. Cancel makes it
``canceling`` at once and ``ended`` a quarter of ``batch_duration`` (at most 0.5 s) later; requests
that had not finished when the cancel came are ``canceled``. Each request's params are validated like
POST /v1/messages when it runs (as the API does, asynchronously): a bad one is ``errored``, not a
400 for the whole batch. Counts other than ``processing`` stay 0 until the batch ends.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import paging
from .ratelimit import rfc3339
from .validate import APIError, invalid

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_REQUESTS = 100_000
EXPIRY = 24 * 3600.0
CANCEL_SECONDS = 0.5   # the longest a batch stays canceling

#: runs one request's params -> the Message dict, or raises APIError
Runner = Callable[[dict], dict]


@dataclass
class Batch:
    id: str
    created: float
    end: float
    requests: list[dict]
    runner: Runner
    duration: float
    cancel_at: float | None = None
    lines: list[str] | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def status(self, now: float) -> str:
        if now >= self.end:
            return "ended"
        return "canceling" if self.cancel_at is not None else "in_progress"


def _order(requests: list[dict]) -> list[dict]:
    """Results order: shuffled by a hash of custom_id, never the submission order (when n > 1)."""
    ordered = sorted(requests, key=lambda r: hashlib.sha256(r["custom_id"].encode()).digest())
    if len(ordered) > 1 and ordered == requests:
        ordered.reverse()
    return ordered


def check_create(body: object) -> list[dict]:
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise invalid("requests: Field required (a list of {custom_id, params})")
    requests = body["requests"]
    if not 1 <= len(requests) <= MAX_REQUESTS:
        raise invalid(f"requests: a batch holds 1 to {MAX_REQUESTS} requests, got {len(requests)}")
    seen: set[str] = set()
    for i, item in enumerate(requests):
        if not isinstance(item, dict):
            raise invalid(f"requests.{i}: Input should be a valid dictionary")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise invalid(f"requests.{i}.custom_id: {custom_id!r} does not match ^[a-zA-Z0-9_-]{{1,64}}$")
        if custom_id in seen:
            raise invalid(f"requests.{i}.custom_id: duplicate custom_id {custom_id!r}; custom_id must be "
                          "unique within a batch")
        seen.add(custom_id)
        if not isinstance(item.get("params"), dict):
            raise invalid(f"requests.{i}.params: Field required")
    return requests


class BatchStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: dict[str, Batch] = {}   # insertion order = creation order

    def clear(self) -> None:
        with self._lock:
            self._batches.clear()

    def create(self, body: object, runner: Runner, duration: float) -> Batch:
        requests = check_create(body)
        now = time.time()
        batch = Batch("msgbatch_" + secrets.token_hex(12), now, now + duration, _order(requests), runner,
                      duration)
        with self._lock:
            self._batches[batch.id] = batch
        return batch

    def get(self, batch_id: str) -> Batch:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            raise APIError(404, "not_found_error", f"message batch {batch_id!r} not found")
        return batch

    def cancel(self, batch_id: str) -> Batch:
        batch = self.get(batch_id)
        now = time.time()
        with self._lock:
            if batch.cancel_at is None and now < batch.end:
                batch.cancel_at = now
                batch.end = min(batch.end, now + min(batch.duration / 4, CANCEL_SECONDS))
        return batch

    def delete(self, batch_id: str) -> dict:
        batch = self.get(batch_id)
        if batch.status(time.time()) != "ended":
            raise invalid(f"message batch {batch_id} cannot be deleted while it is processing; cancel it "
                          "and wait until processing_status is 'ended'")
        with self._lock:
            self._batches.pop(batch_id, None)
        return {"id": batch_id, "type": "message_batch_deleted"}

    def page(self, after_id: str | None, before_id: str | None, limit: int) -> tuple[list[Batch], bool]:
        with self._lock:
            items = list(reversed(self._batches.values()))
        try:
            return paging.page(items, [b.id for b in items], after_id, before_id, limit, "message batch")
        except ValueError as exc:
            raise invalid(str(exc)) from None

    def results(self, batch: Batch) -> list[str]:
        with self._lock:
            if batch.status(time.time()) != "ended":
                raise APIError(404, "not_found_error", f"results of message batch {batch.id} are not ready: "
                               "wait until processing_status is 'ended'")
            if batch.lines is None:
                batch.lines, batch.counts = _run_all(batch)
            return batch.lines

    def to_object(self, batch: Batch, base_url: str) -> dict:
        now = time.time()
        status = batch.status(now)
        counts = {"processing": len(batch.requests), "succeeded": 0, "errored": 0, "canceled": 0,
                  "expired": 0}
        if status == "ended":
            self.results(batch)
            counts = {"processing": 0, **batch.counts}
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "created_at": rfc3339(batch.created),
            "expires_at": rfc3339(batch.created + EXPIRY),
            "ended_at": rfc3339(batch.end) if status == "ended" else None,
            "cancel_initiated_at": rfc3339(batch.cancel_at) if batch.cancel_at is not None else None,
            "archived_at": None,
            "results_url": (f"{base_url}/v1/messages/batches/{batch.id}/results"
                            if status == "ended" else None),
        }


def _run_all(batch: Batch) -> tuple[list[str], dict[str, int]]:
    counts = {"succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    lines = []
    n = len(batch.requests)
    for k, item in enumerate(batch.requests):
        finished_at = batch.created + batch.duration * (k + 1) / n
        if batch.cancel_at is not None and finished_at > batch.cancel_at:
            result: dict = {"type": "canceled"}
        else:
            result = _run_one(batch.runner, item["params"])
        counts[result["type"]] += 1
        lines.append(json.dumps({"custom_id": item["custom_id"], "result": result}, ensure_ascii=False,
                                separators=(",", ":")))
    return lines, counts


def _run_one(runner: Runner, params: dict) -> dict:
    try:
        if params.get("stream"):
            raise invalid("stream: streaming is not supported in Message Batches requests")
        return {"type": "succeeded", "message": runner(params)}
    except APIError as exc:
        error = {"type": exc.type, "message": exc.message}
        return {"type": "errored", "error": {"type": "error", "error": error,
                                             "request_id": "req_" + secrets.token_hex(12)}}
