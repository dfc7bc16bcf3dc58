"""Images, PDFs and the Files API in the emulator: answers that say what they were shown, the API's
token formulas, its 400/404/413s, and uploads, on the wire with plain httpx and through the official
SDK.

Images are drawn with Pillow and PDFs written by hand (a few hundred bytes for N pages), so no binary
fixture is committed.
"""

from __future__ import annotations

import base64
import io
import json
import math
import socket

import anthropic
import httpx
import pytest
from PIL import Image

from claude_magic.emulator import Emulator, files, media, tokens
from claude_magic.emulator.models import MODEL_LIST

HEADERS = {"x-api-key": "sk-test", "anthropic-version": "2026-10-21"}
OLD_MODEL = "claude-sonnet-4-6"  # standard image limits, 1M context, no thinking
NEW_MODEL = "claude-opus-4-7"  # high-resolution image limits
SMALL_MODEL = "claude-haiku-4-5"  # 200k context: 100 images and PDF pages
PREFILL_MODEL = "claude-sonnet-4-5"  # continues a final assistant turn
PAGE = media.PDF_PAGE_TEXT_TOKENS + 1140  # a US Letter page at 96 dpi is 30 x 38 patches
MB = 1024 * 1024


@pytest.fixture(scope="module")
def _clients(_claude_emulator_server: Emulator):
    url = _claude_emulator_server.url
    with (
        httpx.Client(base_url=url, headers=HEADERS, timeout=30) as http,
        anthropic.Anthropic(api_key="test", base_url=url, max_retries=0) as sdk,
    ):
        yield http, sdk


@pytest.fixture
def http(emu: Emulator, _clients) -> httpx.Client:
    return _clients[0]


@pytest.fixture
def sdk(emu: Emulator, _clients) -> anthropic.Anthropic:
    return _clients[1]


# -- builders -----------------------------------------------------------------------------------------

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP"}


def picture(width: int, height: int, kind: str = "png") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buf, format=PIL_FORMATS[kind])
    return buf.getvalue()


def pdf(pages: int, *, encrypted: bool = False) -> bytes:
    """A minimal valid PDF of ``pages`` blank US Letter pages (``encrypted``: with an /Encrypt entry)."""
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>"]
    objects += ["<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"] * pages
    out = b"%PDF-1.4\n"
    offsets = []
    for n, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{obj}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    encrypt = " /Encrypt << /Filter /Standard /V 1 /R 2 >>" if encrypted else ""
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{encrypt} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image(data: bytes, media_type: str = "image/png") -> dict:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": b64(data)}}


def document(data: bytes, **extra) -> dict:
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": b64(data)},
        **extra,
    }


def by_file(kind: str, file_id: str) -> dict:
    return {"type": kind, "source": {"type": "file", "file_id": file_id}}


def ask(*blocks: dict, model: str = OLD_MODEL, question: str = "What is shown?", **extra) -> dict:
    return {
        "model": model,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": [*blocks, {"type": "text", "text": question}]}],
        **extra,
    }


def create(http: httpx.Client, payload: dict) -> dict:
    response = http.post("/v1/messages", json=payload)
    assert response.status_code == 200, response.text
    return response.json()


def text_of(message: dict) -> str:
    return "".join(b["text"] for b in message["content"] if b["type"] == "text")


def counted(http: httpx.Client, payload: dict) -> int:
    payload = {k: v for k, v in payload.items() if k != "max_tokens"}
    response = http.post("/v1/messages/count_tokens", json=payload)
    assert response.status_code == 200, response.text
    return response.json()["input_tokens"]


