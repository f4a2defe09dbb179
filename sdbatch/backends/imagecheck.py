"""Is this what a server sent really a picture? Decoded in full before any row calls it `ok`.

Entry point: `check_image(data, max_pixels=...) -> (width, height)`, or `DecodeError` with the
reason. Why decode every pixel: a PNG cut short still has a good header, so reading only the
size (what the writer needs) would store it as `ok`, and a resume would trust it afterwards. The
pixel count is checked from the header first, so a decompression bomb is refused before a
single pixel is inflated.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from sdbatch.backends.base import DecodeError

# What a webui's samples_format can be; anything else is not a picture it made.
FORMATS = ("PNG", "JPEG", "WEBP")

# Pillow's warning (at about 89 megapixels) would print a stack line to stderr; the limit
# checked here replaces it, and Pillow's refusal at twice its limit stays on. A process-wide
# filter, set once: catch_warnings() would race with the other threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def check_image(data: bytes, *, max_pixels: int, name: str = "the image") -> tuple[int, int]:
    """(width, height) of a PNG/JPEG/WEBP that decodes completely and has at most `max_pixels`
    pixels; DecodeError naming `name` otherwise."""
    try:
        # Only the formats a webui writes: no other plugin ever parses what a server sent.
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            width, height = img.size
            if img.format not in FORMATS:
                raise DecodeError(f"{name} is a {img.format} image, not PNG/JPEG/WEBP")
            if width * height > max_pixels:
                raise DecodeError(_bomb(name, width, height, max_pixels))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"{name}: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError(f"{name} is not a picture ({len(data)} bytes)") from exc
    except DecodeError:
        raise
    except Exception as exc:
        # Pillow says "image file is truncated", "broken data stream", "Truncated File Read",
        # and its format plugins raise struct.error, IndexError, ValueError... on crafted
        # bytes: whatever it is, the picture is not one to keep.
        raise DecodeError(f"{name} does not decode: {str(exc)[:200]}") from exc
    return width, height


def _bomb(name: str, width: int, height: int, limit: int) -> str:
    return (
        f"{name} claims {width}x{height} pixels, more than the limit of {limit} "
        "(server.max_image_pixels / SDBATCH_MAX_IMAGE_PIXELS)"
    )
