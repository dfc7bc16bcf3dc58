"""End to end in a real browser: JupyterLab on 127.0.0.1, headless Debian Chromium driven by Playwright.

A notebook starts the emulator in its kernel at a slow token rate and runs a ``%%claude`` cell.
The test watches the cell's output in the DOM: part of the answer must be rendered (in the
ipywidgets Output, as Markdown) before the answer is complete, then all of it with its footer.
Screenshots go to ``artifacts/browser-e2e.png`` (and ``-partial.png``, taken mid-stream).

Needs Debian's ``chromium`` (never a downloaded browser), ``playwright`` and ``jupyterlab``;
``.ci/run`` installs them. Without one of them the test is skipped, saying which.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "claude-magic-e2e"
MODEL = "claude-haiku-5-5"  # no thinking block first: text starts streaming at once
PROMPT = "Tell me about rivers and the gardens along them."
TOKEN_RATE = 20  # output tokens a second: an answer takes a few seconds to arrive
FOOTER_MARK = "out tokens"

pytestmark = pytest.mark.timeout(300)  # a hang guard: each wait below is for an event, bounded


def _missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return "Debian's chromium is not installed (apt-get install chromium)"
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab")):
        try:
            __import__(module)
        except ImportError:
            return f"{package} is not installed (pip install {package})"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _notebook() -> dict[str, Any]:
    def code(source: str) -> dict[str, Any]:
        return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                "source": source}

    return {
        "cells": [code(f"%load_ext claude_magic\n%claude_emulator start --token-rate {TOKEN_RATE}"),
                  code(f"%%claude -m {MODEL}\n{PROMPT}")],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def _expected_answer() -> str:
    """The answer the kernel's emulator will give: replies are a deterministic function of the request."""
    from claude_magic import Client
    from claude_magic.emulator import Emulator

    with Emulator() as emulator:
        client = Client(api_key="sk-test", base_url=emulator.url, cache=False)
        try:
            return client.complete(PROMPT, model=MODEL).text
        finally:
            client.close()


def _words(text: str) -> list[str]:
    # whitespace differs between the raw Markdown and the rendered text; the words must not
    return text.split()


@dataclass
class Sample:
    words: int  # words of the answer shown
    footer: bool  # the footer (model, tokens, cost, time) is shown: the answer is complete
    widget: bool  # shown inside an ipywidgets Output


# The answer's text and its footer (the <sub> lines), from the last Markdown rendered in the output area.
_READ_ANSWER = """(area) => {
  const all = area.querySelectorAll('.jp-RenderedMarkdown');
  const md = all[all.length - 1];
  const widget = area.querySelector(".jupyter-widgets") !== null;
  if (!md) return {text: '', footer: '', widget};
  const footer = [...md.querySelectorAll('sub')].map(s => s.innerText).join('\\n');
  let text = md.innerText;
  if (footer) text = text.slice(0, text.lastIndexOf(footer.split('\\n')[0]));
  return {text, footer, widget};
}"""


@dataclass
class Lab:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    missing = _missing()
    if missing:
        pytest.skip(missing)
    root, data = tmp_path / "root", tmp_path / "jupyter-data"
    root.mkdir()
    (root / "e2e.ipynb").write_text(json.dumps(_notebook()))
    # A kernelspec of this Python, in a data dir of the test's own, so no user kernelspec is picked.
    spec = data / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    # no "get notified about Jupyter news?" toast over the screenshot (and no fetch of the news)
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_MAGIC_"))}
    env.update(JUPYTER_DATA_DIR=str(data), JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"),
               CLAUDE_MAGIC_CACHE_DIR=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    port = _free_port()
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
             f"--ServerApp.root_dir={root}", "--allow-root", "--LabApp.news_url=",
             "--LabApp.extension_manager=readonly",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    lab = Lab(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_for_server(lab, timeout=40)
        yield lab
    finally:
        process.send_signal(signal.SIGINT if os.name == "posix" else signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_for_server(lab: Lab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise AssertionError(f"JupyterLab exited early: {lab.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={TOKEN}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # polling interval, not an assertion
    raise AssertionError(f"JupyterLab did not answer within {timeout} s: {lab.log.read_text()[-2000:]}")


def _answer_output(page: Any) -> Any:
    """The output area of the %%claude cell (the notebook's second cell)."""
    return page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-Cell-outputArea")


def test_a_claude_cell_streams_into_the_browser_then_shows_the_whole_answer(lab: Lab) -> None:
    from playwright.sync_api import sync_playwright

    expected = _words(_expected_answer())
    assert len(expected) > 30, "the prompt should get an answer long enough to watch it stream"
    ARTIFACTS.mkdir(exist_ok=True)
    samples: list[tuple[int, bool]] = []  # (words shown, footer shown), one per poll
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{lab.url}/lab/tree/e2e.ipynb?token={TOKEN}", timeout=40_000)
            page.locator(".jp-Notebook .jp-Cell").nth(1).wait_for(timeout=40_000)
            # the kernel is up when the toolbar's execution indicator says so: wait for that event
            # rather than hope a loaded machine started it in time
            page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(timeout=90_000)
            page.locator(".jp-Notebook").first.click()
            _run_all(page)

            output = _answer_output(page)
            partial_shot = False
            deadline = time.monotonic() + 120  # a hang guard; the answer takes a few seconds
            while time.monotonic() < deadline:
                seen = output.evaluate(_READ_ANSWER) if output.count() else {"text": "", "footer": "",
                                                                              "widget": False}
                shown = [w for w in _words(seen["text"]) if w != "…"]
                samples.append(Sample(len(shown), bool(seen["footer"]), seen["widget"]))
                if seen["footer"]:
                    break
                if shown:
                    # part of the answer, before the end: the start of the whole answer (the last
                    # word may still be cut)
                    assert shown[:-1] == expected[: len(shown) - 1], (shown, expected)
                    if not partial_shot and len(shown) > 5:
                        page.screenshot(path=str(ARTIFACTS / "browser-e2e-partial.png"))
                        partial_shot = True
                page.wait_for_timeout(100)  # polling interval, not an assertion
            else:
                raise AssertionError(f"no complete answer within 120 s; last samples {samples[-5:]}")

            assert _words(seen["text"]) == expected
            assert MODEL in seen["footer"] and FOOTER_MARK in seen["footer"], seen["footer"]
            assert "⚠" not in output.inner_text()
            # rendered as Markdown, and the live widget is gone: plain Markdown stays in the notebook
            assert output.locator(".jp-RenderedMarkdown p").count() >= 1
            assert output.locator(".jupyter-widgets").count() == 0
            page.screenshot(path=str(ARTIFACTS / "browser-e2e.png"))
        finally:
            browser.close()

    partial = [x for x in samples if x.words and not x.footer]
    assert partial, f"the answer was never seen before it was complete: {samples}"
    assert any(x.widget for x in partial), "the partial answer should be shown by the ipywidgets Output"
    counts = [x.words for x in partial]
    assert len(set(counts)) >= 3, f"the shown text should grow while streaming: {samples}"
    assert counts == sorted(counts), f"the shown text should only grow: {samples}"
    # part of it: the last live redraw may show every word just before the footer replaces it
    assert any(n < len(expected) for n in counts), samples


def _run_all(page: Any) -> None:
    """Run ▸ Run All Cells, through the menu bar as a user would."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
