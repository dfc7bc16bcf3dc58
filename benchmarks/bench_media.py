"""Bytes sent and input tokens of a batch whose rows share a few images: the Files API and client-side
downscaling, each alone and together.

Run: .venv/bin/python benchmarks/bench_media.py [--rows 1000] [--images 10] [--quick]

The workload: ``--images`` distinct images generated with Pillow so that they compress like real ones
(four in five are 3000x2000 photo-like JPEGs at quality 90, about 2.4 MB each: gradients, shapes and
sensor-like noise; the fifth a 2880x1800 screenshot-like PNG, about 350 KB: flat panels and
anti-aliased text), and ``--rows`` rows, row i asking a question of its own about image i % images in
one user turn ``[image, question]`` (max_tokens 8). Variants, each on a fresh emulator and a fresh
``Client`` with the response cache off, so every row is sent:

1. naive: each row carries the original file in base64, the block built by hand (what a client that
   knows nothing else sends);
2. client-side downscaling: ``as_media`` once per image, each row carries the downscaled bytes in
   base64 (``Client.acomplete([media, question])``);
3. Files API: each original uploaded once (``client.uploads.file_id``), rows reference its file_id;
4. both: the downscaled image uploaded once, rows reference it.

For two models: ``claude-sonnet-5-5`` (images up to 2576 px and 4784 tokens) and ``claude-sonnet-4-5``
(1568 px and 1568 tokens, so downscaling removes more).

Measured, per variant:
- bytes up: the sum of the ``Content-Length`` of every request the emulator received, that is the HTTP
  request bodies exactly as the client sent them: the JSON of each ``POST /v1/messages``, and the
  multipart body of each ``POST /v1/files`` (the file plus ~300 bytes of form). Headers (~300 bytes a
  request, alike in every variant) are left out;
- input tokens: summed from the replies' ``usage.input_tokens`` (the image and the question). The
  emulator counts an image as the API bills it: downscaled server-side to the model's limits, then
  ceil(w/28)*ceil(h/28). So tokens should not change with client-side downscaling; the script checks
  that row by row and says where they differ;
- uploads (``emu.files.uploads``), and the time the bytes would take at ``--uplink`` Mbit/s;
- wall time, informational: converting and uploading included, on localhost, where bytes are nearly
  free.

The emulator runs in this process without rate limits and keeps each request's JSON (base64 included),
so the variants that send base64 run in chunks with the emulator's records cleared in between.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from claude_magic.client import Client
from claude_magic.emulator import Emulator
from claude_magic.emulator import media as emulated
from claude_magic.emulator.models import find_model
from claude_magic.media import Media, as_media

MODELS = ("claude-sonnet-5-5", "claude-sonnet-4-5")
MAX_TOKENS = 8
KEY = "sk-bench"
CHUNK = 100  # rows between clearing the emulator's records (each holds a request's base64)
WIDTH = 16  # requests in flight
_QUESTIONS = ("what colour is the largest shape?", "is there any text, and what does it say?",
              "how many circles can you count?", "is it a photo or a screenshot?",
              "what is in the top-left corner?", "describe the background in three words.")
_WORDS = ("the of and to in is for on with as by at from data frame value column mean plot figure model "
          "rows index series group merge query").split()


# -- the workload ---------------------------------------------------------------------------------------

def photo(seed: int, width: int = 3000, height: int = 2000, sigma: float = 14) -> bytes:
    """A photo-like JPEG: smooth colour fields, shapes, and noise as a sensor leaves (JPEG keeps it)."""
    rng = np.random.default_rng(seed)
    sw, sh = width // 20, height // 20
    y, x = np.mgrid[0:sh, 0:sw].astype(np.float32)
    field_ = np.empty((sh, sw, 3), np.float32)
    for c in range(3):
        fx, fy, phase = rng.uniform(0.5, 4), rng.uniform(0.5, 4), rng.uniform(0, 2 * np.pi)
        field_[..., c] = (128 + 60 * np.sin(2 * np.pi * fx * x / sw + phase) * np.cos(2 * np.pi * fy * y / sh)
                          + 40 * (x / sw - y / sh))
    img = Image.fromarray(np.clip(field_, 0, 255).astype(np.uint8)).resize((width, height),
                                                                          Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(60):
        cx, cy, r = (int(v) for v in (rng.integers(0, width), rng.integers(0, height), rng.integers(20, 300)))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    noisy = np.asarray(img, np.int16) + rng.normal(0, sigma, (height, width, 3)).astype(np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def screenshot(seed: int, width: int = 2880, height: int = 1800) -> bytes:
    """A screenshot-like PNG: a title bar, a sidebar of file names, lines of anti-aliased text."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (width, height), (250, 250, 252))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=26)
    draw.rectangle([0, 0, width, 88], fill=(36, 41, 47))
    draw.text((30, 28), f"analysis_{seed}.ipynb - JupyterLab", fill=(230, 230, 230), font=font)
    draw.rectangle([0, 88, 420, height], fill=(236, 238, 242))
    for i, top in enumerate(range(130, height - 60, 40)):
        draw.text((30, top), f"file_{seed}_{i}.py", fill=(60, 60, 70), font=font)
        line = " ".join(rng.choice(_WORDS, int(rng.integers(4, 22))))
        draw.text((460, top), line, fill=(0, 90, 180) if i % 8 == 0 else (30, 30, 40), font=font)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Source:
    kind: str  # "photo" or "screenshot"
    media: Media  # the original file's bytes, as they came

    @property
    def data(self) -> bytes:
        assert self.media.data is not None
        return self.media.data


