"""The magics through a real IPython shell, against the emulator."""

from __future__ import annotations

import _thread
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ipshell import fails, loaded_shell, run
from IPython.core.error import UsageError

import claude_magic
from claude_magic.magics import ClaudeMagics, MagicError

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-ant-test-SECRET-0123456789abcdef"
MAGIC_NAMES = {"line": {"claude_chat", "claude_key", "claude_usage", "claude_cache", "claude_emulator",
                        "claude_batch"},
               "cell": {"claude", "claude_batch"}}
# each magic, and the class (one per topic) that holds it
MAGIC_CLASSES = {"claude": "ClaudeMagics", "claude_chat": "ClaudeMagics", "claude_key": "ClaudeMagics",
                 "claude_batch": "BatchMagics", "claude_usage": "SessionMagics",
                 "claude_cache": "SessionMagics", "claude_emulator": "SessionMagics"}


def outputs(ip: Any) -> list[dict[str, Any]]:
    return list(ip.display_pub.outputs)


def final_markdown(ip: Any) -> str:
    """The text/markdown the last display left (after its updates)."""
    last = outputs(ip)[-1]["data"]
    assert set(last) == {"text/markdown", "text/plain"}, last
    return str(last["text/markdown"])


def magics(ip: Any) -> ClaudeMagics:
    return ip.find_cell_magic("claude").__self__  # type: ignore[no-any-return]


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with loaded_shell(monkeypatch, tmp_path / "cache", "answer") as shell:
        yield shell
        if hasattr(shell, "parent_header"):
            del shell.parent_header


@pytest.fixture
def emu(ip: Any, claude_emulator: Any) -> Any:
    """The shell with the magics pointed at the emulator through %config (display through a handle)."""
    run(ip, f"%config ClaudeMagics.base_url = {claude_emulator.url!r}")
    run(ip, f"%config ClaudeMagics.api_key = {SECRET!r}")
    run(ip, "%config ClaudeMagics.display = 'handle'")
    return claude_emulator


def sent(emulator: Any) -> list[dict[str, Any]]:
    return [r.json for r in emulator.requests if r.path == "/v1/messages"]


def last_prompt(emulator: Any) -> Any:
    content = sent(emulator)[-1]["messages"][-1]["content"]
    return content if isinstance(content, str) else content[-1]["text"]


# -- loading -------------------------------------------------------------------------------------


