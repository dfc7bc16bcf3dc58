"""The example notebooks beyond what ``pytest --nbval`` checks, and the README's main job.

nbval (wired in pyproject.toml) re-runs ``notebooks/*.ipynb`` and compares every output. Here:
the committed files are what a reader should see (answers as Markdown, no widget state, no
placeholders); the sanitiser hides timings, costs, ports and temporary paths and nothing else;
nbval really fails on a changed answer; ``%claude_emulator start`` gives each run an empty
cache of its own; ``display = 'final'`` shows one output; and ``python -m claude_magic.demo``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SANITIZER = ROOT / "claude_magic" / "sanitize.cfg"
EXAMPLES = sorted(NOTEBOOKS.glob("*.ipynb"))
OURS = [NOTEBOOKS / "quickstart.ipynb", NOTEBOOKS / "offline_ci.ipynb"]
FOOTER = re.compile(r"\[claude-[\w.-]+ · [\d,]+ in / [\d,]+ out tokens[^\]]*\]")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_MAGIC_"))}
    env.update(extra)
    return env


def _sanitize(text: str) -> str:
    from nbval.plugin import get_sanitize_patterns

    for regex, replace in get_sanitize_patterns(SANITIZER.read_text()):
        text = re.sub(regex, replace, text)
    return text


def _claude_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%claude")]


# -- the committed notebooks -----------------------------------------------------------------------


@pytest.mark.parametrize("path", OURS, ids=lambda p: p.name)
def test_committed_notebook_holds_rendered_answers_and_nothing_else(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, "widget state must not be saved"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run top to bottom, once"
    for cell in code:
        assert "execution" not in cell.metadata, "no timing metadata (the file should diff cleanly)"
        for out in cell.outputs:
            data = out.get("data", {})
            assert "application/vnd.jupyter.widget-view+json" not in data, cell.source
            assert data.get("text/plain") != "…", f"a placeholder was saved: {cell.source!r}"
    claude = _claude_cells(nb)
    assert len(claude) >= 3
    for cell in claude:
        if "raises-exception" in cell.metadata.get("tags", []):
            [error] = cell.outputs  # an error output (nbval and --nbval-lax see it), of one line
            assert error.output_type == "error" and error.ename == "MagicError"
            assert len(error.traceback) == 1 and "\n" not in error.traceback[0]
            continue
        *warnings, out = cell.outputs  # one line on stderr for each placeholder left as written
        for w in warnings:
            assert w.name == "stderr" and w.text.startswith("claude (prompt): left as written")
        assert out.output_type == "display_data" and set(out.data) == {"text/markdown", "text/plain"}
        assert FOOTER.search(out.data["text/plain"]), out.data["text/plain"]
        assert "<sub>" in out.data["text/markdown"] and "⚠" not in out.data["text/markdown"]


def test_quickstart_shows_each_feature_it_promises() -> None:
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    outputs = {c.source: c.outputs for c in nb.cells if c.cell_type == "code"}
    assert sources[0] == "%load_ext claude_magic" and sources[1].startswith("%claude_emulator start")
    assert any(s.startswith("%%claude -o ") for s in sources)
    assert sum(s.startswith("%%claude --chat") for s in sources) == 2
    assert "%claude_usage" in sources and "%claude_chat show" in sources
    first = _claude_cells(nb)[0]
    again = [c for c in _claude_cells(nb)[1:] if c.source == first.source]
    assert again, "the first prompt is asked again to show the cache"
    assert "cached, saved" in again[0].outputs[0].data["text/plain"]
    assert "cached" not in first.outputs[0].data["text/plain"]
    echo = next(c for c in _claude_cells(nb) if "Reply with exactly:" in c.source)
    warning, shown = echo.outputs
    assert warning.text == "claude (prompt): left as written, not filled: {undefined_name} (not defined) " \
        "(assign the value to a variable and use {name}; write {{...}} to send braces literally)\n"
    answer = shown.data["text/plain"]
    assert "Oslo is the wettest of 3 cities" in answer  # {wettest}, {n_cities} filled in
    assert '{r["city"]: r["mm"] for r in rows}' in answer  # code with braces untouched
    assert "{undefined_name}" in answer and "{wettest} is literal" in answer
    chat = outputs["%claude_chat show"][0].data["text/markdown"]
    assert "2 turn(s)" in chat


def test_offline_ci_records_exports_replays_and_fails_a_miss() -> None:
    nb = nbformat.read(NOTEBOOKS / "offline_ci.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    text = {c.source: "".join(o.get("text", "") for o in c.outputs) for c in code}
    assert any(s.startswith("%claude_cache export") and "wrote 2 answers" in t for s, t in text.items())
    imported = next(t for s, t in text.items() if "%claude_cache import" in s)
    assert "removed 2 cached answers" in imported and "read 2 answers" in imported
    assert "negative False" in text['print(label, _claude.cached)']  # replayed as recorded
    [miss] = next(c for c in code if "Be brief." in c.source).outputs
    assert miss.traceback[0].startswith("CacheMiss: offline mode (CLAUDE_MAGIC_OFFLINE) and no cached answer")


# -- the sanitiser --------------------------------------------------------------------------------


def test_sanitizer_hides_timings_costs_ports_and_temp_paths() -> None:
    a = "[claude-opus-5-5 · 34 in / 87 out tokens · $0.0019 · 0.1 s]"
    b = "[claude-opus-5-5 · 34 in / 87 out tokens · $0.0021 · 12.7 s]"
    assert _sanitize(a) == _sanitize(b) == "[claude-opus-5-5 · 34 in / 87 out tokens · $COST · TIME s]"
    assert _sanitize("cached, saved <$0.0001 · 0.0 s") == _sanitize("cached, saved $1,234.50 · 3.0 s")
    assert _sanitize("&lt;$0.0001") == "$COST"
    assert _sanitize("at http://127.0.0.1:45137; ok") == "at http://127.0.0.1:PORT; ok"
    assert _sanitize("wrote 2 answers to /tmp/claude_magic_cassette_kfvemnuf/cassette.jsonl") == \
        "wrote 2 answers to TMPDIR/cassette.jsonl"
    assert _sanitize("removed 2 cached answers from /var/tmp/claude_magic_emulator_x_1") == \
        "removed 2 cached answers from TMPDIR"


@pytest.mark.parametrize("changed", [
    "[claude-opus-5-5 · 35 in / 87 out tokens · $0.0019 · 0.1 s]",  # tokens
    "[claude-opus-5-5 · 34 in / 87 out tokens · cached, saved $0.0019 · 0.1 s]",  # cache mark
    "[claude-haiku-5-5 · 34 in / 87 out tokens · $0.0019 · 0.1 s]",  # model
    "[claude-opus-5-5 · 34 in / 87 out tokens · $0.0019 · 0.1 s · 1 retry]",  # retries
])
def test_sanitizer_keeps_everything_else(changed: str) -> None:
    assert _sanitize(changed) != _sanitize("[claude-opus-5-5 · 34 in / 87 out tokens · $0.0019 · 0.1 s]")


def test_every_notebook_in_the_folder_is_committed_executed() -> None:
    # a notebook added later (e.g. the batch one) is validated too, so it must be committed executed
    assert set(OURS) <= set(EXAMPLES)
    for path in EXAMPLES:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
        assert all(c.execution_count is not None for c in code), f"{path.name} is not executed"


# -- nbval really compares (a small notebook, executed, then validated and tampered with) ----------


@pytest.fixture
def small_notebook(tmp_path: Path) -> Path:
    from claude_magic.demo import execute_notebook

    source = tmp_path / "source.ipynb"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%load_ext claude_magic\n%claude_emulator start --token-rate 400"),
        nbformat.v4.new_code_cell("%%claude -m claude-haiku-5-5\nName three rivers."),
        nbformat.v4.new_code_cell("%%claude -m claude-haiku-5-5\nName three rivers."),
        nbformat.v4.new_code_cell("%%claude -m claude-haiku-5-5\nName three lakes."),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, source)
    out = tmp_path / "small.ipynb"
    summary = execute_notebook(source, out, display="final")
    assert (summary.cells_run, summary.streamed, summary.cache_hits) == (4, 2, 1)
    return out


def _tamper(nb: Any, cell: int, old: str, new: str) -> None:
    data = nb.cells[cell].outputs[0].data
    assert old in data["text/plain"] and old in data["text/markdown"], (old, data)
    data["text/plain"] = data["text/plain"].replace(old, new)
    data["text/markdown"] = data["text/markdown"].replace(old, new)


def test_nbval_passes_a_fresh_run_and_fails_a_changed_answer(small_notebook: Path) -> None:
    nb = nbformat.read(small_notebook, as_version=4)
    timing = re.search(r"· (\d+\.\d) s\]", nb.cells[1].outputs[0].data["text/plain"])
    assert timing is not None
    _tamper(nb, 1, f"· {timing.group(1)} s", "· 99.9 s")  # a timing: sanitised, passes
    _tamper(nb, 2, "cached, saved", "")  # the cache mark: compared, fails
    first_word = nb.cells[3].outputs[0].data["text/plain"].split()[0]
    _tamper(nb, 3, first_word, first_word + "X")  # the answer: compared, fails
    nbformat.write(nb, small_notebook)
    # a new kernel, a new emulator, a new empty cache: the third cell is a cache hit again
    folder = small_notebook.parent
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "-p", "no:randomly", "--rootdir",
         str(folder), "-c", os.devnull, "--nbval", "--nbval-current-env", "--nbval-sanitize-with",
         str(SANITIZER), str(small_notebook)],
        cwd=folder, env=_clean_env(CLAUDE_MAGIC_DISPLAY="final"), capture_output=True, text=True, timeout=280)
    verdicts = {int(cell): verdict for verdict, cell in
                re.findall(r"^(PASSED|FAILED) small\.ipynb::Cell (\d)", done.stdout, re.MULTILINE)}
    assert verdicts == {0: "PASSED", 1: "PASSED", 2: "FAILED", 3: "FAILED"}, done.stdout[-4000:]
    assert done.stdout.count("Cell outputs differ") >= 2


# -- the emulator's own cache, and the 'final' display (through a real InteractiveShell) --------------


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from ipshell import loaded_shell

    with loaded_shell(monkeypatch, tmp_path / "real-cache") as ip:
        yield ip


def _run(ip: Any, code: str) -> None:
    ip.run_cell(code).raise_error()


def _magics(ip: Any) -> Any:
    return ip.find_cell_magic("claude").__self__


def test_emulator_answers_go_to_a_fresh_temporary_cache_not_the_real_one(shell: Any, tmp_path: Path) -> None:
    _run(shell, "%config ClaudeMagics.display = 'final'")
    _run(shell, "%claude_emulator start")
    m = _magics(shell)
    temporary = Path(m.response_cache.directory)
    assert temporary != tmp_path / "real-cache" and temporary.is_dir()
    _run(shell, "%%claude\nremember me?")
    assert not shell.user_ns["_claude"].cached
    _run(shell, "%%claude\nremember me?")
    assert shell.user_ns["_claude"].cached  # the cache works while the emulator runs
    _run(shell, "%config ClaudeMagics.offline = True")  # reopening the cache keeps the temporary one
    assert Path(m.response_cache.directory) == temporary
    _run(shell, "%config ClaudeMagics.offline = False")
    _run(shell, "%claude_emulator stop")
    assert not temporary.exists(), "stop deletes the emulator's cache"
    assert Path(m.response_cache.directory) == tmp_path / "real-cache"
    assert m.response_cache.stats.entries == 0, "no fake answer reached the real cache"
    _run(shell, "%claude_emulator start")
    _run(shell, "%%claude\nremember me?")
    assert not shell.user_ns["_claude"].cached, "each start begins with an empty cache"
    second = Path(m.response_cache.directory)
    shell.run_line_magic("unload_ext", "claude_magic")
    assert not second.exists(), "unloading stops the emulator and deletes its cache"
    shell.run_line_magic("load_ext", "claude_magic")


def test_final_display_shows_the_answer_once_when_complete(shell: Any) -> None:
    _run(shell, "%config ClaudeMagics.display = 'final'")
    _run(shell, "%claude_emulator start --token-rate 2000")
    _run(shell, "%%claude -m claude-haiku-5-5\nName three rivers.")
    outputs = shell.display_pub.outputs
    [only] = outputs  # no placeholder, no live updates: nbval sees exactly what is saved
    assert set(only["data"]) == {"text/markdown", "text/plain"}
    assert only["data"]["text/plain"].startswith(shell.user_ns["_claude"].text)
    assert FOOTER.search(only["data"]["text/plain"])


# -- python -m claude_magic.demo (the README's main job) -------------------------------------------


def test_demo_runs_the_quickstart_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "executed.ipynb"
    done = subprocess.run([sys.executable, "-m", "claude_magic.demo", "-o", str(out)], cwd=ROOT,
                          env=_clean_env(CLAUDE_MAGIC_OFFLINE="1"),  # scrubbed for the kernel
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"wrote the executed notebook to {out} (ran notebooks/quickstart.ipynb against the " \
        "emulator, no API key)"
    committed = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    n_code = sum(c.cell_type == "code" for c in committed.cells)
    n_claude = len(_claude_cells(committed))
    match = re.fullmatch(r"(\d+) cells run, (\d+) answers streamed, 1 cache hit, total cost \$0\.\d{4}",
                         lines[1])
    assert match, lines[1]
    assert (int(match[1]), int(match[2])) == (n_code, n_claude - 1)
    assert done.stderr == "", "the kernel's own warnings stay out of the summary"
    executed = nbformat.read(out, as_version=4)
    assert "widgets" not in executed.metadata
    # the same answers as the committed notebook, once timings and costs are set aside
    for mine, ref in zip(_claude_cells(executed), _claude_cells(committed), strict=True):
        assert _sanitize(mine.outputs[-1].data["text/plain"]) == _sanitize(ref.outputs[-1].data["text/plain"])


def test_demo_failure_is_one_line_and_nonzero(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%load_ext claude_magic"),
                                         nbformat.v4.new_code_cell("%%claude\n")])
    nbformat.write(nb, broken)
    demo = [sys.executable, "-m", "claude_magic.demo"]
    done = subprocess.run([*demo, str(broken), "-o", str(tmp_path / "o.ipynb")], cwd=tmp_path,
                          env=_clean_env(), capture_output=True, text=True, timeout=280)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: a cell of "), done.stderr
    assert (tmp_path / "o.ipynb").exists(), "the partial notebook is kept to read the failure"

    missing = subprocess.run(demo, cwd=tmp_path, env=_clean_env(),
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "no notebook at notebooks/quickstart.ipynb" in missing.stderr


def test_demo_summary_counts() -> None:
    from claude_magic.demo import Summary

    assert Summary(1, 1, 1, 0.5).line() == "1 cell run, 1 answer streamed, 1 cache hit, total cost $0.5000"
    assert Summary(3, 0, 2, 0.0).line() == "3 cells run, 0 answers streamed, 2 cache hits, total cost $0"


# -- the README's CI recipe, end to end: record, commit, replay with strict nbval -----------------------


def _nbval(notebook: Path, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "-p", "no:randomly", "--rootdir",
         str(notebook.parent), "-c", os.devnull, *flags, str(notebook)],
        cwd=notebook.parent, env=_clean_env(**env), capture_output=True, text=True, timeout=280)


@pytest.mark.timeout(600)  # two kernels and three nested pytest runs; slow on a loaded machine
def test_ci_recipe_records_once_and_replays_identically_with_strict_nbval(tmp_path: Path,
                                                                          claude_emulator: Any) -> None:
    from claude_magic.demo import execute_notebook

    source = tmp_path / "analysis.ipynb"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%load_ext claude_magic"),
        nbformat.v4.new_code_cell("%%claude -m claude-haiku-5-5\nName three rivers."),
        nbformat.v4.new_code_cell("%%claude -m claude-haiku-5-5\nName three rivers."),
        nbformat.v4.new_code_cell("%%claude -m claude-haiku-5-5 -o lakes\nName three lakes."),
        nbformat.v4.new_code_cell("print(lakes.split()[0], _claude.cached)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, source)
    cassette = tmp_path / "analysis.cassette.jsonl"
    recorded = tmp_path / "recorded" / "analysis.ipynb"
    # 1. record against "the API" (the emulator stands in: another host than api.anthropic.com)
    summary = execute_notebook(source, recorded, display="final", env={
        "ANTHROPIC_BASE_URL": claude_emulator.url, "ANTHROPIC_API_KEY": "sk-ant-api03-recording-0123456789",
        "CLAUDE_MAGIC_CASSETTE": str(cassette), "CLAUDE_MAGIC_CACHE_DIR": str(tmp_path / "dev-cache")})
    assert (summary.streamed, summary.cache_hits) == (2, 1)
    lines = [json.loads(line) for line in cassette.read_text().splitlines()]
    assert [e["host"] for e in lines] == ["127.0.0.1"] * 2 and "recording" not in cassette.read_text()
    # 2. CI: no key, no URL, a new cache; strict nbval, no sanitiser: the outputs are the recording's
    ci = {"CLAUDE_MAGIC_OFFLINE": "1", "CLAUDE_MAGIC_CASSETTE": str(cassette),
          "CLAUDE_MAGIC_CACHE_DIR": str(tmp_path / "ci-cache")}
    done = _nbval(recorded, "--nbval", **ci)
    assert done.returncode == 0 and "5 passed" in done.stdout, done.stdout[-3000:]
    # 3. a prompt edited without re-recording fails its cell, in both modes, with our one line
    edited = nbformat.read(recorded, as_version=4)
    edited.cells[3].source = edited.cells[3].source.replace("three lakes", "four lakes")
    nbformat.write(edited, recorded)
    for mode in ("--nbval", "--nbval-lax"):
        done = _nbval(recorded, mode, **ci)
        assert done.returncode == 1, (mode, done.stdout[-3000:])
        assert 'CacheMiss: offline mode (CLAUDE_MAGIC_OFFLINE) and no cached answer for "Name four lakes."' \
            in done.stdout, (mode, done.stdout[-3000:])
