"""Notebook values as image and document blocks: what counts as media, sizes, tokens and refusals.
Images are made with Pillow in the test, PDFs by hand or by Pillow; nothing is downloaded."""

from __future__ import annotations

import base64
import builtins
import hashlib
import io
import math
import os
import pathlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from claude_magic import media
from claude_magic.errors import ConfigError
from claude_magic.media import Media, MediaError, as_media, describe, image_limits, image_tokens, is_media

OLD, NEW = "claude-sonnet-4-5", "claude-opus-4-7"  # 1568 px / 1568 tokens; 2576 px / 4784 tokens


def image_bytes(size: tuple[int, int], fmt: str = "PNG", color: Any = (200, 30, 30), **options: Any) -> bytes:
    buf = io.BytesIO()
    mode = "P" if fmt == "GIF" else "RGB"
    Image.new(mode, size, color if mode == "RGB" else 1).save(buf, format=fmt, **options)
    return buf.getvalue()


def pdf_bytes(pages: int, extra: bytes = b"") -> bytes:
    """A minimal PDF of ``pages`` empty pages, written by hand (no cross-reference table needed)."""
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects = [b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj",
               f"2 0 obj << /Type /Pages /Kids [{kids}] /Count {pages} >> endobj".encode()]
    objects += [f"{3 + i} 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj".encode()
                for i in range(pages)]
    return b"%PDF-1.4\n" + b"\n".join(objects) + b"\ntrailer << /Root 1 0 R " + extra + b">>\n%%EOF\n"


def opened(m: Media) -> Image.Image:
    assert m.data is not None
    return Image.open(io.BytesIO(m.data))


# -- which values are media ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, media_type", [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                              ("GIF", "image/gif"), ("WEBP", "image/webp")])
def test_image_bytes_of_every_supported_format_are_sent_as_they_came(fmt: str, media_type: str) -> None:
    data = image_bytes((64, 48), fmt)
    for value in (data, bytearray(data), memoryview(data)):
        m = as_media(value, where="{p}", model=OLD)
        assert m is not None and m.kind == "image" and m.media_type == media_type
        assert m.data == data and m.size == m.original_size == (64, 48)
        assert is_media(value)


def test_a_pdf_in_bytes_is_a_document_with_its_pages_counted() -> None:
    m = as_media(pdf_bytes(3), where="{r}", model=OLD)
    assert m is not None and m.kind == "document" and m.media_type == "application/pdf"
    assert m.pages == 3 and m.size is None and m.tokens() is None


def test_a_multi_page_pdf_written_by_pillow_is_counted() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (600, 800)).save(buf, format="PDF", save_all=True,
                                      append_images=[Image.new("RGB", (600, 800))] * 6)
    m = as_media(buf.getvalue(), where="{r}", model=OLD)
    assert m is not None and m.pages == 7


def test_a_page_rewritten_by_an_incremental_update_is_counted_once() -> None:
    update = b"\n3 0 obj << /Type /Page /Parent 2 0 R /Annots [] >> endobj\n"
    m = as_media(pdf_bytes(2) + update, where="{r}", model=OLD)
    assert m is not None and m.pages == 2


@pytest.mark.parametrize("value", [b"hello", b"", bytearray(b"plain text"), 3, 2.5, None, [1, 2], {"a": 1},
                                   object(), Image, Image.Image, ValueError("x")])
def test_other_values_and_bytes_without_a_signature_stay_text(value: Any) -> None:
    assert as_media(value, where="{x}", model=OLD) is None
    assert not is_media(value)


def test_a_string_is_text_without_a_kind_even_when_it_names_an_image_file(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(image_bytes((10, 10)))
    for text in (str(path), "https://example.com/photo.png", "a photo"):
        assert as_media(text, where="{x}", model=OLD) is None
        assert not is_media(text)


def test_a_string_with_a_kind_is_a_path(tmp_path: Path) -> None:
    data = image_bytes((30, 20))
    (tmp_path / "photo.png").write_bytes(data)
    (tmp_path / "report.pdf").write_bytes(pdf_bytes(2))
    photo = as_media(f"  {tmp_path / 'photo.png'}\n", kind="image", where="{photo:image}", model=OLD)
    report = as_media(str(tmp_path / "report.pdf"), kind="pdf", where="{report:pdf}", model=OLD)
    assert photo is not None and photo.data == data
    assert report is not None and report.pages == 2


def test_a_tilde_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "p.gif").write_bytes(image_bytes((5, 5), "GIF"))
    m = as_media("~/p.gif", kind="image", where="{p:image}", model=OLD)
    assert m is not None and m.media_type == "image/gif"


