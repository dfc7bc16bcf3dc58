"""%claude_batch through a real IPython shell, against the emulator."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ipshell import fails, loaded_shell, run
from IPython.core.error import UsageError

from claude_magic import batch_magic
from claude_magic._boundary import MagicError
from claude_magic.batch import BatchInterrupted, BatchResult, Progress
from claude_magic.batch_magic import ProgressView, split_line

KEY = "sk-ant-test-batch-0123456789"
MODEL = "claude-haiku-5-5"


def shown(ip: Any, capsys: pytest.CaptureFixture[str]) -> str:
    """What the magic left: printed text plus the last state of its display (the summary line)."""
    outputs = ip.display_pub.outputs
    last = outputs[-1]["data"].get("text/plain", "") if outputs else ""
    return capsys.readouterr().out + str(last)


def prompts(emu: Any) -> list[str]:
    return [r.json["messages"][-1]["content"] for r in emu.requests if r.path == "/v1/messages"]


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claude_emulator: Any) -> Iterator[Any]:
    names = ("df", "out", "review", "x", "_claude_batch", "items", "s", "text", "pd", "big")
    with loaded_shell(monkeypatch, tmp_path / "cache", *names) as shell:
        run(shell, f"%config ClaudeMagics.base_url = {claude_emulator.url!r}")
        run(shell, f"%config ClaudeMagics.api_key = {KEY!r}")
        run(shell, f"%config ClaudeMagics.model = {MODEL!r}")
        run(shell, "%config ClaudeMagics.max_tokens = 16")
        run(shell, "%config ClaudeMagics.display = 'handle'")
        shell.user_ns["df"] = pd.DataFrame({"review": ["great", "awful", "great", None],
                                            "product": ["pen", "ink", "pen", "cap"]}, index=[7, 8, 9, 10])
        shell.user_ns["text"] = "a string is not rows"
        shell.user_ns["pd"] = pd
        yield shell


# -- the Python API in a notebook ------------------------------------------------------------------------


def test_the_python_api_in_a_notebook_uses_the_magics_client(ip: Any, claude_emulator: Any) -> None:
    # No key nor URL in the environment: only the magics' %config knows the emulator, the model
    # and max_tokens; map_prompts from Python shares them, their cache and their usage table.
    run(ip, "import claude_magic\nout = claude_magic.map_prompts('Say {value}', ['a', 'b'])")
    assert ip.user_ns["out"].notna().all()
    bodies = [r.json for r in claude_emulator.requests if r.path == "/v1/messages"]
    assert [(b["model"], b["max_tokens"]) for b in bodies] == [(MODEL, 16)] * 2
    run(ip, "%claude_batch ['a', 'b'] 'Say {value}' -o out")  # the same cache: nothing sent again
    assert len(prompts(claude_emulator)) == 2 and ip.user_ns["out"].notna().all()
    run(ip, "%%claude\nStill there?")  # map_prompts did not close the magics' client
    assert len(prompts(claude_emulator)) == 3


# -- splitting the line ------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "tokens"), [
    ('df.review "Classify: {review}" -o df.label', ["df.review", "Classify: {review}", "-o", "df.label"]),
    ("""df["my col"] 'It\\'s {value}' -o df['new col']""",
     ['df["my col"]', "It's {value}", "-o", "df['new col']"]),
    ('df "say \\"hi\\" to {x}" --budget 0.5', ["df", 'say "hi" to {x}', "--budget", "0.5"]),
    ('df "a {b} $c {{d}}"', ["df", "a {b} $c {{d}}"]),
    ("df.loc[df.x > 1, 'y'] -o out", ["df.loc[df.x > 1, 'y']", "-o", "out"]),
    ("  df   -o   out  ", ["df", "-o", "out"]),
    ('df "It\'s"', ["df", "It's"]),
])
def test_split_line_keeps_brackets_and_unquotes_whole_strings(line: str, tokens: list[str]) -> None:
    assert split_line(line) == tokens


def test_split_line_refuses_an_unclosed_quote() -> None:
    with pytest.raises(UsageError, match="unclosed"):
        split_line('df "oops')


# -- the magic ---------------------------------------------------------------------------------------


