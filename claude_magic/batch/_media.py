"""Images and PDFs in a batch's prompts: each distinct value converted once, prompts keyed by content,
blocks built only when a request is.

A row whose placeholders name media (a PIL image, image or PDF bytes, a ``Path``, a figure; a string
only under ``{x:image}`` / ``{x:pdf}``) becomes a :class:`MediaPrompt`: its text pieces and
:class:`~claude_magic.media.Media` in prompt order. The plan holds these, never base64: a logo in
5,000 rows is one ``Media`` (one copy of its bytes) that 5,000 prompts point to, because
:class:`Converter` converts each distinct value once (by identity for objects, path, mtime and size
for files, content for bytes) and shares media whose bytes are identical. Two rows are one request
when their text and their media's SHA-256, in order, are the same (:attr:`MediaPrompt.key`); the
response cache's key is the client's key of the request body, which names an image or document
block by the SHA-256 of its content (``_wire.cache_fields``): never a path, never the base64 itself.

:func:`request_content` is the one place a prompt becomes what is sent: a string as it is, a
``MediaPrompt`` as one user turn of content blocks (:func:`claude_magic.media.user_content`, which
applies the 2,000 px rule to a turn of more than 20 images). It runs when a request is built, so at
most the requests in flight hold base64. It is also where ``file_id`` sources go: its ``file_id``
argument (a medium to an uploaded file's id, or None) is handed to ``user_content``; the engines do
not pass one yet. ``_Options.key`` keys the base64 body, so a key computed before an upload stays the
key of the request sent with its ``file_id`` as long as the client maps that id back to its content's
SHA-256 (``cache_fields(body, files)``). Message Batches keep base64: file references inside them
are not documented.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pandas.api.types import is_object_dtype

from ..media import MANY_IMAGES, Media, MediaError, as_media, is_media, user_content

_URL = re.compile(r"https?://", re.IGNORECASE)
_KIND = re.compile(r"\{[A-Za-z_][^{}\n]*:(?:image|pdf)\}")
# A URL medium's worst case for a budget: the model's largest image, or a PDF of the 100-page limit
# at the top of the per-page estimate (nothing is downloaded, so nothing better is known).
URL_PDF_PAGES = 100


@dataclass(frozen=True, eq=False)
class MediaPrompt:
    """A prompt holding images or PDFs: its text pieces and media, in prompt order."""

    parts: tuple[str | Media, ...]

    @cached_property
    def key(self) -> tuple[Any, ...]:
        """What makes two prompts one request: the text and each medium's kind and SHA-256, in order."""
        return tuple(p if isinstance(p, str) else (p.kind, p.media_type, p.sha256) for p in self.parts)

    @property
    def media(self) -> list[Media]:
        return [p for p in self.parts if isinstance(p, Media)]

    @property
    def text(self) -> str:
        """The text pieces joined (what sizes and token estimates of the text go by)."""
        return "".join(p for p in self.parts if isinstance(p, str))

    def media_tokens(self) -> tuple[int, int, int]:
        """(low, high, uncounted) input tokens of the media: images exact, PDFs the estimate's range;
        ``uncounted`` media (a URL, a PDF whose pages cannot be read) add nothing to low and high."""
        low = high = uncounted = 0
        for medium in self.media:
            spread = medium.token_range()
            if spread is None:
                uncounted += 1
            else:
                low, high = low + spread[0], high + spread[1]
        return low, high, uncounted

    def worst_tokens(self) -> int:
        """The media's most tokens, a URL or an unread PDF at its worst (for a budget)."""
        total = 0
        for medium in self.media:
            spread = medium.token_range()
            if spread is not None:
                total += spread[1]
            elif medium.kind == "image":
                total += medium.limits[1]
            else:
                total += URL_PDF_PAGES * 4_500
        return total


def text_of(prompt: str | MediaPrompt) -> str:
    return prompt if isinstance(prompt, str) else prompt.text


