"""Figures, images and PDFs in ``%%claude``: placeholders that become content blocks in prompt order,
``--image``, client-side downscaling, the cache, and bad input in one line. A real IPython shell,
the emulator (whose answers say what they were shown), real Pillow images and a matplotlib figure."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from canary import TEST_KEY
from ipshell import configure, fails, loaded_shell, run

MODEL = "claude-haiku-5-5"


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claude_emulator: Any) -> Iterator[Any]:
    names = ("fig", "photo", "big", "path", "report", "shot", "notes", "plt")
    with loaded_shell(monkeypatch, tmp_path / "cache", *names) as shell:
        configure(shell, base_url=claude_emulator.url, api_key=TEST_KEY, model=MODEL, display="final")
        monkeypatch.chdir(tmp_path)
        yield shell


def png(size: tuple[int, int], color: str = "red") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def last_content(emu: Any) -> list[dict[str, Any]]:
    body = [r for r in emu.requests if r.path == "/v1/messages"][-1].json
    content = body["messages"][-1]["content"]
    assert isinstance(content, list)
    return content


def image_size(block: dict[str, Any]) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(block["source"]["data"]))).size


def test_a_figure_in_a_placeholder_is_sent_as_an_image_between_the_text_around_it(
        ip: Any, claude_emulator: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 3), dpi=100)
    axes.plot([1, 2, 3], [3, 1, 2])
    ip.user_ns["fig"] = figure
    run(ip, "%%claude\nWhat does {fig} show? Answer briefly.")
    plt.close(figure)
    content = last_content(claude_emulator)
    assert [b["type"] for b in content] == ["text", "image", "text"]
    assert content[0]["text"] == "What does " and content[2]["text"] == " show? Answer briefly."
    assert content[1]["source"]["media_type"] == "image/png"
    width, height = image_size(content[1])
    reply = ip.user_ns["_claude"]
    assert f"[image {width}x{height} png]" in reply.text  # the emulator says what it was shown
    assert "matplotlib" not in str(content)  # a figure is pixels, not its repr


def test_a_string_is_text_unless_the_placeholder_names_a_kind(ip: Any, claude_emulator: Any,
                                                              tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(png((64, 48)))
    ip.user_ns["path"] = "photo.png"
    run(ip, "%%claude\nThe file is called {path}.")
    body = [r for r in claude_emulator.requests if r.path == "/v1/messages"][-1].json
    assert body["messages"][-1]["content"] == "The file is called photo.png."
    run(ip, "%%claude\nDescribe {path:image} in a word.")
    content = last_content(claude_emulator)
    assert [b["type"] for b in content] == ["text", "image", "text"] and image_size(content[1]) == (64, 48)


def test_image_option_takes_a_variable_first_then_a_file(ip: Any, claude_emulator: Any,
                                                          tmp_path: Path) -> None:
    (tmp_path / "shot").write_bytes(png((30, 20), "blue"))
    ip.user_ns["shot"] = png((40, 10), "green")  # a variable wins over a file of the same name
    ip.user_ns["photo"] = png((8, 8), "white")
    run(ip, "%%claude --image shot --image photo\nCompare the two.")
    content = last_content(claude_emulator)
    assert [b["type"] for b in content] == ["image", "image", "text"]
    assert image_size(content[0]) == (40, 10) and image_size(content[1]) == (8, 8)
    del ip.user_ns["shot"]
    run(ip, "%%claude --image shot\nWhat colour?")
    assert image_size(last_content(claude_emulator)[0]) == (30, 20)


def test_a_large_image_is_downscaled_before_it_is_sent_and_the_footer_says_what_went(
        ip: Any, claude_emulator: Any) -> None:
    from PIL import Image

    ip.user_ns["big"] = Image.new("RGB", (4000, 3000), "white")
    run(ip, "%%claude\nHow big is {big}?")
    from claude_magic.media import image_limits, image_tokens

    width, height = image_size(last_content(claude_emulator)[1])
    edge, tokens = image_limits(MODEL)  # a 5.x model: 2576 px and 4784 tokens
    assert max(width, height) <= edge and image_tokens(width, height) <= tokens < image_tokens(4000, 3000)
    assert abs(width / height - 4 / 3) < 0.01
    markdown = ip.display_pub.outputs[-1]["data"]["text/markdown"]
    assert f"sent image {width}×{height}" in markdown or f"sent image {width}x{height}" in markdown


def test_the_same_image_is_answered_from_the_cache_and_a_different_one_is_not(
        ip: Any, claude_emulator: Any) -> None:
    ip.user_ns["photo"] = png((32, 32), "red")
    run(ip, "%%claude\nWhat colour is {photo}?")
    assert not ip.user_ns["_claude"].cached
    ip.user_ns["photo"] = png((32, 32), "red")  # equal bytes, another object
    run(ip, "%%claude\nWhat colour is {photo}?")
    assert ip.user_ns["_claude"].cached
    ip.user_ns["photo"] = png((32, 32), "blue")
    run(ip, "%%claude\nWhat colour is {photo}?")
    assert not ip.user_ns["_claude"].cached


def test_a_pdf_is_sent_as_a_document(ip: Any, claude_emulator: Any) -> None:
    from PIL import Image

    buf = io.BytesIO()
    pages = [Image.new("RGB", (200, 260), "white") for _ in range(3)]
    pages[0].save(buf, format="PDF", save_all=True, append_images=pages[1:])
    ip.user_ns["report"] = buf.getvalue()
    run(ip, "%%claude\nSummarise {report}.")
    content = last_content(claude_emulator)
    assert content[1]["type"] == "document" and content[1]["source"]["media_type"] == "application/pdf"
    assert "[document pdf 3 pages]" in ip.user_ns["_claude"].text


@pytest.mark.parametrize(("cell", "message"), [
    ("%%claude --image nowhere\nhi", "--image nowhere: no variable or file named 'nowhere'"),
    ("%%claude --image notes\nhi", "--image notes: a list is not an image or a PDF"),
    ("%%claude\nLook at {path:image}", "{path:image}"),
    ("%%claude --chat\nWhat is {photo}?", "--chat does not take images or PDFs yet"),
])
def test_bad_media_input_is_one_line_and_sends_nothing(ip: Any, claude_emulator: Any, cell: str,
                                                       message: str) -> None:
    ip.user_ns["notes"] = ["not", "an", "image"]
    ip.user_ns["path"] = "missing.png"
    ip.user_ns["photo"] = png((8, 8))
    before = len(claude_emulator.requests)
    error = fails(ip, cell)
    assert message in str(error) and "\n" not in str(error)
    assert len(claude_emulator.requests) == before


def pdf(pages: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    images = [Image.new("RGB", (200, 260), "white") for _ in range(pages)]
    images[0].save(buf, format="PDF", save_all=True, append_images=images[1:])
    return buf.getvalue()


def sources(emu: Any) -> list[str]:
    return [b["source"]["type"] for b in last_content(emu) if b["type"] in ("image", "document")]


def test_a_pdf_asked_many_questions_is_uploaded_once_and_referenced_after(
        ip: Any, claude_emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.user_ns["report"] = pdf(2)
    run(ip, "%%claude\nSummarise {report}.")
    assert sources(claude_emulator) == ["base64"]  # a one-off costs no upload
    assert claude_emulator.files.uploads == 0
    for question in ("Who wrote {report}?", "When was {report} written?", "Who is {report} for?"):
        run(ip, f"%%claude\n{question}")
        assert sources(claude_emulator) == ["file"]
        assert "[document pdf 2 pages]" in ip.user_ns["_claude"].text
    assert claude_emulator.files.uploads == 1
    # the content decides the cache key, never how it went: the first question again is a hit
    run(ip, "%%claude\nSummarise {report}.")
    assert ip.user_ns["_claude"].cached
    capsys.readouterr()
    run(ip, "%claude_files")
    listed = capsys.readouterr().out
    assert listed.count("file_") == 1 and "application/pdf" in listed


def test_uploads_are_remembered_across_sessions_and_a_deleted_file_goes_up_again(
        ip: Any, claude_emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.user_ns["report"] = pdf(1)
    for question in ("One: {report}", "Two: {report}"):
        run(ip, f"%%claude\n{question}")
    [uploaded] = ip.find_cell_magic("claude").__self__.client.uploads.list()
    run(ip, "%config ClaudeMagics.max_tokens = 64")  # a new client, the same cache
    run(ip, "%%claude\nThree: {report}")
    assert sources(claude_emulator) == ["file"] and claude_emulator.files.uploads == 1
    assert last_content(claude_emulator)[1]["source"]["file_id"] == uploaded["id"]
    claude_emulator.files.delete(uploaded["id"])  # expired or deleted behind our back
    run(ip, "%config ClaudeMagics.max_tokens = 32")
    run(ip, "%%claude\nFour: {report}")
    assert sources(claude_emulator) == ["file"] and claude_emulator.files.uploads == 2
    assert last_content(claude_emulator)[1]["source"]["file_id"] != uploaded["id"]
    capsys.readouterr()
    run(ip, "%claude_files clear")
    assert "deleted 1 uploaded files" in capsys.readouterr().out
    assert len(claude_emulator.files) == 0


def test_a_request_over_32_mb_is_refused_before_sending_naming_the_biggest(
        ip: Any, claude_emulator: Any) -> None:
    def big_pdf(megabytes: int) -> bytes:
        return b"%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n" + b"0" * (megabytes * 2**20) + b"\n%%EOF\n"

    ip.user_ns.update(a=big_pdf(9), b=big_pdf(10), c=big_pdf(8))
    before = len(claude_emulator.requests)
    error = fails(ip, "%%claude\nCompare {a}, {b} and {c}.")
    message = str(error)
    assert message.startswith("{b}, {a}, {c}: together the images and PDFs are 36.0 MB in base64")
    assert "32 MB" in message and "\n" not in message
    assert len(claude_emulator.requests) == before
    for name in "abc":
        ip.user_ns.pop(name)


# -- the Python API ----------------------------------------------------------------------------------------


@pytest.fixture
def values(tmp_path: Path) -> dict[str, Any]:
    """One value of each kind the API takes, with the label the emulator answers for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from IPython.display import Image as IPythonImage
    from PIL import Image

    figure, _ = plt.subplots(figsize=(2, 1), dpi=50)
    (tmp_path / "file.png").write_bytes(png((50, 40)))
    return {
        "figure": figure,
        "pil": Image.new("RGB", (60, 30), "blue"),
        "repr_png": IPythonImage(data=png((70, 20))),
        "bytes": png((80, 10)),
        "path": tmp_path / "file.png",
        "pdf bytes": pdf(2),
    }