def test_line_magic_fills_a_column_and_leaves_the_template_untouched(
        ip: Any, claude_emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.user_ns["review"] = "NOTEBOOK VARIABLE"  # must not be substituted into the template
    ip.user_ns["x"] = "X"
    run(ip, '%claude_batch df "Classify {review} ($x, {{not}}) for {product}" -o df.label')
    sent = sorted(prompts(claude_emulator))
    assert sent == ["Classify awful ($x, {not}) for ink", "Classify great ($x, {not}) for pen"]
    df = ip.user_ns["df"]
    assert df["label"].notna().tolist() == [True, True, True, False]
    assert df.loc[7, "label"] == df.loc[9, "label"]
    out = shown(ip, capsys)
    assert "claude_batch: 4 rows → 2 unique prompts" in out and "1 skipped" in out
    assert isinstance(ip.user_ns["_claude_batch"], BatchResult)


def test_cell_magic_takes_the_template_from_the_body(ip: Any, claude_emulator: Any) -> None:
    run(ip, '%%claude_batch df["review"] -o out --max-tokens 8 -s "Be brief."\n'
            "Review:\n{review}\n\nOne word.\n")
    sent = [r.json for r in claude_emulator.requests if r.path == "/v1/messages"]
    assert sorted(b["messages"][0]["content"] for b in sent) == ["Review:\nawful\n\nOne word.",
                                                                 "Review:\ngreat\n\nOne word."]
    assert {b["max_tokens"] for b in sent} == {8} and {b["system"] for b in sent} == {"Be brief."}
    out = ip.user_ns["out"]
    assert isinstance(out, pd.Series) and out.name == "out"
    assert out.index.tolist() == [7, 8, 9, 10] and out.isna().tolist() == [False, False, False, True]


def test_sources_and_destinations(ip: Any, claude_emulator: Any) -> None:
    ip.user_ns["items"] = ["a", "b", "a"]
    run(ip, '%claude_batch items "Q {value}" -o s')
    assert ip.user_ns["s"].index.tolist() == [0, 1, 2]
    run(ip, """%claude_batch df.product "P {product}" -o df["product summary"] -m claude-sonnet-5-5""")
    assert ip.user_ns["df"]["product summary"].notna().all()
    models = {r.json["model"] for r in claude_emulator.requests if r.path == "/v1/messages"}
    assert models == {MODEL, "claude-sonnet-5-5"}
    run(ip, "%claude_batch df[df['product'] != 'cap'] \"E {product}\" -o out")  # any expression
    assert ip.user_ns["out"].index.tolist() == [7, 8, 9]


@pytest.mark.parametrize(("line", "message"), [
    ('%claude_batch df "Classify {reviw}" -o df.label',
     r"\{reviw\} names no column; the data has: review, product"),
    ('%claude_batch nope "Q {value}" -o out', "SOURCE nope: 'nope' is not defined"),
    ('%claude_batch df.rating "Q {value}" -o out', "df has no column 'rating'; columns: review, product"),
    ('%claude_batch df "Q {review}"', "give -o DEST"),
    ("%claude_batch df -o out", "give the template"),
    ('%claude_batch df "Q {review}" -o undefined_df.col', "undefined_df is not defined"),
    ('%claude_batch df "Q {review}" -o out --api bulk', "invalid choice: 'bulk'"),
    ('%claude_batch df "Q {review}" -o out --budget -1', "--budget must be a positive number"),
    ('%claude_batch df "Q {review}" -o out --concurrency 0', "--concurrency must be a positive integer"),
    ('%claude_batch df "Q {review}" -o 3x', "DEST 3x must be a variable name"),
    ('%claude_batch text "Q {value}" -o out', "SOURCE text is a str: give a DataFrame"),
    # DEST would replace a table, a module or a callable: refused before anything is sent
    ('%claude_batch df "Q {review}" -o df',
     r"^DEST df holds a DataFrame, which a Series of answers would replace: write -o df\.label for a new "
     "column, or give another name$"),
    ('%claude_batch df "Q {review}" -o get_ipython', "DEST get_ipython holds a method, .*give another name"),
    ('%claude_batch df "Q {review}" -o pd', "DEST pd holds a module, which the answers would replace"),
    ('%claude_batch df "Q {review}" -o print', "DEST print holds a builtin_function_or_method"),
    ('%claude_batch df "Q {review}" -o str', "DEST str holds a type"),
])
def test_bad_input_is_a_one_line_usage_error_and_sends_nothing(ip: Any, claude_emulator: Any, line: str,
                                                               message: str) -> None:
    error = fails(ip, line)
    assert isinstance(error, MagicError)
    assert "\n" not in str(error)
    import re

    assert re.search(message, str(error)), str(error)
    assert claude_emulator.requests == []


def test_dest_may_rebind_a_series_a_str_or_an_undefined_name(ip: Any) -> None:
    ip.user_ns["s"] = pd.Series(["x"], index=[0])  # another index: replaced by the answers
    for name in ("text", "s", "x"):
        run(ip, f'%claude_batch df "Q {{review}}" -o {name}')
        assert ip.user_ns[name].index.tolist() == [7, 8, 9, 10] and ip.user_ns[name].notna().sum() == 3
    assert isinstance(ip.user_ns["df"], pd.DataFrame)


def test_template_on_the_line_and_in_the_cell_is_refused(ip: Any) -> None:
    error = fails(ip, '%%claude_batch df "Q {review}" -o out\nQ {review}\n')
    assert isinstance(error, MagicError) and "not both" in str(error)


def test_dry_run_prints_the_estimate_and_sends_no_message(ip: Any, claude_emulator: Any,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, '%claude_batch df "Q {review}" --dry-run')
    assert prompts(claude_emulator) == []
    assert len([r for r in claude_emulator.requests if r.path == "/v1/messages/count_tokens"]) == 2
    out = capsys.readouterr().out
    assert "dry run: 4 rows → 2 unique prompts (1 duplicate row, 1 skipped for missing values)" in out
    assert "output 0–16 tokens each" in out


def test_api_errors_every_row_shares_become_a_usage_error(ip: Any, claude_emulator: Any) -> None:
    error = fails(ip, '%claude_batch df "Q {review}" -o out -m claude-nonexistent-9')
    assert isinstance(error, MagicError) and "404 not_found_error" in str(error)


def test_failed_rows_are_listed_and_the_run_goes_on(ip: Any, claude_emulator: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    claude_emulator.inject("400")
    run(ip, '%claude_batch df "Q {review}" -o out --concurrency 1')
    result = ip.user_ns["_claude_batch"]
    assert result.summary.failed_rows in (1, 2) and len(result.errors) == result.summary.failed_rows
    assert "_claude_batch.errors lists the failures" in shown(ip, capsys)


def test_interrupt_keeps_finished_rows_in_dest(ip: Any, claude_emulator: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    claude_emulator.configure(rpm=600)
    ip.user_ns["big"] = pd.DataFrame({"q": [f"question {i}" for i in range(100)]})

    def stop_soon(self: ProgressView, p: Progress) -> None:
        if p.done >= 15 and not p.finished:
            raise KeyboardInterrupt

    monkeypatch.setattr(ProgressView, "__call__", stop_soon)
    error = fails(ip, '%claude_batch big "A {q}" -o big.answer')
    assert isinstance(error, BatchInterrupted) and isinstance(error, KeyboardInterrupt)
    answers = ip.user_ns["big"]["answer"]
    assert 15 <= answers.notna().sum() < 100
    sent = set(prompts(claude_emulator))  # finished requests plus the few in flight at the interrupt
    assert {f"A {q}" for q in ip.user_ns["big"]["q"][answers.notna()]} <= sent
    assert len(sent) - answers.notna().sum() <= 8


# -- a run that stops early changes only the rows it answered ---------------------------------------


def old_labels(n: int) -> pd.DataFrame:
    """A table whose ``label`` column an earlier run filled (ints: not a text column)."""
    return pd.DataFrame({"q": [f"question {i}" for i in range(n)], "label": range(100, 100 + n)})


def only_answered_rows_changed(before: pd.DataFrame, after: pd.DataFrame, result: BatchResult) -> None:
    answered = result.series.notna()
    assert after["label"][~answered].tolist() == before["label"][~answered].tolist()
    assert after["label"][answered].tolist() == result.series[answered].tolist()


@pytest.mark.filterwarnings("error::FutureWarning")  # an int column takes text without pandas' warning
def test_a_budget_stop_keeps_the_labels_of_rows_not_run(ip: Any, claude_emulator: Any) -> None:
    from claude_magic.batch._live import _Budget
    from claude_magic.pricing import price_for

    price = price_for(MODEL)
    assert price is not None
    limit = 5 * _Budget(1.0, price, 16, batch=False).worst_case("A question 10")
    before = old_labels(30)
    ip.user_ns["big"] = before.copy()
    run(ip, f'%claude_batch big "A {{q}}" -o big.label --budget {limit!r} --concurrency 1')
    result = ip.user_ns["_claude_batch"]
    assert 0 < result.summary.sent < 30 and result.summary.remaining_rows == 30 - result.summary.sent
    only_answered_rows_changed(before, ip.user_ns["big"], result)
    assert (ip.user_ns["big"]["label"] == before["label"]).sum() == result.summary.remaining_rows


def test_an_interrupt_keeps_the_labels_of_rows_not_run(ip: Any, claude_emulator: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    claude_emulator.configure(rpm=600)
    before = old_labels(100)
    ip.user_ns["big"] = before.copy()

    def stop_soon(self: ProgressView, p: Progress) -> None:
        if p.done >= 5 and not p.finished:
            raise KeyboardInterrupt

    monkeypatch.setattr(ProgressView, "__call__", stop_soon)
    error = fails(ip, '%claude_batch big "A {q}" -o big["label"]')
    assert isinstance(error, BatchInterrupted)
    assert 5 <= error.result.series.notna().sum() < 100
    only_answered_rows_changed(before, ip.user_ns["big"], error.result)


def test_a_run_where_every_row_fails_keeps_every_label(ip: Any, claude_emulator: Any) -> None:
    before = old_labels(20)
    ip.user_ns["big"] = before.copy()
    claude_emulator.inject(*["400"] * 20)
    error = fails(ip, '%claude_batch big "A {q}" -o big.label')
    assert isinstance(error, MagicError) and "\n" not in str(error)
    assert "400 invalid_request_error" in str(error)
    assert ip.user_ns["big"]["label"].tolist() == before["label"].tolist()
    assert ip.user_ns["_claude_batch"].series.isna().all()


def test_a_variable_dest_on_the_same_index_keeps_what_this_run_did_not_answer(
        ip: Any, claude_emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.user_ns["out"] = kept = pd.Series(["old 7", "old 8", "old 9", "old 10"], index=[7, 8, 9, 10])
    ip.user_ns["df"].loc[8, "review"] = "  "
    claude_emulator.inject("400")
    run(ip, '%claude_batch df "Q {review}" -o out --concurrency 1')
    out = ip.user_ns["out"]
    # row 7 and 9 share the failed prompt, 8 is blank, 10 missing: nothing answered, nothing changed
    assert out.tolist() == ["old 7", "old 8", "old 9", "old 10"] and out.name == "out"
    assert "2 failed · 2 skipped (missing or empty values: 1 missing, 1 empty)" in shown(ip, capsys)
    assert ip.user_ns["_claude_batch"].skipped_reasons.to_dict() == {8: "empty", 10: "missing"}
    run(ip, '%claude_batch df "Q {review}" -o out')
    assert kept.tolist() == ["old 7", "old 8", "old 9", "old 10"]  # DEST got a copy: the old object is intact
    out = ip.user_ns["out"]
    assert out[[8, 10]].tolist() == ["old 8", "old 10"] and not out[[7, 9]].str.startswith("old").any()


def test_a_new_column_is_missing_where_nothing_was_answered_and_other_rows_keep_theirs(
        ip: Any, claude_emulator: Any) -> None:
    ip.user_ns["df"]["label"] = ["a", "b", "c", "d"]
    run(ip, "%claude_batch df[df['product'] == 'pen'] \"Q {review}\" -o df.label")  # rows 7 and 9 only
    label = ip.user_ns["df"]["label"]
    assert label[[8, 10]].tolist() == ["b", "d"] and label[7] == label[9] != "a"
    run(ip, '%claude_batch df "Q {review}" -o df.fresh')
    assert ip.user_ns["df"]["fresh"].isna().tolist() == [False, False, False, True]


def test_a_row_utf8_cannot_encode_fails_alone(ip: Any, claude_emulator: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # what read_csv(encoding_errors="surrogateescape") makes of a byte that is not UTF-8 (an object
    # column: pandas' Arrow-backed strings cannot hold a lone surrogate)
    ip.user_ns["df"]["review"] = ip.user_ns["df"]["review"].astype(object)
    ip.user_ns["df"].loc[8, "review"] = "bad \udcff text"
    run(ip, '%claude_batch df "Q {review}" -o out')
    assert prompts(claude_emulator) == ["Q great"]
    result = ip.user_ns["_claude_batch"]
    (message,) = result.errors["message"]
    assert "\n" not in message and "cannot be encoded as UTF-8 (U+DCFF) at position 6" in message
    assert "1 failed" in shown(ip, capsys)


def test_cache_options(ip: Any, claude_emulator: Any) -> None:
    run(ip, '%claude_batch df "Q {review}" -o out')
    run(ip, '%claude_batch df "Q {review}" -o out')
    assert len(prompts(claude_emulator)) == 2
    run(ip, '%claude_batch df "Q {review}" -o out --refresh')
    run(ip, '%claude_batch df "Q {review}" -o out --no-cache')
    assert len(prompts(claude_emulator)) == 6


def test_batch_api_and_budget_through_the_magic(ip: Any, claude_emulator: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, '%claude_batch df "Q {review}" -o out --api batch')
    assert prompts(claude_emulator) == []
    assert ip.user_ns["out"].notna().sum() == 3
    assert "at batch price" in shown(ip, capsys)
    before = ip.user_ns["out"].copy()
    run(ip, '%claude_batch df "Z {review}" -o out --budget 0.000001')  # every prompt alone passes it
    assert "3 failed" in shown(ip, capsys) and len(prompts(claude_emulator)) == 0
    errors = ip.user_ns["_claude_batch"].errors
    assert set(errors["type"]) == {"BudgetExceeded"} and len(errors) == 3
    assert all(m.endswith("alone passes the budget $0.0000010: raise --budget or lower --max-tokens")
               for m in errors["message"])
    assert ip.user_ns["out"].equals(before)  # the failed rows keep the answers of the first run


# -- progress views ----------------------------------------------------------------------------------


def test_text_progress_rewrites_one_line_then_leaves_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    view = ProgressView("text", rate=1000, stream=stream)
    view(Progress(total=10, done=3, rate=2.0, eta=3.5))
    view(Progress(total=10, done=10, finished=True))
    view.close("claude_batch: done")
    assert stream.getvalue().count("\r") >= 3
    assert "[######..............] 3/10 rows · 2.0 req/s · ETA 3.5 s" in stream.getvalue()
    assert capsys.readouterr().out == "claude_batch: done\n"


def test_progress_is_throttled() -> None:
    # one draw in 1,000 s at most: however slow the machine, the 100 calls fall inside the interval
    view = ProgressView("text", rate=0.001, stream=io.StringIO())
    for i in range(100):
        view(Progress(total=100, done=i))
    assert view.draws == 1
    view(Progress(total=100, done=100, finished=True))  # the end is always drawn
    assert view.draws == 2


def test_handle_progress_ends_as_plain_text(ip: Any) -> None:
    view = ProgressView("handle", rate=1000)
    view(Progress(total=4, done=1))
    view.close("claude_batch: summary")
    last = ip.display_pub.outputs[-1]
    assert last["data"] == {"text/plain": "claude_batch: summary"}


def test_widget_progress_is_closed_at_the_end(ip: Any) -> None:
    view = ProgressView("widget", rate=1000)
    view(Progress(total=4, done=1, failed=1))
    assert view._bar.value == 2 and view._bar.bar_style == "danger"
    view.close("claude_batch: summary")
    assert ip.display_pub.outputs[-1]["data"] == {"text/plain": "claude_batch: summary"}


def test_module_imports_no_pandas_at_load() -> None:
    import subprocess
    import sys

    code = "import sys, claude_magic.batch_magic; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert batch_magic.RESULT_NAME == "_claude_batch"


def test_help_shows_the_whole_usage(ip: Any) -> None:
    doc = ip.find_line_magic("claude_batch").__doc__ or ""  # what %claude_batch? shows
    assert "%%claude_batch SOURCE -o DEST" in doc and "--dry-run" in doc and "--api" in doc


def test_final_display_draws_nothing_until_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    from claude_magic.batch import Progress
    from claude_magic.batch_magic import ProgressView

    view = ProgressView("final")
    view(Progress(total=3))
    view(Progress(total=3, done=3, finished=True))
    assert capsys.readouterr().out == ""
    view.close("3 rows → 3 unique prompts")
    assert capsys.readouterr().out == "3 rows → 3 unique prompts\n"


def test_a_background_job_fills_dest_after_the_running_cell_and_says_so_if_its_name_changed(
        ip: Any, claude_emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    claude_emulator.configure(ttft=0.2)
    run(ip, '%claude_batch df.review "Say {review}" -o df.answer --background')
    assert "answer" not in ip.user_ns["df"].columns  # it returned at once
    run(ip, "_claude_job.exception()\nsame = 'answer' not in df.columns")  # ended while this cell ran...
    assert ip.user_ns["same"] is True
    assert ip.user_ns["df"]["answer"].notna().sum() == 3  # ... and was written after it
    run(ip, '%claude_batch df.review "Again {review}" -o df.again --background')
    run(ip, "df = 5\n_claude_job.exception()")  # DEST's frame is gone by the time the job ends
    out = shown(ip, capsys)
    assert "not written: DEST df.again: df is a int" in out and "answers are in _claude_batch.series" in out
    assert ip.user_ns["df"] == 5 and ip.user_ns["_claude_batch"].series.notna().sum() == 3
    ip.user_ns["items"] = ["a", "b"]
    with pytest.raises(Exception, match="--dry-run sends nothing to wait for"):
        run(ip, '%claude_batch items "x {value}" --dry-run --background')


def test_a_setting_changed_while_a_job_runs_leaves_the_job_on_its_client_closed_when_it_ends(
        ip: Any, claude_emulator: Any) -> None:
    import claude_magic

    claude_emulator.configure(ttft=0.2)
    run(ip, '%claude_batch df.review "Say {review}" -o df.answer --background')
    session = claude_magic.session()
    old = session.client
    run(ip, "%config ClaudeMagics.max_tokens = 20")  # the client is rebuilt on its next use ...
    assert session.client is not old and not old.closed  # ... but the job's is kept until it ends
    assert [job.id for job in session.jobs()] == ["1"]
    callbacks_ran = threading.Event()  # after the session's own (which closes the old client)
    ip.user_ns["_claude_job"].add_done_callback(lambda _: callbacks_ran.set())
    run(ip, "_claude_job.wait()")
    assert callbacks_ran.wait(30)
    assert ip.user_ns["df"]["answer"].notna().sum() == 3 and old.closed
    assert sum(1 for reply in session.history() if not reply.cached) == 2  # its calls still counted


# -- any dataframe library: polars and Arrow as SOURCE and DEST ---------------------------------------------

LIBRARY_NAMES = ("pldf", "tbl", "lf", "pls", "arr", "d", "first", "_claude_job")


@pytest.fixture
def lib_ip(ip: Any) -> Iterator[Any]:
    """The shell with ``pldf`` (polars) and ``tbl`` (Arrow) holding ``df``'s rows, by position."""
    import polars as pl
    import pyarrow as pa

    rows = {"review": ["great", "awful", "great", None], "product": ["pen", "ink", "pen", "cap"]}
    ip.user_ns["pldf"] = pl.DataFrame(rows)
    ip.user_ns["tbl"] = pa.table(rows)
    yield ip
    for name in LIBRARY_NAMES:
        ip.user_ns.pop(name, None)


def nulls(column: Any) -> list[bool]:
    """Where a polars or Arrow column is null, in row order."""
    return [v is None for v in (column.to_list() if hasattr(column, "to_list") else column.to_pylist())]


@pytest.mark.parametrize("name", ["pldf", "tbl"])
def test_a_polars_or_arrow_frame_is_read_and_dest_rebinds_its_name_to_a_copy_with_the_column(
        lib_ip: Any, claude_emulator: Any, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    old = lib_ip.user_ns[name]
    run(lib_ip, f'%claude_batch {name} "Q {{review}} ({{product}})" -o {name}.label')
    # the summary line says so
    assert shown(lib_ip, capsys).endswith(f" · {name} rebound to a copy with column label")
    new = lib_ip.user_ns[name]
    assert type(new) is type(old) and new is not old
    assert list(old.column_names if hasattr(old, "column_names") else old.columns) == ["review", "product"]
    assert nulls(new["label"]) == [False, False, False, True]
    assert sorted(prompts(claude_emulator)) == ["Q awful (ink)", "Q great (pen)"]


@pytest.mark.parametrize("name", ["pldf", "tbl"])
def test_an_existing_polars_or_arrow_column_keeps_the_values_of_rows_not_answered(
        lib_ip: Any, claude_emulator: Any, name: str) -> None:
    import polars as pl
    import pyarrow as pa

    frame = lib_ip.user_ns[name]
    labels = ["a", "b", "c", "d"]
    lib_ip.user_ns[name] = (frame.with_columns(label=pl.Series(labels)) if name == "pldf"
                            else frame.append_column("label", pa.array(labels)))
    run(lib_ip, f'%claude_batch {name}["review"] "Q {{review}}" -o {name}["label"]')
    label = lib_ip.user_ns[name]["label"]
    values = label.to_list() if name == "pldf" else label.to_pylist()
    assert values[3] == "d" and values[0] == values[2] not in labels and values[1] not in labels


def test_a_column_source_may_name_its_frames_other_columns_in_every_library(
        lib_ip: Any, claude_emulator: Any) -> None:
    template = '"Classify ({product}): {review}"'
    for source, dest in [("df.review", "df.label"), ("pldf.review", "pldf.label"), ('tbl["review"]', "out")]:
        claude_emulator.reset()
        run(lib_ip, f"%claude_batch {source} {template} -o {dest} --no-cache")
        assert sorted(prompts(claude_emulator)) == ["Classify (ink): awful", "Classify (pen): great"], source
    assert lib_ip.user_ns["df"]["label"].notna().tolist() == [True, True, True, False]
    assert nulls(lib_ip.user_ns["pldf"]["label"]) == [False, False, False, True]


def test_a_variable_dest_holds_the_answers_in_the_sources_library(lib_ip: Any, claude_emulator: Any) -> None:
    import polars as pl
    import pyarrow as pa

    lib_ip.user_ns["pls"] = lib_ip.user_ns["pldf"]["review"]
    lib_ip.user_ns["arr"] = pa.array(["great", None, "fine", "great"])
    lib_ip.user_ns["out"] = pl.Series("old", ["o0", "o1", "o2", "o3"])  # same library, same rows: merged
    run(lib_ip, '%claude_batch pls "Q {value}" -o out')
    out = lib_ip.user_ns["out"]
    assert isinstance(out, pl.Series) and out.name == "out" and out[3] == "o3" and out[0] == out[2] != "o0"
    run(lib_ip, '%claude_batch arr "Q {value}" -o out')  # another library: replaced
    out = lib_ip.user_ns["out"]
    assert isinstance(out, pa.ChunkedArray) and nulls(out) == [False, True, False, False]
    run(lib_ip, '%claude_batch tbl "Q {review}" -o out')
    assert isinstance(lib_ip.user_ns["out"], pa.ChunkedArray)


def test_a_lazyframe_source_is_collected_with_a_one_line_note_and_cannot_be_a_dest(
        lib_ip: Any, claude_emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    import polars as pl

    lib_ip.user_ns["lf"] = lib_ip.user_ns["pldf"].lazy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the magic's note replaces the Python API's warning
        run(lib_ip, '%claude_batch lf.review "Q {review} ({product})" -o out')
    note = "claude_batch: lf is a polars LazyFrame: collected its 4 rows to read them\n"
    assert note in capsys.readouterr().out
    assert isinstance(lib_ip.user_ns["out"], pl.Series) and lib_ip.user_ns["out"].null_count() == 1
    error = fails(lib_ip, '%claude_batch lf "Q {review}" -o lf.label')
    assert str(error) == ("DEST lf.label: lf is a polars LazyFrame, whose rows exist only when its query "
                          "runs: write lf = lf.collect() first, or give a variable")


@pytest.mark.parametrize(("line", "message"), [
    ('%claude_batch d "Q {value}" -o out',
     "SOURCE d is a dict: give a DataFrame or Series of pandas or polars (a LazyFrame is collected), a "
     "pyarrow Table, ChunkedArray or Array, or a list of strings, or a column (df.col)"),
    ('%claude_batch pldf.nope "Q {value}" -o out',
     "SOURCE pldf.nope: pldf has no column 'nope'; columns: review, product"),
    ('%claude_batch d["k"] "Q {value}" -o out', "SOURCE d[\"k\"]: d is a dict, not a DataFrame"),
    ('%claude_batch pldf "Q {review}" -o pldf',
     "DEST pldf holds a polars DataFrame, which a Series of answers would replace: write -o pldf.label for a "
     "new column, or give another name"),
    ('%claude_batch tbl "Q {review}" -o d.label',
     "DEST d.label: d is a dict; a column needs an existing DataFrame"),
    ('%claude_batch pldf.review "Q {lang}" -o out',
     "template placeholder {lang} names no column; the data has: review, product ({value} is review) (write "
     "{{lang}} for a literal brace)"),
])
def test_polars_and_arrow_mistakes_are_one_line_and_send_nothing(lib_ip: Any, claude_emulator: Any, line: str,
                                                                 message: str) -> None:
    lib_ip.user_ns["d"] = {"k": "v"}
    error = fails(lib_ip, line)
    assert isinstance(error, MagicError) and str(error) == message
    assert claude_emulator.requests == []


def test_answers_for_other_rows_than_an_arrow_dest_are_one_line_and_leave_it_intact(
        lib_ip: Any, claude_emulator: Any) -> None:
    before = lib_ip.user_ns["tbl"]
    error = fails(lib_ip, '%claude_batch pldf[:2] "Q {review}" -o tbl.label')
    assert str(error) == ("DEST tbl.label: 2 answers for 4 rows: rows are matched by position (only pandas "
                          "has an index), so the source must be the same rows")
    assert lib_ip.user_ns["tbl"] is before


def test_the_writer_returns_the_note_that_a_name_was_rebound(lib_ip: Any) -> None:
    import polars as pl

    ns = lib_ip.user_ns
    answers = pl.Series(["a", None, "c", "d"])
    write = batch_magic._writer
    assert write("pldf.label", ns)(answers) == "pldf rebound to a copy with column label"
    assert write("pldf.label", ns)(answers) == "pldf rebound to a copy with column label updated"
    assert write("tbl.label", ns)(answers) == "tbl rebound to a copy with column label"
    assert batch_magic._writer("df.label", ns)(answers) is None  # pandas: in place, by position here
    assert ns["df"]["label"].tolist()[:1] == ["a"] and batch_magic._writer("out", ns)(answers) is None


def test_two_background_jobs_writing_columns_of_one_polars_frame_keep_both(
        lib_ip: Any, claude_emulator: Any) -> None:
    claude_emulator.configure(ttft=0.2)
    run(lib_ip, '%claude_batch pldf.review "A {review}" -o pldf.a --background\nfirst = _claude_job')
    run(lib_ip, '%claude_batch pldf.review "B {review} for {product}" -o pldf.b --background')
    run(lib_ip, "first.wait()\n_claude_job.wait()")  # each delivery looks pldf up as the other left it
    pldf = lib_ip.user_ns["pldf"]
    assert pldf.columns == ["review", "product", "a", "b"]
    assert nulls(pldf["a"]) == nulls(pldf["b"]) == [False, False, False, True]