@pytest.mark.parametrize("kind, block_type", [("image", "image"), ("pdf", "document")])
def test_a_url_with_a_kind_is_a_url_source_nothing_downloaded(kind: str, block_type: str) -> None:
    url = "https://example.com/files/thing?sig=SECRET123"
    m = as_media(url, kind=kind, where="{x}", model=OLD)
    assert m is not None and m.kind == block_type and m.data is None and m.url == url
    assert m.tokens() is None and m.token_range() is None and m.size is None
    assert m.block() == {"type": block_type, "source": {"type": "url", "url": url}}
    assert m.sha256 == hashlib.sha256(url.encode()).hexdigest()
    line = describe(m)
    assert "tokens unknown" in line and "example.com/files/thing" in line and "SECRET123" not in line


def test_a_path_is_read_and_sniffed_by_content_not_by_name(tmp_path: Path) -> None:
    misnamed = tmp_path / "plot.txt"
    misnamed.write_bytes(image_bytes((20, 20)))
    notes = tmp_path / "notes.png"
    notes.write_text("not an image at all")
    m = as_media(misnamed, where="{p}", model=OLD)
    assert m is not None and m.media_type == "image/png"
    assert as_media(notes, where="{p}", model=OLD) is None
    with pytest.raises(MediaError, match="not an image .no PNG, JPEG, GIF, WebP or PDF signature"):
        as_media(notes, kind="image", where="{p:image}", model=OLD)


def test_a_path_that_is_not_media_stays_text_and_a_missing_image_is_an_error(tmp_path: Path) -> None:
    assert as_media(tmp_path, where="{d}", model=OLD) is None  # a directory
    assert as_media(tmp_path / "out" / "report.md", where="{p}", model=OLD) is None  # not written yet
    with pytest.raises(MediaError, match=r"^\{p\}: cannot read .*missing\.png: No such file"):
        as_media(tmp_path / "missing.png", where="{p}", model=OLD)
    with pytest.raises(MediaError, match=r"^\{p:image\}: cannot read"):
        as_media(str(tmp_path / "missing"), kind="image", where="{p:image}", model=OLD)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_image_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.jpg"
    path.write_bytes(image_bytes((8, 8), "JPEG"))
    path.chmod(0)
    with pytest.raises(MediaError, match=r"^\{p\}: cannot read .*locked\.jpg: Permission denied$"):
        as_media(path, where="{p}", model=OLD)


def test_an_object_shaped_like_a_pil_image_is_saved_as_png() -> None:
    class LooksLikePil:
        size, mode = (20, 10), "RGB"

        def save(self, fp: Any, format: str) -> None:
            Image.new("RGB", self.size).save(fp, format=format)

    m = as_media(LooksLikePil(), where="{x}", model=OLD)
    assert m is not None and m.media_type == "image/png" and m.size == (20, 10)


def test_a_pil_image_is_sent_as_png_or_as_jpeg_when_it_was_read_from_one() -> None:
    drawn = Image.new("RGBA", (40, 30), (0, 0, 255, 128))
    m = as_media(drawn, where="{img}", model=OLD)
    assert m is not None and m.media_type == "image/png" and opened(m).mode == "RGBA"
    photo = Image.open(io.BytesIO(image_bytes((40, 30), "JPEG")))
    m = as_media(photo, where="{img}", model=OLD)
    assert m is not None and m.media_type == "image/jpeg" and m.size == (40, 30)
    assert is_media(drawn) and is_media(photo)


def test_a_large_pil_image_is_downscaled_before_encoding() -> None:
    m = as_media(Image.new("L", (5000, 2500), 128), where="{img}", model=OLD)
    assert m is not None and m.original_size == (5000, 2500) and opened(m).size == m.size
    assert max(m.size or ()) <= 1568 and (m.tokens() or 0) <= 1568


def test_a_matplotlib_figure_becomes_a_png() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.plot([1, 2, 3], [3, 1, 2])
    try:
        assert is_media(fig) and not is_media(ax)
        m = as_media(fig, where="{fig}", model=OLD)
        assert m is not None and m.media_type == "image/png" and m.data is not None
        assert 200 < opened(m).width <= 400  # bbox_inches="tight" trims the margins
        assert as_media(ax, where="{ax}", model=OLD) is None
    finally:
        plt.close(fig)


