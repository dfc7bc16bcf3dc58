"""claude_magic.frames and batches over every dataframe library: pandas, polars and Arrow read through
one code path, the answers in the source's own type, a template over a column and its siblings."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from canary import TEST_KEY

from claude_magic import frames
from claude_magic.batch import map_prompts, plan_prompts, run_batch
from claude_magic.client import Client
from claude_magic.emulator import Emulator
from claude_magic.errors import ConfigError
from claude_magic.frames import ColumnOf

MODEL = "claude-haiku-5-5"
TEXTS = ["good", None, "bad", "good"]
LANGS = ["en", "fr", None, "en"]
INDEX = [10, 11, 12, 13]


@pytest.fixture
def client(claude_emulator: Emulator, tmp_path: Path) -> Iterator[Client]:
    c = Client(api_key=TEST_KEY, base_url=claude_emulator.url, cache_dir=tmp_path / "cache", max_tokens=16,
               model=MODEL)
    yield c
    c.close()


def sent(emu: Emulator) -> list[str]:
    return sorted(r.json["messages"][-1]["content"] for r in emu.requests if r.path == "/v1/messages")


def pylist(series: Any) -> list[Any]:
    """A series of any library as a list, None where missing."""
    if isinstance(series, pd.Series):
        return [None if pd.isna(v) else v for v in series]
    if isinstance(series, pl.Series):
        return series.to_list()
    return list(series.to_pylist())


# Each source type: how to make it from TEXTS (and LANGS for frames), and the series it answers with.
SOURCES: dict[str, tuple[Callable[[], Any], type]] = {
    "pandas DataFrame": (lambda: pd.DataFrame({"text": TEXTS, "lang": LANGS}, index=INDEX), pd.Series),
    "pandas Series": (lambda: pd.Series(TEXTS, name="text", index=INDEX), pd.Series),
    "polars DataFrame": (lambda: pl.DataFrame({"text": TEXTS, "lang": LANGS}), pl.Series),
    "polars Series": (lambda: pl.Series("text", TEXTS), pl.Series),
    "polars LazyFrame": (lambda: pl.LazyFrame({"text": TEXTS, "lang": LANGS}), pl.Series),
    "pyarrow Table": (lambda: pa.table({"text": TEXTS, "lang": LANGS}), pa.ChunkedArray),
    "pyarrow ChunkedArray": (lambda: pa.chunked_array([TEXTS]), pa.ChunkedArray),
    "pyarrow Array": (lambda: pa.array(TEXTS), pa.ChunkedArray),
    "list": (lambda: list(TEXTS), pd.Series),
}
FRAMES = {
    "pandas": lambda: pd.DataFrame({"text": TEXTS, "lang": LANGS}, index=INDEX),
    "polars": lambda: pl.DataFrame({"text": TEXTS, "lang": LANGS}),
    "pyarrow": lambda: pa.table({"text": TEXTS, "lang": LANGS}),
}


def template_for(data: Any) -> str:
    return "Say {text}" if frames.is_table(data) else "Say {value}"


# --------------------------------------------------------------------------------------------------
# every source type, through map_prompts


@pytest.mark.parametrize("kind", SOURCES)
@pytest.mark.filterwarnings("ignore:collected a polars LazyFrame")
def test_map_prompts_answers_every_source_type_in_its_own_librarys_series(
        kind: str, client: Client, claude_emulator: Emulator) -> None:
    make, series_type = SOURCES[kind]
    data = make()
    answers = map_prompts(template_for(data), data, client=client)
    assert type(answers) is series_type
    got = pylist(answers)
    assert len(got) == 4 and got[1] is None  # the missing row, in its place
    assert got[0] == got[3] and got[0] != got[2] and all(isinstance(a, str) for a in (got[0], got[2]))
    assert sent(claude_emulator) == ["Say bad", "Say good"]  # one prompt per distinct value


@pytest.mark.parametrize("kind", ["pandas DataFrame", "pandas Series", "list"])
def test_pandas_answers_keep_the_index_and_the_summary_in_attrs(kind: str, client: Client) -> None:
    data = SOURCES[kind][0]()
    answers = map_prompts(template_for(data), data, client=client)
    assert answers.index.tolist() == (INDEX if kind != "list" else [0, 1, 2, 3])
    assert isinstance(answers.dtype, pd.StringDtype) and answers.attrs["claude"]["rows"] == 4


def test_outside_pandas_the_result_reports_rows_by_position(client: Client) -> None:
    result = run_batch("Say {text}", pl.DataFrame({"text": TEXTS}), client=client)
    assert isinstance(result.series, pl.Series) and result.series.dtype == pl.String
    assert result.skipped.tolist() == [1] and result.skipped_reasons.to_dict() == {1: "missing"}


def test_a_lazyframe_is_collected_with_a_warning_that_points_at_the_callers_line(client: Client) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answers = map_prompts("Say {text}", pl.LazyFrame({"text": TEXTS}), client=client)
    assert isinstance(answers, pl.Series) and answers.null_count() == 1
    (warning,) = caught
    assert str(warning.message) == ("collected a polars LazyFrame to read its rows (4 rows; its query ran "
                                    "now): pass it collected (.collect()) to choose when the query runs")
    assert warning.filename == __file__


# --------------------------------------------------------------------------------------------------
# the template over the row it came from


@pytest.mark.parametrize("library", FRAMES)
def test_a_template_over_a_frame_names_any_of_its_columns_in_every_library(
        library: str, client: Client, claude_emulator: Emulator) -> None:
    answers = map_prompts("Classify ({lang}): {text}", FRAMES[library](), client=client)
    got = pylist(answers)
    # row 1 misses its text, row 2 its lang: both are used, so both rows are skipped
    assert got[1] is None and got[2] is None and got[0] == got[3] is not None
    assert sent(claude_emulator) == ["Classify (en): good"]


@pytest.mark.parametrize("library", FRAMES)
def test_a_column_of_a_frame_may_name_its_siblings_and_value_names_the_column(library: str) -> None:
    column = ColumnOf(FRAMES[library](), "text")
    assert plan_prompts("{value} ({lang})", column).prompts == ["good (en)"]
    assert plan_prompts("{text}", column).prompts == ["good", "bad"]
    # missing values are skipped only in the columns the template uses: lang is missing in row 2
    assert plan_prompts("{value}", column).skipped.tolist() == [1]
    assert plan_prompts("{lang}", column).skipped.tolist() == [2]


def test_a_frames_own_value_column_wins_over_the_alias() -> None:
    df = pl.DataFrame({"text": ["a"], "value": ["v"]})
    assert plan_prompts("{value} {text}", ColumnOf(df, "text")).prompts == ["v a"]


@pytest.mark.parametrize("series", [pd.Series(TEXTS, name="text"), pl.Series("text", TEXTS),
                                    pa.chunked_array([TEXTS])], ids=["pandas", "polars", "pyarrow"])
def test_a_series_alone_has_no_siblings_and_the_error_says_so_in_one_line(series: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        plan_prompts("Classify ({lang}): {value}", series)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("template placeholder {lang} names no column")
    assert "a Series or list alone has no sibling columns: pass the DataFrame to use {lang}" in message


def test_an_unknown_column_of_a_column_source_lists_the_frames_columns() -> None:
    with pytest.raises(ConfigError, match=r"the data has: text, lang \(\{value\} is text\)"):
        plan_prompts("{lnag}", ColumnOf(FRAMES["polars"](), "text"))
    with pytest.raises(ConfigError, match="the frame has no column 'nope'; columns: text, lang"):
        plan_prompts("{value}", ColumnOf(FRAMES["pyarrow"](), "nope"))


# --------------------------------------------------------------------------------------------------
# cells, missing values and types that are not rows


def test_null_nan_and_blank_values_are_skipped_in_polars_and_arrow_as_in_pandas() -> None:
    values = [1.5, float("nan"), None, 2.0]
    for data in (pl.Series("x", values), pa.chunked_array([values]), pd.Series(values)):
        assert plan_prompts("{value}", data).skipped.tolist() == [1, 2], type(data)
    blank = plan_prompts("{value}", pl.Series(["a", " ", None, "\n"]))
    assert blank.skipped.tolist() == [1, 2, 3] and blank.empty.tolist() == [True, False, True]


def test_cells_are_the_librarys_values_so_attributes_and_nested_values_render() -> None:
    when = [dt.date(2024, 1, 5), dt.date(2025, 2, 6)]
    for data in (pl.DataFrame({"when": when}), pa.table({"when": when})):
        assert plan_prompts("year {when.year}", data).prompts == ["year 2024", "year 2025"]
    tags = pl.DataFrame({"tags": [["a"], ["b"], ["a"]]})
    plan = plan_prompts("{tags}", tags)
    assert plan.prompts == ["['a']", "['b']"] and plan.codes.tolist() == [0, 1, 0]


@pytest.mark.parametrize(("data", "kind"), [
    ({"text": ["a"]}, "a dict"), ("one prompt", "a str"), (5, "a int"), ({"a", "b"}, "a set"),
    (np.array([["a", "b"]]), "a numpy ndarray"), (object(), "a object"),
])
def test_an_unsupported_type_is_one_line_naming_it_and_what_is_supported_never_its_repr(
        data: Any, kind: str, client: Client, claude_emulator: Emulator) -> None:
    with pytest.raises(ConfigError) as caught:
        map_prompts("Say {value}", data, client=client)
    assert str(caught.value) == (f"data is {kind}: give a DataFrame or Series of pandas or polars (a "
                                 "LazyFrame is collected), a pyarrow Table, ChunkedArray or Array, or a list "
                                 "of strings")
    assert claude_emulator.requests == []


def test_a_pandas_frame_with_duplicate_column_names_is_one_line() -> None:
    df = pd.DataFrame([["a", "b"]], columns=["text", "text"])
    with pytest.raises(ConfigError) as caught:
        plan_prompts("{text}", df)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("a DataFrame has duplicate column names (")
    assert str(caught.value).endswith("rename them, so that a placeholder names one column")


def test_a_pandas_frame_with_duplicate_column_names_still_takes_a_column_of_answers() -> None:
    df = pd.DataFrame([["a", "b"]], columns=["text", "text"])
    assert frames.is_table(df) and not frames.is_lazy(df) and frames.column_names(df) == ["text", "text"]
    assert frames.with_answers(df, "label", pl.Series(["x"])) is df and df["label"].tolist() == ["x"]


def test_describe_names_the_library_but_pandas_and_builtins_by_their_type() -> None:
    values = (pl.DataFrame(), pl.LazyFrame(), pa.table({}), pd.DataFrame(), [])
    assert [frames.describe(x) for x in values] == [
        "a polars DataFrame", "a polars LazyFrame", "a pyarrow Table", "a DataFrame", "a list"]


# --------------------------------------------------------------------------------------------------
# writing answers back


def test_with_answers_gives_polars_and_arrow_a_copy_with_a_new_text_column() -> None:
    for frame in (pl.DataFrame({"n": [1, 2, 3]}), pa.table({"n": [1, 2, 3]})):
        new = frames.with_answers(frame, "label", pd.Series(["a", pd.NA, "c"], dtype="string"))
        assert new is not frame and frames.column_names(frame) == ["n"]
        assert frames.column_names(new) == ["n", "label"]
        assert pylist(new["label"]) == ["a", None, "c"]


@pytest.mark.parametrize("make", [pl.DataFrame, pa.table], ids=["polars", "pyarrow"])
def test_an_existing_column_keeps_its_unanswered_values_as_text(make: Callable[[Any], Any]) -> None:
    frame = make({"label": [100, 101, 102]})
    new = frames.with_answers(frame, "label", pl.Series(["x", None, "z"]))
    assert pylist(new["label"]) == ["x", "101", "z"]  # one type per column: the kept value as text
    assert pylist(frame["label"]) == [100, 101, 102]  # the old frame is intact
    assert frames.with_answers(frame, "label", pa.chunked_array([[None, None, None]], pa.string())) is frame


def test_pandas_gets_the_column_in_place_aligned_on_its_index() -> None:
    df = pd.DataFrame({"label": [1, 2, 3]}, index=[7, 8, 9])
    answers = pd.Series(["x", "z"], index=[9, 7], dtype="string")
    assert frames.with_answers(df, "label", answers) is df
    assert df["label"].tolist() == ["z", 2, "x"]
    assert frames.with_answers(df, "new", pl.Series(["a", None, "c"])) is df  # by position, other libraries
    assert df["new"].tolist()[::2] == ["a", "c"] and pd.isna(df["new"][8])


def test_answers_for_other_rows_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^2 answers for 3 rows: rows are matched by position \(only pandas "
                                         r"has an index\), so the source must be the same rows$"):
        frames.with_answers(pl.DataFrame({"n": [1, 2, 3]}), "label", pl.Series(["a", "b"]))
    with pytest.raises(ValueError, match="holds List.*which text answers cannot join: give another column"):
        frames.with_answers(pl.DataFrame({"tags": [[1]]}), "tags", pl.Series(["a"]))


def test_a_variable_keeps_old_values_of_a_series_of_its_library_over_the_same_rows() -> None:
    old = pl.Series("x", ["old 0", "old 1", "old 2"])
    merged = frames.as_variable(old, pl.Series(["a", None, "c"]), "out")
    assert merged.name == "out" and merged.to_list() == ["a", "old 1", "c"]
    assert old.to_list() == ["old 0", "old 1", "old 2"]
    arrow = frames.as_variable(pa.chunked_array([[1, 2]]), pa.chunked_array([[None, "b"]]), "out")
    assert arrow.to_pylist() == ["1", "b"]
    # another length or another library: the answers alone
    assert frames.as_variable(pl.Series(["old"]), pl.Series(["a", None]), "out").to_list() == ["a", None]
    pandas = frames.as_variable(pd.Series(["old", "old"]), pl.Series(["a", None]), "out")
    assert isinstance(pandas, pl.Series) and pandas.to_list() == ["a", None]


# --------------------------------------------------------------------------------------------------
# import cost


def test_loading_the_extension_imports_no_dataframe_library() -> None:
    libraries = ("pandas", "narwhals", "polars", "pyarrow", "numpy")
    code = ("import sys, claude_magic, claude_magic.batch_magic, claude_magic.jobs_magic\n"
            f"print(sorted(m for m in {libraries!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