def sources(count: int) -> list[Source]:
    out = []
    for k in range(count):
        kind, data = ("screenshot", screenshot(k)) if k % 5 == 4 else ("photo", photo(k))
        with Image.open(io.BytesIO(data)) as img:
            size, fmt = img.size, (img.format or "").lower()
        out.append(Source(kind, Media("image", f"image/{fmt}", data, None, f"image {k}", size, size)))
    return out


def question(i: int) -> str:
    return f"Row {i}: {_QUESTIONS[i % len(_QUESTIONS)]}"


# -- one variant ----------------------------------------------------------------------------------------

@dataclass
class Line:
    model: str
    variant: str
    requests: int = 0
    uploads: int = 0
    bytes_up: int = 0
    tokens: list[int] = field(default_factory=list)  # input tokens, row by row
    seconds: float = 0.0


def body_bytes(emu: Emulator) -> int:
    """The request bodies the emulator received: their Content-Length (a request without a body: 0)."""
    total = 0
    for record in emu.requests:
        length = record.headers.get("content-length")
        assert length is not None or record.method == "GET", f"{record.method} {record.path} has no length"
        total += int(length or 0)
    return total


async def send_rows(client: Client, model: str, rows: range, prompt: Callable[[int], Any]) -> list[int]:
    """Send ``prompt(i)`` for each row ``i``, ``WIDTH`` at a time; the input tokens of each, in order."""
    gate = asyncio.Semaphore(WIDTH)

    async def one(i: int) -> int:
        async with gate:
            reply = await client.acomplete(prompt(i), model=model, max_tokens=MAX_TOKENS, cache=False,
                                           stream=False)
            return reply.usage.input_tokens

    return list(await asyncio.gather(*(one(i) for i in rows)))


def naive_block(source: Source) -> dict[str, Any]:
    """The original file in base64, in a block built by hand: what a client that knows nothing else sends."""
    src = {"type": "base64", "media_type": source.media.media_type,
           "data": base64.b64encode(source.data).decode("ascii")}
    return {"type": "image", "source": src}


def sized(source: Source, model: str) -> Media:
    """The image as ``as_media`` sends it to ``model``: downscaled to its limits, re-encoded."""
    media = as_media(source.data, where=source.media.where, model=model)
    assert media is not None and media.size is not None
    return media


def prepare(client: Client, model: str, images: list[Source], *, downscale: bool,
            upload: bool) -> Callable[[int], Any]:
    """The variant's one-off work (downscaling, uploading), and what row ``i`` then sends."""
    media = [sized(s, model) if downscale else s.media for s in images]
    if upload:
        blocks = [m.block(client.uploads.file_id(m)) for m in media]
    elif downscale:
        return lambda i: [media[i % len(media)], question(i)]  # the parts API, base64 from as_media
    else:
        blocks = [naive_block(s) for s in images]
    return lambda i: [{"role": "user", "content": [blocks[i % len(blocks)],
                                                   {"type": "text", "text": question(i)}]}]


def run_variant(model: str, label: str, images: list[Source], rows: int, *, downscale: bool,
                upload: bool) -> Line:
    line = Line(model, label)
    with Emulator() as emu, Client(api_key=KEY, base_url=emu.url, cache=False) as client:
        started = time.perf_counter()
        prompt = prepare(client, model, images, downscale=downscale, upload=upload)
        # The emulator keeps each request's JSON, base64 and all: count the bytes and clear its records
        # every CHUNK rows, where nothing was uploaded (clearing drops the emulator's files too).
        step = rows if upload else CHUNK
        for start in range(0, rows, step):
            chunk = range(start, min(rows, start + step))
            line.tokens += asyncio.run(send_rows(client, model, chunk, prompt))
            line.bytes_up += body_bytes(emu)
            if not upload:
                emu.reset()
        line.seconds = time.perf_counter() - started
        line.uploads = emu.files.uploads
    line.requests = len(line.tokens)
    return line


VARIANTS = (("1. naive: original, base64 in every row", False, False),
            ("2. client-side downscaling", True, False),
            ("3. Files API (original, uploaded once)", False, True),
            ("4. downscaling + Files API", True, True))


# -- the report -----------------------------------------------------------------------------------------

def mb(n: float) -> str:
    return f"{n / 1e6:,.2f}"