class FakeFigure:
    """Anything with ``savefig`` and ``canvas`` is drawn as a figure: matplotlib is never imported."""

    canvas = object()

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def savefig(self, fp: Any, **options: Any) -> None:
        self.calls.append(options)
        fp.write(image_bytes((50, 40)))


def test_a_figure_is_recognised_by_its_shape_and_saved_tight() -> None:
    fig = FakeFigure()
    m = as_media(fig, where="{fig}", model=OLD)
    assert m is not None and m.size == (50, 40)
    assert fig.calls == [{"format": "png", "bbox_inches": "tight"}]


def test_a_grid_around_a_figure_is_drawn_through_its_own_savefig() -> None:
    class Grid:
        def __init__(self) -> None:
            self.figure = FakeFigure()

        def savefig(self, fp: Any, **options: Any) -> None:
            self.figure.savefig(fp, **options)

    assert as_media(Grid(), where="{g}", model=OLD) is not None


def test_objects_with_an_image_repr_are_images() -> None:
    class PngRepr:
        def _repr_png_(self) -> bytes:
            return image_bytes((12, 12))

    class JpegRepr:
        def _repr_png_(self) -> None:
            return None

        def _repr_jpeg_(self) -> tuple[str, dict[str, Any]]:  # base64 text and metadata, both allowed
            return base64.b64encode(image_bytes((9, 9), "JPEG")).decode(), {}

    class Disabled:  # sympy's expressions: a repr that declines
        def _repr_png_(self) -> None:
            return None

    assert (as_media(PngRepr(), where="{x}", model=OLD) or pytest.fail()).media_type == "image/png"
    assert (as_media(JpegRepr(), where="{x}", model=OLD) or pytest.fail()).media_type == "image/jpeg"
    assert as_media(Disabled(), where="{x}", model=OLD) is None
    with pytest.raises(MediaError, match=r"^\{x:image\}: a Disabled is not an image or a PDF"):
        as_media(Disabled(), kind="image", where="{x:image}", model=OLD)


def test_ipython_image_objects_with_data_or_a_url() -> None:
    display = pytest.importorskip("IPython.display")
    data = image_bytes((16, 16))
    m = as_media(display.Image(data=data), where="{x}", model=OLD)
    assert m is not None and m.data == data
    m = as_media(display.Image(url="https://example.com/a.png"), where="{x}", model=OLD)
    assert m is not None and m.url == "https://example.com/a.png" and m.data is None


def test_a_failing_render_is_one_line_naming_the_placeholder() -> None:
    class Broken:
        canvas = None

        def savefig(self, fp: Any, **options: Any) -> None:
            raise RuntimeError("no renderer\nfor this\nbackend")

    class Odd:  # attribute probes that raise are not media
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(name)

    fig = Broken()
    fig.canvas = object()
    with pytest.raises(MediaError) as err:
        as_media(fig, where="row 4 (chart)", model=OLD)
    assert str(err.value) == ("row 4 (chart): could not render the Broken as an image "
                              "(RuntimeError: no renderer for this backend)")
    assert as_media(Odd(), where="{o}", model=OLD) is None and not is_media(Odd())


