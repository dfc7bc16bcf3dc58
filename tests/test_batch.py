"""claude_magic.batch: rendering and dedupe (pure), the engines' parts, and whole runs against the emulator
with its rate limit and faults switched on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
from canary import TEST_KEY
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_magic.batch import (
    BatchInterrupted,
    Progress,
    Stop,
    _batches,
    _dryrun,
    _pacing,
    _report,
    map_prompts,
    plan_prompts,
    run_batch,
)
from claude_magic.batch._batches import _chunks
from claude_magic.batch._dryrun import _estimate, _spread_sample
from claude_magic.batch._live import _Budget, _usd
from claude_magic.client import Client
from claude_magic.emulator import Emulator
from claude_magic.errors import AuthenticationError, ConfigError, NotFoundError, PermissionDeniedError
from claude_magic.interpolate import interpolate
from claude_magic.pricing import price_for
from claude_magic.reply import Reply, Usage

MODEL = "claude-haiku-5-5"


# --------------------------------------------------------------------------------------------------
# plan_prompts: rendering, dedupe, missing values

def test_plan_dedupes_in_row_order_and_skips_missing_values() -> None:
    df = pd.DataFrame({"review": ["good", "bad", None, "good", np.nan, "ok"],
                       "product": ["a", "b", "c", "a", "d", "a"]},
                      index=[10, 11, 12, 13, 14, 15])
    plan = plan_prompts("Review of {product}: {review}", df)
    assert plan.prompts == ["Review of a: good", "Review of b: bad", "Review of a: ok"]
    assert plan.codes.tolist() == [0, 1, -1, 0, -1, 2]
    assert plan.index[plan.skipped].tolist() == [12, 14]
    assert plan.columns == ["product", "review"]


def test_only_used_columns_decide_missing_rows() -> None:
    df = pd.DataFrame({"review": ["a", "b"], "unused": [None, None]})
    assert plan_prompts("{review}", df).skipped.tolist() == []


def test_braces_follow_the_package_rules() -> None:
    df = pd.DataFrame({"x": ["1"]})
    template = 'JSON {"a": {"b": 2}} {{x}} {x} \\frac{a}{b} {{"k": 1}}'
    assert plan_prompts(template, df).prompts == ['JSON {"a": {"b": 2}} {x} 1 \\frac{a}{b} {{"k": 1}}']


def test_unknown_placeholder_lists_the_columns_before_anything_is_sent() -> None:
    df = pd.DataFrame({"review": ["a"], "product_name": ["b"]})
    with pytest.raises(ConfigError, match=r"\{reviw\} names no column; the data has: review, product_name"):
        plan_prompts("Classify {reviw}", df)


def test_series_and_lists_use_value_or_the_series_name() -> None:
    s = pd.Series(["x", "y", "x"], name="text", index=["a", "b", "c"])
    plan = plan_prompts("T {text} / {value}", s)
    assert plan.prompts == ["T x / x", "T y / y"]
    assert plan.index.tolist() == ["a", "b", "c"]
    assert plan_prompts("Q: {value}", ["p", None, "p"]).codes.tolist() == [0, -1, 0]
    with pytest.raises(ConfigError, match=r"the data has: value \(or text\)"):
        plan_prompts("{review}", s)


def test_cells_that_render_alike_become_one_prompt() -> None:
    # different value pairs, same text: dedupe is on the rendered prompt
    df = pd.DataFrame({"a": ["x", "xy"], "b": ["yz", "z"]})
    plan = plan_prompts("{a}{b}", df)
    assert plan.prompts == ["xyz"] and plan.codes.tolist() == [0, 0]


def test_unhashable_cells_and_non_string_values() -> None:
    df = pd.DataFrame({"tags": [["a"], ["b"], ["a"]], "n": [1, 2, 1]})
    plan = plan_prompts("{tags} {n}", df)
    assert plan.prompts == ["['a'] 1", "['b'] 2"]
    assert plan.codes.tolist() == [0, 1, 0]


def test_attribute_placeholders_go_through_interpolate() -> None:
    df = pd.DataFrame({"when": pd.to_datetime(["2024-01-05", "2025-02-06"])})
    assert plan_prompts("year {when.year}", df).prompts == ["year 2024", "year 2025"]


def test_empty_template_is_refused() -> None:
    with pytest.raises(ConfigError, match="template is empty"):
        plan_prompts("  ", ["a"])


@settings(max_examples=150, deadline=None)
@given(template=st.text(alphabet="ab{}\\ x_\"'", max_size=30),
       rows=st.lists(st.text(alphabet="ab{}x ", max_size=4), min_size=1, max_size=6))
def test_fast_rendering_equals_interpolate(template: str, rows: list[str]) -> None:
    """The split-once path must give exactly what interpolate gives for every row."""
    s = pd.Series(rows, name="x")
    try:
        plan = plan_prompts(template, s)
    except ConfigError:
        return
    for i, value in enumerate(rows):
        if plan.codes[i] < 0:  # a blank value is skipped, not rendered
            assert not value.strip()
            continue
        expected = interpolate(template, {"x": value, "value": value})
        assert plan.prompts[plan.codes[i]] == expected


@pytest.mark.parametrize("template", [
    "before\x00after{value}",
    "\x00{value}\x00{value}\x00",
    "a\ue000{value}\ue0000\ue000b",
    "\ue000\x00{{value}}{value}\x00\ue001",
    "{value}\x00{{\x00}}{\x00value}",
])
def test_fast_rendering_keeps_nul_and_private_use_characters(template: str) -> None:
    plan = plan_prompts(template, ["x", "y\x00"])
    assert plan.prompts == [interpolate(template, {"value": v}) for v in ["x", "y\x00"]]


@settings(max_examples=150, deadline=None)
@given(template=st.text(alphabet="a{}\x00\ue000\ue001 x0", max_size=30),
       rows=st.lists(st.text(alphabet="a{}\x00\ue000x", min_size=1, max_size=4), min_size=1, max_size=4))
def test_fast_rendering_equals_interpolate_with_nul_and_marker_like_characters(template: str,
                                                                              rows: list[str]) -> None:
    s = pd.Series(rows, name="x")
    try:
        plan = plan_prompts(template, s)
    except ConfigError:
        return
    for i, value in enumerate(rows):
        if plan.codes[i] < 0:  # a blank value is skipped, not rendered
            assert not value.strip()
            continue
        assert plan.prompts[plan.codes[i]] == interpolate(template, {"x": value, "value": value})


def test_empty_and_whitespace_values_are_skipped_like_missing_ones_with_their_reason() -> None:
    df = pd.DataFrame({"review": ["good", "", "   ", None, "\n", "ok", "bad"],
                       "product": ["a", "b", "c", "d", "e", None, "\t"]})
    plan = plan_prompts("{product}: {review}", df)
    assert plan.prompts == ["a: good"]
    assert plan.skipped.tolist() == [1, 2, 3, 4, 5, 6]
    assert plan.empty.tolist() == [True, True, False, True, False, True]  # missing wins over empty
    assert plan.skipped_empty == 4
    # a value with text around whitespace is a value; a blank column the template does not use is not
    kept = plan_prompts("{review}", pd.DataFrame({"review": [" x "], "unused": [""]}))
    assert kept.prompts == [" x "] and kept.skipped.tolist() == []


def test_planning_100k_rows_renders_each_distinct_row_once_without_interpolate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # What keeps 100k rows fast, counted rather than timed: rows are grouped (vectorised) before
    # any Python runs per row, each group is rendered once, and by a join, not by interpolate.
    from claude_magic.batch import _plan

    renders: list[dict[str, Any]] = []
    interpolations: list[str] = []
    real_renderer, real_interpolate = _plan._renderer, _plan.interpolate

    def counting_renderer(template: str, aliases: Any) -> Any:
        render = real_renderer(template, aliases)
        return lambda row: (renders.append(row), render(row))[1]

    def counting_interpolate(template: str, namespace: Any) -> str:
        interpolations.append(template)
        return real_interpolate(template, namespace)

    monkeypatch.setattr(_plan, "_renderer", counting_renderer)
    monkeypatch.setattr(_plan, "interpolate", counting_interpolate)
    n = 100_000
    df = pd.DataFrame({"review": [f"review {i % 100}" for i in range(n)],
                       "product": [f"p{i % 7}" for i in range(n)]})
    plan = plan_prompts("Classify {review} about {product}", df)
    assert len(plan.prompts) == 700 and len(plan.codes) == n
    assert len(renders) == 700 and len(interpolations) == 1  # once, to split the template
    assert plan.prompts[plan.codes[12_345]] == "Classify review 45 about p4"


# --------------------------------------------------------------------------------------------------
# pacing parts


def test_budget_reserves_max_tokens_per_request_in_flight() -> None:
    price = price_for(MODEL)
    assert price is not None
    budget = _Budget(limit=3 * 20 * price.output / 1e6 * 1.05, price=price, max_tokens=20, batch=False)
    assert budget.reserve(0, "a") and budget.reserve(1, "b")
    assert not budget.reserve(2, "c" * 10_000)  # a long prompt would not fit with two in flight
    reply = Reply("x", [], "end_turn", None, Usage(5, 3), MODEL, "m", cost=1e-7)
    budget.settle(0, reply, "a")
    assert budget.reserve(2, "c")


def test_chunks_split_by_count_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_batches, "MAX_BATCH_REQUESTS", 3)
    reqs = [{"custom_id": str(i)} for i in range(7)]
    assert [len(c) for c in _chunks(reqs, [10] * 7)] == [3, 3, 1]
    monkeypatch.setattr(_batches, "MAX_BATCH_BYTES", 300)
    assert [len(c) for c in _chunks(reqs[:3], [100, 100, 100])] == [2, 1]


def test_estimate_is_exact_when_everything_was_counted_and_brackets_the_truth_otherwise() -> None:
    rng = np.random.default_rng(0)
    sizes = rng.integers(20, 2000, size=5000)
    tokens = (sizes / 4 + rng.normal(0, 5, size=5000)).round().astype(int)
    assert _estimate(sizes[:10], list(range(10)), list(tokens[:10])) == (tokens[:10].sum(),) * 3
    sample = _spread_sample([" " * int(s) for s in sizes], 50)
    assert len(sample) == 50 and len(set(sample)) == 50
    est, low, high = _estimate(sizes, sample, [int(tokens[i]) for i in sample])
    assert low <= tokens.sum() <= high
    assert high - low < 0.05 * tokens.sum()


def test_progress_line() -> None:
    p = Progress(total=1000, done=400, cached=100, failed=2, skipped=3, rate=12.5, eta=40, cost=0.0123)
    assert p.line() == ("405/1,000 rows · 100 cached · 2 failed · 3 skipped (missing) · 12.5 req/s · "
                        "ETA 40.0 s · $0.0123 · starting")
    assert "3 skipped (2 missing, 1 empty)" in Progress(total=5, skipped=3, skipped_empty=1).line()
    assert "3 skipped (empty)" in Progress(total=5, skipped=3, skipped_empty=3).line()


# --------------------------------------------------------------------------------------------------
# against the emulator


def posts(emu: Emulator, path: str = "/v1/messages") -> list[Any]:
    return [r for r in emu.requests if r.method == "POST" and r.path == path]


def reviews(n: int, distinct: int) -> pd.DataFrame:
    words = ["great", "awful", "fine", "ok", "meh"]
    return pd.DataFrame({"review": [f"{words[i % distinct % 5]} product {i % distinct}" for i in range(n)]},
                        index=pd.RangeIndex(1000, 1000 + n))


def expected_texts(emu: Emulator, prompts: list[str]) -> dict[str, str]:
    """What the emulator answers for each prompt, asked one by one without any cache."""
    with Client(api_key=TEST_KEY, base_url=emu.url, cache=False, max_tokens=16) as c:
        return {p: c.complete(p, model=MODEL, stream=False).text for p in prompts}


def test_rate_limit_and_faults_lose_nothing_duplicate_nothing_and_keep_order(emu: Emulator,
                                                                             client: Client) -> None:
    emu.configure(rpm=3000)  # 50 a second, one second of burst
    faults = ["529", "500", "429:retry-after=0.05", "503", "529:retry-after=0.05", "502"]
    emu.inject(*faults)
    df = reviews(300, 120)
    df.loc[1005, "review"] = None
    seen: list[Progress] = []
    result = run_batch("Classify: {review}", df, client=client, model=MODEL, progress=seen.append)

    unique = sorted({f"Classify: {r}" for r in df["review"].dropna()})
    sent = posts(emu)
    # each fault costs one extra attempt; a 429 from the limiter itself (when the pacing mirror is
    # a little behind on a loaded machine) costs one more, and is counted as a retry too
    assert result.summary.retries >= len(faults)
    assert len(sent) == len(unique) + result.summary.retries
    assert sorted({r.json["messages"][0]["content"] for r in sent}) == unique  # dedupe is exact
    assert result.series.index.equals(df.index)
    assert result.series.isna().tolist() == [i == 1005 for i in df.index]
    answers = expected_texts(emu, unique)
    for label, review in df["review"].items():
        if pd.notna(review):
            assert result.series[label] == answers[f"Classify: {review}"]
    s = result.summary
    assert (s.rows, s.unique, s.sent, s.failed_rows, s.skipped_rows) == (300, 120, 120, 0, 1)
    assert result.skipped.tolist() == [1005]
    assert seen[-1].finished and seen[-1].done == 299
    assert "300 rows → 120 unique prompts" in str(s)


def test_without_a_client_the_environment_says_where_and_the_client_is_closed(
        claude_emulator_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_MAGIC_CACHE_DIR", str(tmp_path / "cache"))
    made: list[Client] = []
    real_init = Client.__init__

    def spy(self: Client, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Client, "__init__", spy)
    series = map_prompts("Say {value}", ["a", "b"], model=MODEL, max_tokens=16)
    assert series.notna().all() and len(posts(claude_emulator_env)) == 2
    assert len(made) == 1 and made[0].closed


def test_a_rerun_is_served_from_the_cache(emu: Emulator, client: Client) -> None:
    df = reviews(50, 20)
    first = map_prompts("Say {review}", df, client=client, model=MODEL)
    assert len(posts(emu)) == 20
    again = map_prompts("Say {review}", df, client=client, model=MODEL)
    assert len(posts(emu)) == 20
    assert again.equals(first)
    assert again.attrs["claude"]["cached_rows"] == 50 and again.attrs["claude"]["sent"] == 0
    refreshed = run_batch("Say {review}", df, client=client, model=MODEL, refresh=True)
    assert len(posts(emu)) == 40 and refreshed.summary.sent == 20
    no_cache = run_batch("Say {review}", df, client=client, model=MODEL, cache=False)
    assert len(posts(emu)) == 60 and no_cache.summary.cached_rows == 0


def test_skipped_rows_are_not_sent_and_their_reasons_are_reported(emu: Emulator, client: Client) -> None:
    df = pd.DataFrame({"q": ["a", "", None, " \n", "b"]}, index=list("vwxyz"))
    seen: list[Progress] = []
    result = run_batch("Q {q}", df, client=client, model=MODEL, progress=seen.append)
    assert sorted(r.json["messages"][0]["content"] for r in posts(emu)) == ["Q a", "Q b"]
    assert result.skipped.tolist() == ["w", "x", "y"]
    assert result.skipped_reasons.to_dict() == {"w": "empty", "x": "missing", "y": "empty"}
    assert result.series.isna().tolist() == [False, True, True, True, False]
    assert "3 skipped (missing or empty values: 1 missing, 2 empty)" in str(result.summary)
    assert "3 skipped (1 missing, 2 empty)" in seen[-1].line()
    assert result.summary.failed_rows == 0
    report = run_batch("Q {q}", df, client=client, model=MODEL, dry_run=True).dry_run
    assert "3 skipped for missing or empty values: 1 missing, 2 empty" in str(report)


def test_a_row_utf8_cannot_encode_is_that_rows_error_and_the_others_run(emu: Emulator,
                                                                        client: Client) -> None:
    # what read_csv(encoding_errors="surrogateescape") makes of a byte that is not UTF-8 (an object
    # column: pandas' Arrow-backed strings, its default where pyarrow is installed, cannot hold one)
    df = pd.DataFrame({"text": pd.Series(["fine", "bad \udcff text", "also fine"], dtype=object)})
    result = run_batch("T: {text}", df, client=client, model=MODEL)
    assert result.series.notna().tolist() == [True, False, True]
    assert len(posts(emu)) == 2 and result.aborted is None
    (message,) = result.errors["message"]
    assert result.errors["type"].tolist() == ["ConfigError"] and result.errors["row"].tolist() == [1]
    assert "\n" not in message
    assert "cannot be encoded as UTF-8 (U+DCFF) at position 7" in message
    assert ".str.encode('utf-8', 'replace')" in message
    dry = run_batch("T: {text}", df, client=client, model=MODEL, dry_run=True).dry_run
    assert dry is not None and dry.to_send == 0  # the two good prompts are cached; the bad one is not sent


def test_rows_that_fail_stay_empty_and_are_listed(emu: Emulator, client: Client) -> None:
    emu.inject("400")  # a 400 is not retried: that prompt's rows fail, the run goes on
    df = pd.DataFrame({"q": ["a", "b", "a", "c"]})
    result = run_batch("Q {q}", df, client=client, model=MODEL, concurrency=1)
    assert result.series.isna().tolist() == [True, False, True, False]
    assert result.errors["row"].tolist() == [0, 2]
    assert result.errors["status"].tolist() == [400, 400]
    assert set(result.errors["type"]) == {"invalid_request_error"}
    assert result.summary.failed_rows == 2 and result.aborted is None


def test_a_bug_in_the_engine_stops_the_run_with_its_message_and_keeps_the_rows_done(
        emu: Emulator, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    success = _pacing._Window.success

    def broken(self: _pacing._Window) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("bookkeeping broke")
        success(self)

    monkeypatch.setattr(_pacing._Window, "success", broken)
    result = run_batch("Q {value}", [f"q{i}" for i in range(40)], client=client, model=MODEL, concurrency=1)
    assert "stopped early: RuntimeError: bookkeeping broke" in str(result.summary)
    # it broke after the third answer (the fourth may have started meanwhile): every answer stays
    assert 3 <= result.series.notna().sum() == len(posts(emu)) <= 4


def test_an_error_every_row_would_share_stops_the_run_at_once(emu: Emulator, tmp_path: Path) -> None:
    emu.configure(api_key="sk-right")
    with Client(api_key="sk-wrong", base_url=emu.url, cache_dir=tmp_path / "c") as c:
        result = run_batch("Q {value}", [f"q{i}" for i in range(200)], client=c, model=MODEL)
        assert isinstance(result.aborted, AuthenticationError)
        assert len(posts(emu)) <= _pacing.START_WINDOW
        assert "stopped early: 401 authentication_error" in str(result.summary)
        assert result.summary.stop is Stop.EARLY
        with pytest.raises(AuthenticationError):
            map_prompts("Q {value}", ["x"], client=c, model=MODEL)
    emu.configure(api_key=None)
    with Client(api_key="sk-any", base_url=emu.url, cache_dir=tmp_path / "d") as c:
        with pytest.raises(NotFoundError):
            map_prompts("Q {value}", [f"q{i}" for i in range(50)], client=c, model="claude-nonexistent-9")


def test_a_403_is_that_rows_error_unless_every_row_gets_it(emu: Emulator, client: Client) -> None:
    emu.inject("403")
    result = run_batch("Q {value}", ["a", "b", "c"], client=client, model=MODEL, concurrency=1)
    assert result.aborted is None and result.series.isna().tolist() == [True, False, False]
    assert result.errors["status"].tolist() == [403]
    emu.inject(*["403"] * 40)
    result = run_batch("R {value}", [f"r{i}" for i in range(40)], client=client, model=MODEL, concurrency=1)
    assert isinstance(result.aborted, PermissionDeniedError)
    assert len(posts(emu)) == 3 + 3  # the first three alike stop the run
    assert "stopped early: 403 permission_error" in str(result.summary)


def test_interrupt_keeps_completed_rows_and_a_rerun_sends_only_the_rest(emu: Emulator,
                                                                        client: Client) -> None:
    emu.configure(rpm=600)  # 10 a second: the run takes seconds, the interrupt comes early
    df = reviews(200, 60)
    fired: list[int] = []

    def interrupt(p: Progress) -> None:
        if p.done >= 30 and not fired:
            fired.append(p.done)
            raise KeyboardInterrupt

    with pytest.raises(BatchInterrupted) as caught:
        run_batch("Sum {review}", df, client=client, model=MODEL, progress=interrupt)
    partial = caught.value.result
    done = partial.series.notna()
    # stopped at once: only the requests already in flight may have finished after the interrupt
    # (counted in rows, not timed: the rest would take seconds at 10 requests a second)
    assert 30 <= fired[0] <= done.sum() < 200
    assert partial.summary.remaining_rows == 200 - done.sum()
    assert "interrupted" in str(partial.summary)
    sent_before = len(posts(emu))
    finished_prompts = {f"Sum {r}" for r in df["review"][done]}

    emu.configure(rpm=None)
    rest = run_batch("Sum {review}", df, client=client, model=MODEL)
    resent = [r.json["messages"][0]["content"] for r in posts(emu)[sent_before:]]
    # a request cancelled in flight may reach the server after the count above: a set, not a list
    assert set(resent) == {f"Sum {r}" for r in df["review"]} - finished_prompts
    assert rest.series[done].equals(partial.series[done])
    assert rest.series.notna().all()


def test_budget_stops_starting_requests_and_says_what_remains(emu: Emulator, client: Client) -> None:
    price = price_for(MODEL)
    assert price is not None
    per_request_worst = (40 * price.input + 16 * price.output) / 1e6
    limit = 6 * per_request_worst
    result = run_batch("B {value}", [f"item {i}" for i in range(40)], client=client, model=MODEL,
                       budget=limit, concurrency=2)
    s = result.summary
    assert 0 < s.sent < 40
    assert s.cost is not None and s.cost <= limit
    assert s.remaining_rows == 40 - s.sent and len(result.remaining) == s.remaining_rows
    assert s.stop is Stop.BUDGET and f"{s.remaining_rows:,} rows remain" in str(s)
    assert len(posts(emu)) == s.sent


@pytest.mark.parametrize("api", ["live", "batch"])
def test_a_row_whose_worst_case_alone_passes_the_budget_is_its_error_and_the_rest_run(
        emu: Emulator, client: Client, api: Literal["live", "batch"]) -> None:
    price = price_for(MODEL)
    assert price is not None
    limit = 10 * (40 * price.input + 16 * price.output) / 1e6
    items = ["short 1", "long " + "x" * 50_000, "short 2"]
    result = run_batch("B {value}", items, client=client, model=MODEL, budget=limit, api=api,
                       poll_interval=0.05)
    assert result.series.notna().tolist() == [True, False, True]
    assert result.errors["row"].tolist() == [1] and result.errors["type"].tolist() == ["BudgetExceeded"]
    worst = _Budget(limit, price, 16, batch=api == "batch").worst_case(f"B {items[1]}")
    assert worst > limit
    assert result.errors["message"].tolist() == [f"worst case {_usd(worst)} alone passes the budget "
                                                 f"{_usd(limit)}: raise --budget or lower --max-tokens"]
    s = result.summary
    assert (s.sent, s.failed_rows, s.remaining_rows, s.stopped) == (2, 1, 0, None)


def test_costs_in_budget_messages_keep_two_significant_digits() -> None:
    assert [_usd(x) for x in (0.41, 0.1, 0.000123, 0.00003, 12.5)] == ["$0.41", "$0.10", "$0.00012",
                                                                      "$0.000030", "$12.50"]


def test_dry_run_sends_no_message_and_brackets_the_token_count(emu: Emulator, client: Client) -> None:
    df = pd.DataFrame({"text": [("word " * (1 + (i * 37) % 300)) + str(i) for i in range(130)] * 2})
    run_batch("Summarise: {text}", df.head(10), client=client, model=MODEL, max_tokens=100)  # 10 cached
    emu.reset()
    result = run_batch("Summarise: {text}", df, client=client, model=MODEL, dry_run=True, max_tokens=100)
    report = result.dry_run
    assert report is not None
    assert posts(emu) == []
    assert len(posts(emu, "/v1/messages/count_tokens")) == _dryrun.DRY_RUN_SAMPLE
    counts = (report.rows, report.unique, report.duplicates, report.cached, report.to_send)
    assert counts == (260, 130, 130, 10, 120)
    assert report.counted == 50
    with Client(api_key=TEST_KEY, base_url=emu.url, cache=False) as c:
        truth = sum(c.count_tokens(f"Summarise: {t}", model=MODEL) for t in df["text"].iloc[10:130])
    assert report.input_tokens_low <= truth <= report.input_tokens_high
    price = price_for(MODEL)
    assert price is not None and report.cost_high is not None and report.cost_low is not None
    assert report.cost_high >= 120 * 100 * price.output / 1e6
    assert "130 duplicate rows" in str(report) and "10 cached" in str(report)
    assert result.series.isna().all()


def test_dry_run_counts_every_prompt_when_there_are_few(emu: Emulator, client: Client) -> None:
    report = run_batch("Q {value}", ["a", "b", "a"], client=client, model=MODEL, dry_run=True).dry_run
    assert report is not None and report.counted == report.to_send == 2
    assert report.input_tokens_low == report.input_tokens == report.input_tokens_high
    assert "(counted)" in str(report)


# --------------------------------------------------------------------------------------------------
# Message Batches


def test_batch_api_fills_rows_caches_at_batch_price(emu: Emulator, client: Client) -> None:
    df = reviews(40, 15)
    result = run_batch("Tag {review}", df, client=client, model=MODEL, api="batch", poll_interval=0.05)
    assert len(posts(emu, "/v1/messages/batches")) == 1
    assert posts(emu) == []
    created = posts(emu, "/v1/messages/batches")[0].json["requests"]
    assert len(created) == 15
    assert all(len(r["custom_id"]) == 64 for r in created)
    answers = expected_texts(emu, sorted({f"Tag {r}" for r in df["review"]}))
    assert all(result.series[i] == answers[f"Tag {r}"] for i, r in df["review"].items())
    assert result.summary.api == "batch" and result.summary.batch_ids
    history = [r for r in client.history if r.batch]
    assert len(history) == 15
    live_cost = sum((r.usage.input_tokens * 0.10 + r.usage.output_tokens * 0.50) / 1e6 for r in history)
    assert result.summary.cost == pytest.approx(live_cost / 2)
    # every answer is now in the response cache: a live re-run sends nothing
    again = run_batch("Tag {review}", df, client=client, model=MODEL)
    assert again.summary.sent == 0 and again.series.equals(result.series)


def test_batch_api_resumes_the_same_batch_after_a_restart(emu: Emulator, tmp_path: Path) -> None:
    emu.configure(batch_duration=3.0)
    df = reviews(30, 12)

    def stop_while_waiting(p: Progress) -> None:
        if p.status.startswith("batch "):
            raise KeyboardInterrupt

    cache_dir = tmp_path / "shared-cache"
    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=cache_dir, max_tokens=16) as first:
        with pytest.raises(BatchInterrupted) as caught:
            run_batch("R {review}", df, client=first, model=MODEL, api="batch", poll_interval=0.05,
                      progress=stop_while_waiting)
    assert "run again to resume polling" in str(caught.value.result.summary)
    batch_id = caught.value.result.summary.batch_ids[0]

    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=cache_dir, max_tokens=16) as restarted:
        result = run_batch("R {review}", df, client=restarted, model=MODEL, api="batch", poll_interval=0.05)
    assert len(posts(emu, "/v1/messages/batches")) == 1  # paid once
    assert result.summary.batch_ids == [batch_id]
    assert result.series.notna().all() and result.summary.sent == 12


def test_canceled_batch_rows_are_reported_and_rerun_live(emu: Emulator, client: Client,
                                                        batch_clock: Any) -> None:
    emu.configure(batch_duration=20.0)  # one request of the 20 finishes each (emulated) second
    df = reviews(20, 20)
    canceled: list[str] = []

    def cancel_midway(p: Progress) -> None:
        if p.status.startswith("batch ") and not canceled:
            batch_id = p.status.split()[1]
            canceled.append(batch_id)
            batch_clock.now += 7.5  # 7 requests done
            client.cancel_batch(batch_id)
            batch_clock.now += 0.5  # a canceling batch ends within half a second

    result = run_batch("C {review}", df, client=client, model=MODEL, api="batch", poll_interval=0.05,
                       progress=cancel_midway)
    failed = result.summary.failed_rows
    assert canceled and failed == 13
    assert set(result.errors["type"]) == {"canceled"}
    assert result.series.isna().sum() == failed
    live = run_batch("C {review}", df, client=client, model=MODEL)
    assert len(posts(emu)) == failed and live.series.notna().all()


def test_batch_results_errored_expired_and_missing_are_row_errors() -> None:
    plan = plan_prompts("{value}", ["a", "b", "c", "d"])
    state = _report._State(plan)

    class FakeCache:
        stored: dict[str, Any] = {}

        def set(self, key: str, value: Any) -> None:
            self.stored[key] = value

    class FakeClient:
        cache = FakeCache()
        history: list[Reply] = []

        def record(self, reply: Reply, key: str | None = None) -> None:  # what Client.record does
            if key is not None:
                self.cache.set(key, reply.to_dict())
            self.history.append(reply)

    opts = _report._Options(MODEL, 16, None, None, "batch", None, True, False, 0.1, {})
    keys = {0: "k0", 1: "k1", 2: "k2", 3: "k3"}
    engine = _batches._Batches(FakeClient(), opts, state, [0, 1, 2, 3], keys, None)  # type: ignore[arg-type]
    message = {"id": "msg", "model": MODEL, "content": [{"type": "text", "text": "A"}],
               "stop_reason": "end_turn", "usage": {"input_tokens": 10, "output_tokens": 2}}
    lines = [
        {"custom_id": "k2", "result": {"type": "expired"}},
        {"custom_id": "k0", "result": {"type": "succeeded", "message": message}},
        {"custom_id": "k1", "result": {"type": "errored", "error": {"type": "error", "error": {
            "type": "invalid_request_error", "message": "bad"}, "request_id": "req_1"}}},
    ]
    engine._collect([{"custom_id": k} for k in keys.values()], lines, {v: k for k, v in keys.items()})
    assert state.texts == ["A", None, None, None]
    assert FakeClient.cache.stored["k0"]["batch"] is True and [r.text for r in FakeClient.history] == ["A"]
    assert FakeClient.cache.stored["k0"]["cost"] == pytest.approx((10 * 0.10 + 2 * 0.50) / 1e6 / 2)
    assert state.errors[1].status == 400 and state.errors[1].type == "invalid_request_error"  # type: ignore
    assert state.errors[2].type == "expired"  # type: ignore[union-attr]
    assert state.errors[3].type == "missing_result"  # type: ignore[union-attr]


def test_batch_api_splits_big_jobs(emu: Emulator, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_batches, "MAX_BATCH_REQUESTS", 10)
    result = run_batch("S {value}", [f"x{i}" for i in range(25)], client=client, model=MODEL, api="batch",
                       poll_interval=0.05)
    # the batches are created concurrently: their order is not fixed
    sizes = sorted(len(r.json["requests"]) for r in posts(emu, "/v1/messages/batches"))
    assert sizes == [5, 10, 10]
    assert result.series.notna().all() and len(result.summary.batch_ids) == 3


# --------------------------------------------------------------------------------------------------
# options


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"api": "bulk"}, "api must be 'live' or 'batch'"),
    ({"concurrency": 0}, "concurrency must be a positive integer"),
    ({"budget": -1}, "budget must be a positive number"),
    ({"max_tokens": 0}, "max_tokens must be a positive integer"),
    ({"budget": 1.0, "model": "claude-unpriced-1"}, "has no known price"),
])
def test_bad_options_fail_before_any_request(emu: Emulator, client: Client, kwargs: dict[str, Any],
                                             message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_batch("{value}", ["a"], client=client, **{"model": MODEL, **kwargs})
    assert emu.requests == []




def test_tools_in_a_batch_are_refused_in_one_line_pointing_to_schema(emu: Emulator, client: Client) -> None:
    tool = {"name": "extract", "input_schema": {"type": "object", "properties": {}}}
    refused = r"^tools cannot be used in a batch .*with schema= \(--schema\) instead$"
    with pytest.raises(ConfigError, match=refused):
        run_batch("Q {value}", ["a"], client=client, model=MODEL, tools=[tool])
    with pytest.raises(ConfigError, match=r"^tools and tool_choice cannot be used"):
        run_batch("Q {value}", ["a"], client=client, model=MODEL, tools=[tool], tool_choice={"type": "any"})
    assert posts(emu) == []
