"""The Message Batches engine: submit (or resume), poll and collect, at half price.

The batch id is kept in the cache's meta table under a name derived from the requests, so a
restart while waiting resumes polling the same batch instead of paying for a new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .. import _wire
from .._scheduler import Priority, job_context
from .._typed import typed_reply, with_format
from ..errors import AnswerInvalid, APIError, ClaudeError, NotFoundError, error_for_status
from ._live import _Budget
from ._media import MediaPrompt, request_content
from ._prefix import shared_prefix
from ._report import Stop, _Options, _State

if TYPE_CHECKING:
    from ..client import Client

MAX_BATCH_REQUESTS = 100_000          # per Message Batch (api-notes §5)
MAX_BATCH_BYTES = 256 * 1024 * 1024   # per Message Batch (api-notes §5)
META_PREFIX = "claude_magic.batch:"


def _result_error(result: dict[str, Any]) -> ClaudeError:
    kind = result.get("type")
    if kind == "errored":
        outer: dict[str, Any] = result.get("error") or {}
        nested = outer.get("error")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else outer
        etype = inner.get("type") or "api_error"
        status = _wire.status_of_type(etype)
        return error_for_status(status, etype)(inner.get("message") or "the request errored in the batch",
                                                status=status, type=etype, request_id=outer.get("request_id"))
    return APIError(f"the request was {kind} in the Message Batch", status=0, type=str(kind))


def _chunks(requests: list[dict[str, Any]], sizes: list[int]) -> list[list[dict[str, Any]]]:
    """Split into Message Batches of at most 100,000 requests and 256 MB (envelope included)."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    volume = 0
    for request, size in zip(requests, sizes, strict=True):
        if current and (len(current) >= MAX_BATCH_REQUESTS or volume + size + 64 > MAX_BATCH_BYTES):
            out.append(current)
            current, volume = [], 0
        current.append(request)
        volume += size + 2
    if current:
        out.append(current)
    return out


def _job_name(custom_ids: Iterable[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(custom_ids)).encode()).hexdigest()
    return META_PREFIX + digest


