"""Rendering: a template over the rows of a table -> its distinct prompts and a code per row.

The rows come from :func:`claude_magic.frames.read`: a DataFrame or Series of pandas, polars or
Arrow, a list, or one column of a frame with its sibling columns (what ``%claude_batch df.text``
reads), so a template over a column may name the other columns of its row.
Placeholders follow :mod:`claude_magic.interpolate`. Rows are factorised over the columns the
template uses, so only distinct value combinations are rendered (linear in the rows). A row whose
used column is missing (NaN/None/null) or a string of whitespace only is skipped: sent, it would be
a prompt without its subject, or one the API refuses.

Images and PDFs: a row whose placeholders name media becomes a :class:`MediaPrompt` (see ``_media``);
rows are then rendered through :func:`claude_magic.interpolate.render` with a media hook, and
deduplicated by their text and their media's content. A value that cannot be sent (an unreadable
file, an unsupported format, a PDF too big) is that row's error (``PromptPlan.errors``), in one line
naming the row and the column; the other rows go on. A plan without media is exactly as it was.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..frames import Table, read
from ..interpolate import interpolate, placeholders, render
from ..media import Media, MediaError
from ._media import Converter, MediaPrompt, wants_media


@dataclass
class PromptPlan:
    """The rows of a run reduced to unique prompts.

    ``codes[i]`` is the unique prompt of row ``i`` (position, not label), -1 for a row skipped
    because a used column is missing or empty there. ``skipped`` holds the positions of those
    rows and ``empty``, aligned to it, whether the row was skipped for an empty value (a string
    of whitespace only) rather than a missing one (a row with both counts as missing).
    ``index``: the rows' labels (pandas' index; positions for polars, Arrow and lists) ·
    ``table``: the source read, which makes the answers in its own library (:meth:`answers`) ·
    ``template``: the template the prompts were rendered from.
    ``prompts``: a string each, or a :class:`MediaPrompt` for one holding images or PDFs ·
    ``errors``: the prompts whose rows cannot be sent (a medium that cannot be read), by position in
    ``prompts`` (which holds ``""`` there).
    """

    index: pd.Index
    codes: np.ndarray
    prompts: list[str | MediaPrompt]
    columns: list[str]
    skipped: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    empty: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    table: Table | None = None
    template: str = ""
    errors: dict[int, MediaError] = field(default_factory=dict)

    @functools.cached_property
    def head(self) -> str:
        """The template's text before its first placeholder, rendered (``{{x}}`` is ``{x}``), which
        every prompt starts with; empty when the template starts with a placeholder or has none.
        Computed when first asked for (a run that marks its shared prefix), not while planning."""
        return _static_head(self.template)

    @property
    def rows(self) -> int:
        return len(self.codes)

    @property
    def skipped_empty(self) -> int:
        """How many rows were skipped for an empty value (the others for a missing one)."""
        return int(self.empty.sum())

    def rows_per_prompt(self) -> np.ndarray:
        valid = self.codes[self.codes >= 0]
        return np.bincount(valid, minlength=len(self.prompts)).astype(np.int64)

    def answers(self, values: np.ndarray) -> Any:
        """One answer per row (text or None) as the source library's series (pandas for a list)."""
        if self.table is None:
            return pd.Series(values, index=self.index, dtype=pd.StringDtype())
        return self.table.answers(values)


def _first_name(expr: str) -> str:
    end = 0
    while end < len(expr) and (expr[end].isalnum() or expr[end] == "_"):
        end += 1
    return expr[:end]


def _template_columns(template: str, table: Table) -> list[str]:
    """The columns the template uses (ConfigError for a name that is not one)."""
    if not isinstance(template, str) or not template.strip():
        raise ConfigError("the template is empty: write the prompt with {column} placeholders")
    columns: list[str] = []
    for expr in placeholders(template):
        name = _first_name(expr)
        column = table.aliases.get(name, name)
        if column not in table.names:
            raise ConfigError(f"template placeholder {{{expr}}} names no column; the data has: "
                              f"{_what_the_data_has(table)}{_no_siblings(table, name)} "
                              f"(write {{{{{expr}}}}} for a literal brace)")
        if column not in columns:
            columns.append(column)
    return columns


def _what_the_data_has(table: Table) -> str:
    if table.single:
        return "value" + "".join(f" (or {a})" for a in table.aliases)
    names = table.names
    have = ", ".join(map(str, names[:30])) + (" …" if len(names) > 30 else "")
    return have + "".join(f" ({{{alias}}} is {column})" for alias, column in table.aliases.items())


