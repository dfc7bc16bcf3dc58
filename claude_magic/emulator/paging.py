"""Pages of a list endpoint (``after_id``, ``before_id``, ``limit``), as the API pages them."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def page(items: list[T], ids: list[str], after_id: str | None, before_id: str | None, limit: int,
         what: str) -> tuple[list[T], bool]:
    """The page of ``items`` (with their ``ids``, in listing order) and whether more follow;
    ValueError names an ID that is not one of ``what`` (``model``, ``message batch``)."""
    for name, value in (("after_id", after_id), ("before_id", before_id)):
        if value is not None and value not in ids:
            raise ValueError(f"{name}: no {what} {value!r}")
    if after_id is not None:
        items = items[ids.index(after_id) + 1:]
    if before_id is not None:
        idx = ids.index(before_id)
        return items[max(0, idx - limit):idx], idx > limit
    return items[:limit], len(items) > limit
