"""The Files API: upload, list, metadata, delete; and the bytes image and document blocks read by
``file_id``.

``POST /v1/files`` takes ``multipart/form-data`` (RFC 7578) with the file in a part named ``file``
and an optional ``expires_in_seconds`` (3600 to 7,776,000). The whole body may be 500 MB (a larger
one is answered 413 from its ``content-length``, unread, see :mod:`.body`). The form is split by
hand on its boundary: ``email``'s parser reads a body line by line, far too slow for a 500 MB file.

A file's ``mime_type`` comes from its bytes when their signature says one (PNG, JPEG, GIF, WebP,
PDF), else from the part's content type, else from the filename's extension, else ``text/plain``
when the bytes are UTF-8 text, else ``application/octet-stream``. Only the last path component of
the filename is kept; an empty one becomes ``unnamed`` plus the type's extension.

Files live in memory until deleted or :meth:`FileStore.clear` (``Emulator.reset``). A deleted file
is gone: its metadata, its use in a message and a second delete answer 404 ``File not found:
file_...``. An expired file (``expires_in_seconds`` passed) keeps its metadata but its bytes are gone:
a message that uses it is answered 404 with ``details.error_code: file_expired``. Uploaded files are
never downloadable (only files that tools create are): ``GET /v1/files/{id}/content`` is a 400 with
``details.error_code: file_not_downloadable``. With or without ``anthropic-beta: files-api-2025-04-14``
the shapes are the same.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
import secrets
import threading
import time
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import HTTP
from typing import Any

from . import media, paging
from .ratelimit import rfc3339
from .validate import APIError, invalid

EXPIRES_RANGE = (3600, 7_776_000)
MAX_IDS = 100
OCTET_STREAM = "application/octet-stream"
_ID_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # base58, as the API's IDs


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class Form:
    """A parsed multipart/form-data body."""

    parts: list[Part]

    def get(self, name: str) -> Part | None:
        return next((p for p in self.parts if p.name == name), None)

    def summary(self) -> dict:
        """What :class:`~.app.RecordedRequest` keeps of the form: fields, and each file's name, type
        and size, never its bytes."""
        out: dict[str, Any] = {}
        for part in self.parts:
            if part.filename is None and part.name != "file":
                out[part.name] = part.data[:200].decode("utf-8", "replace")
            else:
                out[part.name] = {"filename": part.filename, "content_type": part.content_type,
                                  "size_bytes": len(part.data)}
        return out


def is_form(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == "multipart/form-data"


def parse_form(raw: bytes, content_type: str) -> Form:
    """The parts of a multipart/form-data body; 400 when it is not one."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise invalid("content-type: multipart/form-data needs a boundary parameter")
    dash = b"--" + boundary.encode("latin-1")
    delimiter = b"\r\n" + dash
    # found by index, not split: a 500 MB upload is copied once (into its part), not twice more
    found = raw.find(delimiter)
    at = 0 if raw.startswith(dash) else found + 2 if found >= 0 else -1  # where a boundary line starts
    parts: list[Part] = []
    while at >= 0:
        start = at + len(dash)
        if raw.startswith(b"--", start):
            return Form(parts)
        end = raw.find(delimiter, start)
        if end < 0:
            break
        parts.append(_part(raw[start:end]))
        at = end + 2
    raise invalid("Invalid multipart/form-data body: no closing boundary "
                  f"'--{boundary}--'; send the parts as RFC 7578 describes")


def _part(piece: bytes) -> Part:
    head, sep, data = piece.partition(b"\r\n\r\n")
    if not sep:
        raise invalid("Invalid multipart/form-data body: a part has no blank line after its headers")
    headers = BytesHeaderParser(policy=HTTP).parsebytes(head.lstrip(b" \t").removeprefix(b"\r\n") + b"\r\n")
    name = headers.get_param("name", header="content-disposition")
    if not isinstance(name, str):
        raise invalid("Invalid multipart/form-data body: a part has no Content-Disposition name")
    filename = headers.get_filename()
    return Part(name, filename, headers.get_content_type() if "content-type" in headers else None, data)


# -- the store ----------------------------------------------------------------------------------------

@dataclass
class StoredFile:
    id: str
    filename: str
    mime_type: str
    data: bytes
    created: float
    expires: float | None = None

    def to_object(self) -> dict:
        """The File object of the API (``FileMetadata`` in the SDK)."""
        return {"id": self.id, "type": "file", "filename": self.filename, "mime_type": self.mime_type,
                "size_bytes": len(self.data), "created_at": rfc3339(self.created), "downloadable": False,
                "expires_at": rfc3339(self.expires) if self.expires is not None else None}


def not_found(file_id: str) -> APIError:
    return APIError(404, "not_found_error", f"File not found: {file_id}")