def error_of(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    return body["error"]["message"]


def media_tokens(http: httpx.Client, *blocks: dict, model: str = OLD_MODEL) -> int:
    """Input tokens the blocks add to a one-question prompt, as the Messages usage reports them."""
    with_media = create(http, ask(*blocks, model=model))["usage"]["input_tokens"]
    without = create(http, ask(model=model))["usage"]["input_tokens"]
    return with_media - without


def upload(http: httpx.Client, name: str, data: bytes, content_type: str | None = None, **fields) -> dict:
    part = (name, data, content_type) if content_type else (name, data)
    response = http.post("/v1/files", files={"file": part}, data={k: str(v) for k, v in fields.items()})
    assert response.status_code == 200, response.text
    return response.json()


# -- images -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["png", "jpeg", "gif", "webp"])
def test_an_image_is_answered_with_its_size_and_billed_by_the_formula(http, kind):
    block = image(picture(640, 480, kind), f"image/{kind}")
    message = create(http, ask(block))
    assert text_of(message).startswith(f"[image 640x480 {kind}]\n\n")
    assert media_tokens(http, block) == math.ceil(640 / 28) * math.ceil(480 / 28) == 414
    assert counted(http, ask(block)) == message["usage"]["input_tokens"]


@pytest.mark.parametrize(
    ("size", "model", "expected"),
    [
        ((1920, 1080), OLD_MODEL, 1560),  # the docs' example: shrunk to 1456x819
        ((1080, 1920), OLD_MODEL, 1560),  # portrait: the same, turned
        ((1920, 1080), NEW_MODEL, 2691),  # within 2576 px and 4784 tokens: 69 x 39, unscaled
        ((1920, 1080), "claude-opus-5-5", 2691),
        ((4000, 4000), OLD_MODEL, 1521),  # 39 x 39 patches: 1092 px a side
        ((4000, 4000), NEW_MODEL, 4761),  # 69 x 69 patches: 1932 px a side
        ((28, 28), OLD_MODEL, 1),
        ((29, 29), OLD_MODEL, 4),  # padded up to 56 x 56
        ((7999, 10), OLD_MODEL, 56),  # the long edge to 1568: 56 patches by one
    ],
)
def test_image_tokens_follow_the_api_downscale_and_patch_formula(http, size, model, expected):
    assert media_tokens(http, image(picture(*size)), model=model) == expected


def test_the_newer_image_limits_start_with_opus_4_7():
    high = {m.id for m in MODEL_LIST if media.image_limits(m) == media.HIGH_RESOLUTION}
    five = {m.id for m in MODEL_LIST if m.id.split("-")[2] == "5"}
    assert high == {"claude-opus-4-7", "claude-opus-4-8", "claude-mythos-preview"} | five
    assert media.scaled(1920, 1080, media.STANDARD) == (1456, 819)


def test_images_by_url_are_labelled_and_counted_as_the_largest_image_the_model_takes(http):
    block = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    assert text_of(create(http, ask(block))).startswith("[image url https://example.com/cat.jpg]\n\n")
    assert media_tokens(http, block) == 1568
    assert media_tokens(http, block, model=NEW_MODEL) == 4784


def test_labels_come_in_the_order_of_the_blocks_across_turns(http):
    payload = {
        "model": OLD_MODEL,
        "max_tokens": 400,
        "messages": [
            {
                "role": "user",
                "content": [image(picture(10, 20)), {"type": "text", "text": "and"}, document(pdf(2))],
            },
            {"role": "assistant", "content": "Noted."},
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "twelve chars"},
                    },
                    image(picture(30, 40, "gif"), "image/gif"),
                    {"type": "text", "text": "Compare them"},
                ],
            },
        ],
    }
    first = text_of(create(http, payload)).split("\n\n")[0]
    assert first == ("[image 10x20 png] [document pdf 2 pages] [document text 12 chars] [image 30x40 gif]")


def test_a_prompt_that_asks_for_an_exact_answer_gets_it_even_with_an_image(http):
    message = create(http, ask(image(picture(8, 8)), question="Reply with exactly: a square"))
    assert text_of(message) == "a square"


def test_a_stream_carries_the_labels_too(http):
    payload = {**ask(image(picture(64, 32))), "stream": True}
    with http.stream("POST", "/v1/messages", json=payload) as response:
        raw = response.read().decode()
    deltas = [
        json.loads(line[6:])["delta"].get("text", "")
        for line in raw.splitlines()
        if line.startswith("data: ") and '"content_block_delta"' in line
    ]
    assert "".join(deltas) == text_of(create(http, ask(image(picture(64, 32)))))
    assert "".join(deltas).startswith("[image 64x32 png]")


def test_a_prefill_continues_the_answer_across_its_labels(http):
    payload = ask(image(picture(12, 12)), model=PREFILL_MODEL)
    whole = text_of(create(http, payload))
    prefill = whole[:30].rstrip()
    payload["messages"].append({"role": "assistant", "content": prefill})
    assert prefill + text_of(create(http, payload)) == whole


