from __future__ import annotations

import io
from typing import Any

import pytest

from claude_magic.display import (
    INCOMPLETE,
    THINKING_TAIL,
    WAITING,
    HandleBackend,
    Rendered,
    StreamView,
    TextBackend,
    WidgetBackend,
    close_fences,
    detect_mode,
    footer,
    render_final,
    usage_table,
)
from claude_magic.reply import Reply, Usage


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.live_calls: list[str] = []
        self.finals: list[Rendered] = []

    def live(self, body: str) -> None:
        self.live_calls.append(body)

    def final(self, rendered: Rendered) -> None:
        self.finals.append(rendered)


def make_reply(text: str = "Hello **world**", **kw: Any) -> Reply:
    base: dict[str, Any] = dict(
        text=text, content=[{"type": "text", "text": text}], stop_reason="end_turn", stop_sequence=None,
        usage=Usage(input_tokens=1200, output_tokens=34), model="claude-opus-5-5", id="msg_1",
        latency=2.345, cost=0.00548,
    )
    base.update(kw)
    return Reply(**base)


def view_with(clock: FakeClock, **kw: Any) -> tuple[StreamView, Recorder]:
    rec = Recorder()
    return StreamView(backend=rec, clock=clock, **kw), rec


def test_a_burst_of_tokens_redraws_once_until_the_interval_passes() -> None:
    clock = FakeClock()
    view, rec = view_with(clock)
    for _ in range(1000):
        view.update("tok ")
    assert rec.live_calls == ["tok "]  # the first delta shows at once, the rest wait
    clock.now += 0.049
    view.update("x")
    assert len(rec.live_calls) == 1
    clock.now += 0.002
    view.update("y")
    assert rec.live_calls[-1] == "tok " * 1000 + "xy"


def test_at_most_about_20_redraws_a_second_however_fast_tokens_come() -> None:
    clock = FakeClock()
    view, rec = view_with(clock)
    for i in range(10_000):  # 10,000 tokens spread evenly over one simulated second
        clock.now = 1000.0 + i / 10_000
        view.update("w")
    assert 19 <= view.redraws <= 21
    assert len(rec.live_calls) == view.redraws


def test_slow_tokens_are_each_shown() -> None:
    clock = FakeClock()
    view, rec = view_with(clock)
    for word in ["a", "b", "c"]:
        clock.now += 0.5
        view.update(word)
    assert rec.live_calls == ["a", "ab", "abc"]


def test_finish_always_renders_the_whole_text_even_if_the_tail_was_never_drawn() -> None:
    clock = FakeClock()
    view, rec = view_with(clock)
    view.update("Hello ")
    view.update("**world**")  # same instant: not drawn
    assert rec.live_calls == ["Hello "]
    rendered = view.finish(make_reply())
    assert rec.finals == [rendered]
    assert rendered.markdown.startswith("Hello **world**")
    assert rendered.plain.startswith("Hello **world**")


def test_updates_do_not_join_the_text_between_redraws() -> None:
    # A join per token would make a long answer quadratic: the pieces stay a list (counted, not
    # timed) and are joined once, when the view is drawn.
    clock = FakeClock()
    view, rec = view_with(clock)
    for _ in range(200_000):
        view.update("0123456789")
    assert len(view._chunks) == 200_000 and view.redraws == 1 and rec.live_calls == ["0123456789"]
    assert view.text == "0123456789" * 200_000
    assert len(view._chunks) == 1


def test_empty_deltas_are_ignored() -> None:
    view, rec = view_with(FakeClock())
    view.update("")
    assert rec.live_calls == [] and view.redraws == 0


def test_footer_names_model_tokens_cost_and_time() -> None:
    text = footer(make_reply())
    assert text == "claude-opus-5-5 · 1,200 in / 34 out tokens · $0.0055 · 2.3 s"


def test_footer_marks_cache_hits_retries_resumes_and_odd_stops() -> None:
    reply = make_reply(cached=True, cost=0.0, retries=2, resumed=1, stop_reason="max_tokens",
                       extra={"saved_cost": 0.0123},
                       usage=Usage(input_tokens=10, output_tokens=5, cache_read_input_tokens=1000))
    text = footer(reply)
    assert "1,010 in / 5 out tokens (1,000 cache read)" in text
    assert "cached, saved $0.0123" in text
    assert "2 retries" in text and "resumed 1" in text and "stop: max_tokens" in text
    assert "1 retry" in footer(make_reply(retries=1))


def test_final_markdown_has_collapsed_thinking_answer_and_footer() -> None:
    reply = make_reply(content=[{"type": "thinking", "thinking": "Let me see </details> x"},
                                {"type": "text", "text": "Answer"}], text="Answer")
    view, rec = view_with(FakeClock(), show_thinking=True)
    rendered = view.finish(reply)
    md = rendered.markdown
    assert md.startswith("<details><summary>Thinking</summary>")
    assert "&lt;/details&gt; x" in md and md.count("</details>") == 1
    assert md.index("</details>") < md.index("Answer") < md.index("<sub>claude-opus-5-5")
    assert "[claude-opus-5-5 · " in rendered.plain