def mime_type(data: bytes, declared: str | None, filename: str) -> str:
    """The stored type: the bytes' signature, else the declared type, else the name's, else a guess."""
    sniffed = media.sniff(data)
    if sniffed is not None:
        return sniffed
    if declared and declared != OCTET_STREAM:
        return declared
    guessed = mimetypes.guess_type(filename)[0]
    if guessed:
        return guessed
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return OCTET_STREAM
    return media.TEXT if "\x00" not in text else OCTET_STREAM


def _filename(raw: str | None, mime: str) -> str:
    name = re.split(r"[\\/]", raw or "")[-1]
    return name or "unnamed" + (mimetypes.guess_extension(mime) or "")


def _expires_in(form: Form) -> int | None:
    part = form.get("expires_in_seconds")
    if part is None:
        return None
    raw = part.data.decode("utf-8", "replace").strip()
    try:
        seconds = int(raw)
    except ValueError:
        raise invalid(f"expires_in_seconds: Input should be a valid integer, got {raw!r:.40}") from None
    low, high = EXPIRES_RANGE
    if not low <= seconds <= high:
        raise invalid(f"expires_in_seconds: Input should be between {low} and {high}, got {seconds}")
    return seconds


class FileStore:
    """The uploaded files of one server, in memory. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}  # insertion order = upload order
        self.uploads = 0                          # files uploaded since the last clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self.uploads = 0

    def upload(self, form: Any) -> StoredFile:
        """Store the ``file`` part of an upload form; 400 for a missing part or a bad field."""
        if not isinstance(form, Form):
            raise invalid("POST /v1/files takes multipart/form-data with the file in a part named 'file'")
        part = form.get("file")
        if part is None:
            raise invalid("file: Field required (a multipart/form-data part named 'file')")
        expires_in = _expires_in(form)
        mime = mime_type(part.data, part.content_type, part.filename or "")
        now = time.time()
        stored = StoredFile("file_011" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(21)),
                            _filename(part.filename, mime), mime, part.data, now,
                            now + expires_in if expires_in is not None else None)
        with self._lock:
            self._files[stored.id] = stored
            self.uploads += 1
        return stored

    def get(self, file_id: str) -> StoredFile:
        """A file's metadata and bytes; 404 when there is none by that ID (or it was deleted)."""
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise not_found(file_id)
        return stored

    def read(self, file_id: str) -> StoredFile:
        """A file a message uses: 404 also when it expired."""
        stored = self.get(file_id)
        if stored.expires is not None and time.time() >= stored.expires:
            raise APIError(404, "not_found_error",
                           f"File {file_id} expired at {rfc3339(stored.expires)}: upload it again",
                           details={"error_code": "file_expired"})
        return stored

    def delete(self, file_id: str) -> dict:
        with self._lock:
            if self._files.pop(file_id, None) is None:
                raise not_found(file_id)
        return {"id": file_id, "type": "file_deleted"}

    def content(self, file_id: str) -> bytes:
        self.get(file_id)
        raise APIError(400, "invalid_request_error",
                       f"File {file_id} is not downloadable: only files that tools create (such as code "
                       "execution's outputs) can be downloaded",
                       details={"error_code": "file_not_downloadable"})

    def page(self, query: dict[str, list[str]], after_id: str | None, before_id: str | None,
             limit: int) -> dict:
        """One page of ``GET /v1/files`` (newest first): ``{data, has_more, first_id, last_id,
        next_page}``. ``page`` (a ``next_page`` cursor) and ``after_id``/``before_id`` page it; ``ids``
        (or ``ids[]``) picks files by ID, in one page, leaving out IDs that name no file."""
        with self._lock:
            items = list(reversed(self._files.values()))
        ids = query.get("ids[]", []) + query.get("ids", [])
        if ids:
            if len(set(ids)) > MAX_IDS:
                raise invalid(f"ids: at most {MAX_IDS} IDs may be given, got {len(set(ids))}")
            return _page([f for f in items if f.id in set(ids)], False, cursor=False)
        cursor = query.get("page", [None])[-1]
        if cursor is not None:
            after_id = _cursor_id(cursor, [f.id for f in items])
        try:
            chosen, more = paging.page(items, [f.id for f in items], after_id, before_id, limit, "file")
        except ValueError as exc:
            raise invalid(str(exc)) from None
        return _page(chosen, more, cursor=before_id is None)


def _page(files: list[StoredFile], more: bool, *, cursor: bool) -> dict:
    data = [f.to_object() for f in files]
    last = data[-1]["id"] if data else None
    next_page = None
    if cursor and more and last:
        next_page = "page_" + base64.urlsafe_b64encode(last.encode()).decode()
    return {"data": data, "has_more": more, "first_id": data[0]["id"] if data else None, "last_id": last,
            "next_page": next_page}


def _cursor_id(cursor: str, ids: list[str]) -> str:
    try:
        file_id = base64.urlsafe_b64decode(cursor.removeprefix("page_").encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        file_id = None
    if file_id not in ids:
        raise invalid(f"page: {cursor!r:.60} is not a page cursor of this list; pass next_page from "
                      "the previous list response")
    return str(file_id)
