"""Cheap stand-in pictures: a flat colour derived from seed and prompt plus a small text label.

Benchmarks push hundreds of 512x512 images through the stand-in, so rendering must stay at a
few milliseconds: no noise, no gradients, PNG at compress_level=1.

Metadata, as the webui writes it (a1111-api.md §2): PNG gets a `parameters` text chunk (tEXt, or
iTXt for non-latin-1 text); JPEG and WEBP get the text in EXIF UserComment, prefixed
`UNICODE\\0` and encoded UTF-16BE (what piexif's `UserComment.dump(..., encoding="unicode")`
produces and what the webui's PNG-info reader expects).
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import random
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

FORMATS = ("png", "jpg", "jpeg", "webp")
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@functools.lru_cache(maxsize=8)
def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size)
    except (TypeError, ImportError, OSError):  # a Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def colour_for(seed: int, prompt: str) -> tuple[int, int, int]:
    """A stable colour per (seed, prompt), so different seeds give visibly different images."""
    digest = hashlib.blake2b(f"{seed}\0{prompt}".encode(), digest_size=3).digest()
    return digest[0], digest[1], digest[2]


def noise(width: int, height: int, seed: int) -> Image.Image:
    """Seeded RGB noise: what a random-weight model draws, and about as big once compressed as
    a real photo (a 512x512 PNG is ~0.8 MB), for measuring what bytes cost the client."""
    data = random.Random(seed).randbytes(width * height * 3)
    return Image.frombytes("RGB", (width, height), data)


def render(width: int, height: int, seed: int, label: Sequence[str], prompt: str) -> Image.Image:
    """One image of the requested size, labelled with the lines in `label`."""
    colour = colour_for(seed, prompt)
    image = Image.new("RGB", (width, height), colour)
    # Dark text on light colours and the reverse, so the label stays legible.
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (0, 0, 0) if luminance > 128 else (255, 255, 255)
    size = max(8, min(width, height) // 24)
    draw = ImageDraw.Draw(image)
    draw.multiline_text((size // 2, size // 2), "\n".join(label), fill=ink, font=_font(size))
    return image


def grid(images: Sequence[Image.Image]) -> Image.Image:
    """images.image_grid with the default opts.n_rows = -1: rows = round(sqrt(n))."""
    rows = max(1, min(len(images), round(math.sqrt(len(images)))))
    cols = math.ceil(len(images) / rows)
    w, h = images[0].size
    out = Image.new("RGB", (cols * w, rows * h), (0, 0, 0))
    for i, image in enumerate(images):
        out.paste(image, ((i % cols) * w, (i // cols) * h))
    return out


def encode(
    image: Image.Image,
    fmt: str,
    parameters: str | None,
    *,
    quality: int = 80,
    lossless: bool = False,
) -> bytes:
    """The image file bytes; `parameters` None means opts.enable_pnginfo is off."""
    buf = io.BytesIO()
    fmt = fmt.lower()
    if fmt == "png":
        info = PngInfo()
        if parameters is not None:
            # Pillow's add_text would also switch to iTXt, but says so explicitly here.
            if _latin1(parameters):
                info.add_text("parameters", parameters)
            else:
                info.add_itxt("parameters", parameters)
        image.save(buf, format="PNG", pnginfo=info, compress_level=1)
    elif fmt in ("jpg", "jpeg", "webp"):
        exif = Image.Exif()
        if parameters is not None:
            exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"UNICODE\0" + parameters.encode("utf-16-be")
        if fmt == "webp":
            image.save(buf, format="WEBP", quality=quality, lossless=lossless, exif=exif, method=0)
        else:
            image.save(buf, format="JPEG", quality=quality, exif=exif)
    else:
        raise ValueError(f"unsupported image format {fmt!r}")
    return buf.getvalue()


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
