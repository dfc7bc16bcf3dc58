"""The image and document blocks of a request: the API's checks, their input tokens, and the label
the answer shows for each (so a test can tell what arrived).

Sources: an ``image`` takes ``base64`` (``image/jpeg``, ``image/png``, ``image/gif``,
``image/webp``), ``url`` or ``file``; a ``document`` takes ``base64`` (``application/pdf``),
``text`` (``text/plain``), ``content`` (text blocks), ``url`` or ``file`` (a PDF or a text file).
``title`` and ``context`` are strings, ``citations`` an object. Refused with 400
``invalid_request_error``, in the API's words where known: an unknown source type, a missing field, a
media type not allowed, base64 that does not decode, bytes whose signature is not the declared type
("Image does not match the provided media type image/png"), an image over 10 MB of base64 or 8000 px
a side, a side over 2000 px when the request has more than 20 images ("many-image requests"), more
images plus PDF pages than the model takes ("Too much media: ..."; 600 on models with a context of
1M tokens or more, else 100), PDF pages past 600 in all (100 on those smaller models), a PDF over
32 MB, damaged ("The PDF specified was not valid.") or encrypted, and a file of the wrong kind for its
block. A ``file_id`` that names no file (or a deleted one) is 404 ``File not found: file_...``.
``count_tokens`` refuses ``url`` and ``file`` sources, as the API does: it counts base64 only.

The emulator fetches no URL: an image by URL counts as the largest image the model looks at (1568
tokens, 4784 from Opus 4.7 on), a PDF by URL as one page. An image whose signature matches but whose
header Pillow cannot read (truncated) passes, counted like an image by URL: the emulator checks what
the answer depends on, not every byte. Tokens otherwise follow :mod:`.media`; a text document counts
its text (and its title and context) as the emulator counts any text.

Labels, in the order of the blocks: ``[image 640x480 png]``, ``[image url https://...]``,
``[document pdf 3 pages]``, ``[document text 120 chars]``, ``[document content 2 blocks]``,
``[document url https://...]``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from . import media, tokens
from .files import FileStore, StoredFile, not_found
from .generate import content_text
from .models import ModelSpec
from .validate import invalid

MB = 1024 * 1024
MAX_IMAGE_BASE64 = 10 * MB
MAX_PDF_BYTES = 32 * MB
LARGE_CONTEXT = 1_000_000         # models with this context or more take 600 images and PDF pages
IMAGE_SOURCES = ("base64", "url", "file")
DOCUMENT_SOURCES = ("base64", "text", "content", "url", "file")


@dataclass(frozen=True)
class Attachment:
    """One image or document block as the emulator understood it."""

    kind: str                     # "image" | "document"
    tokens: int
    label: str
    where: str                    # messages.i.content.j
    size: tuple[int, int] | None = None  # an image's pixels, when known
    pages: int = 0                # a PDF's pages
    field: str = "data"           # the source field that holds the bytes ("file_id" for files)


Found = dict[tuple[int, int], Attachment]


def media_limit(spec: ModelSpec) -> int:
    """The images plus PDF pages one request may hold, and the most PDF pages."""
    return 600 if spec.context >= LARGE_CONTEXT else 100


def inspect(body: dict, spec: ModelSpec, files: FileStore | None, *, counting: bool = False) -> Found:
    """The image and document blocks of a checked request by (message, block) index; raises the
    API's 400s and 404s. ``counting``: for count_tokens, which refuses ``url`` and ``file`` sources."""
    found: Found = {}
    reader = _Reader(spec, files, counting)
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if isinstance(block, dict) and block.get("type") in ("image", "document"):
                found[(i, j)] = reader.block(f"messages.{i}.content.{j}", block)
    _check_request(list(found.values()), spec)
    return found