def test_load_ext_imports_nothing_heavy() -> None:
    # What keeps %load_ext fast (~5 ms), checked by what it imports rather than by a clock that a
    # busy machine stretches.
    code = (
        "import sys\n"
        "from IPython.testing.globalipapp import get_ipython\n"
        "ip = get_ipython()\n"
        "ip.run_line_magic('load_ext', 'claude_magic')\n"
        "heavy = [m for m in ('httpx', 'diskcache', 'ipywidgets', 'claude_magic.client', "
        "'claude_magic.cache', 'claude_magic.emulator') if m in sys.modules]\n"
        "print(heavy, ip.find_cell_magic('claude') is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True"


def test_import_claude_magic_is_light_and_exports_lazily() -> None:
    code = ("import sys, claude_magic\n"
            "print('httpx' in sys.modules, 'IPython' in sys.modules)\n"
            "claude_magic.Reply; print('claude_magic.reply' in sys.modules, claude_magic.__version__)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True", "0.1.0"]
    with pytest.raises(AttributeError, match="nope"):
        claude_magic.nope  # noqa: B018


def test_unload_leaves_nothing_behind_and_reload_works(ip: Any, emu: Any) -> None:
    run(ip, "%%claude\nhello")
    old, session = magics(ip), claude_magic.session()
    client = session.client_if_built
    assert client is not None
    run(ip, "%reload_ext claude_magic")
    assert client.closed  # the old client was closed, its loop thread stopped
    assert magics(ip) is not old and claude_magic.session() is not session
    assert old not in ip.configurables
    run(ip, "%unload_ext claude_magic")
    manager = ip.magics_manager
    for kind, names in MAGIC_NAMES.items():
        assert not names & set(manager.magics[kind]), kind
    assert not set(MAGIC_CLASSES.values()) & set(manager.registry)
    assert not any(type(c).__name__ in MAGIC_CLASSES.values() for c in ip.configurables)
    run(ip, "%load_ext claude_magic")  # the fixture unloads it again


def test_each_topic_has_its_magics_class_over_one_session(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(claude_magic, "_default_session", None)  # the one made below stays in this test
    session = claude_magic.session()
    for name, owner in MAGIC_CLASSES.items():
        magic = ip.find_line_magic(name) or ip.find_cell_magic(name)
        assert type(magic.__self__).__name__ == owner, name
        assert magic.__self__.session is session, name
        assert ip.magics_manager.registry[owner] is magic.__self__
    assert session.settings is ip.magics_manager.registry["ClaudeMagics"]
    run(ip, "%unload_ext claude_magic")
    for name in MAGIC_CLASSES:
        assert ip.find_line_magic(name) is None and ip.find_cell_magic(name) is None, name
    assert claude_magic.session() is not session  # outside the extension: the environment's
    run(ip, "%load_ext claude_magic")
    assert claude_magic.session() is not session  # a new one for the new magics


def test_usage_is_shown_by_claude_question_mark(ip: Any) -> None:
    doc = ip.find_cell_magic("claude").__doc__
    for option in ("--model", "--max-tokens", "--system", "--stop", "--effort", "--thinking", "--out",
                   "--no-cache", "--refresh", "--no-stream", "--chat", "--no-interpolate", "_claude"):
        assert option in doc, option


def test_bad_arguments_are_usage_errors(ip: Any) -> None:
    assert isinstance(fails(ip, "%%claude --max-tokens 0\nhi"), UsageError)
    assert "positive integer, got '0'" in str(fails(ip, "%%claude --max-tokens 0\nhi"))
    assert isinstance(fails(ip, "%%claude --effort huge\nhi"), UsageError)
    assert "-o needs a variable name" in str(fails(ip, "%%claude -o 1x\nhi"))
    assert "the cell is empty" in str(fails(ip, "%%claude\n  \n"))


# -- %%claude -----------------------------------------------------------------------------------


def test_answer_is_streamed_into_one_display_and_left_as_markdown(ip: Any, emu: Any) -> None:
    emu.configure(token_rate=400)
    run(ip, "%%claude --max-tokens 60\nWrite two sentences about tea.")
    reply = ip.user_ns["_claude"]
    outs = outputs(ip)
    assert len({o["transient"]["display_id"] for o in outs}) == 1  # one output, updated in place
    assert outs[0]["update"] is False and all(o["update"] for o in outs[1:])
    assert len(outs) >= 3  # placeholder, at least one partial redraw, the final answer
    md = final_markdown(ip)
    assert md.startswith(reply.text)
    assert f"<sub>{reply.model} · " in md and " out tokens · $" in md
    plain = outs[-1]["data"]["text/plain"]
    assert plain.startswith(reply.text) and plain.rstrip().endswith("s]")


def test_last_reply_is_in_underscore_claude_and_on_the_class(ip: Any, emu: Any) -> None:
    run(ip, "%%claude -o answer\nSay hi")
    reply = ip.user_ns["_claude"]
    assert ClaudeMagics.last_reply is reply
    assert ip.user_ns["answer"] == reply.text and reply.text
    assert reply.usage.output_tokens > 0 and reply.request_id


def test_options_reach_the_request(ip: Any, emu: Any) -> None:
    run(ip, '%%claude -m claude-haiku-5-5 --max-tokens 77 -s "Be terse." --stop "\\n\\nEND" --stop "###" '
            "--effort low\nHi")
    body = sent(emu)[-1]
    assert body["model"] == "claude-haiku-5-5" and body["max_tokens"] == 77
    assert body["system"] == "Be terse."
    assert body["stop_sequences"] == ["\n\nEND", "###"]
    assert body["output_config"] == {"effort": "low"}
    assert body["stream"] is True
    run(ip, "%%claude --no-stream --no-cache\nHi")
    assert not sent(emu)[-1].get("stream")
    assert final_markdown(ip).startswith(ip.user_ns["_claude"].text)


def test_magic_arguments_beat_config_which_beats_env(ip: Any, emu: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # would fail: %config wins
    run(ip, "%config ClaudeMagics.model = 'claude-sonnet-5-5'")
    run(ip, "%config ClaudeMagics.max_tokens = 55")
    run(ip, "%config ClaudeMagics.system = 'From config.'")
    run(ip, "%%claude\nOne")
    assert {k: sent(emu)[-1].get(k) for k in ("model", "max_tokens", "system")} == {
        "model": "claude-sonnet-5-5", "max_tokens": 55, "system": "From config."}
    run(ip, "%%claude -m claude-haiku-5-5 --max-tokens 66 -s 'From args.'\nOne")
    assert {k: sent(emu)[-1].get(k) for k in ("model", "max_tokens", "system")} == {
        "model": "claude-haiku-5-5", "max_tokens": 66, "system": "From args."}


def test_env_is_used_when_config_is_unset(ip: Any, claude_emulator: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", claude_emulator.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    run(ip, "%config ClaudeMagics.display = 'handle'")
    run(ip, "%%claude\nfrom the environment")
    assert last_prompt(claude_emulator) == "from the environment"
    assert sent(claude_emulator)[-1]["model"] == "claude-opus-5-5"  # the default


def test_interpolation_sends_values_and_leaves_the_rest(ip: Any, emu: Any) -> None:
    run(ip, "city = 'Lyon'\nclass P: name = 'Ada'\np = P()\nnums = [1, 2, 3]")
    run(ip, "40 + 2")
    n = ip.execution_count - 1
    run(ip, "%%claude\n{city} {p.name} {nums[-1]} {Out[" + str(n) + "]} {{city}} "
            '{"a": {1: 2}} \\frac{a}{b} {unknown} def f(): return {k: v}')
    assert last_prompt(emu) == ('Lyon Ada 3 42 {city} {"a": {1: 2}} \\frac{a}{b} {unknown} '
                                "def f(): return {k: v}")
    run(ip, "%%claude --no-interpolate\n{city}")
    assert last_prompt(emu) == "{city}"


def test_interpolation_error_is_one_line(ip: Any, emu: Any) -> None:
    run(ip, "nums = [1]")
    err = fails(ip, "%%claude\n{nums[5]}")
    assert isinstance(err, MagicError) and "{nums[5]}" in str(err) and "\n" not in str(err)
    assert sent(emu) == []


def test_second_run_is_a_cache_hit(ip: Any, emu: Any) -> None:
    run(ip, "%%claude\nCache me")
    first = ip.user_ns["_claude"]
    run(ip, "%%claude\nCache me")
    second = ip.user_ns["_claude"]
    assert len(sent(emu)) == 1
    assert second.cached and not first.cached and second.text == first.text
    assert "cached, saved $" in final_markdown(ip)
    run(ip, "%%claude --no-cache\nCache me")
    assert len(sent(emu)) == 2 and not ip.user_ns["_claude"].cached
    run(ip, "%%claude --refresh\nCache me")
    assert len(sent(emu)) == 3 and not ip.user_ns["_claude"].cached
    run(ip, "%%claude\nCache me")
    assert len(sent(emu)) == 3 and ip.user_ns["_claude"].cached


@pytest.mark.parametrize("fault, status",
                         [("401", "401 authentication_error"), ("400", "400 invalid_request_error")])
def test_api_errors_fail_the_cell_with_one_line(ip: Any, emu: Any, fault: str, status: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    emu.inject(fault)
    err = fails(ip, "%%claude\nThis will fail")
    assert isinstance(err, MagicError)  # one line, and an error output in a kernel
    message = str(err)
    assert message.startswith(status) and "(request req_" in message and "\n" not in message
    assert "Traceback" not in capsys.readouterr().err
    assert outputs(ip)[-1]["data"] == {"text/markdown": "", "text/plain": ""}  # no stray placeholder
    assert "_claude" not in ip.user_ns


def test_broken_stream_keeps_partial_text_marked_incomplete(ip: Any, emu: Any) -> None:
    run(ip, "%config ClaudeMagics.max_wait = 0.0")
    emu.inject(*["cut:after=3"] * 12)
    err = fails(ip, "%%claude\nTell me a story")
    assert isinstance(err, MagicError) and str(err).startswith("incomplete answer")
    md = final_markdown(ip)
    assert "⚠ incomplete: incomplete answer" in md
    partial = md.split("\n\n<sub>")[0]
    assert partial and len(partial) < 2000
    emu.reset()
    run(ip, "%%claude\nTell me a story")  # nothing broken was cached
    assert not ip.user_ns["_claude"].cached


def test_interrupt_stops_the_stream_and_keeps_the_partial_text(ip: Any, emu: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from claude_magic.display import HandleBackend

    emu.configure(token_rate=30)  # 89 tokens: about 3 s to the end of the answer
    run(ip, "%config ClaudeMagics.model = 'claude-haiku-5-5'")  # no thinking phase: text comes at once
    shown_at_interrupt: list[str] = []
    live = HandleBackend.live

    def ctrl_c_once_text_shows(self: Any, body: str) -> None:
        live(self, body)
        if len(body) > 20 and not shown_at_interrupt:
            shown_at_interrupt.append(body)
            _thread.interrupt_main()  # as Ctrl-C: KeyboardInterrupt at the main thread's next step

    monkeypatch.setattr(HandleBackend, "live", ctrl_c_once_text_shows)
    result = ip.run_cell("%%claude --max-tokens 2000\nTell me a very long story")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    md = final_markdown(ip)
    partial = md.split("\n\n<sub>")[0]
    assert "⚠ incomplete: interrupted" in md and partial.startswith(shown_at_interrupt[0])
    emu.configure(token_rate=None)
    run(ip, "%%claude --no-cache --max-tokens 2000\nTell me a very long story")  # the client survived
    whole = ip.user_ns["_claude"].text
    # the cell did not wait for the rest of the answer: what it kept is a strict prefix of it
    assert whole.startswith(partial) and len(partial) < len(whole)


def test_thinking_is_shown_collapsed(ip: Any, emu: Any) -> None:
    run(ip, "%%claude --thinking\nThink about it")
    reply = ip.user_ns["_claude"]
    assert sent(emu)[-1]["thinking"]["type"] == "adaptive"
    md = final_markdown(ip)
    assert reply.thinking  # the emulator's opus always thinks: the check below always runs
    assert md.startswith("<details><summary>Thinking</summary>") and reply.text in md
    run(ip, "%%claude\nThink about it")
    assert "<details>" not in final_markdown(ip)


def test_thinking_shows_live_until_the_answer_starts(ip: Any, emu: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from claude_magic.display import HandleBackend

    shown: list[str] = []
    live = HandleBackend.live
    monkeypatch.setattr(HandleBackend, "live", lambda self, body: (shown.append(body), live(self, body))[1])
    # every delta drawn: whether the answer is drawn live must not depend on how fast it arrives
    run(ip, "%config ClaudeMagics.max_redraw_rate = 0")
    run(ip, "%%claude --thinking --no-cache -m claude-opus-5-5 --max-tokens 200\nThink about it")
    assert ip.user_ns["_claude"].thinking
    statuses = [i for i, body in enumerate(shown) if body.startswith("… *thinking,")]
    answers = [i for i, body in enumerate(shown) if not body.startswith("…")]
    assert statuses and answers and max(statuses) < min(answers)
    assert "\n> " in shown[statuses[-1]]  # --thinking: its last lines, quoted


def test_text_mode_prints_as_it_streams(ip: Any, emu: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%config ClaudeMagics.display = 'text'")
    run(ip, "%%claude\nPrint me")
    out = capsys.readouterr().out
    reply = ip.user_ns["_claude"]
    assert out.startswith(reply.text) and f"[{reply.model} · " in out
    assert outputs(ip) == []


# -- keys ------------------------------------------------------------------------------------------


def test_missing_key_says_how_to_set_one(ip: Any, claude_emulator: Any) -> None:
    run(ip, f"%config ClaudeMagics.base_url = {claude_emulator.url!r}")
    err = fails(ip, "%%claude\nhi")
    assert isinstance(err, MagicError)
    message = str(err)
    for hint in ("ANTHROPIC_API_KEY", "%config ClaudeMagics.api_key", "%claude_emulator start"):
        assert hint in message
    assert "\n" not in message


def test_the_key_never_appears_in_outputs(ip: Any, emu: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%%claude\nhi")
    run(ip, "%config ClaudeMagics")
    shown = run(ip, "%config ClaudeMagics.api_key")
    emu.inject("401")
    fails(ip, "%%claude --no-cache\nhi")
    run(ip, "%claude_usage")
    run(ip, "%claude_cache stats")
    texts = [capsys.readouterr(), outputs(ip), repr(magics(ip)), repr(claude_magic.session().client),
             repr(claude_magic.session()), repr(shown), json.dumps(ip.user_ns["_claude"].to_dict()),
             str(ip.config), repr(ip.config)]
    assert SECRET not in str(texts) and SECRET[:-4] not in str(texts)
    assert "'<hidden>'" in str(texts[0])  # the trait's current value, as %config ClaudeMagics lists it
    assert shown == "<hidden: set>"  # the config object holds a marker; the key is kept apart


# -- trust: the key, -o, partial answers, placeholders --------------------------------------------------


def test_a_key_typed_in_a_cell_is_warned_about_and_claude_key_asks_unseen(
        ip: Any, claude_emulator: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, f"%config ClaudeMagics.base_url = {claude_emulator.url!r}")
    capsys.readouterr()
    run(ip, f"my_key = {SECRET!r}")
    warned = capsys.readouterr().err
    assert "looks like an API key" in warned and "%claude_key" in warned and warned.count("\n") == 1
    ip.user_ns.pop("my_key")
    import getpass

    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "  " + SECRET + "\n")
    run(ip, "%claude_key")
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err and "key set for this kernel" in out.out
    assert "claude_key" not in str(ip.config) and SECRET not in str(ip.config)
    run(ip, "%config ClaudeMagics.display = 'handle'")
    run(ip, "%%claude\nwho am I?")
    assert claude_emulator.requests[-1].headers["x-api-key"] == "REDACTED"  # the emulator got one
    assert magics(ip).client.has_api_key
    run(ip, "%claude_key --clear")
    assert not magics(ip).client.has_api_key


def test_a_bad_key_in_config_is_one_line_and_not_shown(ip: Any, capsys: pytest.CaptureFixture[str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    ip.run_cell("%config ClaudeMagics.api_key = 'sk-ant-bad\\x00key-0123456789abcdef'")
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    assert "NUL" in text and "0123456789abcdef" not in text
    assert ip.find_cell_magic("claude").__self__.api_key is None  # refused: not kept in the trait either


def test_interpolating_the_key_is_refused(ip: Any, emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    run(ip, "import os")
    for cell in ("%%claude\nWhat is {os.environ}?", "%%claude\n{os.environ['ANTHROPIC_API_KEY']}",
                 "%%claude -s '{os.environ}'\nhi"):
        err = fails(ip, cell)
        assert isinstance(err, MagicError) and "holds the API key" in str(err) and SECRET not in str(err)
    assert sent(emu) == []
    ip.user_ns.pop("os")


def test_ipython_does_not_expand_the_line_of_claude(ip: Any, emu: Any) -> None:
    run(ip, "tone = 'Be terse.'")
    run(ip, "%%claude -s '$tone {tone}'\nhi")
    assert sent(emu)[-1]["system"] == "$tone Be terse."  # ours: {tone}; IPython's $tone: not expanded
    ip.user_ns.pop("tone")


def test_unfilled_placeholders_are_warned_in_one_line(ip: Any, emu: Any,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "import pandas as pd\ndf = pd.DataFrame({'x': range(240)})")
    capsys.readouterr()
    run(ip, "%%claude\nSummarise {df.describe()} and {nope}; rows: {df}")
    err = capsys.readouterr().err
    [line] = [x for x in err.splitlines() if x.startswith("claude (prompt)")]
    assert "{df.describe()} (a call" in line and "{nope} (not defined)" in line
    assert last_prompt(emu).count("\n") >= 240  # the whole table went, as CSV
    for name in ("pd", "df"):
        ip.user_ns.pop(name)


@pytest.mark.parametrize("name", ["get_ipython", "frame", "json_mod", "print"])
def test_out_never_replaces_a_frame_a_module_or_a_function(ip: Any, emu: Any, name: str) -> None:
    import pandas as pd

    ip.user_ns.update(frame=pd.DataFrame({"a": [1]}), json_mod=json)
    before = ip.user_ns.get(name)
    err = fails(ip, f"%%claude -o {name}\nhi")
    assert isinstance(err, MagicError) and f"-o {name} would replace" in str(err)
    assert ip.user_ns.get(name) is before and sent(emu) == []
    for n in ("frame", "json_mod"):
        ip.user_ns.pop(n)


def test_text_that_arrived_before_a_failure_is_kept_in_out_and_underscore_claude(ip: Any, emu: Any) -> None:
    run(ip, "%config ClaudeMagics.max_wait = 0.0")
    emu.inject(*["cut:after=3"] * 12)
    err = fails(ip, "%%claude -o answer\nTell me a story")
    partial = ip.user_ns["answer"]
    reply = ip.user_ns["_claude"]
    assert partial and reply.text == partial and reply.incomplete == str(err)
    assert final_markdown(ip).startswith(partial)


def test_comments_after_a_line_magic_and_usage_of_the_cell_magic(ip: Any) -> None:
    run(ip, "%claude_emulator status          # optional: a comment")
    run(ip, "%claude_emulator start   # optional: try everything offline")
    run(ip, "%claude_emulator stop  # done")
    doc = ip.find_cell_magic("claude").__doc__
    assert "%%claude [-m MODEL]" in doc and "  %claude [" not in doc


def test_a_failing_magic_renders_one_line_for_a_kernel(ip: Any) -> None:
    err = fails(ip, "%%claude --max-tokens 0\nhi")
    assert isinstance(err, MagicError)
    assert err._render_traceback_() == [
        "UsageError: argument --max-tokens: must be a positive integer, got '0'"]


def test_the_python_handle_is_the_magics_client(ip: Any, emu: Any) -> None:
    run(ip, "import claude_magic\nc = claude_magic.get_client()\nr = c.complete('hello from Python')")
    assert ip.user_ns["c"] is magics(ip).client
    assert sent(emu)[-1]["messages"][0]["content"] == "hello from Python"
    for n in ("c", "r"):
        ip.user_ns.pop(n)


# -- chat ------------------------------------------------------------------------------------------


def in_cell(ip: Any, cell_id: str) -> None:
    ip.parent_header = {"metadata": {"cellId": cell_id}}


def test_chat_shares_history_and_rerunning_a_cell_replaces_its_turn(ip: Any, emu: Any) -> None:
    in_cell(ip, "c1")
    run(ip, "%%claude --chat\nMy name is Ada.")
    first = ip.user_ns["_claude"].text
    in_cell(ip, "c2")
    run(ip, "%%claude --chat\nWhat is my name?")
    msgs = sent(emu)[-1]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[0]["content"][0]["text"] == "My name is Ada." and msgs[1]["content"][0]["text"] == first
    # cache marks on the previous prompt and on the new one
    assert [("cache_control" in m["content"][-1]) for m in msgs] == [True, False, True]
    run(ip, "%%claude --chat\nWhat is my name, again?")  # same cell re-run, edited
    msgs = sent(emu)[-1]["messages"]
    assert len(msgs) == 3 and msgs[-1]["content"][0]["text"] == "What is my name, again?"
    assert "replaced this cell's turn 2" in final_markdown(ip)
    assert [t.prompt for t in magics(ip).chats.get().turns] == ["My name is Ada.", "What is my name, again?"]
    in_cell(ip, "c1")
    run(ip, "%%claude --chat\nMy name is Bob.")  # re-running the first cell drops the later turn
    assert len(sent(emu)[-1]["messages"]) == 1
    assert "dropped 1 later turn(s)" in final_markdown(ip)
    assert [t.prompt for t in magics(ip).chats.get().turns] == ["My name is Bob."]


def test_named_chats_are_separate_and_can_be_shown_and_reset(ip: Any, emu: Any,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    in_cell(ip, "a")
    run(ip, "%%claude --chat one\nfirst")
    in_cell(ip, "b")
    run(ip, "%%claude --chat two\nsecond")
    assert len(sent(emu)[-1]["messages"]) == 1
    run(ip, "%claude_chat show one")
    assert "**You (1):**\n\nfirst" in final_markdown(ip)
    run(ip, "%claude_chat")
    assert "one: 1 turn(s)" in capsys.readouterr().out
    run(ip, "%claude_chat reset one")
    assert magics(ip).chats.names() == ["two"]
    assert "no chat named 'one'" in str(fails(ip, "%claude_chat show one"))


def test_chat_without_a_cell_id_keys_turns_by_source(ip: Any, emu: Any) -> None:
    run(ip, "%%claude --chat\nsame cell")
    run(ip, "%%claude --chat\nsame cell")
    assert len(magics(ip).chats.get().turns) == 1


def test_chat_budget_drops_oldest_turns_with_a_note(ip: Any, emu: Any) -> None:
    run(ip, "%config ClaudeMagics.chat_token_budget = 150")
    for i in range(4):
        in_cell(ip, f"cell{i}")
        run(ip, f"%%claude --chat --max-tokens 40\nturn {i} " + "padding " * 20)
    notes = [o["data"]["text/markdown"] for o in outputs(ip) if "oldest turn" in o["data"]["text/markdown"]]
    assert notes and "150-token budget" in notes[-1]
    assert len(magics(ip).chats.get().turns) < 4


def test_failed_chat_turn_changes_nothing(ip: Any, emu: Any) -> None:
    in_cell(ip, "x")
    run(ip, "%%claude --chat\nkeep me")
    emu.inject("400")
    in_cell(ip, "y")
    fails(ip, "%%claude --chat --no-cache\nfail me")
    assert [t.prompt for t in magics(ip).chats.get().turns] == ["keep me"]


# -- usage, cache, emulator, batch ------------------------------------------------------------------


def test_usage_table_lists_models_calls_and_cache_savings(ip: Any, emu: Any) -> None:
    run(ip, "%%claude\nusage one")
    run(ip, "%%claude\nusage one")
    run(ip, "%%claude -m claude-haiku-5-5\nusage two")
    run(ip, "%claude_usage")
    md = final_markdown(ip)
    lines = md.splitlines()
    assert lines[0].startswith("| model | calls | cache hits | input | output")
    opus = next(line for line in lines if line.startswith("| claude-opus-5-5 |"))
    assert opus.split(" | ")[1:3] == ["2", "1"]
    assert any(line.startswith("| claude-haiku-5-5 | 1 | 0 |") for line in lines)
    assert lines[-1].startswith("| total | 3 | 1 |")


def test_usage_survives_a_client_rebuild(ip: Any, emu: Any) -> None:
    run(ip, "%%claude\nbefore")
    run(ip, "%config ClaudeMagics.max_wait = 30.0")  # rebuilds the client on next use
    run(ip, "%%claude\nafter")
    assert len(magics(ip).history()) == 2


def test_cache_stats_export_clear_import(ip: Any, emu: Any, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%%claude\ncassette me")
    capsys.readouterr()
    run(ip, "%claude_cache stats")
    assert capsys.readouterr().out.startswith("1 cached answers")
    cassette = tmp_path / "c.jsonl"
    run(ip, f"%claude_cache export {cassette}")
    assert len(cassette.read_text().splitlines()) == 1
    run(ip, "%claude_cache clear")
    assert "removed 1 cached answers" in capsys.readouterr().out
    run(ip, f"%claude_cache import {cassette}")
    run(ip, "%%claude\ncassette me")
    assert ip.user_ns["_claude"].cached and len(sent(emu)) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    err = fails(ip, f"%claude_cache import {bad}")
    assert isinstance(err, MagicError) and "bad.jsonl" in str(err)
    assert "takes stats, clear" in str(fails(ip, "%claude_cache frobnicate"))


def test_offline_mode_makes_a_miss_an_error(ip: Any, emu: Any) -> None:
    run(ip, "%%claude\nrecorded")
    run(ip, "%config ClaudeMagics.offline = True")
    run(ip, "%%claude\nrecorded")
    first = ip.user_ns["_claude"]  # a replay gives the answer as recorded, the first time
    assert first.extra["replayed"] and not first.cached and len(sent(emu)) == 1
    run(ip, "%%claude\nrecorded")
    assert ip.user_ns["_claude"].cached  # later times as the cache hits they were
    err = fails(ip, "%%claude\nnever recorded")
    assert isinstance(err, MagicError) and "offline" in str(err) and "never recorded" in str(err)


def test_emulator_magic_starts_points_and_stops(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%config ClaudeMagics.display = 'handle'")
    run(ip, "%claude_emulator start --ttft 0.01 token_rate=500")
    session = claude_magic.session()
    assert session.emulator is not None and session.emulator.knobs["token_rate"] == 500
    url = session.emulator.url
    assert url in capsys.readouterr().out
    run(ip, "%%claude\nno key needed")
    assert ip.user_ns["_claude"].text
    assert "already running" in str(fails(ip, "%claude_emulator start"))
    run(ip, "%claude_emulator stop")
    assert session.emulator is None and session.client_if_built is None
    assert "ANTHROPIC_API_KEY" in str(fails(ip, "%%claude --no-cache\nno key now"))
    assert "unknown emulator setting" in str(fails(ip, "%claude_emulator start --bogus 1"))


def test_claude_batch_gets_the_line_unexpanded(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from claude_magic import batch_magic

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(batch_magic, "claude_batch", lambda *args: calls.append(args))
    run(ip, "review = 'NOT THIS'\nx = 'NOR THIS'")
    run(ip, '%claude_batch df.review "Classify {review} $x" -o df.label')
    assert calls[-1][2] == 'df.review "Classify {review} $x" -o df.label' and calls[-1][3] is None
    assert calls[-1][0] is claude_magic.session() and calls[-1][1] is ip  # the session and the shell
    run(ip, "%%claude_batch df -o out\nSummarise {review}")
    assert calls[-1][2:4] == ("df -o out", "Summarise {review}\n")


# -- in a real kernel (an event loop is already running there) -------------------------------------


def _iopub_until(kc: Any, parent: str, done: Any, timeout: float = 20) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.5)
        except Exception:  # queue.Empty
            continue
        if msg["parent_header"].get("msg_id") != parent:
            continue
        seen.append(msg)
        if done(msg):
            return seen
    raise AssertionError(f"timed out; saw {[m['msg_type'] for m in seen]}")


def _idle(msg: dict[str, Any]) -> bool:
    return msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"


def _whole_answer(prompt: str, **options: Any) -> str:
    """What the emulator answers (a deterministic function of the request), asked here at full speed."""
    from claude_magic import Client
    from claude_magic.emulator import Emulator

    with Emulator() as emulator, Client(api_key="k", base_url=emulator.url, cache=False) as client:
        return client.complete(prompt, **options).text


def test_in_a_real_kernel_streams_into_a_widget_and_stops_on_interrupt(tmp_path: Path) -> None:
    from jupyter_client.manager import start_new_kernel

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_MAGIC"))}
    env["CLAUDE_MAGIC_CACHE_DIR"] = str(tmp_path / "cache")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env=env)
    try:
        setup = ("%load_ext claude_magic\n%claude_emulator start --token-rate 10\n"
                 "%config ClaudeMagics.model = 'claude-haiku-5-5'")
        assert kc.execute_interactive(setup, timeout=30)["content"]["status"] == "ok"

        msg_id = kc.execute("%%claude --max-tokens 2000\nTell me a very long story")

        def partial_text_in_widget(msg: dict[str, Any]) -> bool:
            state = msg["content"].get("data", {}).get("state", {}) if msg["msg_type"] == "comm_msg" else {}
            return any(len(o["data"]["text/markdown"]) > 20 for o in state.get("outputs", []))

        streamed = _iopub_until(kc, msg_id, partial_text_in_widget)
        assert any(m["msg_type"] == "update_display_data" and "application/vnd.jupyter.widget-view+json"
                   in m["content"]["data"] for m in streamed)  # the widget took the placeholder's place
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)  # a hang guard, not a measure: the check is the text below
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        rest = _iopub_until(kc, msg_id, _idle)
        final = [m for m in rest if m["msg_type"] == "update_display_data"][-1]["content"]["data"]
        assert set(final) == {"text/markdown", "text/plain"}  # the widget is gone from the output
        assert "⚠ incomplete: interrupted" in final["text/markdown"]
        # the cell stopped without waiting for the rest of the answer (89 tokens at 10/s)
        partial = final["text/markdown"].split("\n\n<sub>")[0]
        whole = _whole_answer("Tell me a very long story", model="claude-haiku-5-5", max_tokens=2000)
        assert partial and whole.startswith(partial) and len(partial) < len(whole)

        kc.execute("%%claude --chat\nfirst\n")
        assert kc.get_shell_msg(timeout=30)["content"]["status"] == "ok"
        kc.execute("%%claude --chat\nsecond\n")
        assert kc.get_shell_msg(timeout=30)["content"]["status"] == "ok"
        check = kc.execute_interactive(
            "m = get_ipython().find_cell_magic('claude').__self__\n"
            "assert [t.prompt for t in m.chats.get().turns] == ['first', 'second']\n"
            "assert _claude.text and not _claude.cached", timeout=30)
        assert check["content"]["status"] == "ok", check["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
