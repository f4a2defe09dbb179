"""The input pictures of an img2img job: stat and header at planning, full decode before a run.

Entry points: `read_pictures(spec) -> tuple[Picture, ...]` for the plan, which reads only
each file's size, modification time and image header (so planning a 10,000-picture folder
costs the same whatever the pictures weigh), and `check_decodes(pictures)`, which the run calls
on the pictures it is about to send: a truncated file passes a header read, and the webui
would report it only after the request waited its turn in the queue (a1111-img2img-and-
extra-networks.md A3). Either raises `InputError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sdbatch.errors import InputError
from sdbatch.job.inputs import InputFile, InputsSpec

ORIENTATION = 0x0112  # EXIF tag; 5-8 turn the picture a quarter, which the webui applies
_SWAPS = {5, 6, 7, 8}


@dataclass(frozen=True)
class Picture:
    path: Path
    name: str  # as the job names it; recorded per row
    size: int  # bytes, and mtime_ns: a picture changed since planning is not sent
    mtime_ns: int
    width: int  # as the webui will see it, EXIF orientation applied
    height: int
    mask: Picture | None = None

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def stamp(self) -> dict[str, object]:
        """What the plan puts in the payload for it: a changed file changes the payload id."""
        return {"file": self.name, "size": self.size, "mtime_ns": self.mtime_ns}


def read_pictures(spec: InputsSpec) -> tuple[Picture, ...]:
    masks: dict[Path, Picture] = {}  # one job-wide mask is read once, not per picture
    pictures = []
    for entry in spec.files:
        mask = None
        if entry.mask is not None and entry.mask_name is not None:
            if entry.mask not in masks:
                masks[entry.mask] = _picture(InputFile(entry.mask, entry.mask_name), spec)
            mask = masks[entry.mask]
        pictures.append(_picture(entry, spec, mask))
    return tuple(pictures)


def _picture(entry: InputFile, spec: InputsSpec, mask: Picture | None = None) -> Picture:
    from PIL import Image, UnidentifiedImageError  # imported when a job has inputs only

    try:
        info = os.stat(entry.path)
    except OSError as exc:
        raise InputError(f"{entry.path}: cannot read: {exc.strerror or exc}") from None
    if info.st_size > spec.max_bytes:
        raise InputError(
            f"{entry.path}: {info.st_size:,} bytes, over the limit of {spec.max_bytes:,} "
            "(inputs.max_bytes)"
        )
    try:
        with Image.open(entry.path) as image:  # lazy: reads the header, not the pixels
            width, height = image.size
            if _orientation(image.info.get("exif")) in _SWAPS:
                width, height = height, width
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise InputError(f"{entry.path}: not a picture sdbatch can read ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's parsers raise all three
        raise InputError(f"{entry.path}: a broken picture ({exc})") from None
    if width * height > spec.max_pixels:
        raise InputError(
            f"{entry.path}: {width}x{height} pixels, over the limit of {spec.max_pixels:,} "
            "(inputs.max_pixels)"
        )
    return Picture(entry.path, entry.name, info.st_size, info.st_mtime_ns, width, height, mask)


def _orientation(exif: object) -> int | None:
    """From the raw EXIF block the header read left in `info` (JPEG, WebP, a PNG eXIf chunk
    before the pixels): `getexif()` would decode a whole PNG to look for a later one."""
    if not isinstance(exif, bytes):
        return None
    from PIL import Image

    data = Image.Exif()
    try:
        data.load(exif)
    except Exception:  # a broken EXIF block: the webui's exif_transpose ignores it too
        return None
    value = data.get(ORIENTATION)
    return value if isinstance(value, int) else None


def check_decodes(pictures: Iterable[Picture]) -> None:
    """Decode every picture (and mask) in full, each once; raise on the first that fails."""
    from PIL import Image

    seen: set[Path] = set()
    for picture in pictures:
        for each in (picture, picture.mask):
            if each is None or each.path in seen:
                continue
            seen.add(each.path)
            try:
                with Image.open(each.path) as image:
                    image.load()
            except Exception as exc:  # Pillow raises many kinds on a broken file
                raise InputError(f"{each.path}: a broken picture ({exc})") from None


def fit_size(picture: Picture, width: object, height: object) -> dict[str, int]:
    """The width/height a payload lacks, from the picture: multiples of 8 (the webui's latent
    is an eighth of the size), nearest to the picture's; one given keeps its aspect ratio."""

    def round8(value: float) -> int:
        return max(8, int(value / 8 + 0.5) * 8)  # halves up: 100 -> 104

    if isinstance(width, int) and isinstance(height, int):
        return {}
    if isinstance(width, int):
        return {"height": round8(width * picture.height / picture.width)}
    if isinstance(height, int):
        return {"width": round8(height * picture.width / picture.height)}
    return {"width": round8(picture.width), "height": round8(picture.height)}