def _no_siblings(table: Table, name: str) -> str:
    """For a Series or list, why a column of its frame is not there, and what to pass instead."""
    if not table.single:
        return ""
    return f"; a Series or list alone has no sibling columns: pass the DataFrame to use {{{name}}}"


def _factorize(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the column's values (-1 where missing) and where its value is blank: a string
    of whitespace only (decided once per distinct value, so linear in the rows)."""
    try:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
    except TypeError:  # unhashable cells (lists, dicts): group them by their text
        codes, _ = pd.factorize(column.map(lambda v: v if _is_missing(v) else repr(v)), use_na_sentinel=True)
        blank = column.map(_is_blank).to_numpy(dtype=bool)
        return np.asarray(codes, dtype=np.int64), blank
    codes = np.asarray(codes, dtype=np.int64)
    blank_unique = np.fromiter((_is_blank(u) for u in uniques), dtype=bool, count=len(uniques))
    blank = np.append(blank_unique, False)[codes]  # code -1 (missing) picks the trailing False
    return codes, blank


def _is_blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # array-like cells are values, not missing
        return False


def _group_codes(cells: Mapping[str, pd.Series], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One code per distinct combination of the columns' ``cells`` (-1 where any is missing or
    blank), the position of the first row of each code, and where a row is blank but not missing."""
    columns = list(cells)
    if not columns:
        return np.zeros(n, dtype=np.int64), np.zeros(1 if n else 0, dtype=np.int64), np.zeros(n, dtype=bool)
    codes = np.zeros(n, dtype=np.int64)
    missing = np.zeros(n, dtype=bool)
    blank = np.zeros(n, dtype=bool)
    for column in columns:
        c, b = _factorize(cells[column])
        missing |= c < 0
        blank |= b
        # combine pairwise and re-factorise so the numbers stay small whatever the column count
        codes = pd.factorize(codes * (int(c.max(initial=0)) + 2) + (c + 1))[0].astype(np.int64)
    blank &= ~missing
    missing |= blank
    codes[missing] = -1
    valid = np.flatnonzero(~missing)
    remap, first = np.unique(codes[valid], return_index=True)
    dense = np.full(n, -1, dtype=np.int64)
    # renumber groups in order of first appearance, so prompt order follows row order
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    dense[valid] = rank[np.searchsorted(remap, codes[valid])]
    return dense, valid[first[order]], blank


def _renderer(template: str, aliases: Mapping[str, str]) -> Callable[[dict[str, Any]], str]:
    """``row -> prompt`` through :func:`interpolate`. When every placeholder is a bare name, the
    template is interpolated once with markers and split, so each row is a join (same output)."""
    exprs = placeholders(template)
    names = [_first_name(e) for e in exprs]
    fence = _unused_char(template)
    if names == exprs and fence is not None:
        # Each name becomes fence+number+fence; the fence occurs nowhere else in the output (not in
        # the template, and interpolate adds only the values), so splitting on it gives literal
        # text at even positions and a name's number at odd ones, whatever the template holds.
        unique = list(dict.fromkeys(names))
        marks = {name: f"{fence}{i}{fence}" for i, name in enumerate(unique)}
        pieces = interpolate(template, marks).split(fence)
        slots = [(False, piece) if k % 2 == 0 else (True, aliases.get(unique[int(piece)], unique[int(piece)]))
                 for k, piece in enumerate(pieces)]

        def fast(row: dict[str, Any]) -> str:
            return "".join(str(row[v]) if is_field else v for is_field, v in slots)

        return fast

    def slow(row: dict[str, Any]) -> str:
        namespace = dict(row)
        namespace.update({alias: row[column] for alias, column in aliases.items()})
        return interpolate(template, namespace)

    return slow


class _Cut:
    """Every placeholder's value while the template's head is rendered: whatever the expression reads
    of it (an attribute, an item) is itself, and its text is a character the template lacks."""

    def __init__(self, mark: str) -> None:
        self.mark = mark

    def __getattr__(self, name: str) -> _Cut:
        return self

    def __getitem__(self, key: Any) -> _Cut:
        return self

    def __str__(self) -> str:
        return self.mark


def _static_head(template: str) -> str:
    """The template rendered up to its first placeholder (the text every prompt starts with), or ''
    when it has no placeholder (every row then asks the same thing: there is nothing to share)."""
    mark = _unused_char(template)
    if mark is None:
        return ""
    cut = _Cut(mark)
    # a hook that takes nothing as media, so {photo:image} too renders as the mark
    rendered = render(template, {_first_name(e): cut for e in placeholders(template)}, media=_no_media).text
    head, found, _ = rendered.partition(mark)
    return head if found else ""


def _no_media(value: Any, kind: str | None, name: str) -> None:
    return None


def _unused_char(template: str) -> str | None:
    """A private-use character the template does not contain (None if it holds all 6,400)."""
    used = set(template)
    return next((chr(c) for c in range(0xE000, 0xF900) if chr(c) not in used), None)


def _media_renderer(template: str, aliases: Mapping[str, str], index: pd.Index,
                    model: str) -> Callable[[dict[str, Any], int], str | MediaPrompt]:
    """``(row, position) -> prompt`` through :func:`render` with a media hook: a string when the row
    holds no media, else a :class:`MediaPrompt`. Raises MediaError naming the row and the column."""
    convert = Converter(model)

    def one(row: dict[str, Any], pos: int) -> str | MediaPrompt:
        namespace = dict(row)
        namespace.update({alias: row[column] for alias, column in aliases.items()})
        label = index[pos]

        def hook(value: Any, kind: str | None, name: str) -> Media | None:
            # the name as the template writes it ({photo} of a Series named photo, not its column "value")
            return convert(value, kind, f"row {label} ({_first_name(name.strip('{}'))})")

        parts = render(template, namespace, media=hook).parts
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
        return MediaPrompt(tuple(convert.many_images(parts)))

    return one


def plan_prompts(template: str, data: Any, *, model: str | None = None) -> PromptPlan:
    """Render ``template`` over ``data`` into unique prompts (see the module doc); sends nothing.

    ``data``: a DataFrame (placeholders name its columns), a Series, an Arrow array or a list
    (``{value}``, or the Series' name), of pandas, polars or pyarrow; a LazyFrame is collected,
    with a warning. ``model``: the model images are sized for (the newest limits when None).
    ConfigError for another type, or a placeholder that names no column.
    """
    table = read(data)
    columns = _template_columns(template, table)
    cells = {column: table.cells(column) for column in columns}
    n = len(table.index)
    groups, first_rows, blank = _group_codes(cells, n)
    if wants_media(template, cells, first_rows):
        rich = _media_renderer(template, table.aliases, table.index, model or "")
        prompts, errors, group_to_prompt = _render_groups(rich, cells, first_rows)
    else:
        prompts, errors, group_to_prompt = _render_text(_renderer(template, table.aliases), cells, first_rows)
    codes = np.where(groups >= 0, group_to_prompt[np.maximum(groups, 0)] if len(first_rows) else -1, -1)
    skipped = np.flatnonzero(groups < 0)
    return PromptPlan(index=table.index, codes=codes.astype(np.int64), prompts=prompts,
                      columns=columns, skipped=skipped, empty=blank[skipped], table=table,
                      template=template, errors=errors)


def _render_text(render_row: Callable[[dict[str, Any]], str], cells: Mapping[str, pd.Series],
                 first_rows: np.ndarray) -> tuple[list[str | MediaPrompt], dict[int, MediaError], np.ndarray]:
    """:func:`_render_groups` for text alone: the loop of a plan without media, kept as lean as it was."""
    prompt_ids: dict[str, int] = {}
    group_to_prompt = np.empty(len(first_rows), dtype=np.int64)
    for g, pos in enumerate(first_rows):
        prompt = render_row({c: values.iat[int(pos)] for c, values in cells.items()})
        group_to_prompt[g] = prompt_ids.setdefault(prompt, len(prompt_ids))
    return list(prompt_ids), {}, group_to_prompt


def _render_groups(render_row: Callable[[dict[str, Any], int], str | MediaPrompt],
                   cells: Mapping[str, pd.Series], first_rows: np.ndarray,
                   ) -> tuple[list[str | MediaPrompt], dict[int, MediaError], np.ndarray]:
    """Each group's prompt, deduplicated (by text, and a media prompt by :attr:`MediaPrompt.key`): the
    prompts in order (``""`` for a failed one), the errors by prompt position, each group's position."""
    prompts: list[str | MediaPrompt] = []
    errors: dict[int, MediaError] = {}
    group_to_prompt = np.empty(len(first_rows), dtype=np.int64)
    positions: dict[Any, int] = {}
    for g, pos in enumerate(first_rows):
        try:
            prompt = render_row({c: values.iat[int(pos)] for c, values in cells.items()}, int(pos))
        except MediaError as exc:  # that row's error; each failing group is a prompt of its own
            errors[len(prompts)] = exc
            group_to_prompt[g] = len(prompts)
            prompts.append("")
            continue
        key = prompt.key if isinstance(prompt, MediaPrompt) else prompt
        uid = positions.setdefault(key, len(prompts))
        if uid == len(prompts):
            prompts.append(prompt)
        group_to_prompt[g] = uid
    return prompts, errors, group_to_prompt
