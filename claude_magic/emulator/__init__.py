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

Files. The Files API (:mod:`.files`: multipart upload, list, metadata, delete) keeps files in
memory in ``Emulator.files`` (its ``uploads`` counts them) until deleted or :meth:`Emulator.reset`;
the record of an upload keeps the file's name, type and size, not its bytes. A body over its limit
(32 MB; 256 MB for a batch, 500 MB for an upload) is answered 413 ``request_too_large`` from its
``content-length``, unread.

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
