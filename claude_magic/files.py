"""Content used more than once goes up once: the Files API, and the uploads this account has.

A figure asked about in three cells, a PDF asked twenty questions, the same logo in 5,000 rows: sent
as base64 each time, the same bytes travel (and count toward the 32 MB request limit) again and
again. :class:`Uploads` uploads such content once (``POST /v1/files``) and remembers the file id
under the API host, a hash of the key (file ids belong to a workspace) and the content's SHA-256 —
in the response cache's side table, so a re-run, another kernel or tomorrow's session references
the same ``file_id``. Before its first use in a client an id is checked (``GET /v1/files/{id}``):
an expired or deleted one is forgotten and the content uploaded again, transparently.

What decides when to upload is the caller's: ``%%claude`` uploads content the second time it is
sent (the first use of a one-off image costs no upload); a batch uploads what more than one of its
requests holds. ``count_tokens``, dry runs and Message Batches send base64 (the API refuses file
references in ``count_tokens``; inside Message Batches they are not documented).

Cache keys never hold a file id: the client keys an image or document by its content
(``_wire.cache_fields``), and :attr:`Uploads.shas` tells it what each id holds.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from .errors import NotFoundError

if TYPE_CHECKING:
    from .cache import ResponseCache
    from .client import Client
    from .media import Media

__all__ = ["Uploads"]

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp",
               "application/pdf": "pdf", "text/plain": "txt"}
SEEN_LIMIT = 10_000  # contents remembered as sent once (for "upload on the second use")


class Uploads:
    """The Files API uploads of one account (see the module docstring). Thread-safe."""

    def __init__(self, client: Client, cache: ResponseCache | None, group: str) -> None:
        self._client = client
        self._cache = cache
        self._key = f"files:{group}"
        self._seen_key = f"files-seen:{group}"
        self._memory: dict[str, dict[str, Any]] = {}  # without a cache: this client's uploads only
        self._seen_memory: list[str] = []
        self._checked: set[str] = set()  # ids known alive in this client
        self._lock = threading.Lock()
        self.uploaded = 0  # uploads made by this client
        self.shas: dict[str, str] = {info["id"]: sha for sha, info in self._all().items()}

    # -- the registry ---------------------------------------------------------------------------------

    def _all(self) -> dict[str, dict[str, Any]]:
        stored = self._cache.get_meta(self._key) if self._cache is not None else self._memory
        return {sha: info for sha, info in (stored or {}).items()
                if isinstance(info, dict) and isinstance(info.get("id"), str)}

    def _store(self, entries: dict[str, dict[str, Any]]) -> None:
        if self._cache is not None:
            self._cache.set_meta(self._key, entries)
        else:
            self._memory = entries
        self.shas = {info["id"]: sha for sha, info in entries.items()}

    def list(self) -> list[dict[str, Any]]:
        """What was uploaded (and not deleted here): id, sha256, media type, bytes, when, uses."""
        return [{"sha256": sha, **info} for sha, info in sorted(self._all().items(),
                                                                 key=lambda kv: kv[1].get("created", 0))]

    def seen_before(self, media: Media) -> bool:
        """Whether this content was sent before (and remember that it now was)."""
        with self._lock:
            stored = self._cache.get_meta(self._seen_key) if self._cache is not None else self._seen_memory
            seen = list(stored or [])
            if media.sha256 in seen:
                return True
            seen = [*seen, media.sha256][-SEEN_LIMIT:]
            if self._cache is not None:
                self._cache.set_meta(self._seen_key, seen)
            else:
                self._seen_memory = seen
            return False

    # -- uploading ------------------------------------------------------------------------------------

    def file_id(self, media: Media) -> str:
        """The id of a file holding ``media``'s bytes: remembered (and alive), else uploaded now."""
        return self._client.run(self.afile_id(media))  # type: ignore[no-any-return]

    async def afile_id(self, media: Media) -> str:
        """:meth:`file_id` on the client's loop (what a batch engine awaits)."""
        with self._lock:
            info = self._all().get(media.sha256)
        if info is not None and await self._alive(info["id"]):
            return str(info["id"])
        if media.data is None:
            raise ValueError("only content with bytes can be uploaded (not a URL)")
        ext = _EXTENSIONS.get(media.media_type, "bin")
        answer = await self._client.arequest("POST", "/v1/files", files={
            "file": (f"{media.sha256[:16]}.{ext}", media.data, media.media_type)})
        file_id = str(answer["id"])
        with self._lock:
            entries = self._all()
            entries[media.sha256] = {"id": file_id, "media_type": media.media_type, "bytes": len(media.data),
                                     "created": time.time()}
            self._store(entries)
            self._checked.add(file_id)
            self.uploaded += 1
        return file_id

    async def _alive(self, file_id: str) -> bool:
        """Whether the API still has ``file_id`` (asked once per client); a gone one is forgotten."""
        if file_id in self._checked:
            return True
        try:
            await self._client.arequest("GET", f"/v1/files/{file_id}")
        except NotFoundError:
            self._forget(file_id)
            return False
        self._checked.add(file_id)
        return True

    def _forget(self, file_id: str) -> None:
        with self._lock:
            self._store({sha: info for sha, info in self._all().items() if info["id"] != file_id})
            self._checked.discard(file_id)

    # -- removing -------------------------------------------------------------------------------------

    def delete(self, file_id: str) -> bool:
        """Delete ``file_id`` from the API (gone already is fine) and forget it; False if unknown here."""
        known = any(info["id"] == file_id for info in self._all().values())
        try:
            self._client.request("DELETE", f"/v1/files/{file_id}")
        except NotFoundError:
            pass
        self._forget(file_id)
        return known

    def clear(self) -> int:
        """Delete every file uploaded through this registry; returns how many."""
        ids = [info["id"] for info in self._all().values()]
        for file_id in ids:
            self.delete(file_id)
        return len(ids)