def test_importing_the_module_imports_neither_pillow_nor_matplotlib() -> None:
    code = ("import sys, claude_magic, claude_magic.media as m; "
            "assert m.is_media(b'\\x89PNG\\r\\n\\x1a\\n'); "
            "assert m.as_media('x', where='{x}', model='m') is None; "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('PIL', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_is_media_never_reads_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a file was opened")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(io, "open", refuse)
    monkeypatch.setattr(pathlib.Path, "open", refuse)
    monkeypatch.setattr(pathlib.Path, "read_bytes", refuse)
    assert is_media(tmp_path / "anything.bin")  # a path is a candidate: as_media reads to decide
    assert is_media(FakeFigure()) and not is_media("photo.png")


# -- model limits, tokens, downscaling ---------------------------------------------------------------

@pytest.mark.parametrize("model, limits", [
    ("claude-opus-4-7", (2576, 4784)), ("claude-opus-4-8", (2576, 4784)), ("claude-sonnet-5-5", (2576, 4784)),
    ("claude-haiku-5-5", (2576, 4784)), ("claude-opus-5", (2576, 4784)), ("claude-fable-5-2", (2576, 4784)),
    ("claude-mythos-preview", (2576, 4784)), ("claude-opus-4-6", (1568, 1568)),
    ("claude-sonnet-4-6", (1568, 1568)), ("claude-sonnet-4-5-20250929", (1568, 1568)),
    ("claude-haiku-4-5", (1568, 1568)), ("claude-sonnet-4-20250514", (1568, 1568)),
    ("claude-3-5-sonnet-20241022", (1568, 1568)), ("claude-3-opus-20240229", (1568, 1568)),
])
def test_image_limits_follow_the_model_version(model: str, limits: tuple[int, int]) -> None:
    assert image_limits(model) == limits
    assert image_limits(model, many_images=True) == (min(limits[0], 2000), limits[1])


@pytest.mark.parametrize("size, tokens", [((28, 28), 1), ((29, 28), 2), ((1, 1), 1), ((1456, 819), 1560),
                                          ((1920, 1080), 2691), ((1000, 1000), 1296)])
def test_the_token_formula(size: tuple[int, int], tokens: int) -> None:
    assert image_tokens(*size) == tokens


def test_the_documented_example_1920_by_1080() -> None:
    data = image_bytes((1920, 1080))
    old = as_media(data, where="{p}", model=OLD)
    new = as_media(data, where="{p}", model=NEW)
    assert old is not None and old.size == opened(old).size == (1456, 819) and old.tokens() == 1560
    assert new is not None and new.size == (1920, 1080) and new.tokens() == 2691 and new.data == data
    assert describe(old) == "image 1456×819 PNG, 1,560 tokens (downscaled from 1920×1080)"
    assert describe(new) == "image 1920×1080 PNG, 2,691 tokens"


@pytest.mark.parametrize("model, many", [(OLD, False), (NEW, False), (NEW, True), (OLD, True)])
@pytest.mark.parametrize("size", [(4000, 3000), (3000, 4000), (6000, 500), (2600, 2600), (1700, 1700)])
def test_downscaling_keeps_the_aspect_and_meets_both_limits(model: str, many: bool,
                                                            size: tuple[int, int]) -> None:
    edge, budget = image_limits(model, many)
    m = as_media(image_bytes(size), where="{p}", model=model, many_images=many)
    assert m is not None and m.size is not None and m.original_size == size
    w, h = m.size
    assert max(w, h) <= edge and image_tokens(w, h) <= budget and opened(m).size == (w, h)
    assert math.isclose(w / h, size[0] / size[1], rel_tol=0.01)
    if m.size != size:  # and no smaller than it must be: one 28-px step more would break a limit
        bigger = (w + 28, round((w + 28) * size[1] / size[0]))
        assert max(bigger) > edge or image_tokens(*bigger) > budget


def test_the_many_image_rule_downscales_what_a_single_image_keeps() -> None:
    data = image_bytes((2400, 1200))
    alone = as_media(data, where="{p}", model=NEW)
    many = as_media(data, where="{p}", model=NEW, many_images=True)
    assert alone is not None and alone.data == data
    assert many is not None and many.size == (2000, 1000)


@pytest.mark.parametrize("fmt, sent", [("PNG", "PNG"), ("JPEG", "JPEG"), ("WEBP", "WEBP"), ("GIF", "PNG")])
def test_a_downscaled_image_keeps_a_sensible_format(fmt: str, sent: str) -> None:
    m = as_media(image_bytes((3200, 1600), fmt), where="{p}", model=OLD)
    assert m is not None and m.size == (1568, 784) and opened(m).format == sent
    assert m.media_type == f"image/{sent.lower()}"


def test_a_lossless_webp_stays_lossless_when_downscaled() -> None:
    m = as_media(image_bytes((3200, 1600), "WEBP", lossless=True), where="{p}", model=OLD)
    assert m is not None and m.data is not None and b"VP8L" in m.data[:64]
    assert opened(m).getpixel((10, 10)) == (200, 30, 30)


def test_a_gif_is_sent_as_its_first_frame() -> None:
    frames = [Image.new("RGB", (2000, 200), color) for color in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    small = io.BytesIO()
    frames[0].resize((200, 20)).save(small, format="GIF", save_all=True,
                                     append_images=[frames[1].resize((200, 20))])
    m = as_media(buf.getvalue(), where="{g}", model=OLD)
    assert m is not None and m.media_type == "image/png" and m.size == (1568, 157)
    image = opened(m).convert("RGB")
    assert image.getpixel((700, 80)) == (255, 0, 0) and getattr(image, "n_frames", 1) == 1
    within = as_media(small.getvalue(), where="{g}", model=OLD)  # within limits: as it came
    assert within is not None and within.data == small.getvalue()


def test_a_downscaled_jpeg_is_turned_by_its_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    data = image_bytes((3000, 1000), "JPEG", exif=exif.tobytes())
    m = as_media(data, where="{p}", model=OLD)
    assert m is not None and m.size is not None and m.size[1] > m.size[0] and opened(m).size == m.size


def test_an_image_within_limits_is_byte_identical_and_its_hash_is_of_the_bytes() -> None:
    data = image_bytes((800, 600), "JPEG", quality=75)
    first = as_media(data, where="{p}", model=OLD)
    again = as_media(bytearray(data), where="row 2 (p)", model=OLD)
    assert first is not None and again is not None and first.data == again.data == data
    assert first.sha256 == again.sha256 == hashlib.sha256(data).hexdigest()


def test_downscaling_is_deterministic() -> None:
    data = image_bytes((3000, 2000))
    a, b = (as_media(data, where="{p}", model=OLD) for _ in range(2))
    assert a is not None and b is not None and a.sha256 == b.sha256


# -- blocks, descriptions, estimates -------------------------------------------------------------------

def test_blocks_carry_base64_or_a_file_id_and_cache_control() -> None:
    data = image_bytes((10, 10))
    m = as_media(data, where="{p}", model=OLD)
    assert m is not None
    assert m.block() == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                     "data": base64.b64encode(data).decode()}}
    mark = {"type": "ephemeral"}
    assert m.block(file_id="file_011abc", cache_control=mark) == {
        "type": "image", "source": {"type": "file", "file_id": "file_011abc"}, "cache_control": mark}
    pdf = as_media(pdf_bytes(1), where="{r}", model=OLD)
    assert pdf is not None and pdf.block()["source"]["media_type"] == "application/pdf"
    assert pdf.block()["type"] == "document"


def test_a_pdf_too_big_to_send_inline_asks_for_the_files_api() -> None:
    pdf = as_media(pdf_bytes(1) + b"%" * (25 * 2**20), where="{r}", model=OLD)
    assert pdf is not None and pdf.block(file_id="file_1")["source"]["type"] == "file"
    with pytest.raises(MediaError, match=r"^\{r\}: the PDF is 25\.0 MB, too big to send inline .*Files API$"):
        pdf.block()


def test_pdf_tokens_are_a_marked_estimate_from_the_pages() -> None:
    page_old = image_tokens(*media._fit(media._LETTER, image_limits(OLD)))
    page_new = image_tokens(*media._fit(media._LETTER, image_limits(NEW)))
    assert 1400 < page_old <= 1568 and 4500 < page_new <= 4784
    m = as_media(pdf_bytes(3), where="{r}", model=OLD)
    assert m is not None and m.token_range() == (3 * (1500 + page_old), 3 * (3000 + page_old))
    low, high = 3 * (1500 + page_old), 3 * (3000 + page_old)
    assert describe(m) == f"PDF, 3 pages, 1 KB, ~{low:,}–{high:,} tokens (estimate)"
    new = as_media(pdf_bytes(1), where="{r}", model=NEW)
    assert new is not None and new.token_range() == (1500 + page_new, 3000 + page_new)
    assert "1 page," in describe(new)


def test_a_pdf_whose_pages_cannot_be_counted_says_so() -> None:
    m = as_media(b"%PDF-1.7\n1 0 obj << /Type /ObjStm /N 40 >> stream\nx\nendstream endobj\n", where="{r}",
                 model=OLD)
    assert m is not None and m.pages is None and m.token_range() is None
    assert describe(m) == "PDF, 1 KB, pages unknown (tokens unknown until sent)"


def test_an_image_token_range_is_exact() -> None:
    m = as_media(image_bytes((100, 50)), where="{p}", model=OLD)
    assert m is not None and m.token_range() == (8, 8) and m.tokens() == 8


def test_the_repr_leaves_out_the_bytes() -> None:
    m = as_media(image_bytes((100, 50)), where="{p}", model=OLD)
    assert "data=" not in repr(m) and "size=(100, 50)" in repr(m)


# -- refusals: one line, naming the placeholder or row ------------------------------------------------

def tiff() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    return buf.getvalue()


def bmp() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="BMP")
    return buf.getvalue()