def request_content(prompt: Any, model: str, shared: dict[str, str] | None = None,
                    file_id: Callable[[Media], str | None] | None = None) -> Any:
    """What ``client.acomplete`` / ``build_body`` take for ``prompt``: a string (or messages) as it is,
    a :class:`MediaPrompt` as one user turn of content blocks, base64 built now (see the module doc).
    ``shared``: base64 by SHA-256, for requests built all at once (a Message Batch): their blocks then
    hold one string per medium, not one per request. ``file_id``: an uploaded file to reference instead
    of a medium's bytes (None: send them); no caller passes it yet (see the module doc)."""
    if not isinstance(prompt, MediaPrompt):
        return prompt
    blocks, sent = user_content(list(prompt.parts), model=model, file_id=file_id)
    if shared is not None:
        sources = [block["source"] for block in blocks if block["type"] != "text"]
        for source, medium in zip(sources, sent, strict=True):
            if source.get("type") == "base64":
                source["data"] = shared.setdefault(medium.sha256, source["data"])
    return [{"role": "user", "content": blocks}]


def wants_media(template: str, columns: Mapping[str, Any], rows: Any) -> bool:
    """Whether rows must go through the media hook: a ``{x:image}`` / ``{x:pdf}`` placeholder, or a
    used column holding a value that may be media at one of ``rows`` (positions: each distinct
    combination's first row; object columns only: a column of numbers or strings cannot hold one).
    Otherwise rendering stays the text-only fast path."""
    if _KIND.search(template):
        return True
    for cells in columns.values():
        if is_object_dtype(cells) and any(is_media(v) for v in cells.iloc[rows]):
            return True
    return False


class Converter:
    """``as_media`` for one run, each distinct value converted once (see the module doc); a value that
    cannot be sent raises its MediaError again for every row holding it, naming that row."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._done: dict[Any, tuple[Any, Media | str | None]] = {}  # identity -> (value kept, outcome)
        self._by_content: dict[tuple[str, str], Media] = {}
        self._many: dict[str, Media] = {}

    def __call__(self, value: Any, kind: str | None, where: str) -> Media | None:
        if kind is None and not is_media(value):  # text (a string, a number): nothing to convert or keep
            return None
        identity = _identity(value, kind)
        found = self._done.get(identity) if identity is not None else None
        if found is None:
            try:
                medium = as_media(value, kind=kind, where=where, model=self.model)
                outcome: Media | str | None = self._share(medium)
            except MediaError as exc:
                message = str(exc)
                outcome = message[len(where) + 2:] if message.startswith(f"{where}: ") else message
            found = (value, outcome)
            if identity is not None:
                self._done[identity] = found
        outcome = found[1]
        if isinstance(outcome, str):
            raise MediaError(f"{where}: {outcome}")
        return outcome

    def _share(self, medium: Media | None) -> Media | None:
        """One ``Media`` for identical bytes (two image objects with the same pixels, a file and its
        bytes): what the plan keeps is one copy per content."""
        if medium is None or medium.data is None:
            return medium
        return self._by_content.setdefault((medium.kind, medium.sha256), medium)

    def many_images(self, parts: list[Any]) -> list[Any]:
        """``parts`` with each image sized for a turn of more than 20 images (the 2,000 px rule), once
        per image, when the turn holds that many; ``user_content`` then finds them within it."""
        if sum(1 for p in parts if isinstance(p, Media) and p.kind == "image") <= MANY_IMAGES:
            return parts
        out = []
        for p in parts:
            if isinstance(p, Media) and p.kind == "image" and p.data is not None:
                if p.sha256 not in self._many:
                    smaller = as_media(p.data, where=p.where, model=self.model, many_images=True)
                    self._many[p.sha256] = self._share(smaller) or p
                p = self._many[p.sha256]
            out.append(p)
        return out


def _identity(value: Any, kind: str | None) -> Any:
    """A key under which ``value`` converts alike within a run, or None (converted each time)."""
    if isinstance(value, str):  # under a kind: a URL, or a path
        if _URL.match(value.strip()):
            return ("str", kind, value)
        return ("path", kind, *_stat(Path(value.strip()).expanduser()))
    if isinstance(value, os.PathLike):
        return ("path", kind, *_stat(Path(value)))
    if isinstance(value, bytes):
        return ("bytes", kind, value)  # a bytes object caches its hash: a repeated cell costs nothing
    if isinstance(value, (bytearray, memoryview)):
        return None
    return ("object", kind, id(value))  # the value is kept with its outcome, so the id is not reused


def _stat(path: Path) -> tuple[Any, ...]:
    try:
        st = path.stat()
    except OSError:
        return (str(path), None)
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)
