"""Batch templates with images and PDFs: columns of media become blocks at their place in each row's
prompt, against the emulator (whose answers name what they were shown: ``[image 40x30 png]``)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ipshell import configure, loaded_shell, run
from PIL import Image

from claude_magic.batch import _media, plan_prompts, run_batch
from claude_magic.batch._media import MediaPrompt
from claude_magic.client import Client
from claude_magic.emulator import Emulator
from claude_magic.media import Media, image_tokens

MODEL = "claude-haiku-5-5"
KEY = "sk-ant-test-batch-0123456789"


def picture(width: int, height: int = 30, colour: tuple[int, int, int] = (200, 30, 30)) -> Image.Image:
    return Image.new("RGB", (width, height), colour)


def png(width: int, height: int = 30) -> bytes:
    buf = io.BytesIO()
    picture(width, height).save(buf, format="PNG")
    return buf.getvalue()


def pdf(pages: int) -> bytes:
    buf = io.BytesIO()
    first, *rest = [picture(200 + 10 * i, 260) for i in range(pages)]
    first.save(buf, format="PDF", save_all=True, append_images=rest)
    return buf.getvalue()


def sent(emu: Emulator) -> list[Any]:
    """The user turn of each message sent (a string, or a list of content blocks)."""
    return [r.json["messages"][-1]["content"] for r in emu.requests if r.path == "/v1/messages"]


def kinds(content: Any) -> list[str]:
    return [b["type"] for b in content] if isinstance(content, list) else ["str"]


# -- columns of media values -----------------------------------------------------------------------------


def test_a_column_of_pil_images_answers_each_row_with_its_own_image(emu: Emulator, client: Client) -> None:
    df = pd.DataFrame({"photo": [picture(40), picture(50), picture(60)], "name": ["a", "b", "c"]},
                      index=[10, 11, 12])
    result = run_batch("Describe {name}: {photo} in one word", df, client=client, model=MODEL)
    assert result.errors.empty
    assert [result.series[i].split("]")[0] + "]" for i in df.index] == [
        "[image 40x30 png]", "[image 50x30 png]", "[image 60x30 png]"]
    contents = sent(emu)
    assert len(contents) == 3
    # the text before and after stays in order around the image block, which carries base64
    assert all(kinds(c) == ["text", "image", "text"] for c in contents)
    assert sorted(c[0]["text"] for c in contents) == ["Describe a: ", "Describe b: ", "Describe c: "]
    assert {c[2]["text"] for c in contents} == {" in one word"}
    assert {c[1]["source"]["type"] for c in contents} == {"base64"}


def test_a_column_of_png_bytes_becomes_image_blocks(emu: Emulator, client: Client) -> None:
    df = pd.DataFrame({"photo": [png(70), png(80)]})
    result = run_batch("What is in {photo}?", df, client=client, model=MODEL)
    assert result.series[0].startswith("[image 70x30 png]")
    assert result.series[1].startswith("[image 80x30 png]")
    assert [b["source"]["media_type"] for c in sent(emu) for b in c if b["type"] == "image"] == [
        "image/png", "image/png"]


def test_paths_in_a_string_column_are_images_only_when_the_placeholder_says_so(
        emu: Emulator, client: Client, tmp_path: Path) -> None:
    paths = []
    for width in (90, 100):
        path = tmp_path / f"photo{width}.png"
        path.write_bytes(png(width))
        paths.append(str(path))
    df = pd.DataFrame({"photo": paths})
    as_images = run_batch("Describe {photo:image}", df, client=client, model=MODEL)
    assert as_images.series.str.startswith("[image").tolist() == [True, True]
    assert as_images.series[1].startswith("[image 100x30 png]")
    before = len(sent(emu))
    as_text = run_batch("Describe {photo}", df, client=client, model=MODEL)
    assert not as_text.series.str.contains(r"\[image").any()
    # a string stays text: the path itself
    assert sorted(sent(emu)[before:]) == sorted(f"Describe {p}" for p in paths)


def test_path_objects_are_media_without_a_kind(emu: Emulator, client: Client, tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    path.write_bytes(png(110))
    result = run_batch("Chart: {chart}", pd.DataFrame({"chart": [path]}), client=client, model=MODEL)
    assert result.series[0].startswith("[image 110x30 png]")


def test_a_pdf_column_becomes_document_blocks(emu: Emulator, client: Client) -> None:
    df = pd.DataFrame({"report": [pdf(2), pdf(3)], "q": ["Summarise", "List the risks of"]})
    result = run_batch("{q} {report}", df, client=client, model=MODEL)
    assert result.series[0].startswith("[document pdf 2 pages]")
    assert result.series[1].startswith("[document pdf 3 pages]")
    blocks = [b for c in sent(emu) for b in c if b["type"] == "document"]
    assert [b["source"]["media_type"] for b in blocks] == ["application/pdf"] * 2


# -- dedupe, cache keys, memory ------------------------------------------------------------------------


def test_identical_images_in_rows_with_the_same_text_are_one_request(emu: Emulator, client: Client) -> None:
    # three distinct objects with the same pixels, and the same bytes twice: content decides
    df = pd.DataFrame({"photo": [picture(40), picture(40), picture(40), picture(44)],
                       "raw": [png(50), png(50), png(50), png(50)]})
    result = run_batch("Compare {photo} with {raw}", df, client=client, model=MODEL)
    assert result.summary.unique == 2 and result.summary.sent == 2
    assert len(sent(emu)) == 2
    assert result.series[0] == result.series[1] == result.series[2]
    assert result.series[3].startswith("[image 44x30 png] [image 50x30 png]")


def test_the_cache_key_covers_the_content_not_the_path(emu: Emulator, client: Client, tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(png(40))
    df = pd.DataFrame({"photo": [str(path)]})
    first = run_batch("Describe {photo:image}", df, client=client, model=MODEL)
    again = run_batch("Describe {photo:image}", df, client=client, model=MODEL)
    assert again.summary.cached_rows == 1 and again.summary.sent == 0
    path.write_bytes(png(48))  # same path, other content: asked again
    changed = run_batch("Describe {photo:image}", df, client=client, model=MODEL)
    assert changed.summary.sent == 1
    assert first.series[0].startswith("[image 40x30") and changed.series[0].startswith("[image 48x30")
    # the same bytes from elsewhere (a bytes column) find the answer a path stored
    moved = run_batch("Describe {photo}", pd.DataFrame({"photo": [png(48)]}), client=client, model=MODEL)
    assert moved.summary.cached_rows == 1


def test_each_distinct_value_is_converted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = _media.as_media

    def counting(value: Any, **kwargs: Any) -> Media | None:
        calls.append(kwargs["where"])
        return real(value, **kwargs)

    monkeypatch.setattr(_media, "as_media", counting)
    logo, raw = picture(30), png(60)
    df = pd.DataFrame({"logo": [logo] * 500, "raw": [raw] * 500, "text": [f"row {i}" for i in range(500)]})
    plan = plan_prompts("{text} {logo} {raw}", df, model=MODEL)
    assert len(plan.prompts) == 500
    assert calls == ["row 0 (logo)", "row 0 (raw)"]
    prompts = [p for p in plan.prompts if isinstance(p, MediaPrompt)]
    assert len({id(m) for p in prompts for m in p.media}) == 2  # one Media per content, shared


def test_more_than_twenty_images_in_a_row_are_sized_for_the_many_image_limit() -> None:
    df = pd.DataFrame({f"p{i}": [picture(2400, 100)] for i in range(21)})
    template = " ".join(f"{{p{i}}}" for i in range(21))
    (prompt,) = plan_prompts(template, df, model=MODEL).prompts
    assert isinstance(prompt, MediaPrompt)
    assert {m.size for m in prompt.media} == {(2000, 83)}
    (few,) = plan_prompts("{p0} {p1}", df, model=MODEL).prompts
    assert isinstance(few, MediaPrompt) and few.media[0].size == (2400, 100)


# -- bad cells -------------------------------------------------------------------------------------------


def test_a_bad_cell_is_its_rows_one_line_error_and_the_other_rows_are_answered(
        emu: Emulator, client: Client, tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(png(40))
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    df = pd.DataFrame({"photo": [str(good), str(tmp_path / "missing.png"), str(notes), str(good)]},
                      index=["a", "b", "c", "d"])
    result = run_batch("Describe {photo:image}", df, client=client, model=MODEL)
    assert result.series["a"].startswith("[image 40x30") and result.series["d"] == result.series["a"]
    assert result.series[["b", "c"]].isna().all()
    errors = result.errors.set_index("row")["message"]
    assert errors.index.tolist() == ["b", "c"]
    assert errors["b"].startswith("row b (photo): cannot read") and "missing.png" in errors["b"]
    assert errors["c"].startswith("row c (photo): not an image")
    assert all("\n" not in m for m in errors)
    assert result.summary.failed_rows == 2 and result.summary.sent == 1
    assert result.aborted is None


def test_a_bytes_cell_of_an_unsupported_format_names_its_row(emu: Emulator, client: Client) -> None:
    tiff = io.BytesIO()
    picture(20).save(tiff, format="TIFF")
    df = pd.DataFrame({"scan": [png(20), tiff.getvalue()]})
    result = run_batch("Read {scan}", df, client=client, model=MODEL)
    assert result.series[0].startswith("[image 20x30")
    (message,) = result.errors["message"]
    assert message.startswith("row 1 (scan): TIFF images are not supported")


# -- Message Batches and the dry run ---------------------------------------------------------------------


def test_message_batches_send_base64_blocks_and_fill_the_rows(emu: Emulator, client: Client) -> None:
    df = pd.DataFrame({"photo": [picture(40), picture(52), picture(40)], "n": [1, 2, 1]})
    result = run_batch("Photo {n}: {photo}", df, client=client, model=MODEL, api="batch", poll_interval=0.05)
    (created,) = [r.json for r in emu.requests if r.path == "/v1/messages/batches" and r.method == "POST"]
    assert len(created["requests"]) == 2
    blocks = [b for r in created["requests"] for b in r["params"]["messages"][-1]["content"]]
    assert {b["source"]["type"] for b in blocks if b["type"] == "image"} == {"base64"}
    assert result.series.tolist()[0].startswith("[image 40x30 png]")
    assert result.series.tolist()[1].startswith("[image 52x30 png]")
    assert result.series[2] == result.series[0]
    # the answers are in the response cache under the same key a live run computes
    again = run_batch("Photo {n}: {photo}", df, client=client, model=MODEL)
    assert again.summary.sent == 0 and again.summary.cached_rows == 3


def test_the_dry_run_counts_images_exactly_and_estimates_pdfs(emu: Emulator, client: Client) -> None:
    df = pd.DataFrame({"photo": [picture(640, 480), picture(100, 60)], "report": [pdf(2), pdf(2)]})
    report = run_batch("Check {photo} against {report}", df, client=client, model=MODEL, dry_run=True).dry_run
    assert report is not None
    assert not [r for r in emu.requests if r.path == "/v1/messages"]
    counted = [r.json for r in emu.requests if r.path == "/v1/messages/count_tokens"]
    assert counted and all(isinstance(b["messages"][-1]["content"], str) for b in counted)  # text only
    assert report.image_tokens == image_tokens(640, 480) + image_tokens(100, 60)
    assert 0 < report.pdf_tokens_low < report.pdf_tokens_high
    assert report.input_tokens_low < report.input_tokens < report.input_tokens_high
    line = str(report)
    assert f"images {report.image_tokens:,} tokens (exact)" in line
    assert f"PDFs ≈ {report.pdf_tokens_low:,}–{report.pdf_tokens_high:,} tokens (estimate)" in line


def test_the_dry_run_says_a_url_cannot_be_counted(emu: Emulator, client: Client) -> None:
    df = pd.DataFrame({"photo": ["https://example.com/a.png", "https://example.com/b.png"]})
    report = run_batch("Describe {photo:image}", df, client=client, model=MODEL, dry_run=True).dry_run
    assert report is not None and report.uncounted_media == 2 and report.image_tokens == 0
    assert "2 URL or unread PDFs not counted" in str(report)
    prompt = plan_prompts("Describe {photo:image}", df, model=MODEL).prompts[0]
    assert isinstance(prompt, MediaPrompt)
    assert _media.request_content(prompt, MODEL)[0]["content"][1]["source"] == {
        "type": "url", "url": "https://example.com/a.png"}


def test_a_plan_without_media_is_strings_as_before() -> None:
    df = pd.DataFrame({"review": ["good", "bad"], "n": [1, 2]})
    assert plan_prompts("{review} {n}", df).prompts == ["good 1", "bad 2"]


# -- %claude_batch ---------------------------------------------------------------------------------------


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claude_emulator: Any) -> Iterator[Any]:
    with loaded_shell(monkeypatch, tmp_path / "cache", "df", "_claude_batch") as shell:
        configure(shell, base_url=claude_emulator.url, api_key=KEY, model=MODEL, max_tokens=16,
                  display="handle")
        yield shell


def test_the_magic_describes_a_column_of_photos_into_a_column(ip: Any) -> None:
    ip.user_ns["df"] = pd.DataFrame({"photo": [picture(40), picture(64)], "sku": ["x1", "x2"]})
    run(ip, '%claude_batch df.photo "Describe {photo}" -o df.caption')
    captions = ip.user_ns["df"]["caption"]
    assert captions[0].startswith("[image 40x30 png]") and captions[1].startswith("[image 64x30 png]")


def test_a_budget_counts_an_images_tokens_in_the_worst_case() -> None:
    from claude_magic.batch._live import _Budget
    from claude_magic.pricing import price_for

    price = price_for(MODEL)
    assert price is not None
    budget = _Budget(1.0, price, max_tokens=10, batch=False)
    df = pd.DataFrame({"photo": [picture(640, 480)]})
    (prompt,) = plan_prompts("Describe {photo}", df, model=MODEL).prompts
    assert isinstance(prompt, MediaPrompt)
    extra = budget.worst_case(prompt) - budget.worst_case("Describe ")
    assert extra == pytest.approx(image_tokens(640, 480) * price.input / 1e6)


def test_a_column_of_matplotlib_figures_is_sent_as_images(emu: Emulator, client: Client) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figures = []
    for n in (2, 3):
        fig = Figure(figsize=(2, 1), dpi=50)
        fig.add_subplot().plot(range(n))
        figures.append(fig)
    result = run_batch("What does {fig} show?", pd.DataFrame({"fig": figures}), client=client, model=MODEL)
    assert result.errors.empty and result.series.str.match(r"\[image \d+x\d+ png\]").all()


def test_the_magics_dry_run_marks_the_pdf_estimate(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.user_ns["df"] = pd.DataFrame({"report": [pdf(2)], "photo": [picture(56, 56)]})
    run(ip, '%claude_batch df "Compare {photo} with {report}" --dry-run')
    outputs = ip.display_pub.outputs
    shown = capsys.readouterr().out + (str(outputs[-1]["data"].get("text/plain", "")) if outputs else "")
    assert f"images {image_tokens(56, 56):,} tokens (exact)" in shown
    assert "tokens (estimate)" in shown


def test_content_many_requests_hold_goes_up_once_and_is_referenced_by_file_id(
        emu: Emulator, client: Client, tmp_path: Path) -> None:
    logo, one_off = png(90), png(45)
    frame = pd.DataFrame({"logo": [logo] * 30 + [one_off], "q": [f"question {i}" for i in range(31)]})
    result = run_batch("{logo} {q}", frame, client=client, model=MODEL)
    assert result.series.str.startswith("[image").all()
    assert emu.files.uploads == 1  # the logo, once; the one-off image costs no upload
    sources = [tuple(b["source"]["type"] for b in content if b["type"] == "image") for content in sent(emu)]
    assert sorted(sources) == [("base64",)] + [("file",)] * 30
    # another run over the same logo, another client (a re-run tomorrow): referenced, not uploaded again
    from canary import TEST_KEY

    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "cache", max_tokens=16) as again:
        frame["q"] = [f"another question {i}" for i in range(31)]
        run_batch("{logo} {q}", frame, client=again, model=MODEL)
    assert emu.files.uploads == 1
