"""What the emulator reads from the bytes of an image or a PDF, and what they cost in tokens.

Formats are told by their signatures, as the API checks the bytes against the declared media type.
Pillow reads an image's size from its header without decoding the pixels. Pillow cannot read PDFs:
pages are counted as ``/Type /Page`` objects (not ``/Pages``, the tree's nodes), the usual trick,
right for every PDF that does not hide its page objects in compressed object streams (those fall
back to the page tree's largest ``/Count``); a PDF is encrypted when its trailer has ``/Encrypt``.

Image tokens follow the API's formula, ``ceil(w/28) * ceil(h/28)``, after the API's own downscale:
the aspect ratio kept, the long edge and the tokens both within the model's :class:`ImageLimits`
(1568 px and 1568 tokens; 2576 px and 4784 tokens from Claude Opus 4.7 on). So a 1920x1080 image
is 1456x819, 1560 tokens, on the older models and 2691 tokens, unscaled, on the newer ones. A PDF
page costs a text estimate plus the page drawn as an image (US Letter at 96 dpi, 1140 tokens).
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass

from .models import ModelSpec, find_model

#: the image media types the API takes, and the names the answers use for them
IMAGE_TYPES = {"image/jpeg": "jpeg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}
PDF = "application/pdf"
TEXT = "text/plain"
PATCH = 28                      # an image token covers a 28x28 patch
MAX_SIDE = 8000                 # px, any image
MANY_IMAGES = 20                # more images than this in one request ...
MANY_IMAGES_MAX_SIDE = 2000     # ... and no side may pass this
PDF_PAGE_TEXT_TOKENS = 1500     # a page's text; the docs say 1,500-3,000 for a dense page
PDF_PAGE_PIXELS = (816, 1056)   # US Letter at 96 dpi, the page image billed at image rates

_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_COUNT = re.compile(rb"/Count\s+(\d{1,7})")
_ENCRYPT = re.compile(rb"/Encrypt(?![A-Za-z])")


@dataclass(frozen=True)
class ImageLimits:
    """The largest image a model looks at: long edge in pixels and tokens."""

    long_edge: int
    tokens: int


STANDARD = ImageLimits(1568, 1568)
HIGH_RESOLUTION = ImageLimits(2576, 4784)
_FIRST_HIGH_RESOLUTION = "claude-opus-4-7"


def image_limits(spec: ModelSpec) -> ImageLimits:
    """The model's image limits: high resolution from Claude Opus 4.7 on.

    Decided by release date, so every model released since Opus 4.7 (Opus 4.8, Mythos Preview, every
    5.x) has them and the older ones (Opus and Sonnet 4.6 and before) do not.
    """
    first = find_model(_FIRST_HIGH_RESOLUTION)
    assert first is not None
    return HIGH_RESOLUTION if spec.created_at >= first.created_at else STANDARD


def sniff(data: bytes) -> str | None:
    """The media type the bytes' signature says (PNG, JPEG, GIF, WebP or PDF), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if b"%PDF-" in data[:1024]:  # readers accept a header anywhere in the first 1024 bytes
        return PDF
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the image's header, or None when Pillow cannot read it (a truncated or
    damaged file). An image too large for Pillow's decompression-bomb guard (over 89 million
    pixels, so a side over 8000) is reported one pixel over ``MAX_SIDE`` a side, which the side
    check refuses."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return (MAX_SIDE + 1, MAX_SIDE + 1)
    except Exception:  # Pillow raises OSError, SyntaxError, ValueError ... on damaged headers
        return None


def scaled(width: int, height: int, limits: ImageLimits) -> tuple[int, int]:
    """The size the API looks at: shrunk, aspect kept, until the long edge and the tokens fit."""
    long, short = max(width, height), min(width, height)
    edge = min(long, limits.long_edge)
    # the tokens only drop when the long edge crosses a multiple of 28, so try those downwards
    for patches in range(math.ceil(edge / PATCH), 0, -1):
        side = min(edge, patches * PATCH)
        other = max(1, math.floor(side * short / long + 0.5))
        if patches * math.ceil(other / PATCH) <= limits.tokens:
            return (side, other) if width >= height else (other, side)
    return (1, 1)


def image_tokens(width: int, height: int, limits: ImageLimits) -> int:
    """Input tokens of a ``width`` x ``height`` image for a model with these limits."""
    w, h = scaled(width, height, limits)
    return math.ceil(w / PATCH) * math.ceil(h / PATCH)


def pdf_pages(data: bytes) -> int:
    """The number of pages of a PDF (at least 1)."""
    pages = len(_PAGE.findall(data))
    if pages:
        return pages
    counts = [int(c) for c in _COUNT.findall(data)]
    return max(counts + [1])


def pdf_encrypted(data: bytes) -> bool:
    return _ENCRYPT.search(data) is not None


def pdf_tokens(pages: int, limits: ImageLimits) -> int:
    """Input tokens of a PDF: per page, its text and its image."""
    return pages * (PDF_PAGE_TEXT_TOKENS + image_tokens(*PDF_PAGE_PIXELS, limits))
