"""A local emulator of the Claude API, for tests, notebooks, benchmarks and offline CI.

A real HTTP server on 127.0.0.1 (standard library only; on another address it warns, in one line,
that anyone on the network can use it unless ``api_key`` is set)::

    from claude_magic.emulator import Emulator

    with Emulator(ttft=0.05, token_rate=200) as emu:
        client = Client(api_key="test", base_url=emu.url)
        emu.inject("429:retry-after=0.05", "cut:after=3")   # the next two /v1/messages requests
        ...

It serves ``POST /v1/messages`` (JSON and SSE), ``POST /v1/messages/count_tokens``, Message Batches
(``/v1/messages/batches``: create, retrieve, list, cancel, delete, results), the Files API
(``/v1/files``) and ``/v1/models``.
Replies are deterministic (see :mod:`.generate`), usage follows an approximate tokenizer (see
:mod:`.tokens`), prompt caching is emulated (:mod:`.caching`), and so are rate limits
(:mod:`.ratelimit`). Structured outputs (``output_config.format``) get deterministic JSON that fits
the schema, and the schemas and combinations the API refuses get its 400s (:mod:`.structured`).
Faults, per request with the header ``x-emulator-fault: <spec>`` or queued with
:meth:`Emulator.inject`, are listed in :mod:`.faults`.

Images, PDFs and files. Image and document blocks are checked as the API checks them
(:mod:`.attachments`: source types and fields, media types against the bytes' signatures, base64,
10 MB and 8000 px an image, 2000 px when a request has more than 20 images, 100 images plus PDF
pages a request or 600 on models with a 1M context, a PDF's pages, size and encryption, a file of
the block's kind; a ``file_id`` that names no file is a 404) and cost what the API bills
(:mod:`.media`): an image ``ceil(w/28) * ceil(h/28)`` tokens after the API's downscale (long edge
1568 px and 1568 tokens; 2576 px and 4784 tokens from Opus 4.7 on), a PDF page 1500 tokens of text
plus a US Letter page drawn as an image, a text document its text. ``count_tokens`` refuses ``url``
and ``file`` sources, as the API does. The answer starts with a label per block, in order
(``[image 640x480 png] [document pdf 3 pages]``), so a test sees what arrived; prompts without
them are answered as before. The Files API (:mod:`.files`: multipart upload, list, metadata,
delete) keeps files in memory in ``Emulator.files`` (its ``uploads`` counts them) until deleted or
:meth:`Emulator.reset`; the record of an upload keeps the file's name, type and size, not its
bytes. A body over its limit (32 MB; 256 MB for a batch, 500 MB for an upload) is answered 413
``request_too_large`` from its ``content-length``, unread.

Knobs (constructor keywords, or :meth:`Emulator.configure` while running): ``ttft``, ``token_rate``,
``rpm``, ``tpm``, ``burst``, ``api_key``, ``batch_duration``, ``min_cache_tokens``,
``continue_overlap``, ``organization_id``, ``idle_timeout``; defaults in ``DEFAULT_KNOBS``, allowed
values in :mod:`.knobs` (a bad value raises ValueError naming the knob).

Command line: ``python -m claude_magic.emulator --port 8765``. Pytest: the fixtures
``claude_emulator`` and ``claude_emulator_env`` (``claude_magic.emulator.pytest_plugin``).
"""

from __future__ import annotations

from .app import Emulator, RecordedRequest
from .faults import Fault, FaultSpecError
from .knobs import DEFAULT_KNOBS

__all__ = ["DEFAULT_KNOBS", "Emulator", "Fault", "FaultSpecError", "RecordedRequest"]
