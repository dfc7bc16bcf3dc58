"""Tables of any dataframe library: the rows a batch reads, and its answers in the source's own type.

narwhals is the one code path for pandas, polars and pyarrow (and the other libraries it reads). A
source becomes a :class:`Table`: the column names a template may use, row labels, and each column's
cells. A cell is what the person sees when they index their own table: pandas' scalars for pandas
(a ``Timestamp`` keeps ``.year``, a ``float32`` prints as itself), Python values (``to_list``)
for the others.

Rows are matched by label for pandas (its index) and by position for every other library, which
has no index. Writing follows mutability: :func:`with_answers` changes a pandas DataFrame in place
(aligned on its index, as ``df[col] = series`` does) and returns it; a polars DataFrame or an Arrow
Table is immutable, so it returns an extended copy, which the caller binds in place of the old one.
Only rows with an answer change an existing column, in every library.

A LazyFrame has no rows until its query runs: :func:`read` collects it (with a warning: the query
ran at that moment) and the answers come in the collected frame's library.

This module imports pandas and narwhals at the top: it is loaded with the batch engine, never when
``claude_magic`` or the extension loads.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import narwhals as nw
import numpy as np
import pandas as pd

from .errors import ConfigError

__all__ = [
    "SUPPORTED",
    "ColumnOf",
    "Table",
    "answered",
    "as_variable",
    "collect",
    "column_names",
    "describe",
    "is_lazy",
    "is_table",
    "read",
    "supports",
    "with_answers",
    "with_typed",
]

SUPPORTED = ("a DataFrame or Series of pandas or polars (a LazyFrame is collected), a pyarrow Table, "
             "ChunkedArray or Array, or a list of strings")


@dataclass(frozen=True)
class ColumnOf:
    """One column of a frame, with the frame's other columns beside it for the template: what
    ``%claude_batch df.text …`` reads. ``{value}`` names ``column`` too, unless the frame has a
    column of that name."""

    frame: Any
    column: str


@dataclass(frozen=True)
class Table:
    """The rows of a source, read (see the module doc).

    ``names``: the columns placeholders may name · ``aliases``: other placeholder names of a column
    (``{value}``, a Series' name) · ``index``: row labels (pandas' index; positions elsewhere) ·
    ``single``: the source is one Series or a list, so it has no sibling columns.
    """

    names: list[str]
    aliases: dict[str, str]
    index: pd.Index
    single: bool
    frame: nw.DataFrame[Any]

    def cells(self, name: str) -> pd.Series:
        """Column ``name``'s cells in row order, positionally (pandas' own Series for pandas;
        Python values in an object Series for the other libraries)."""
        column = self.frame.get_column(name)
        if self.frame.implementation.is_pandas():
            return column.to_native()
        return pd.Series(column.to_list(), dtype=object)

    def answers(self, values: Any) -> Any:
        """``values`` (text or None, one per row) as the source library's series: a pandas Series
        of dtype ``string`` on the index (a list's too), a polars Series, an Arrow ChunkedArray."""
        if self.frame.implementation.is_pandas():
            return pd.Series(values, index=self.index, dtype=pd.StringDtype())
        return nw.new_series("", list(values), nw.String, backend=self.frame.implementation).to_native()

    def objects(self, values: Any) -> Any:
        """Typed answers (validated values, or None), one per row: a pandas Series of objects on the
        index; for polars and Arrow, whose columns hold no Python objects, each value as JSON text."""
        if self.frame.implementation.is_pandas():
            return pd.Series(list(values), index=self.index, dtype=object)
        texts = [None if v is None else _json(v) for v in values]
        return nw.new_series("", texts, nw.String, backend=self.frame.implementation).to_native()

    def fields(self, values: Any, fields: list[Any], prefix: str = "") -> dict[str, Any]:
        """One series per field of a typed answer (``schema.fields``), named ``prefix + name``, in
        the source's library, typed by the schema: int -> integers with nulls, float, bool, str,
        enum -> categorical, date and datetime -> temporal, anything else as JSON text; a missing
        optional field, or a row without an answer, is null."""
        rows = [_plain(v) for v in values]
        out: dict[str, Any] = {}
        for f in fields:
            cells = [None if r is None else _cell(r.get(f.name) if isinstance(r, dict) else r, f.kind)
                     for r in rows]
            out[prefix + f.name] = self._typed(prefix + f.name, cells, f)
        return out

    def _typed(self, name: str, cells: list[Any], field: Any) -> Any:
        if self.frame.implementation.is_pandas():
            dtype = _PANDAS_DTYPES.get(field.kind, object)
            series = pd.Series(cells, index=self.index, dtype=dtype, name=name)
            if field.kind == "enum" and field.values:
                categories = [v for v in field.values if isinstance(v, str)]
                series = series.astype(pd.CategoricalDtype(categories or None))
            return series
        dtype = _NW_DTYPES.get(field.kind, nw.String)
        return nw.new_series(name, cells, dtype, backend=self.frame.implementation).to_native()


# --------------------------------------------------------------------------------------------------
# what a value is


def describe(obj: Any) -> str:
    """``obj``'s type for a message: ``a polars DataFrame``, ``a pyarrow Table``, ``a dict``.
    pandas, the package's first library, is named by its types alone (``a DataFrame``)."""
    cls = type(obj)
    library = cls.__module__.split(".")[0]
    return f"a {cls.__name__}" if library in ("builtins", "pandas") else f"a {library} {cls.__name__}"


def _wrap(obj: Any) -> Any:
    """``obj`` as a narwhals DataFrame, LazyFrame or Series; ``obj`` itself when narwhals cannot
    read it. An Arrow Array is read as a one-chunk ChunkedArray (narwhals reads only the latter)."""
    pa = sys.modules.get("pyarrow")  # an Arrow Array exists only once pyarrow is imported
    if pa is not None and isinstance(obj, pa.Array):
        obj = pa.chunked_array([obj])
    try:
        return nw.from_native(obj, allow_series=True, pass_through=True)
    except nw.exceptions.DuplicateError as exc:  # a pandas frame may repeat a name; the others cannot
        raise ConfigError(f"{describe(obj)} has duplicate column names ({' '.join(str(exc).split())}): "
                          "rename them, so that a placeholder names one column") from None


def _is_list(obj: Any) -> bool:
    """A plain sequence of values: list, tuple, range, an iterator, a 1-D numpy array or pandas
    Index. Not a str, a mapping or a set, and not an object of another library iterated by
    accident (iterating a polars DataFrame gives its columns)."""
    if isinstance(obj, np.ndarray):
        return obj.ndim == 1
    return isinstance(obj, (list, tuple, range, Iterator, pd.Index))


def supports(obj: Any) -> bool:
    """Whether :func:`read` reads ``obj`` (a :class:`ColumnOf`, a frame, a series or a list)."""
    return isinstance(obj, ColumnOf) or _is_list(obj) or _wrap(obj) is not obj


def _kind(obj: Any) -> type | None:
    """narwhals' class for ``obj`` (DataFrame, LazyFrame, Series), or None when it reads none."""
    try:
        wrapped = _wrap(obj)
    except ConfigError:  # duplicate column names: only a (pandas) DataFrame has columns
        return nw.DataFrame
    return next((kind for kind in (nw.DataFrame, nw.LazyFrame, nw.Series) if isinstance(wrapped, kind)), None)


def is_table(obj: Any) -> bool:
    """A DataFrame or LazyFrame of a library narwhals reads (a pandas, polars … DataFrame, an
    Arrow Table)."""
    return _kind(obj) in (nw.DataFrame, nw.LazyFrame)


def is_lazy(obj: Any) -> bool:
    """A LazyFrame: its rows exist once its query runs (:func:`collect`)."""
    return _kind(obj) is nw.LazyFrame


def collect(obj: Any) -> Any:
    """A LazyFrame's rows as its library's DataFrame (the query runs now); other values as they are."""
    wrapped = _wrap(obj)
    return wrapped.collect().to_native() if isinstance(wrapped, nw.LazyFrame) else obj


def column_names(frame: Any) -> list[str]:
    """The column names of a DataFrame or LazyFrame (a LazyFrame's from its schema: nothing runs)."""
    if isinstance(frame, pd.DataFrame):  # as they are, repeated names included
        return list(frame.columns)
    wrapped = _wrap(frame)
    if isinstance(wrapped, nw.LazyFrame):
        return list(wrapped.collect_schema().names())
    return list(wrapped.columns)


# --------------------------------------------------------------------------------------------------
# reading


def read(data: Any) -> Table:
    """``data`` as a :class:`Table`. ``data``: a DataFrame, LazyFrame (collected, with a warning) or
    Series of a library narwhals reads, an Arrow Array, a :class:`ColumnOf`, or a list of values.
    Anything else is a one-line ConfigError naming its type and the supported ones."""
    if isinstance(data, ColumnOf):
        return _read_column_of(data)
    if _is_list(data):
        values = pd.Series(list(data), dtype=object)
        return _table(nw.from_native(values.to_frame(name="value")), values.index, {}, single=True)
    wrapped = _wrap(data)
    if isinstance(wrapped, nw.LazyFrame):
        wrapped = _collect_with_warning(data, wrapped)
    if isinstance(wrapped, nw.Series):
        return _read_series(wrapped)
    if isinstance(wrapped, nw.DataFrame):
        return _table(wrapped, _index(wrapped), {}, single=False)
    raise ConfigError(f"data is {describe(data)}: give {SUPPORTED}")


def _read_column_of(data: ColumnOf) -> Table:
    table = read(data.frame)
    if table.single:
        raise ConfigError(f"ColumnOf needs a frame, got {describe(data.frame)}")
    if data.column not in table.names:
        raise ConfigError(f"the frame has no column {data.column!r}; columns: {_listing(table.names)}")
    aliases = {} if "value" in table.names else {"value": data.column}
    return replace(table, aliases=aliases)


def _read_series(series: nw.Series[Any]) -> Table:
    name = series.name
    aliases = {name: "value"} if isinstance(name, str) and name.isidentifier() and name != "value" else {}
    frame = series.alias("value").to_frame()
    return _table(frame, _index(frame), aliases, single=True)


def _table(frame: nw.DataFrame[Any], index: pd.Index, aliases: dict[str, str], single: bool) -> Table:
    return Table(names=list(frame.columns), aliases=aliases, index=index, single=single, frame=frame)


def _index(frame: nw.DataFrame[Any]) -> pd.Index:
    """pandas' own index; positions for a library without one."""
    if frame.implementation.is_pandas():
        return frame.to_native().index
    return pd.RangeIndex(len(frame))


def _listing(names: list[str], most: int = 30) -> str:
    return ", ".join(map(str, names[:most])) + (" …" if len(names) > most else "")


def _collect_with_warning(native: Any, lazy: nw.LazyFrame[Any]) -> nw.DataFrame[Any]:
    frame = lazy.collect()
    warnings.warn(f"collected {describe(native)} to read its rows ({len(frame):,} rows; its query ran "
                  "now): pass it collected (.collect()) to choose when the query runs",
                  UserWarning, stacklevel=_stacklevel())
    return frame


def _stacklevel() -> int:
    """The stack level of the first caller outside this package, so a warning points at the
    person's line (pandas' ``find_stack_level``)."""
    package = str(Path(__file__).parent)
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


# --------------------------------------------------------------------------------------------------
# writing


_PANDAS_DTYPES: dict[str, Any] = {"int": "Int64", "float": "Float64", "bool": "boolean", "str": "string",
                                  "enum": "string", "date": "datetime64[us]", "datetime": "datetime64[us]"}
_NW_DTYPES: dict[str, Any] = {"int": nw.Int64, "float": nw.Float64, "bool": nw.Boolean, "str": nw.String,
                              "enum": nw.Categorical, "date": nw.Date, "datetime": nw.Datetime}


def _plain(value: Any) -> Any:
    """A typed answer as plain data: a pydantic model's fields (dates stay dates), else as it is."""
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value


def _cell(value: Any, kind: str) -> Any:
    """One field's value for a column of ``kind`` (an enum member as its value, nested data as JSON)."""
    if value is None:
        return None
    if hasattr(value, "value") and not isinstance(value, (str, int, float)):  # an Enum member
        value = value.value
    if kind == "object" or isinstance(value, (dict, list)):
        return _json(value)
    return value


def _json(value: Any) -> str:
    import json

    return json.dumps(_plain(value), ensure_ascii=False, default=str)


def answered(answers: Any) -> np.ndarray:
    """Where ``answers`` (a series of any library) holds an answer, as a bool array in row order."""
    if isinstance(answers, pd.Series):
        return answers.notna().to_numpy(dtype=bool)
    return ~_wrap(answers).is_null().to_numpy().astype(bool)


def with_answers(frame: Any, column: str, answers: Any) -> Any:
    """``frame`` with ``answers`` in ``column``: a new column, or an existing one with only the
    answered rows replaced. A pandas DataFrame is changed in place, aligned on its index, and
    returned; another library's frame is immutable: the result is a copy (rows by position).
    ValueError when the rows do not match (the message says why, in one line)."""
    if isinstance(frame, pd.DataFrame):
        _merge_pandas(frame, column, _pandas_answers(answers, frame.index))
        return frame
    wrapped = _wrap(frame)
    if not isinstance(wrapped, nw.DataFrame):
        raise ValueError(f"{describe(frame)} is not a DataFrame")
    mask = answered(answers)
    if column in wrapped.columns and not mask.any():
        return frame  # nothing answered: nothing changes, not even the column's type
    new = _positional(answers, len(wrapped), wrapped.implementation, column)
    if column in wrapped.columns:
        new = new.zip_with(~new.is_null(), _as_text(wrapped.get_column(column), column))
    return wrapped.with_columns(new.alias(column)).to_native()


def with_typed(frame: Any, column: str, values: Any) -> Any:
    """``frame`` with a typed column (a series of ``frame``'s library, from ``Table.fields``): a new
    column keeps the series' type; an existing one gets only the rows that have a value, the others
    keep theirs (its type is kept where the values fit it). In place for pandas, a copy otherwise."""
    if isinstance(frame, pd.DataFrame):
        _merge_pandas(frame, column, values)
        return frame
    wrapped = _wrap(frame)
    new = nw.from_native(values, series_only=True).alias(column)
    if column in wrapped.columns:
        old = wrapped.get_column(column)
        try:
            new = new.zip_with(~new.is_null(), old.cast(new.dtype))
        except Exception:  # the old values do not fit the new type: both as text
            new = new.cast(nw.String).zip_with(~new.is_null(), _as_text(old, column))
    return wrapped.with_columns(new).to_native()


def as_variable(old: Any, answers: Any, name: str) -> Any:
    """What a variable DEST ``name`` gets: ``answers`` named ``name``, holding ``old``'s values where
    this run has no answer when ``old`` is a series of the same library over the same rows (pandas:
    the same index; elsewhere the same length). ``old`` itself is never changed."""
    if isinstance(answers, pd.Series):
        if isinstance(old, pd.Series) and old.index.equals(answers.index):
            merged = _writable(old.copy())  # a copy: old may be a view of a frame's column
            mask = answered(answers)
            merged[mask] = answers.to_numpy(dtype=object)[mask]
            return merged.rename(name)
        return answers.rename(name)
    new = _wrap(answers)
    if type(old) is type(answers) and len(old) == len(answers):
        try:
            new = new.zip_with(~new.is_null(), _as_text(_wrap(old), name))
        except ValueError:  # old holds what text cannot join: the answers alone
            pass
    return new.alias(name).to_native()


def _pandas_answers(answers: Any, index: pd.Index) -> pd.Series:
    """``answers`` as a pandas Series: as they are, or another library's by position on ``index``."""
    if isinstance(answers, pd.Series):
        return answers
    return pd.Series(_values(answers, len(index)), index=index, dtype=pd.StringDtype())


def _positional(answers: Any, height: int, backend: Any, name: str) -> nw.Series[Any]:
    """``answers`` (any library's) as a text Series of ``backend``, row by row."""
    return nw.new_series(name, _values(answers, height), nw.String, backend=backend)


def _values(answers: Any, height: int) -> list[Any]:
    """The answers as a list (None where there is none), checked to be one per row."""
    values = answers.tolist() if isinstance(answers, pd.Series) else _wrap(answers).to_list()
    if len(values) != height:
        raise ValueError(f"{len(values):,} answers for {height:,} rows: rows are matched by position "
                         "(only pandas has an index), so the source must be the same rows")
    return [None if v is pd.NA else v for v in values]


def _as_text(column: nw.Series[Any], name: str) -> nw.Series[Any]:
    """An existing column as text, so that answers can join it (a polars or Arrow column has one
    type: kept values become their text, as ``str`` gives for most)."""
    if column.dtype == nw.String:
        return column
    try:
        return column.cast(nw.String)
    except Exception as exc:  # each library raises its own error for a cast it cannot do
        raise ValueError(f"column {name!r} holds {column.dtype}, which text answers cannot join: "
                         "give another column") from exc


def _writable(values: pd.Series) -> pd.Series:
    """``values`` as a Series that takes strings: object unless it already holds text (assigning a
    str into an int, float or category column is an error or a pandas FutureWarning)."""
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        return values
    return values.astype(object)


def _merge_pandas(frame: pd.DataFrame, column: str, series: pd.Series) -> None:
    try:
        aligned = series if series.index.equals(frame.index) else series.reindex(frame.index)
    except ValueError as exc:  # duplicate labels on either side
        raise ValueError(f"the answers do not align with the frame's index ({exc}); "
                         "store them in a variable instead") from exc
    if column not in frame.columns:
        frame[column] = aligned  # a new column: missing where nothing was answered
        return
    mask = answered(aligned)
    if not mask.any():
        return
    current = frame[column]
    writable = _writable(current)
    if writable is not current:
        frame[column] = writable
    frame.loc[mask, column] = aligned.to_numpy(dtype=object)[mask]