def test_an_image_whose_header_cannot_be_read_passes_counted_as_an_image_by_url(http):
    signature_only = base64.b64decode("iVBORw0KGgo=")  # a PNG's eight signature bytes, nothing more
    assert text_of(create(http, ask(image(signature_only)))).startswith("[image png]\n\n")
    assert media_tokens(http, image(signature_only)) == 1568


# -- documents ----------------------------------------------------------------------------------------


def test_a_pdf_is_answered_with_its_pages_and_billed_per_page(http):
    message = create(http, ask(document(pdf(3))))
    assert text_of(message).startswith("[document pdf 3 pages]\n\n")
    assert media_tokens(http, document(pdf(3))) == 3 * PAGE
    assert media_tokens(http, document(pdf(1))) == PAGE
    assert counted(http, ask(document(pdf(3)))) == message["usage"]["input_tokens"]


def test_a_pdf_written_by_pillow_has_its_pages_counted(http):
    buf = io.BytesIO()
    pages = [Image.new("RGB", (200, 300), (i * 40, 0, 0)) for i in range(4)]
    pages[0].save(buf, format="PDF", save_all=True, append_images=pages[1:])
    assert text_of(create(http, ask(document(buf.getvalue())))).startswith("[document pdf 4 pages]")


def test_text_documents_count_their_text_title_and_context(http):
    notes = "Quarterly revenue rose 12% while costs fell."
    block = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": notes},
        "title": "Q3 notes",
        "context": "internal",
        "citations": {"enabled": True},
    }
    assert text_of(create(http, ask(block))).startswith(f"[document text {len(notes)} chars]\n\n")
    assert media_tokens(http, block) == tokens.count(notes) + tokens.count("Q3 notes") + tokens.count(
        "internal"
    )


def test_documents_by_url_and_of_content_blocks_are_labelled(http):
    url = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    content = {
        "type": "document",
        "source": {
            "type": "content",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
    }
    assert text_of(create(http, ask(url, content))).startswith(
        "[document url https://example.com/a.pdf] [document content 2 blocks]\n\n"
    )
    assert media_tokens(http, url) == PAGE


# -- validation ---------------------------------------------------------------------------------------

AT = "messages.0.content.0"
ALLOWED = "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"


def _source(kind: str, **source) -> dict:
    return {"type": kind, "source": source}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            _source("image", type="path", path="/tmp/a.png"),
            f"{AT}.source: Input tag 'path' found using 'type' does not match any of the expected tags: "
            "'base64', 'url', 'file'",
        ),
        (
            _source("document", type="image"),
            f"{AT}.source: Input tag 'image' found using 'type' does not match any of the expected tags: "
            "'base64', 'text', 'content', 'url', 'file'",
        ),
        (_source("image", media_type="image/png", data="AA=="), f"{AT}.source.type: Field required"),
        (_source("image", type="base64", data="AA=="), f"{AT}.source.media_type: Field required"),
        (_source("image", type="base64", media_type="image/png"), f"{AT}.source.data: Field required"),
        (
            _source("image", type="base64", media_type="image/png", data=7),
            f"{AT}.source.data: Input should be a valid string, got 7",
        ),
        (
            _source("image", type="base64", media_type="image/bmp", data="AA=="),
            f"{AT}.source.media_type: {ALLOWED}, got 'image/bmp'",
        ),
        (
            _source("document", type="base64", media_type="text/plain", data="AA=="),
            f"{AT}.source.media_type: Input should be 'application/pdf', got 'text/plain'",
        ),
        (
            _source("document", type="text", media_type="text/markdown", data="# hi"),
            f"{AT}.source.media_type: Input should be 'text/plain', got 'text/markdown'",
        ),
        (
            _source("image", type="base64", media_type="image/png", data="not base64!"),
            f"{AT}.source.data: Input should be valid base64 (the standard alphabet, padded, without line "
            "breaks); the data does not decode",
        ),
        (
            image(picture(4, 4, "jpeg"), "image/png"),
            f"{AT}.source.data: Image does not match the provided media type image/png",
        ),
        (
            image(b"GIF89a not really"),
            f"{AT}.source.data: Image does not match the provided media type image/png",
        ),
        (
            image(picture(8001, 1)),
            f"{AT}.source.data: At least one of the image dimensions exceed max allowed size: 8000 pixels",
        ),
        (
            image(picture(1, 8001, "gif"), "image/gif"),
            f"{AT}.source.data: At least one of the image dimensions exceed max allowed size: 8000 pixels",
        ),
        (
            _source("image", type="url", url="ftp://example.com/a.png"),
            f"{AT}.source.url: Input should be an http or https URL, got 'ftp://example.com/a.png'",
        ),
        (document(b"%PS-Adobe-3.0 not a pdf"), f"{AT}.source.data: The PDF specified was not valid."),
        (
            document(pdf(2, encrypted=True)),
            f"{AT}.source.data: The PDF specified is encrypted; remove its password protection and send it "
            "again",
        ),
        (document(pdf(1), title=["a"]), f"{AT}.title: Input should be a valid string, got ['a']"),
        (document(pdf(1), citations=True), f"{AT}.citations: Input should be a valid dictionary, got True"),
    ],
    ids=[
        "image source type",
        "document source type",
        "no source type",
        "no media_type",
        "no data",
        "data not a string",
        "image media type",
        "pdf media type",
        "text media type",
        "bad base64",
        "jpeg sent as png",
        "not an image",
        "too wide",
        "too tall",
        "url scheme",
        "not a pdf",
        "encrypted pdf",
        "title",
        "citations",
    ],
)
def test_a_bad_image_or_document_is_a_400_naming_where_it_is(http, block, message):
    assert error_of(http.post("/v1/messages", json=ask(block)), 400, "invalid_request_error") == message
    if block["source"].get("type") in ("base64", "text"):  # count_tokens checks them the same way
        payload = {k: v for k, v in ask(block).items() if k != "max_tokens"}
        assert (
            error_of(http.post("/v1/messages/count_tokens", json=payload), 400, "invalid_request_error")
            == message
        )