class _Batches:
    """Submit (or resume), poll and collect Message Batches for the prompts ``todo``."""

    def __init__(self, client: Client, opts: _Options, state: _State, todo: list[int], keys: dict[int, str],
                 budget: _Budget | None) -> None:
        self.client = client
        self.opts = opts
        self.state = state
        self.todo = todo
        self.keys = keys
        self.budget = budget
        self.job: str | None = None  # set by the caller: the scheduler's id of this run
        self.prefix = shared_prefix(state.plan, opts, todo)
        self.base64: dict[str, str] = {}  # one string per medium for the requests held at once

    def _requests(self) -> tuple[list[dict[str, Any]], list[int], dict[str, int]]:
        requests, sizes, by_id = [], [], {}
        for uid in self.todo:
            prompt = self.state.plan.prompts[uid]
            if self.budget is not None and (error := self.budget.too_big(prompt)) is not None:
                self.state.refused(uid, error)
                continue
            if self.budget is not None and not self.budget.reserve(uid, prompt):
                self.state.stop_with(Stop.BUDGET)
                break
            body = self._body(prompt)
            custom_id = self.keys[uid]  # the cache key: 64 hex characters, within ^[a-zA-Z0-9_-]{1,64}$
            request = {"custom_id": custom_id, "params": body}
            requests.append(request)
            sizes.append(len(json.dumps(request, ensure_ascii=False).encode("utf-8")))
            by_id[custom_id] = uid
        return requests, sizes, by_id

    def _body(self, prompt: str | MediaPrompt) -> dict[str, Any]:
        """The request body of ``prompt``, with the shared prefix's one-hour marks when it has them."""
        if self.prefix is None or not self.prefix.marks(prompt):
            return self.opts.body(self.client, prompt, self.base64)
        content, marks = self.prefix.request(prompt)
        return self.client.build_body(request_content(content, self.opts.model, self.base64),
                                      model=self.opts.model, max_tokens=self.opts.max_tokens,
                                      system=self.opts.system, **marks,
                                      **with_format(self.opts.body_options, self.opts.schema))

    async def run(self) -> None:
        with job_context(Priority.BATCH, self.job):  # its polls and uploads are batch work
            await self._run()

    async def _prewarm(self) -> None:
        """Write the shared prefix with a one-hour TTL before the batch runs, through one live request:
        the first marked row's own (a ``max_tokens: 0`` pre-warm is refused with a schema and inside a
        batch, so nothing is paid for nothing). Its answer is that row's; a failure leaves the row to
        the batch, which then runs without a warm prefix."""
        assert self.prefix is not None
        plan = self.state.plan
        uid = next((u for u in self.todo if self.prefix.marks(plan.prompts[u])), None)
        if uid is None:
            return
        prompt = plan.prompts[uid]
        if self.budget is not None and (self.budget.too_big(prompt) or not self.budget.reserve(uid, prompt)):
            return  # the batch's own accounting decides about this row
        content, marks = self.prefix.request(prompt)
        content = request_content(content, self.opts.model)
        reply = None
        try:
            reply = await self.client.acomplete(
                content, stream=False, cache=self.opts.cache, refresh=self.opts.cache,
                priority=Priority.BATCH, job=self.job, **marks, **self.opts.call_options())
        except AnswerInvalid as exc:  # answered, but not usable: that row's error, as in the batch
            self.state.fail(uid, exc)
        except ClaudeError:
            return
        else:
            self.state.ok(uid, reply)
        finally:
            if self.budget is not None:
                self.budget.settle(uid, reply, prompt)
        self.state.progress.sent += 1
        self.todo = [u for u in self.todo if u != uid]

    async def _run(self) -> None:
        if self.prefix is not None:
            await self._prewarm()
        requests, sizes, by_id = self._requests()
        self.state.progress.requests_total = len(requests)
        jobs = [self._job(chunk, by_id) for chunk in _chunks(requests, sizes)]
        await asyncio.gather(*jobs)

    async def _job(self, chunk: list[dict[str, Any]], by_id: dict[str, int]) -> None:
        name = _job_name(r["custom_id"] for r in chunk)
        cache = self.client.cache if self.opts.cache else None
        batch = await self._resume(cache, name)
        if batch is None:
            batch = await self.client.acreate_batch(chunk)
            if cache is not None:
                cache.set_meta(name, {"id": batch["id"], "requests": len(chunk), "created": time.time()})
        self.state.batch_ids.append(batch["id"])
        self.state.progress.sent += len(chunk)
        batch = await self._poll(batch)
        results = await self.client.abatch_results(batch)
        self._collect(chunk, results, by_id)
        if cache is not None:
            cache.delete_meta(name)

    async def _resume(self, cache: Any, name: str) -> dict[str, Any] | None:
        remembered = cache.get_meta(name) if cache is not None else None
        if not isinstance(remembered, dict) or not remembered.get("id"):
            return None
        try:
            batch = await self.client.aretrieve_batch(remembered["id"])
        except NotFoundError:  # deleted, or older than the results' 29 days: submit again
            cache.delete_meta(name)
            return None
        self.state.progress.status = f"resumed {batch['id']}"
        return batch

    async def _poll(self, batch: dict[str, Any]) -> dict[str, Any]:
        interval = self.opts.poll_interval
        while batch.get("processing_status") != "ended":
            counts = batch.get("request_counts") or {}
            self.state.progress.status = (f"batch {batch['id']} {batch.get('processing_status')}: "
                                          f"{counts.get('processing', 0):,} processing")
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 60.0)  # most batches end within the hour: poll less as it ages
            batch = await self.client.aretrieve_batch(batch["id"])
        return batch

    def _collect(self, chunk: list[dict[str, Any]], results: list[dict[str, Any]],
                 by_id: dict[str, int]) -> None:
        seen = set()
        for line in results:
            uid = by_id.get(line.get("custom_id", ""))
            if uid is None or uid in seen:
                continue
            seen.add(uid)
            result = line.get("result") or {}
            if result.get("type") == "succeeded":
                message = result.get("message") or {}
                reply = _wire.reply_from_message(message, model=self.opts.model, batch=True)
                self.client.record(reply, self.keys[uid] if self.opts.cache else None)
                try:
                    self.state.ok(uid, typed_reply(reply, self.opts.schema))
                except AnswerInvalid as exc:  # truncated, refused or not matching: that row's error
                    self.state.fail(uid, exc)
            else:
                self.state.fail(uid, _result_error(result))
        for request in chunk:
            uid = by_id[request["custom_id"]]
            if uid not in seen:
                self.state.fail(uid, APIError("no result for this request in the batch's results",
                                              status=0, type="missing_result"))