@pytest.mark.parametrize("kind", ["figure", "pil", "repr_png", "bytes", "path", "pdf bytes"])
def test_the_python_api_takes_each_kind_of_value_as_a_prompt_part(
        client: Any, emu: Any, values: dict[str, Any], kind: str) -> None:
    reply = client.complete(["Here is one:", values[kind], "What is it?"], model=MODEL)
    content = last_content(emu)
    assert [b["type"] for b in content] == ["text", "document" if "pdf" in kind else "image", "text"]
    label = "[document pdf 2 pages]" if "pdf" in kind else "[image {}x{} png]".format(*image_size(content[1]))
    assert reply.text.startswith(label)
    again = client.complete(["Here is one:", values[kind], "What is it?"], model=MODEL)
    assert again.cached  # keyed by the content


def test_the_python_api_refuses_a_part_that_is_neither_text_nor_media(client: Any, emu: Any) -> None:
    from claude_magic.media import MediaError

    with pytest.raises(MediaError, match=r"^prompt part 1: a dict is neither text nor an image or PDF"):
        client.complete(["Look:", {"not": "media"}], model=MODEL)
    assert emu.requests == []


def test_a_cassette_replays_an_image_prompt_offline_by_its_content(emu: Any, tmp_path: Path) -> None:
    from PIL import Image

    from claude_magic.client import Client
    from claude_magic.errors import CacheMiss

    tape = tmp_path / "tape.jsonl"
    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "dev", cassette=tape,
                max_tokens=16) as recording:
        recorded = recording.complete(["Describe", Image.new("RGB", (64, 48), "red")], model=MODEL)
    sent_before = len(emu.requests)
    with Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "ci", cassette=tape, offline=True,
                max_tokens=16) as replaying:
        again = replaying.complete(["Describe", Image.new("RGB", (64, 48), "red")], model=MODEL)  # new object
        assert again.extra.get("replayed") and again.text == recorded.text  # from the tape, not sent
        with pytest.raises(CacheMiss):
            replaying.complete(["Describe", Image.new("RGB", (64, 48), "blue")], model=MODEL)
    assert len(emu.requests) == sent_before