def test_an_image_over_10_mb_of_base64_is_refused(http):
    data = "A" * (10 * MB + 4)  # valid base64, refused for its size before it is decoded
    block = _source("image", type="base64", media_type="image/png", data=data)
    assert error_of(http.post("/v1/messages", json=ask(block)), 400, "invalid_request_error") == (
        f"{AT}.source: image exceeds 10 MB maximum: {len(data)} bytes > {10 * MB} bytes"
    )


def test_more_than_20_images_may_not_have_a_side_over_2000_pixels(http):
    small = image(picture(16, 16))
    big = image(picture(2001, 10))
    assert create(http, ask(big, *[small] * 19))  # twenty images: the 8000 px limit applies
    message = error_of(http.post("/v1/messages", json=ask(*[small] * 20, big)), 400, "invalid_request_error")
    assert message == (
        "messages.0.content.20.source.data: At least one of the image dimensions exceed max "
        "allowed size for many-image requests: 2000 pixels"
    )


def test_the_media_limit_is_100_on_small_context_models_and_600_on_1m_ones(http):
    tiny = image(picture(2, 2))
    assert create(http, ask(*[tiny] * 100, model=SMALL_MODEL))
    assert (
        error_of(
            http.post("/v1/messages", json=ask(*[tiny] * 101, model=SMALL_MODEL)),
            400,
            "invalid_request_error",
        )
        == "Too much media: 0 document pages + 101 images > 100"
    )
    assert create(http, ask(*[tiny] * 101, model=OLD_MODEL))
    assert (
        error_of(
            http.post("/v1/messages", json=ask(*[tiny] * 601, model=OLD_MODEL)), 400, "invalid_request_error"
        )
        == "Too much media: 0 document pages + 601 images > 600"
    )
    pages_and_images = ask(document(pdf(50)), *[tiny] * 51, model=SMALL_MODEL)
    assert error_of(http.post("/v1/messages", json=pages_and_images), 400, "invalid_request_error") == (
        "Too much media: 50 document pages + 51 images > 100"
    )


