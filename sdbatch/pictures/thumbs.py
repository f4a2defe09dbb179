"""Gallery thumbnails: small JPEG copies under `thumbs/`, made once per image, when first needed.

Entry point: `Thumbs(out_dir).url(rel, width, height) -> str`, the relative URL a gallery card
shows for the image `rel`. An image no bigger than THUMB_PX is its own thumbnail (nothing is
written: a 64 px run costs nothing). A bigger one gets `thumbs/<stem>-<hash>.jpg`, made from the
image the first time and kept while it is newer than the image, so a rerun that added images
only makes theirs. An image that does not decode, or claims more pixels than `files.shrink`
decodes, keeps its own URL: the browser shows what it can, and no thumbnail is made from a bomb.

Thumbnails of rows no longer in force are left: finding them would mean holding every name.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from sdbatch.pictures.files import folder, image_file, save, shrink, sweep

THUMBS_DIR = "thumbs"
THUMB_PX = 256  # the longest side of a thumbnail; the gallery shows them at 220 px
JPEG_QUALITY = 82


class Thumbs:
    """The thumbnails of one output dir; the folder is made (and swept) on first use."""

    def __init__(self, out_dir: Path, px: int = THUMB_PX) -> None:
        self.out_dir = out_dir
        self.px = px
        self._dir: Path | None = None

    def _folder(self) -> Path:
        if self._dir is None:
            self._dir = folder(self.out_dir, THUMBS_DIR)
            sweep(self._dir)
        return self._dir

    def url(self, rel: str, width: object = None, height: object = None) -> str:
        """The URL (relative, percent-encoded) of the picture a card shows for image `rel`,
        which the caller has checked is a file inside the output dir."""
        own = quote(rel)
        if isinstance(width, int) and isinstance(height, int) and max(width, height) <= self.px:
            return own
        source = image_file(self.out_dir, rel)
        if source is None:
            return own
        digest = hashlib.sha256(rel.encode()).hexdigest()[:10]
        # A readable head of the image's name (in bytes: the file system counts bytes).
        head = PurePosixPath(rel).stem.encode()[:120].decode(errors="ignore")
        name = f"{head}-{digest}.jpg"
        target = self._folder() / name
        try:
            fresh = target.lstat()
            if stat.S_ISREG(fresh.st_mode) and fresh.st_mtime_ns >= source.stat().st_mtime_ns:
                return quote(f"{THUMBS_DIR}/{name}")
        except OSError:
            pass
        return quote(f"{THUMBS_DIR}/{name}") if self._make(source, target) else own

    def _make(self, source: Path, target: Path) -> bool:
        small = shrink(source, (self.px, self.px))
        if small is None:
            return False
        save(target, lambda fh: small.save(fh, format="JPEG", quality=JPEG_QUALITY))
        return True
