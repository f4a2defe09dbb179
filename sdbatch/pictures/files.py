"""Where the pictures may read and write: one rule for sheets, gallery pages and thumbnails.

Entry points: `image_file(out_dir, rel)` — the image a manifest row names, or None when the name
leaves the output dir, passes through a symlink, or is not a regular file (a FIFO would hang
the reader, /dev/zero would never end); `folder(out_dir, name)` — a picture folder inside the
output dir, refused when it is a symlink; `shrink(path, box)` — an image decoded small, or None
when it is broken or bigger than MAX_SOURCE_PIXELS (a decompression bomb is never decoded);
`save(path, write)` — an atomic replace whose temporary file is created exclusively and never
through a symlink; and `sweep(folder)` — the temporary files a killed drawer left. Every
OSError while writing becomes a `PicturesError` naming the file, so a read-only or full disk is
one clear line, not a traceback.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from PIL import Image

from sdbatch.errors import PicturesError
from sdbatch.output.atomic import is_temporary, replace_file
from sdbatch.output.safepath import UnsafePath, check_name, inside, refuse_link

# An image bigger than this is not decoded for a sheet or a thumbnail (the webui makes nothing
# near it; a tampered or hostile file might claim gigapixels).
MAX_SOURCE_PIXELS = 64_000_000


def relative_name(rel: str | None) -> PurePosixPath | None:
    """`rel` as a path inside the output dir (the output dir's one rule, `safepath.check_name`),
    or None; for links a colon is refused too, since a browser reads `javascript:x` or `C:x` as
    a URL scheme, not a file."""
    try:
        name = check_name(rel)
    except UnsafePath:
        return None
    return None if ":" in name else PurePosixPath(name)


def image_file(out_dir: Path, rel: str | None) -> Path | None:
    """The regular file `rel` names inside `out_dir`, reached without any symlink, or None."""
    if relative_name(rel) is None:
        return None
    try:
        path = inside(out_dir, rel)
    except UnsafePath:
        return None
    return path if os.path.lexists(path) else None  # `inside` passes a missing file through


def shrink(path: Path, box: tuple[int, int]) -> Image.Image | None:
    """The image at `path` in RGB, shrunk to fit `box` (never enlarged), or None when it does
    not decode or claims more than MAX_SOURCE_PIXELS."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (and only warns) between its own limit and twice that.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_SOURCE_PIXELS:
                    return None
                img.draft("RGB", box)  # JPEG: decode at a smaller size
                img.thumbnail(box, Image.Resampling.LANCZOS)
                return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning):
        return None


@contextlib.contextmanager
def writing(what: Path) -> Iterator[None]:
    """Turn an OSError (read-only, full, permissions) into a PicturesError naming `what`."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PicturesError(
            f"cannot write {what}: {reason} (the images and the manifest are untouched)"
        ) from exc


def folder(out_dir: Path, name: str) -> Path:
    """`out_dir/name`, created if missing; a symlink there is refused, not followed (it could
    point anywhere, and the pictures would be written there)."""
    path = out_dir / name
    try:
        refuse_link(path, what=" (a folder of the output dir)")
    except UnsafePath as exc:
        raise PicturesError(f"{exc}; remove it so the pictures stay in {out_dir}") from None
    with writing(path):
        path.mkdir(exist_ok=True)
    return path


def save(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Replace `path` atomically with what `write` writes into a file object: a reader (or a
    crash) sees the old file or the new one."""

    def fill(tmp: Path) -> None:
        # `replace_file` made `tmp` afresh (whatever was planted there is gone); O_NOFOLLOW
        # all the same, so nothing is ever written through a link.
        flags = os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(tmp, flags), "wb") as fh:
            write(fh)

    with writing(path):
        return replace_file(path, fill)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: alive
        return True
    return True


def sweep(directory: Path) -> None:
    """Remove the temporary files (`.NAME.PID.tmp`) that a drawer killed mid-write left here;
    those of a drawer still running are its own. Only files and symlinks go, never a folder
    that happens to be named like one."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not is_temporary(name):
            continue
        pid = name[:-4].rpartition(".")[2]
        if not pid.isdigit() or (int(pid) != os.getpid() and _alive(int(pid))):
            continue
        if entry.is_symlink() or entry.is_file(follow_symlinks=False):
            with writing(Path(entry.path)):
                os.unlink(entry.path)