def _check_request(found: list[Attachment], spec: ModelSpec) -> None:
    images = [a for a in found if a.kind == "image"]
    if len(images) > media.MANY_IMAGES:
        big = next((a for a in images if a.size and max(a.size) > media.MANY_IMAGES_MAX_SIDE), None)
        if big is not None:
            raise invalid(f"{big.where}.source.{big.field}: At least one of the image dimensions exceed max "
                          f"allowed size for many-image requests: {media.MANY_IMAGES_MAX_SIDE} pixels")
    pages = sum(a.pages for a in found)
    limit = media_limit(spec)
    if len(images) + pages > limit:
        raise invalid(f"Too much media: {pages} document pages + {len(images)} images > {limit}")


class _Reader:
    def __init__(self, spec: ModelSpec, files: FileStore | None, counting: bool) -> None:
        self.limits = media.image_limits(spec)
        self.max_pages = media_limit(spec)
        self.pages = 0
        self.files = files
        self.counting = counting

    def block(self, where: str, block: dict) -> Attachment:
        source = block["source"]  # present and a dict: validate checked it
        kinds = IMAGE_SOURCES if block["type"] == "image" else DOCUMENT_SOURCES
        kind = source.get("type")
        if kind is None:
            raise invalid(f"{where}.source.type: Field required")
        if kind not in kinds:
            expected = ", ".join(f"'{k}'" for k in kinds)
            raise invalid(f"{where}.source: Input tag {kind!r:.40} found using 'type' does not match any of "
                          f"the expected tags: {expected}")
        if self.counting and kind in ("url", "file"):
            raise invalid(f"{where}.source.type: count_tokens does not accept {kind} sources; send the "
                          f"{block['type']} as base64 to count its tokens")
        if block["type"] == "image":
            return self.image(where, kind, source)
        return self.document(where, kind, source, block)

    # -- images -------------------------------------------------------------------------------------
    def image(self, where: str, kind: str, source: dict) -> Attachment:
        if kind == "url":
            url = _url(where, source)
            return Attachment("image", self.limits.tokens, f"[image url {url}]", where)
        if kind == "file":
            stored = self.file(where, source)
            if stored.mime_type not in media.IMAGE_TYPES:
                raise invalid(f"{where}.source.file_id: file {stored.id} is {stored.mime_type}, which an "
                              "image block cannot take; send PDFs and text files in a document block")
            return self.pixels(where, "file_id", stored.data, stored.mime_type)
        declared = _string(where, source, "media_type")
        if declared not in media.IMAGE_TYPES:
            raise invalid(f"{where}.source.media_type: Input should be 'image/jpeg', 'image/png', "
                          f"'image/gif' or 'image/webp', got {declared!r:.40}")
        text = _string(where, source, "data")
        if len(text) > MAX_IMAGE_BASE64:
            raise invalid(f"{where}.source: image exceeds 10 MB maximum: {len(text)} bytes > "
                          f"{MAX_IMAGE_BASE64} bytes")
        data = _decode(where, text)
        if media.sniff(data) != declared:
            raise invalid(f"{where}.source.data: Image does not match the provided media type {declared}")
        return self.pixels(where, "data", data, declared)

    def pixels(self, where: str, field: str, data: bytes, mime: str) -> Attachment:
        name = media.IMAGE_TYPES[mime]
        size = media.image_size(data)
        if size is None:
            return Attachment("image", self.limits.tokens, f"[image {name}]", where)
        if max(size) > media.MAX_SIDE:
            raise invalid(f"{where}.source.{field}: At least one of the image dimensions exceed max allowed "
                          f"size: {media.MAX_SIDE} pixels")
        cost = media.image_tokens(*size, self.limits)
        return Attachment("image", cost, f"[image {size[0]}x{size[1]} {name}]", where, size=size, field=field)

    # -- documents ----------------------------------------------------------------------------------
    def document(self, where: str, kind: str, source: dict, block: dict) -> Attachment:
        extra = _document_fields(where, block)
        if kind == "url":
            url = _url(where, source)
            cost = media.pdf_tokens(1, self.limits) + extra
            return Attachment("document", cost, f"[document url {url}]", where)
        if kind == "content":
            return _content(where, source, extra)
        if kind == "text":
            _media_type(where, source, media.TEXT)
            return _text(where, _string(where, source, "data"), extra)
        if kind == "file":
            stored = self.file(where, source)
            if stored.mime_type == media.TEXT:
                return _text(where, stored.data.decode("utf-8", "replace"), extra)
            if stored.mime_type != media.PDF:
                raise invalid(f"{where}.source.file_id: file {stored.id} is {stored.mime_type}, which a "
                              "document block cannot take; send a PDF or a text/plain file (images go in an "
                              "image block)")
            return self.pdf(where, "file_id", stored.data, extra)
        _media_type(where, source, media.PDF)
        return self.pdf(where, "data", _decode(where, _string(where, source, "data")), extra)

    def pdf(self, where: str, field: str, data: bytes, extra: int) -> Attachment:
        if len(data) > MAX_PDF_BYTES:
            raise invalid(f"{where}.source: PDF exceeds 32 MB maximum: {len(data)} bytes > "
                          f"{MAX_PDF_BYTES} bytes")
        if media.sniff(data) != media.PDF:
            raise invalid(f"{where}.source.{field}: The PDF specified was not valid.")
        if media.pdf_encrypted(data):
            raise invalid(f"{where}.source.{field}: The PDF specified is encrypted; remove its password "
                          "protection and send it again")
        pages = media.pdf_pages(data)
        self.pages += pages
        if self.pages > self.max_pages:
            raise invalid(f"{where}.source.{field}: A maximum of {self.max_pages} PDF pages may be provided. "
                          f"Got {self.pages}.")
        label = f"[document pdf {_plural(pages, 'page')}]"
        return Attachment("document", media.pdf_tokens(pages, self.limits) + extra, label, where, pages=pages)

    def file(self, where: str, source: dict) -> StoredFile:
        file_id = _string(where, source, "file_id")
        if self.files is None:
            raise not_found(file_id)
        return self.files.read(file_id)