REFUSALS: list[tuple[str, Any, dict[str, Any], str]] = [
    ("tiff", tiff(), {}, r"TIFF images are not supported .*PIL\.Image\.open"),
    ("bmp", bmp(), {}, r"BMP images are not supported .*Pillow"),
    ("heic", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 20, {}, "HEIC images are not supported"),
    ("encrypted", pdf_bytes(1, b"/Encrypt 9 0 R "), {}, "the PDF is encrypted .*qpdf --decrypt"),
    ("too many pages", pdf_bytes(601), {}, "the PDF has 601 pages, over the limit of 600"),
    ("100-page limit", pdf_bytes(101), {"max_pages": 100}, "the PDF has 101 pages, over the limit of 100"),
    ("huge pdf", pdf_bytes(1) + b"0" * (32 * 2**20), {}, r"the PDF is 32\.0 MB, over the API's 32 MB"),
    ("pdf as image", pdf_bytes(1), {"kind": "image"}, r"not an image \(a PDF; use :pdf\)"),
    ("image as pdf", image_bytes((4, 4)), {"kind": "pdf"}, r"not a PDF \(a PNG image; use :image\)"),
    ("not media", b"just text", {"kind": "image"}, r"not an image \(no PNG, JPEG, GIF, WebP or PDF signa"),
    ("a list", [1, 2], {"kind": "pdf"}, "a list is not an image or a PDF; pass a path, a URL"),
    ("bad kind", b"", {"kind": "video"}, "unknown kind :video; use :image or :pdf"),
    ("corrupt png", image_bytes((40, 40))[:30], {}, "cannot read this PNG image"),
    ("url without host", "https:///x.png", {"kind": "image"}, "is not a URL with a host"),
]


