"""The Files API in the emulator: uploads, lists, metadata, deletes and the 413 of a body over its
limit, on the wire with plain httpx and through the official SDK.

Images are drawn with Pillow and PDFs written by hand (a few hundred bytes for N pages), so no binary
fixture is committed.
"""

from __future__ import annotations

import io
import json
import socket

import anthropic
import httpx
import pytest
from PIL import Image

from claude_magic.emulator import Emulator

HEADERS = {"x-api-key": "sk-test", "anthropic-version": "2026-10-21"}
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


def error_of(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    return body["error"]["message"]


def upload(http: httpx.Client, name: str, data: bytes, content_type: str | None = None, **fields) -> dict:
    part = (name, data, content_type) if content_type else (name, data)
    response = http.post("/v1/files", files={"file": part}, data={k: str(v) for k, v in fields.items()})
    assert response.status_code == 200, response.text
    return response.json()


# -- body limits --------------------------------------------------------------------------------------


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


def test_an_uploaded_file_cannot_be_downloaded(http):
    file_id = upload(http, "a.txt", b"x")["id"]
    response = http.get(f"/v1/files/{file_id}/content")
    assert response.json()["error"]["details"] == {"error_code": "file_not_downloadable"}
    assert error_of(response, 400, "invalid_request_error").startswith(f"File {file_id} is not downloadable")


# -- through the official SDK -------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [False, True], ids=["files", "beta.files"])
def test_the_sdk_uploads_lists_reads_and_deletes_files(emu, sdk, beta):
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
    assert api.delete(png.id).id == png.id
    with pytest.raises(anthropic.NotFoundError, match=f"File not found: {png.id}"):
        api.retrieve_metadata(png.id)
    with pytest.raises(anthropic.BadRequestError) as caught:
        api.download(paper.id)
    assert caught.value.error_code == "file_not_downloadable"