def duration(seconds: float) -> str:
    return f"{seconds / 60:,.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def print_images(images: list[Source], models: list[str]) -> None:
    """What ``as_media`` makes of each kind of image, for each model (averages over the images of a kind)."""
    print("\n## The images, as they came and as as_media sends them\n")
    head = "".join(f" {model + ': downscaled':<40} |" for model in models)
    print(f"| {'image':<16} | {'original':<26} |{head}")
    print("|" + "-" * 18 + "|" + "-" * 28 + "|" + "|".join("-" * 42 for _ in models) + "|")
    for kind in ("photo", "screenshot"):
        group = [s for s in images if s.kind == kind]
        if not group:
            continue
        w, h = group[0].media.size or (0, 0)
        fmt = group[0].media.media_type.split("/")[1].upper()
        original = f"{w}x{h} {fmt}, {mb(sum(len(s.data) for s in group) / len(group))} MB"
        cells = []
        for model in models:
            sent = [sized(s, model) for s in group]
            sw, sh = sent[0].size or (0, 0)
            size = sum(len(m.data or b"") for m in sent) / len(sent)
            cells.append(f" {f'{sw}x{sh}, {mb(size)} MB, {sent[0].tokens():,} tokens':<40} |")
        print(f"| {f'{kind} (x{len(group)})':<16} | {original:<26} |{''.join(cells)}")


def print_table(lines: list[Line], uplink: float) -> None:
    print(f"\n## {lines[0].requests:,} rows, one image each\n")
    print(f"| {'model':<17} | {'variant':<40} | {'uploads':>7} | {'MB up':>9} | {'/ naive':>7} "
          f"| {'input tokens':>12} | {'/ naive':>7} | {f'at {uplink:g} Mbit/s':>14} | {'time (s)':>8} |")
    widths = (19, 42, 9, 11, 9, 14, 9, 16, 10)
    print("|" + "|".join("-" * w for w in widths) + "|")
    naive: dict[str, Line] = {}
    for line in lines:
        base = naive.setdefault(line.model, line)
        tokens = sum(line.tokens)
        print(f"| {line.model:<17} | {line.variant:<40} | {line.uploads:>7} | {mb(line.bytes_up):>9} "
              f"| {line.bytes_up / base.bytes_up:>7.3f} | {tokens:>12,} | {tokens / sum(base.tokens):>7.3f} "
              f"| {duration(line.bytes_up * 8 / (uplink * 1e6)):>14} | {line.seconds:>8.2f} |")


def check_tokens(lines: list[Line], images: list[Source]) -> None:
    """Row by row, each variant's input tokens against the naive variant's on the same model; where they
    differ, the size each side billed."""
    print()
    by_model: dict[str, list[Line]] = {}
    for line in lines:
        by_model.setdefault(line.model, []).append(line)
    for model, (base, *others) in by_model.items():
        for line in others:
            differ = [i for i, (a, b) in enumerate(zip(base.tokens, line.tokens, strict=True)) if a != b]
            delta = sum(line.tokens[i] - base.tokens[i] for i in differ)
            print(f"{model}, variant {line.variant[:1]}: input tokens equal to the naive variant's on "
                  f"{line.requests - len(differ):,} of {line.requests:,} rows"
                  + (f"; {delta:+,} on the others." if differ else "."))
        for k in sorted({i % len(images) for line in others for i, (a, b)
                         in enumerate(zip(base.tokens, line.tokens, strict=True)) if a != b}):
            print(f"  {images[k].media.where} ({images[k].kind}): {billed(images[k], model)}")


def billed(source: Source, model: str) -> str:
    """The size the emulator bills for the original (its server-side downscale) and for as_media's."""
    spec = find_model(model)
    assert spec is not None and source.media.size is not None
    limits = emulated.image_limits(spec)
    server = emulated.scaled(*source.media.size, limits)
    client = sized(source, model)
    assert client.size is not None
    return (f"the original, downscaled by the emulator, is {server[0]}x{server[1]} = "
            f"{emulated.image_tokens(*server, limits):,} tokens; as_media sends {client.size[0]}x"
            f"{client.size[1]} = {emulated.image_tokens(*client.size, limits):,} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--images", type=int, default=10, help="distinct images; every fifth a screenshot")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model ids")
    parser.add_argument("--uplink", type=float, default=50.0, help="Mbit/s, for the 'at ... Mbit/s' column")
    parser.add_argument("--quick", action="store_true", help="100 rows, 5 images")
    args = parser.parse_args()
    rows, count = (100, 5) if args.quick else (args.rows, args.images)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    started = time.perf_counter()
    images = sources(count)
    print_images(images, models)
    lines = [run_variant(model, label, images, rows, downscale=downscale, upload=upload)
             for model in models for label, downscale, upload in VARIANTS]
    print_table(lines, args.uplink)
    check_tokens(lines, images)
    print(f"\nTotal runtime {time.perf_counter() - started:.1f} s.")


if __name__ == "__main__":
    main()