def test_thinking_is_hidden_unless_asked() -> None:
    reply = make_reply(content=[{"type": "thinking", "thinking": "secret musing"},
                                {"type": "text", "text": "Answer"}], text="Answer")
    view, _ = view_with(FakeClock())
    assert "secret musing" not in view.finish(reply).markdown


def test_fail_keeps_the_partial_text_marked_incomplete() -> None:
    view, rec = view_with(FakeClock())
    view.update("Partial ans")
    rendered = view.fail("529 overloaded_error: Overloaded (request req_1)")
    assert rendered.body == "Partial ans"
    assert f"{INCOMPLETE}: 529 overloaded_error" in rendered.markdown
    assert rendered.plain.startswith("Partial ans\n\n[⚠ incomplete: 529")


def test_fail_prefers_the_longer_partial_from_the_error() -> None:
    view, _ = view_with(FakeClock())
    view.update("Part")
    assert view.fail("cut", partial="Partial answer").body == "Partial answer"


def test_notes_appear_in_the_final_output() -> None:
    view, _ = view_with(FakeClock(), notes=["chat 'x': dropped the 2 oldest turn(s)"])
    rendered = view.finish(make_reply())
    assert "<sub>chat 'x': dropped the 2 oldest turn(s)</sub>" in rendered.markdown


def test_an_open_code_fence_is_closed_before_the_footer() -> None:
    assert close_fences("text\n```python\nx = 1") == "text\n```python\nx = 1\n```"
    assert close_fences("```\na\n```\n") == "```\na\n```\n"
    assert close_fences("~~~\n```\n") == "~~~\n```\n~~~"
    md = render_final("```py\nx", "foot").markdown
    assert md.index("```\n\n<sub>foot") > 0


def test_footer_html_is_escaped() -> None:
    assert "<sub>a &lt;b&gt; &amp; c</sub>" in render_final("x", "a <b> & c").markdown