@pytest.mark.parametrize(("model", "limit"), [(SMALL_MODEL, 100), (OLD_MODEL, 600)])
def test_pdf_pages_are_limited_by_the_models_context(http, model, limit):
    message = error_of(
        http.post("/v1/messages", json=ask(document(pdf(limit + 1)), model=model)),
        400,
        "invalid_request_error",
    )
    assert message == f"{AT}.source.data: A maximum of {limit} PDF pages may be provided. Got {limit + 1}."
    two = ask(document(pdf(limit // 2)), document(pdf(limit // 2 + 1)), model=model)
    assert error_of(http.post("/v1/messages", json=two), 400, "invalid_request_error") == (
        f"messages.0.content.1.source.data: A maximum of {limit} PDF pages may be provided. Got {limit + 1}."
    )


def test_a_pdf_within_the_page_limit_can_still_be_too_long_for_the_context(http):
    message = error_of(
        http.post("/v1/messages", json=ask(document(pdf(100)), model=SMALL_MODEL)),
        400,
        "invalid_request_error",
    )
    assert message.startswith("prompt is too long: ") and message.endswith(" > 200000 maximum")


def test_count_tokens_refuses_url_and_file_sources(http):
    for block, kind in [
        (_source("image", type="url", url="https://example.com/a.png"), "url"),
        (by_file("document", "file_011abc"), "file"),
    ]:
        what = block["type"]
        payload = {k: v for k, v in ask(block).items() if k != "max_tokens"}
        assert error_of(
            http.post("/v1/messages/count_tokens", json=payload), 400, "invalid_request_error"
        ) == (
            f"{AT}.source.type: count_tokens does not accept {kind} sources; send the {what} as base64 to "
            "count its tokens"
        )


def raw_exchange(emu: Emulator, head: bytes) -> tuple[int, dict]:
    """Send only a request's head (no body) and read the answer."""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after a body it left unread
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize(
    ("path", "limit"),
    [("/v1/messages", 32 * MB), ("/v1/messages/count_tokens", 32 * MB), ("/v1/files", 500 * MB)],
)
def test_a_body_over_the_limit_is_a_413_answered_from_its_content_length(emu, path, limit):
    head = (
        f"POST {path} HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\nanthropic-version: 2026-10-21\r\n"
        f"content-type: application/json\r\ncontent-length: {limit + 1}\r\n\r\n"
    ).encode()
    status, body = raw_exchange(emu, head)  # the body is never sent: the answer cannot wait for it
    assert status == 413 and body["error"]["type"] == "request_too_large"
    assert (
        body["error"]["message"]
        == f"Request exceeds the maximum allowed number of bytes ({limit}) for {path}"
    )


# -- files --------------------------------------------------------------------------------------------


def test_an_upload_returns_the_file_object_and_is_counted(emu, http):
    data = picture(100, 50)
    obj = upload(http, "figure.png", data, "image/png")
    assert obj["id"].startswith("file_011") and obj["type"] == "file"
    assert (obj["filename"], obj["mime_type"], obj["size_bytes"]) == ("figure.png", "image/png", len(data))
    assert obj["downloadable"] is False and obj["expires_at"] is None
    assert obj["created_at"].endswith("Z")
    assert emu.files.uploads == 1 and len(emu.files) == 1
    recorded = [r for r in emu.requests if r.path == "/v1/files"][-1]
    assert recorded.json == {
        "file": {"filename": "figure.png", "content_type": "image/png", "size_bytes": len(data)}
    }  # the record keeps no file bytes
    emu.reset()
    assert emu.files.uploads == 0 and len(emu.files) == 0


@pytest.mark.parametrize(
    ("name", "data", "content_type", "filename", "mime"),
    [
        ("x.bin", picture(3, 3, "webp"), "application/octet-stream", "x.bin", "image/webp"),  # bytes win
        ("doc", pdf(1), "image/png", "doc", "application/pdf"),
        ("notes.txt", b"plain words", None, "notes.txt", "text/plain"),
        ("table.csv", b"a,b\n1,2\n", "text/csv", "table.csv", "text/csv"),
        ("data", "héllo".encode(), "application/octet-stream", "data", "text/plain"),
        ("blob", b"\x00\x01\x02", "application/octet-stream", "blob", "application/octet-stream"),
        ("C:\\Users\\me\\plot.png", picture(2, 2), "image/png", "plot.png", "image/png"),
        ("dir/sub/plot.png", picture(2, 2), "image/png", "plot.png", "image/png"),
        ("", picture(2, 2), "image/png", "unnamed.png", "image/png"),
    ],
)
def test_an_uploads_mime_type_comes_from_its_bytes_first(http, name, data, content_type, filename, mime):
    obj = upload(http, name, data, content_type)
    assert (obj["filename"], obj["mime_type"]) == (filename, mime)


def test_uploads_with_an_expiry_and_bad_uploads(http):
    obj = upload(http, "a.txt", b"hello", "text/plain", expires_in_seconds=3600)
    assert obj["expires_at"] is not None and obj["expires_at"] > obj["created_at"]
    for value, message in [
        ("60", "expires_in_seconds: Input should be between 3600 and 7776000, got 60"),
        ("soon", "expires_in_seconds: Input should be a valid integer, got 'soon'"),
    ]:
        response = http.post("/v1/files", files={"file": ("a.txt", b"x")}, data={"expires_in_seconds": value})
        assert error_of(response, 400, "invalid_request_error") == message
    response = http.post("/v1/files", files={"other": ("a.txt", b"x")})
    assert error_of(response, 400, "invalid_request_error") == (
        "file: Field required (a multipart/form-data part named 'file')"
    )
    response = http.post("/v1/files", json={"file": "a.txt"})
    assert error_of(response, 400, "invalid_request_error") == (
        "POST /v1/files takes multipart/form-data with the file in a part named 'file'"
    )
    response = http.post(
        "/v1/files", content=b"--b\r\nno end", headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert error_of(response, 400, "invalid_request_error").startswith(
        "Invalid multipart/form-data body: no closing"
    )


def test_files_are_listed_newest_first_in_pages(http):
    ids = [upload(http, f"{i}.txt", b"text %d" % i)["id"] for i in range(5)]
    newest_first = ids[::-1]
    first = http.get("/v1/files", params={"limit": 2}).json()
    assert [f["id"] for f in first["data"]] == newest_first[:2] and first["has_more"] is True
    second = http.get("/v1/files", params={"limit": 2, "page": first["next_page"]}).json()
    third = http.get("/v1/files", params={"limit": 2, "page": second["next_page"]}).json()
    assert [f["id"] for f in second["data"] + third["data"]] == newest_first[2:]
    assert third["next_page"] is None and third["has_more"] is False
    by_cursor = http.get("/v1/files", params={"after_id": newest_first[0], "limit": 1}).json()
    assert [f["id"] for f in by_cursor["data"]] == [newest_first[1]]
    picked = http.get("/v1/files", params={"ids[]": [ids[0], ids[3], "file_011nothing"]}).json()
    assert {f["id"] for f in picked["data"]} == {ids[0], ids[3]} and picked["next_page"] is None
    assert error_of(http.get("/v1/files", params={"page": "page_bogus"}), 400, "invalid_request_error") == (
        "page: 'page_bogus' is not a page cursor of this list; pass next_page from the previous list response"
    )


def test_a_deleted_file_is_gone_everywhere(http):
    file_id = upload(http, "a.png", picture(5, 5))["id"]
    assert http.get(f"/v1/files/{file_id}").json()["filename"] == "a.png"
    assert http.delete(f"/v1/files/{file_id}").json() == {"id": file_id, "type": "file_deleted"}
    gone = f"File not found: {file_id}"
    assert error_of(http.get(f"/v1/files/{file_id}"), 404, "not_found_error") == gone
    assert error_of(http.delete(f"/v1/files/{file_id}"), 404, "not_found_error") == gone
    assert (
        error_of(http.post("/v1/messages", json=ask(by_file("image", file_id))), 404, "not_found_error")
        == gone
    )
    assert http.get("/v1/files").json()["data"] == []


def test_an_uploaded_file_cannot_be_downloaded(http):
    file_id = upload(http, "a.txt", b"x")["id"]
    response = http.get(f"/v1/files/{file_id}/content")
    assert response.json()["error"]["details"] == {"error_code": "file_not_downloadable"}
    assert error_of(response, 400, "invalid_request_error").startswith(f"File {file_id} is not downloadable")


def test_an_expired_file_keeps_its_metadata_but_cannot_be_used(http, monkeypatch):
    file_id = upload(http, "a.txt", b"notes", expires_in_seconds=3600)["id"]
    assert create(http, ask(by_file("document", file_id)))
    real = files.time.time
    monkeypatch.setattr(files, "time", type("Later", (), {"time": staticmethod(lambda: real() + 3601)}))
    assert http.get(f"/v1/files/{file_id}").status_code == 200
    response = http.post("/v1/messages", json=ask(by_file("document", file_id)))
    assert response.json()["error"]["details"] == {"error_code": "file_expired"}
    assert error_of(response, 404, "not_found_error").startswith(f"File {file_id} expired at ")


def test_messages_use_uploaded_files_as_their_bytes(http):
    png = upload(http, "plot.png", picture(320, 200))["id"]
    three = upload(http, "paper.pdf", pdf(3))["id"]
    notes = upload(http, "notes.txt", b"twenty-one characters")["id"]
    message = create(http, ask(by_file("image", png), by_file("document", three), by_file("document", notes)))
    assert text_of(message).startswith(
        "[image 320x200 png] [document pdf 3 pages] [document text 21 chars]\n\n"
    )
    inline = create(
        http,
        ask(
            image(picture(320, 200)),
            document(pdf(3)),
            {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": "twenty-one characters"},
            },
        ),
    )
    assert message["usage"]["input_tokens"] == inline["usage"]["input_tokens"]


def test_a_file_of_the_wrong_kind_for_its_block_is_a_400(http):
    png = upload(http, "plot.png", picture(4, 4))["id"]
    paper = upload(http, "paper.pdf", pdf(1))["id"]
    blob = upload(http, "blob", b"\x00\x01", "application/octet-stream")["id"]
    cases = [
        (
            by_file("document", png),
            f"{AT}.source.file_id: file {png} is image/png, which a document block "
            "cannot take; send a PDF or a text/plain file (images go in an image block)",
        ),
        (
            by_file("document", blob),
            f"{AT}.source.file_id: file {blob} is application/octet-stream, which a "
            "document block cannot take; send a PDF or a text/plain file (images go in an image block)",
        ),
        (
            by_file("image", paper),
            f"{AT}.source.file_id: file {paper} is application/pdf, which an image "
            "block cannot take; send PDFs and text files in a document block",
        ),
    ]
    for block, message in cases:
        assert error_of(http.post("/v1/messages", json=ask(block)), 400, "invalid_request_error") == message
    missing = error_of(
        http.post("/v1/messages", json=ask(by_file("image", "file_011missing"))), 404, "not_found_error"
    )
    assert missing == "File not found: file_011missing"


def test_an_uploaded_image_over_8000_pixels_is_refused_where_it_is_used(http):
    wide = upload(http, "wide.png", picture(8001, 1))["id"]
    assert error_of(
        http.post("/v1/messages", json=ask(by_file("image", wide))), 400, "invalid_request_error"
    ) == (f"{AT}.source.file_id: At least one of the image dimensions exceed max allowed size: 8000 pixels")


def test_a_pdf_file_over_32_mb_is_refused(http):
    padded = pdf(1) + b"%" + b"x" * (32 * MB)  # a PDF comment pads it past the limit
    big = upload(http, "big.pdf", padded)["id"]
    assert error_of(
        http.post("/v1/messages", json=ask(by_file("document", big))), 400, "invalid_request_error"
    ) == (f"{AT}.source: PDF exceeds 32 MB maximum: {len(padded)} bytes > {32 * MB} bytes")


# -- Message Batches ----------------------------------------------------------------------------------


def test_batch_requests_take_images_and_documents_with_the_same_checks(emu, http):
    emu.configure(batch_duration=0.0)
    file_id = upload(http, "paper.pdf", pdf(2))["id"]
    requests = [
        {"custom_id": "image", "params": ask(image(picture(56, 28)))},
        {"custom_id": "file", "params": ask(by_file("document", file_id))},
        {"custom_id": "bad", "params": ask(image(picture(4, 4, "jpeg"), "image/png"))},
        {"custom_id": "gone", "params": ask(by_file("image", "file_011gone"))},
    ]
    batch = http.post("/v1/messages/batches", json={"requests": requests}).json()
    lines = http.get(f"/v1/messages/batches/{batch['id']}/results").text.splitlines()
    results = {r["custom_id"]: r["result"] for r in map(json.loads, lines)}
    assert text_of(results["image"]["message"]).startswith("[image 56x28 png]\n\n")
    assert (
        results["image"]["message"]["usage"]["input_tokens"]
        == create(http, ask(image(picture(56, 28))))["usage"]["input_tokens"]
    )
    assert text_of(results["file"]["message"]).startswith("[document pdf 2 pages]\n\n")
    assert results["bad"]["error"]["error"] == {
        "type": "invalid_request_error",
        "message": f"{AT}.source.data: Image does not match the provided media type image/png",
    }
    assert results["gone"]["error"]["error"] == {
        "type": "not_found_error",
        "message": "File not found: file_011gone",
    }


# -- through the official SDK -------------------------------------------------------------------------


def test_the_sdk_sends_an_image_and_a_pdf_and_reads_what_they_cost(sdk):
    blocks = [image(picture(1920, 1080, "jpeg"), "image/jpeg"), document(pdf(2), title="Two pages")]
    message = sdk.messages.create(
        model=OLD_MODEL,
        max_tokens=300,
        messages=[{"role": "user", "content": [*blocks, {"type": "text", "text": "Sum up"}]}],
    )
    assert message.content[0].text.startswith("[image 1920x1080 jpeg] [document pdf 2 pages]\n\n")
    count = sdk.messages.count_tokens(
        model=OLD_MODEL, messages=[{"role": "user", "content": [*blocks, {"type": "text", "text": "Sum up"}]}]
    )
    assert count.input_tokens == message.usage.input_tokens
    text_only = sdk.messages.count_tokens(
        model=OLD_MODEL,
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "Sum up"}]}
        ],
    )
    assert count.input_tokens - text_only.input_tokens == 1560 + 2 * PAGE + tokens.count("Two pages") - 1


