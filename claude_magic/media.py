"""Notebook values as ``image`` and ``document`` content blocks, sized and priced before sending.

:func:`as_media` takes what a placeholder names and returns a :class:`Media`, or None for a value
that stays text. Media are: a matplotlib figure (recognised by ``savefig`` and ``canvas``, never by
importing matplotlib), a PIL image, an object with ``_repr_png_`` / ``_repr_jpeg_`` (IPython's
``Image``), bytes with a PNG, JPEG, GIF, WebP or PDF signature, and a ``Path`` whose first bytes
carry one (the content decides, not the extension). A ``str`` is text unless the placeholder asks
for a kind (``{photo:image}``, ``{report:pdf}``); then it is a path or an http(s) URL, which is
sent as a ``url`` source: nothing is downloaded, so its size and tokens are unknown here.

Images are downscaled here, with Pillow, to what the model would keep anyway: the long edge at
most 1568 px and 1568 tokens (2576 px and 4784 tokens from Claude 4.7 on; 2000 px when a request
holds more than 20 images), tokens being ceil(w/28)·ceil(h/28). The API would downscale a larger
image itself, but only after the upload: the bytes of a Files API upload and of the 32 MB request
would go to pixels the model never sees, and a dry run could not know the tokens. An image within the
limits is sent byte for byte as it came: no re-encoding, so the bytes, their SHA-256 (the cache key
uses it, never a path or a file id) and the upload are the same on every run. A downscaled image
keeps its format where that is sensible: PNG stays PNG (lossless: text in plots stays crisp), JPEG
stays JPEG at quality 90 (a photo as PNG is several times larger), WebP stays WebP (lossless if the
source was), GIF becomes a PNG of its first frame (the only frame the API reads; re-quantising to
256 colours after resampling would only lose detail). A re-encoded file bakes in its EXIF
orientation, since the EXIF tag itself is not carried over.

Every refusal is a one-line :class:`MediaError` that starts with the caller's ``where``
(``{photo}``, ``row 17 (photo)``): unsupported formats, unreadable files, an image still over 10 MB
in base64 after downscaling, PDFs over 32 MB, encrypted or over the page limit. Pages are counted in
the raw bytes (``/Type /Page`` objects), which is cheap and exact for most files; when the page
objects are compressed the count is unknown and the page limit is left to the API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["MAX_IMAGE_BASE64", "MAX_PDF_BYTES", "MANY_IMAGES", "PDF_TEXT_TOKENS", "Media", "MediaError",
           "as_media", "describe", "image_limits", "image_tokens", "is_media", "parts_turn", "user_content"]

MAX_IMAGE_BASE64 = 10 * 2**20  # one image, base64 (the API counts MiB: "5242880 bytes" was its 5 MB)
MAX_PDF_BYTES = 32 * 2**20
MANY_IMAGES = 20  # a request with more images than this has the stricter 2000 px limit
_MAX_REQUEST = 32 * 2**20  # a whole request; a bigger PDF must go through the Files API
PDF_TEXT_TOKENS = (1_500, 3_000)  # per page, by text density (the PDF guide's range)
_STANDARD, _HIGH_RES, _MANY_IMAGES_EDGE = (1568, 1568), (2576, 4784), 2000
_HARD_EDGE = 8000  # px: a side the API refuses outright (it downscales anything smaller itself)
_SENDABLE = ("png", "jpeg", "gif", "webp")
_LETTER = (2550, 3300)  # a Letter page at 300 dpi: the "standard page" of the PDF estimate
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"GIF87a": "gif", b"GIF89a": "gif",
               b"%PDF-": "pdf"}
_MEDIA_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".pdf", ".bmp", ".tif", ".tiff", ".heic",
                   ".avif"}
_SAVE_AS = {"png": "PNG", "gif": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_MODES = {"PNG": {"RGB", "RGBA", "L", "LA", "I"}, "JPEG": {"RGB", "L"}, "WEBP": {"RGB", "RGBA"}}
# claude-opus-4-7, claude-sonnet-4-20250514, claude-3-5-sonnet-20241022 (family, major, minor)
_MODEL_ID = re.compile(r"claude-(?:[a-z]+-)?(\d+)(?:-(\d{1,2}))?(?=-|$)")
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_OBJECT_NUMBER = re.compile(rb"(\d+)\s+\d+\s+$")


class MediaError(ConfigError):
    """A value cannot be sent as an image or a PDF (the message names the placeholder or row)."""


@dataclass(frozen=True)
class Media:
    """One image or PDF, as it will be sent. ``data`` is None for a URL (and ``media_type`` "")."""

    kind: Literal["image", "document"]
    media_type: str
    data: bytes | None = field(repr=False)
    url: str | None
    where: str
    size: tuple[int, int] | None = None  # pixels sent
    original_size: tuple[int, int] | None = None
    pages: int | None = None  # None: not a PDF, or its pages could not be counted
    limits: tuple[int, int] = _STANDARD  # (long edge px, tokens) of the model it was sized for

    @cached_property
    def sha256(self) -> str:
        """Of the bytes sent (what a cache key covers), or of the URL."""
        return hashlib.sha256(self.data if self.data is not None else (self.url or "").encode()).hexdigest()

    def tokens(self) -> int | None:
        """Input tokens of an image we hold; None for a URL or a PDF (see :meth:`token_range`)."""
        return image_tokens(*self.size) if self.size else None

    def token_range(self) -> tuple[int, int] | None:
        """(low, high) input tokens: exact for an image; an estimate for a PDF of known pages (text
        at 1,500-3,000 tokens a page plus a Letter page's image at the model's image size)."""
        if self.size:
            return (image_tokens(*self.size),) * 2
        if not self.pages:
            return None
        page_image = image_tokens(*_fit(_LETTER, self.limits))
        return self.pages * (PDF_TEXT_TOKENS[0] + page_image), self.pages * (PDF_TEXT_TOKENS[1] + page_image)

    def block(self, file_id: str | None = None,
              cache_control: dict[str, Any] | None = None) -> dict[str, Any]:
        """The content block: a ``file`` source when ``file_id`` is given, else ``url`` or ``base64``."""
        if file_id is not None:
            source: dict[str, Any] = {"type": "file", "file_id": file_id}
        elif self.data is None:
            source = {"type": "url", "url": self.url}
        else:
            if _b64_len(len(self.data)) > _MAX_REQUEST:
                raise _error(self.where, f"the PDF is {_mb(len(self.data))}, too big to send inline "
                             "(a request is at most 32 MB in base64); upload it with the Files API")
            source = {"type": "base64", "media_type": self.media_type,
                      "data": base64.b64encode(self.data).decode("ascii")}
        block: dict[str, Any] = {"type": self.kind, "source": source}
        if cache_control:
            block["cache_control"] = dict(cache_control)
        return block


def image_tokens(width: int, height: int) -> int:
    """Input tokens of an image of that size: ceil(w/28)·ceil(h/28)."""
    return -(-width // 28) * -(-height // 28)


def image_limits(model: str, many_images: bool = False) -> tuple[int, int]:
    """(long edge in px, tokens) an image keeps on ``model``: 2576 px and 4784 tokens from Claude 4.7
    (Opus 4.7 and 4.8, every 5.x model), 1568 and 1568 before; the long edge at most 2000 px when
    the request holds more than 20 images. An ID without a version (``claude-mythos-preview``) is
    taken as new: an older model given a bigger image downscales it itself and a dry run errs high."""
    m = _MODEL_ID.search(model.strip().lower())
    new = m is None or (int(m[1]), int(m[2] or 0)) >= (4, 7)
    edge, tokens = _HIGH_RES if new else _STANDARD
    return (min(edge, _MANY_IMAGES_EDGE) if many_images else edge), tokens


def is_media(value: Any) -> bool:
    """Whether :func:`as_media` (without a kind) would take ``value`` as an image or PDF rather than
    text, without reading a file or rendering anything. A path is always a candidate: only its first
    bytes can tell, and ``as_media`` reads them. So can an object with ``_repr_png_``, which may
    return None (sympy's does)."""
    if isinstance(value, str):
        return False
    if isinstance(value, os.PathLike):
        return True
    if isinstance(value, (bytes, bytearray, memoryview)):
        head = bytes(memoryview(value)[:16])
        return _sniff(head) is not None or _unsupported(head) is not None
    return _is_figure(value) or _is_pil(value) or bool(_image_reprs(value))


def as_media(value: Any, *, kind: str | None = None, where: str, model: str, many_images: bool = False,
             max_pages: int = 600) -> Media | None:
    """``value`` as a :class:`Media` sized for ``model``, or None when it stays text (see the module
    doc). ``kind`` is the placeholder's ``:image`` or ``:pdf``: then ``value`` must be that, and a
    string is a path or an http(s) URL. ``max_pages`` is 100 for a model whose context is under 1M.
    Raises MediaError, in one line starting with ``where``."""
    if kind not in (None, "image", "pdf"):
        raise _error(where, f"unknown kind :{kind}; use :image or :pdf")
    ask = _Ask(where, kind, image_limits(model, many_images), max_pages)
    if isinstance(value, str):
        if kind is None:
            return None
        text = value.strip()
        if re.match(r"https?://", text, re.IGNORECASE):
            return _from_url(text, ask)
        value = Path(text).expanduser()
    if isinstance(value, os.PathLike):
        data = _read(Path(value), ask)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif _is_pil(value, duck=False):
        return _from_image(None, "jpeg" if value.format == "JPEG" else "png", ask, pil=value)
    else:
        rendered = _render(value, ask)
        if isinstance(rendered, Media):
            return rendered
        data = rendered
    if data is None:
        if kind:
            raise _error(where, f"a {type(value).__name__} is not an image or a PDF; pass a path, a URL, "
                         "bytes, a PIL image or a figure")
        return None
    return _from_bytes(data, ask)


def user_content(parts: list[Any], *, model: str, file_id: Callable[[Media], str | None] | None = None,
                 ) -> tuple[list[dict[str, Any]], list[Media]]:
    """A prompt's text pieces and media, in order, as the content blocks of one user turn (empty text
    dropped: the API refuses it) and the media sent. With more than ``MANY_IMAGES`` images each is
    sized again for the many-image limit. ``file_id(media)``: an uploaded file to reference instead
    of the bytes (None: send them)."""
    if sum(1 for p in parts if isinstance(p, Media) and p.kind == "image") > MANY_IMAGES:
        parts = [as_media(p.data, where=p.where, model=model, many_images=True) or p
                 if isinstance(p, Media) and p.kind == "image" and p.data is not None else p for p in parts]
    blocks: list[dict[str, Any]] = []
    inline: list[Media] = []  # sent as base64: they count toward the request's 32 MB
    for part in parts:
        if isinstance(part, Media):
            reference = file_id(part) if file_id is not None else None
            blocks.append(part.block(reference))
            if reference is None and part.data is not None:
                inline.append(part)
        elif isinstance(part, str) and part.strip():
            blocks.append({"type": "text", "text": part})
    size = sum(_b64_len(len(m.data or b"")) for m in inline)
    if size > _MAX_REQUEST:
        biggest = ", ".join(m.where for m in sorted(inline, key=lambda m: -len(m.data or b""))[:3])
        raise _error(biggest, f"together the images and PDFs are {_mb(size)} in base64: over the 32 MB a "
                     "request may hold; send fewer or smaller ones")
    return blocks, [p for p in parts if isinstance(p, Media)]


def parts_turn(parts: list[Any], *, model: str) -> list[dict[str, Any]]:
    """Prompt parts from the Python API (text, and whatever :func:`as_media` recognises) as one user
    turn of blocks; a part that is neither is a one-line error."""
    converted: list[Any] = []
    for i, part in enumerate(parts):
        medium = part if isinstance(part, (str, Media)) else as_media(part, where=f"prompt part {i}",
                                                                       model=model)
        if medium is None:
            raise _error(f"prompt part {i}", f"a {type(part).__name__} is neither text nor an image or PDF "
                         "(give a str, a figure, a PIL image, image or PDF bytes, or a Path)")
        converted.append(medium)
    blocks, _ = user_content(converted, model=model)
    return [{"role": "user", "content": blocks}]


def describe(media: Media) -> str:
    """One line: ``image 640×480 PNG, 450 tokens``, ``PDF, 3 pages, 0.1 MB, ~…–… tokens (estimate)``,
    ``image at https://host/path (tokens unknown until sent)``."""
    name = "image" if media.kind == "image" else "PDF"
    if media.data is None:
        return f"{name} at {_short_url(media.url or '')} (tokens unknown until sent)"
    if media.size:
        w, h = media.size
        fmt = media.media_type.split("/")[-1].upper()
        line = f"image {w}×{h} {fmt}, {image_tokens(w, h):,} tokens"
        if media.original_size and media.original_size != media.size:
            line += " (downscaled from {}×{})".format(*media.original_size)
        return line
    spread = media.token_range()
    if spread is None:
        return f"PDF, {_mb(len(media.data))}, pages unknown (tokens unknown until sent)"
    pages = f"{media.pages} page" + ("s" if media.pages != 1 else "")
    return f"PDF, {pages}, {_mb(len(media.data))}, ~{spread[0]:,}–{spread[1]:,} tokens (estimate)"


@dataclass(frozen=True)
class _Ask:
    where: str
    kind: str | None
    limits: tuple[int, int]
    max_pages: int


def _error(where: str, message: str) -> MediaError:
    return MediaError(" ".join(f"{where}: {message}".split()))


def _reason(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 // 10 else f"{-(-n // 1024)} KB"


def _b64_len(n: int) -> int:
    return 4 * -(-n // 3)


def _sniff(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((fmt for sig, fmt in _SIGNATURES.items() if head.startswith(sig)), None)


def _unsupported(head: bytes) -> str | None:
    """The name of an image format the API does not take, from a signature strong enough to be sure."""
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:2] == b"BM" and head[6:10] == b"\x00" * 4 and head[14:15] in (b"\x0c", b"(", b"4", b"8", b"l",
                                                                          b"|"):
        return "BMP"  # the reserved fields are zero and the header size is a known one
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"avif"):
        return "AVIF" if head[8:12] == b"avif" else "HEIC"
    return None


def _read(path: Path, ask: _Ask) -> bytes | None:
    """The file's bytes when they are media (or a kind was asked for); None when it stays text. A
    missing or unreadable file is an error only when a kind was asked for or the name says media:
    a path such as ``out/report.md`` in a prompt is text even before the file exists."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
            if _sniff(head) is None:  # the rest is not needed to refuse it or keep it as text
                return None if ask.kind is None and _unsupported(head) is None else head
            return head + f.read()
    except OSError as exc:
        if ask.kind is None and path.suffix.lower() not in _MEDIA_SUFFIXES:
            return None
        raise _error(ask.where, f"cannot read {path}: {exc.strerror or _reason(exc)}") from None


def _from_url(url: str, ask: _Ask) -> Media:
    if not urlsplit(url).hostname:
        raise _error(ask.where, f"{_short_url(url)} is not a URL with a host")
    return Media("document" if ask.kind == "pdf" else "image", "", None, url, ask.where, limits=ask.limits)


def _short_url(url: str) -> str:
    """Scheme, host and path, shortened: never the query (a signed URL's token) or a password."""
    parts = urlsplit(url)
    text = f"{parts.scheme}://{parts.hostname or ''}{parts.path}" + ("?…" if parts.query else "")
    return text if len(text) <= 80 else text[:50] + "…" + text[-25:]


def _get(value: Any, name: str) -> Any:
    """An attribute probe that never raises (a property or ``__getattr__`` may)."""
    try:
        return getattr(value, name, None)
    except Exception:
        return None


def _is_figure(value: Any) -> bool:
    """A matplotlib figure, or a seaborn grid (its own ``savefig`` around a ``.figure``)."""
    return (not isinstance(value, type) and callable(_get(value, "savefig"))
            and (_get(value, "canvas") is not None or _get(_get(value, "figure"), "canvas") is not None))


def _is_pil(value: Any, *, duck: bool = True) -> bool:
    pil = sys.modules.get("PIL.Image")  # no PIL image can exist before PIL.Image is imported
    if pil is not None and isinstance(value, pil.Image):
        return True
    size = _get(value, "size")
    return (duck and not isinstance(value, type) and callable(_get(value, "save"))
            and isinstance(_get(value, "mode"), str) and isinstance(size, tuple) and len(size) == 2)


def _image_reprs(value: Any) -> list[Any]:
    if isinstance(value, type):
        return []
    return [m for m in (_get(value, "_repr_png_"), _get(value, "_repr_jpeg_")) if callable(m)]


def _render(value: Any, ask: _Ask) -> bytes | Media | None:
    """PNG or JPEG bytes of a figure, a PIL look-alike or an object with an image repr; the URL
    of an IPython ``Image(url=...)``, which keeps no bytes; None for anything else."""
    reprs = _image_reprs(value)
    try:
        if _is_figure(value) or _is_pil(value):
            buf = io.BytesIO()
            if _is_figure(value):
                value.savefig(buf, format="png", bbox_inches="tight")
            else:
                value.save(buf, format="PNG")
            return buf.getvalue()
        for method in reprs:
            out = method()
            out = out[0] if isinstance(out, tuple) else out  # (data, metadata) is allowed
            if isinstance(out, str):
                out = base64.b64decode(out)
            if isinstance(out, (bytes, bytearray, memoryview)) and out:
                return bytes(out)
    except Exception as exc:
        raise _error(ask.where, f"could not render the {type(value).__name__} as an image ({_reason(exc)})"
                     ) from None
    url = _get(value, "url")
    if reprs and isinstance(url, str) and re.match(r"https?://", url, re.IGNORECASE):
        return _from_url(url, ask)
    return None


def _from_bytes(data: bytes, ask: _Ask) -> Media | None:
    fmt = _sniff(data[:16])
    other = None if fmt else _unsupported(data[:16])
    if other:
        raise _error(ask.where, f"{other} images are not supported (PNG, JPEG, GIF and WebP are); "
                     "open it with Pillow and pass the image: PIL.Image.open(path)")
    if fmt is None or (ask.kind and (fmt == "pdf") != (ask.kind == "pdf")):
        if not ask.kind:
            return None
        found = {None: "no PNG, JPEG, GIF, WebP or PDF signature", "pdf": "a PDF; use :pdf"}.get(
            fmt, f"a {(fmt or '').upper()} image; use :image")
        raise _error(ask.where, f"not {'an image' if ask.kind == 'image' else 'a PDF'} ({found})")
    return _from_pdf(data, ask) if fmt == "pdf" else _from_image(data, fmt, ask)


def _from_pdf(data: bytes, ask: _Ask) -> Media:
    if len(data) > MAX_PDF_BYTES:
        raise _error(ask.where, f"the PDF is {_mb(len(data))}, over the API's 32 MB; split it")
    if b"/Encrypt" in data:
        raise _error(ask.where, "the PDF is encrypted (even one that opens without a password can be); "
                     "save a decrypted copy, e.g. qpdf --decrypt in.pdf out.pdf")
    pages = _count_pages(data)
    if pages > ask.max_pages:
        raise _error(ask.where, f"the PDF has {pages} pages, over the limit of {ask.max_pages} for this "
                     "model; split it or send the pages you need")
    return Media("document", "application/pdf", data, None, ask.where, pages=pages or None,
                 limits=ask.limits)


def _count_pages(data: bytes) -> int:
    """Distinct objects of ``/Type /Page`` (an incremental update may rewrite a page): 0 when the
    page objects are inside compressed object streams."""
    seen = set()
    for m in _PAGE.finditer(data):
        start = data.rfind(b"obj", 0, m.start())  # the header of the object holding it: "12 0 obj"
        number = _OBJECT_NUMBER.search(data, max(0, start - 24), start) if start > 0 else None
        seen.add(number[1] if number else m.start())
    return len(seen)


def _fit(size: tuple[int, int], limits: tuple[int, int]) -> tuple[int, int]:
    """The size the API keeps of an image (the emulator's rule, the same function): aspect kept, the
    long edge brought down to the edge limit and then, while the tokens do not fit, one multiple of
    28 px at a time (tokens only drop when it crosses one), the short edge rounded. Sending exactly
    that size costs the tokens the API would bill for the original, not one more."""
    (w, h), (edge, budget) = size, limits
    long, short = max(w, h), min(w, h)
    top = min(long, edge)
    for patches in range(math.ceil(top / 28), 0, -1):
        side = min(top, patches * 28)
        other = max(1, math.floor(side * short / long + 0.5))
        if patches * math.ceil(other / 28) <= budget:
            return (side, other) if w >= h else (other, side)
    return (1, 1)


def _from_image(data: bytes | None, fmt: str, ask: _Ask, pil: Any = None) -> Media:
    """Image bytes as they came when within the limits, else downscaled and re-encoded; or a PIL
    image, which has no source bytes to keep: PNG, or JPEG for one read from a JPEG (a photo)."""
    from PIL import Image

    try:
        if pil is None:
            with warnings.catch_warnings():  # a big image is what we downscale: no bomb warning
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                pil = Image.open(io.BytesIO(data or b""))  # reads the header only
        original = pil.size
        target = _fit(original, ask.limits)
        if data is not None and target == original and _b64_len(len(data)) <= MAX_IMAGE_BASE64:
            return Media("image", f"image/{fmt}", data, None, ask.where, original, original,
                         limits=ask.limits)
        if fmt == "jpeg" and data is not None:
            pil.draft(None, target)  # libjpeg decodes at 1/2, 1/4 or 1/8 scale
        lossless = fmt != "webp" or data is None or data.find(b"VP8L", 12) != -1
        sent, size = _encode(pil, target, _SAVE_AS[fmt], transpose=data is not None, lossless=lossless)
        if data is not None and len(sent) >= len(data) and _b64_len(len(data)) <= MAX_IMAGE_BASE64 \
                and max(original) <= _HARD_EDGE and fmt in _SENDABLE:
            # the smaller copy came out bigger (a screenshot resampled: new in-between colours PNG
            # cannot pack): the original goes, and the API keeps the same size of it
            return Media("image", f"image/{fmt}", data, None, ask.where, target, original, limits=ask.limits)
    except Exception as exc:
        raise _error(ask.where, f"cannot {'read' if data else 'encode'} this {fmt.upper()} image "
                     f"({_reason(exc)})") from None
    if _b64_len(len(sent)) > MAX_IMAGE_BASE64:
        raise _error(ask.where, f"the image is {_mb(_b64_len(len(sent)))} in base64 even at {size[0]}×"
                     f"{size[1]}, over the API's 10 MB; save it as JPEG (or at a lower quality)")
    return Media("image", f"image/{_SAVE_AS[fmt].lower()}", sent, None, ask.where, size, original,
                 limits=ask.limits)


def _encode(img: Any, target: tuple[int, int], save_as: str, *, transpose: bool,
            lossless: bool) -> tuple[bytes, tuple[int, int]]:
    """``img`` resized to ``target`` and saved as ``save_as`` (bytes, size). A file's EXIF
    orientation is baked in, since the tag is not carried over."""
    from PIL import Image, ImageOps

    icc = img.info.get("icc_profile")
    if transpose:
        rotated = ImageOps.exif_transpose(img)
        target = target if rotated.size == img.size else target[::-1]
        img = rotated
    if img.mode.startswith("I;16"):
        img = img.convert("I")
    if img.mode not in _MODES[save_as] | ({"P", "1"} if save_as == "PNG" and img.size == target else set()):
        alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
        img = img.convert("RGBA" if alpha and save_as != "JPEG" else "RGB")
    if img.size != target:
        img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    options: dict[str, Any] = {"icc_profile": icc} if icc else {}
    options.update({"lossless": True} if save_as == "WEBP" and lossless else
                   {"quality": 90} if save_as in ("JPEG", "WEBP") else {})
    buf = io.BytesIO()
    img.save(buf, format=save_as, **options)
    return buf.getvalue(), img.size