@pytest.mark.parametrize(
    "shell, requested, expected",
    [
        (None, None, "text"),
        (object(), None, "handle"),
        (type("TerminalInteractiveShell", (), {})(), None, "text"),
        (type("ZMQInteractiveShell", (), {"kernel": object()})(), None, "widget"),
        (None, "handle", "handle"),
        (type("ZMQInteractiveShell", (), {"kernel": object()})(), "text", "text"),
    ],
)
def test_detect_mode(shell: Any, requested: str | None, expected: str,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAUDE_MAGIC_DISPLAY", raising=False)
    assert detect_mode(shell, requested) == expected


def test_detect_mode_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_MAGIC_DISPLAY", "handle")
    assert detect_mode(type("ZMQInteractiveShell", (), {"kernel": object()})()) == "handle"


def test_text_backend_prints_as_text_arrives_then_the_footer() -> None:
    out = io.StringIO()
    clock = FakeClock()
    view = StreamView(backend=TextBackend(out), clock=clock)
    view.start()
    assert out.getvalue() == ""  # no placeholder in a terminal
    view.update("Hel")
    clock.now += 1
    view.update("lo")
    assert out.getvalue() == "Hello"
    view.update(" there")  # not yet drawn
    view.finish(make_reply("Hello there"))
    assert out.getvalue() == "Hello there\n\n[claude-opus-5-5 · 1,200 in / 34 out tokens · $0.0055 · 2.3 s]\n"


@pytest.fixture
def shell() -> Any:
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    saved = ip.display_pub
    ip.display_pub = CapturingDisplayPublisher()
    yield ip
    ip.display_pub = saved


def test_handle_backend_updates_one_display_in_place(shell: Any) -> None:
    clock = FakeClock()
    view = StreamView(backend=HandleBackend(), clock=clock)
    view.start()
    view.update("Hi")
    view.finish(make_reply("Hi there"))
    outputs = shell.display_pub.outputs
    assert [o["update"] for o in outputs] == [False, True, True]
    ids = {o["transient"]["display_id"] for o in outputs}
    assert len(ids) == 1
    assert outputs[0]["data"] == {"text/markdown": WAITING, "text/plain": WAITING}
    final = outputs[-1]["data"]
    assert set(final) == {"text/markdown", "text/plain"}
    assert final["text/markdown"].startswith("Hi there\n\n<sub>claude-opus-5-5")


def test_widget_backend_streams_into_a_widget_and_leaves_only_markdown(shell: Any) -> None:
    pytest.importorskip("ipywidgets")
    clock = FakeClock()
    backend = WidgetBackend()
    view = StreamView(backend=backend, clock=clock)
    view.start()
    view.update("Par")
    assert backend.widget is None  # placeholder and first text: plain Markdown in the handle
    clock.now += 1
    view.update("tial")
    widget = backend.widget
    assert widget is not None
    assert widget.outputs[0]["data"]["text/markdown"] == "Partial"
    clock.now += 1
    view.update(" answer")
    assert widget.outputs[0]["data"]["text/markdown"] == "Partial answer"
    view.finish(make_reply("Partial answer"))
    assert backend.widget is None and widget.outputs == ()
    assert widget.comm is None  # closed: nothing left for the notebook to save
    outs = shell.display_pub.outputs
    assert len({o["transient"]["display_id"] for o in outs}) == 1  # one output, swapped in place
    assert [("application/vnd.jupyter.widget-view+json" in o["data"]) for o in outs] == [False, False, True,
                                                                                         False]
    assert set(outs[-1]["data"]) == {"text/markdown", "text/plain"}


def test_widget_backend_makes_no_widget_for_an_answer_that_arrives_at_once(shell: Any) -> None:
    backend = WidgetBackend()
    view = StreamView(backend=backend, clock=FakeClock())
    view.start()
    view.update("Cached answer")
    view.finish(make_reply("Cached answer"))
    assert not any("application/vnd.jupyter.widget-view+json" in o["data"] for o in shell.display_pub.outputs)


def test_discard_removes_the_placeholder(shell: Any) -> None:
    view = StreamView(backend=HandleBackend())
    view.start()
    view.discard()
    assert shell.display_pub.outputs[-1]["data"] == {"text/markdown": "", "text/plain": ""}


def _r(model: str, cost: float, **kw: Any) -> Reply:
    return make_reply(model=model, cost=cost, **kw)


def test_usage_table_counts_paid_calls_and_cache_savings() -> None:
    replies = [
        _r("claude-opus-5-5", 0.01, retries=1),
        _r("claude-opus-5-5", 0.0, cached=True, extra={"saved_cost": 0.01}),
        _r("claude-haiku-5-5", 0.0002, usage=Usage(input_tokens=100, output_tokens=10,
                                                   cache_creation_input_tokens=5, cache_read_input_tokens=7)),
    ]
    md, plain = usage_table(replies)
    lines = md.splitlines()
    assert lines[0].startswith("| model | calls | cache hits | input | output | cache write | cache read |")
    assert lines[2] == "| claude-opus-5-5 | 2 | 1 | 1,200 | 34 | 0 | 0 | $0.0100 | $0.0100 | $0 | 1 |"
    assert lines[3] == "| claude-haiku-5-5 | 1 | 0 | 100 | 10 | 5 | 7 | $0.0002 | $0 | <$0.0001 | 0 |"
    assert lines[4] == "| total | 3 | 1 | 1,300 | 44 | 5 | 7 | $0.0102 | $0.0100 | <$0.0001 | 1 |"
    assert plain.splitlines()[1].split() == ["claude-opus-5-5", "2", "1", "1,200", "34", "0", "0", "$0.0100",
                                             "$0.0100", "$0", "1"]


def test_usage_table_without_calls() -> None:
    assert usage_table([]) == ("*no calls yet in this kernel*", "no calls yet in this kernel")


def test_thinking_before_the_answer_shows_as_a_status_until_text_arrives() -> None:
    clock = FakeClock()
    view, rec = view_with(clock)
    view.think("Let me weigh")
    assert rec.live_calls == ["… *thinking, 3 words so far*"]
    view.think(" the options.")  # within the interval: not drawn
    clock.now += 1
    view.think(" Then")
    assert rec.live_calls[-1] == "… *thinking, 6 words so far*"
    clock.now += 1
    view.update("Answer")
    clock.now += 1
    view.think(" more thinking after the text started")  # the answer holds the view now
    assert rec.live_calls[-1] == "Answer" and len(rec.live_calls) == 3


def test_thinking_shown_live_only_when_asked_its_last_lines_quoted() -> None:
    clock = FakeClock()
    view, rec = view_with(clock, show_thinking=True)
    view.think("First <idea>\nsecond line")
    assert rec.live_calls[-1] == "… *thinking, 4 words so far*\n\n> First &lt;idea&gt;\n> second line"
    clock.now += 1
    view.think("x" * 1000)
    assert rec.live_calls[-1].endswith("> " + "x" * THINKING_TAIL)


def test_a_terminal_shows_no_thinking_status_and_the_whole_answer() -> None:
    out = io.StringIO()
    clock = FakeClock()
    view = StreamView(backend=TextBackend(out), clock=clock)
    view.start()
    view.think("pondering")
    clock.now += 1
    view.update("…and the answer")
    view.finish(make_reply("…and the answer"))
    assert out.getvalue().startswith("…and the answer\n")


def test_usage_table_shows_what_the_prompt_cache_saved() -> None:
    # 50,000 tokens read from the prompt cache on Haiku 5.5: $0.10 a million at the input price,
    # $0.01 read: $0.0045 saved
    reply = _r("claude-haiku-5-5", 0.01, usage=Usage(input_tokens=0, output_tokens=0,
                                                      cache_read_input_tokens=50_000))
    md, _ = usage_table([reply])
    assert md.splitlines()[2].endswith("| $0.0100 | $0 | $0.0045 | 0 |")
