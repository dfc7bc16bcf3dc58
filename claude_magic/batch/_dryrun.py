"""Dry run: which prompts are cached, and their input tokens counted (all, or a sample with the
estimate's spread) and priced, without sending a message.

A prompt with images or PDFs is counted in two parts: its text through ``count_tokens`` (the text
pieces alone: no medium is uploaded to be counted, and a URL or ``file`` source would be refused
there), and its media by their formulas: an image's tokens are exact (ceil(w/28)·ceil(h/28) at the
size sent), a PDF's are the documented range per page (an estimate, said so in the report), and a
URL cannot be counted at all (nothing is downloaded): the report says how many were left out.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

import numpy as np

from .. import pricing
from .._typed import with_format
from ..errors import ConfigError
from ._media import MediaPrompt, text_of
from ._report import DryRunReport, _Options, _State

if TYPE_CHECKING:
    from ..client import Client

DRY_RUN_SAMPLE = 50                   # count_tokens calls at most, for a dry run


async def _count_tokens(client: Client, opts: _Options, prompts: list[str]) -> list[int]:
    gate = asyncio.Semaphore(8)

    async def one(prompt: str) -> int:
        if not prompt.strip():  # a prompt of media alone: its text is nothing to count
            return 0
        async with gate:
            # every option that is input: the system prompt, and a schema's output_config (count_tokens
            # accepts it and counts the schema and the system prompt the API adds for it)
            options = with_format(opts.body_options, opts.schema)
            if opts.system:
                options = {**options, "system": opts.system}
            return await client.acount_tokens(prompt, model=opts.model, **options)

    return list(await asyncio.gather(*(one(p) for p in prompts)))


def _spread_sample(prompts: list[str], k: int) -> list[int]:
    """``k`` positions spread over the prompts sorted by length (short, typical and long ones)."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    if len(order) <= k:
        return order
    return [order[int(round(j * (len(order) - 1) / (k - 1)))] for j in range(k)]


def _estimate(sizes: np.ndarray, sample: list[int], counts: list[int]) -> tuple[int, int, int]:
    """Total tokens over all prompts from a sample: ratio estimator on UTF-8 size, ± 2 s.e."""
    total_bytes = float(sizes.sum())
    b = sizes[sample].astype(float)
    t = np.asarray(counts, dtype=float)
    if len(sample) == len(sizes):
        return int(t.sum()), int(t.sum()), int(t.sum())
    ratio = t.sum() / max(b.sum(), 1.0)
    estimate = ratio * total_bytes
    n, big_n = len(sample), len(sizes)
    resid = t - ratio * b
    var = resid.var(ddof=1) if n > 1 else 0.0
    se = big_n * math.sqrt(max(0.0, (1 - n / big_n) * var / n))
    return int(round(estimate)), int(max(t.sum(), estimate - 2 * se)), int(round(estimate + 2 * se))


def _peek(client: Client, opts: _Options, state: _State) -> tuple[list[int], dict[int, str]]:
    """The dry run's lookup: which prompts are cached, without counting hits in the cache's stats."""
    todo, keys = [], {}
    cache = client.cache if opts.cache and not opts.refresh else None
    for uid, prompt in enumerate(state.plan.prompts):
        if (error := state.plan.errors.get(uid)) is not None:
            state.errors[uid] = error
            continue
        try:
            keys[uid] = opts.key(client, prompt)
        except ConfigError as exc:
            state.errors[uid] = exc
            continue
        if cache is not None and keys[uid] in cache:
            state.cached[uid] = True
        else:
            todo.append(uid)
    return todo, keys


def _media_tokens(prompts: list[str | MediaPrompt]) -> tuple[int, int, int, int]:
    """(image tokens, PDF tokens low, high, media not counted) of the prompts to send."""
    images = pdf_low = pdf_high = uncounted = 0
    for prompt in prompts:
        if not isinstance(prompt, MediaPrompt):
            continue
        for medium in prompt.media:
            spread = medium.token_range()
            if spread is None:
                uncounted += 1
            elif medium.kind == "image":
                images += spread[0]
            else:
                pdf_low, pdf_high = pdf_low + spread[0], pdf_high + spread[1]
    return images, pdf_low, pdf_high, uncounted


def _dry_run(client: Client, opts: _Options, state: _State, todo: list[int]) -> DryRunReport:
    prompts = [text_of(state.plan.prompts[uid]) for uid in todo]
    images, pdf_low, pdf_high, uncounted = _media_tokens([state.plan.prompts[uid] for uid in todo])
    sample = _spread_sample(prompts, DRY_RUN_SAMPLE)
    counts = client.run(_count_tokens(client, opts, [prompts[i] for i in sample])) if sample else []
    sizes = np.fromiter((len(p.encode("utf-8")) for p in prompts), dtype=np.int64, count=len(prompts))
    estimate, low, high = _estimate(sizes, sample, counts) if sample else (0, 0, 0)
    estimate += images + (pdf_low + pdf_high) // 2
    low, high = low + images + pdf_low, high + images + pdf_high
    price = pricing.price_for(opts.model, prompt_tokens=max(counts, default=0))
    factor = pricing.BATCH_DISCOUNT if opts.api == "batch" else 1.0
    cost_low = cost_high = None
    if price is not None:
        cost_low = round(low * price.input / 1e6 * factor, 10)
        worst_output = len(todo) * opts.max_tokens * price.output
        cost_high = round((high * price.input + worst_output) / 1e6 * factor, 10)
    return DryRunReport(rows=state.plan.rows, skipped=len(state.plan.skipped), unique=len(state.plan.prompts),
                        cached=int(state.cached.sum()), to_send=len(todo), counted=len(sample),
                        input_tokens=estimate, input_tokens_low=low, input_tokens_high=high,
                        max_tokens=opts.max_tokens, model=opts.model, api=opts.api,
                        cost_low=cost_low, cost_high=cost_high, skipped_empty=state.plan.skipped_empty,
                        image_tokens=images, pdf_tokens_low=pdf_low, pdf_tokens_high=pdf_high,
                        uncounted_media=uncounted, failed=len(state.errors))