def _string(where: str, source: dict, field: str) -> str:
    value = source.get(field)
    if value is None:
        raise invalid(f"{where}.source.{field}: Field required")
    if not isinstance(value, str):
        raise invalid(f"{where}.source.{field}: Input should be a valid string, got {value!r:.40}")
    return value


def _media_type(where: str, source: dict, expected: str) -> None:
    declared = _string(where, source, "media_type")
    if declared != expected:
        raise invalid(f"{where}.source.media_type: Input should be '{expected}', got {declared!r:.40}")


def _url(where: str, source: dict) -> str:
    url = _string(where, source, "url")
    if not url.lower().startswith(("http://", "https://")):
        raise invalid(f"{where}.source.url: Input should be an http or https URL, got {url!r:.60}")
    return url


def _decode(where: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where}.source.data: Input should be valid base64 (the standard alphabet, padded, "
                      "without line breaks); the data does not decode") from None


def _document_fields(where: str, block: dict) -> int:
    """Tokens of a document's ``title`` and ``context``, after checking them and ``citations``."""
    extra = 0
    for field in ("title", "context"):
        value = block.get(field)
        if value is not None and not isinstance(value, str):
            raise invalid(f"{where}.{field}: Input should be a valid string, got {value!r:.40}")
        extra += tokens.count(value or "")
    citations = block.get("citations")
    if citations is not None and not isinstance(citations, dict):
        raise invalid(f"{where}.citations: Input should be a valid dictionary, got {citations!r:.40}")
    return extra


def _text(where: str, text: str, extra: int) -> Attachment:
    return Attachment("document", tokens.count(text) + extra, f"[document text {len(text)} chars]", where)


def _content(where: str, source: dict, extra: int) -> Attachment:
    content: Any = source.get("content")
    if content is None:
        raise invalid(f"{where}.source.content: Field required")
    if isinstance(content, str):
        blocks = 1
    elif isinstance(content, list) and all(isinstance(b, dict) and b.get("type") in ("text", "image")
                                           for b in content):
        blocks = len(content)
    else:
        raise invalid(f"{where}.source.content: Input should be a string or a list of text and image blocks")
    text = content_text(content)
    label = f"[document content {_plural(blocks, 'block')}]"
    return Attachment("document", tokens.count(text) + extra, label, where)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