def test_the_sdk_sees_the_apis_errors_for_bad_media(sdk):
    with pytest.raises(
        anthropic.BadRequestError, match="Image does not match the provided media type image/gif"
    ):
        sdk.messages.create(
            model=OLD_MODEL,
            max_tokens=50,
            messages=[
                {
                    "role": "user",
                    "content": [image(picture(4, 4), "image/gif"), {"type": "text", "text": "?"}],
                }
            ],
        )
    with pytest.raises(anthropic.BadRequestError, match="count_tokens does not accept url sources"):
        sdk.messages.count_tokens(
            model=OLD_MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
                    ],
                }
            ],
        )
    with pytest.raises(anthropic.NotFoundError, match="File not found: file_011none"):
        sdk.messages.create(
            model=OLD_MODEL,
            max_tokens=50,
            messages=[
                {
                    "role": "user",
                    "content": [by_file("document", "file_011none"), {"type": "text", "text": "?"}],
                }
            ],
        )


@pytest.mark.parametrize("beta", [False, True], ids=["files", "beta.files"])
def test_the_sdk_uploads_lists_reads_uses_and_deletes_files(emu, sdk, beta):
    api = sdk.beta.files if beta else sdk.files
    header = {"betas": ["files-api-2025-04-14"]} if beta else {}  # the old beta header still works
    png = api.upload(file=("chart.png", picture(300, 150), "image/png"), **header)
    paper = api.upload(file=("paper.pdf", pdf(5), "application/pdf"), **header)
    assert (png.filename, png.mime_type, png.size_bytes) == ("chart.png", "image/png", len(picture(300, 150)))
    assert emu.files.uploads == 2
    uploads = [r for r in emu.requests if r.path == "/v1/files"]
    assert all(("files-api-2025-04-14" in r.headers.get("anthropic-beta", "")) == beta for r in uploads)
    assert [f.id for f in api.list(limit=1)] == [paper.id, png.id]  # the SDK follows next_page
    assert api.retrieve_metadata(paper.id).mime_type == "application/pdf"
    message = sdk.messages.create(
        model=NEW_MODEL,
        max_tokens=300,
        messages=[
            {
                "role": "user",
                "content": [
                    by_file("image", png.id),
                    by_file("document", paper.id),
                    {"type": "text", "text": "Explain"},
                ],
            }
        ],
    )
    assert message.content[-1].text.startswith("[image 300x150 png] [document pdf 5 pages]\n\n")
    assert api.delete(png.id).id == png.id
    with pytest.raises(anthropic.NotFoundError, match=f"File not found: {png.id}"):
        api.retrieve_metadata(png.id)
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(
            model=NEW_MODEL,
            max_tokens=50,
            messages=[{"role": "user", "content": [by_file("image", png.id), {"type": "text", "text": "?"}]}],
        )
    with pytest.raises(anthropic.BadRequestError) as caught:
        api.download(paper.id)
    assert caught.value.error_code == "file_not_downloadable"