@pytest.mark.parametrize("name, value, options, message", REFUSALS, ids=[r[0] for r in REFUSALS])
@pytest.mark.parametrize("where", ["{photo}", "row 17 (photo)"])
def test_every_refusal_is_one_line_naming_where(name: str, value: Any, options: dict[str, Any], message: str,
                                                where: str) -> None:
    with pytest.raises(MediaError) as err:
        as_media(value, where=where, model=OLD, **options)
    text = str(err.value)
    assert text.startswith(f"{where}: ") and "\n" not in text and isinstance(err.value, ConfigError)
    assert re.search(message, text), text


def test_unsupported_formats_in_files_are_refused_whatever_their_name(tmp_path: Path) -> None:
    path = tmp_path / "scan.dat"
    path.write_bytes(tiff())
    with pytest.raises(MediaError, match=r"^\{scan\}: TIFF images are not supported"):
        as_media(path, where="{scan}", model=OLD)
    assert is_media(tiff()) and is_media(bmp())


def test_an_image_still_too_big_after_downscaling_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = image_bytes((3000, 3000))
    monkeypatch.setattr(media, "MAX_IMAGE_BASE64", 1000)
    with pytest.raises(MediaError, match=r"^\{p\}: the image is .* in base64 even at 1092×1092, over the "
                                         r"API's 10 MB; save it as JPEG \(or at a lower quality\)$"):
        as_media(data, where="{p}", model=OLD)


def test_an_image_within_limits_but_over_the_byte_limit_is_re_encoded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [Image.new("RGB", (300, 300), (i * 20, 0, 0)) for i in range(12)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    monkeypatch.setattr(media, "MAX_IMAGE_BASE64", len(buf.getvalue()))  # the first frame alone fits
    m = as_media(buf.getvalue(), where="{g}", model=OLD)
    assert m is not None and m.media_type == "image/png" and m.size == (300, 300)


def test_a_secret_in_a_message_is_scrubbed() -> None:
    from claude_magic import _secrets

    secret = _secrets.Secret("sk-ant-api03-abcdefghijklmnop")  # registered, so scrubbed, while alive
    with pytest.raises(MediaError) as err:
        as_media(b"x", kind="image", where=f"{{{secret.reveal()}}}", model=OLD)
    assert "abcdefghijklmnop" not in str(err.value)


def test_a_screenshot_whose_smaller_copy_comes_out_bigger_is_sent_as_it_came() -> None:
    from PIL import Image, ImageDraw

    shot = Image.new("RGB", (3000, 2000), "white")
    draw = ImageDraw.Draw(shot)
    for y in range(0, 2000, 14):  # black text on white: PNG packs it; resampled, its grey edges do not
        draw.text((10, y), "The quick brown fox jumps over the lazy dog 0123456789 " * 8, fill="black")
    buf = io.BytesIO()
    shot.save(buf, format="PNG", optimize=True)
    m = as_media(buf.getvalue(), where="{shot}", model=OLD)
    assert m is not None and m.data == buf.getvalue() and m.original_size == (3000, 2000)
    assert m.size == (1344, 896) and m.tokens() == 48 * 32  # what the API keeps of it, and bills
