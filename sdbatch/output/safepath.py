"""The one rule for files inside an output dir: stay inside it, follow no symbolic link, and
read only regular files.

Entry points: `inside(out_dir, name)` (a manifest's `file` -> its path, or `UnsafePath`;
`lstat_at(dir_fd, name)` for a name right in an open dir),
`open_regular(path)` (a file descriptor, or `UnsafePath`), `create_new(path)` (a fresh file
that nothing, not even a planted link, stood at) and `refuse_link(path)`.

Why: the output dir is the one place sdbatch writes, and every later run, sheet and gallery
trusts what is in it. A manifest row is data someone can edit, and a folder can hold links
someone planted: `../../etc/passwd`, `/etc/shadow`, a link to a file outside, to /dev/zero or
a FIFO. So a name from a row must be a plain relative path below the dir; a file is opened
with O_NOFOLLOW (a link in its place is refused, not followed) and O_NONBLOCK (a FIFO does not
block the open), then fstat'ed: only a regular file is read. The output dir itself may be a
link the user made (`--out` on another disk); the rule starts below it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class UnsafePath(ValueError):
    """A name or file the rule refuses; the message says why, in words."""


def check_name(name: object) -> str:
    """`name` as a manifest row may hold it: a relative POSIX path of plain components."""
    if not isinstance(name, str) or not name:
        raise UnsafePath("no file name")
    if "\0" in name or "\\" in name:
        raise UnsafePath(f"{name!r} is not a plain file name")
    if name.startswith("/"):  # plain string tests: this runs for every row of a resume
        raise UnsafePath(f"{name!r} is an absolute path, outside the output dir")
    if name in (".", "..") or (
        "/" in name and any(part in ("..", ".", "") for part in name.split("/"))
    ):
        raise UnsafePath(f"{name!r} leads outside the output dir")
    return name


def inside(out_dir: Path, name: object) -> Path:
    """The path a row's `file` names, if it is a regular file reached without a link, or a
    file that is not there (missing is the caller's business); else `UnsafePath`."""
    parts = check_name(name).split("/")
    path = out_dir.joinpath(*parts)
    current, st = out_dir, None
    for part in parts:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return path
        except OSError as exc:
            raise UnsafePath(f"{name!r} cannot be examined: {exc.strerror or exc}") from exc
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{name!r} is a symbolic link; sdbatch follows none in its output dir")
        if current != path and not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{name!r} is not below a folder of the output dir")
    if st is None or not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{name!r} is not a regular file")
    return path


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """`name` (one checked component) in the open dir `dir_fd`, if it is a regular file; None
    if it is not there; `UnsafePath` if a link or anything else stands there."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{name!r} is a symbolic link; sdbatch follows none in its output dir")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{name!r} is not a regular file")
    return st


def open_regular(path: Path) -> int:
    """A read-only descriptor of `path`, which must be a regular file and not a link. A FIFO
    or device is refused without blocking (the open does not wait for a writer)."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafePath(f"{path.name!r} is a symbolic link") from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"{path.name!r} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file (see `open_regular`), at most `limit` of them."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        return fh.read() if limit is None else fh.read(limit)


def refuse_link(path: Path, *, what: str = "") -> None:
    """`UnsafePath` if `path` is a symbolic link (a dangling one too); fine if it is absent."""
    if os.path.islink(path):
        raise UnsafePath(
            f"{path} is a symbolic link{what}; sdbatch follows no link in its output dir"
        )


def create_new(path: Path, mode: int = 0o644) -> int:
    """A write descriptor of a new, empty regular file at `path`. Whatever stood there (a stale
    temporary file, or a link someone planted) is removed first, never written through; a
    folder there is an error (IsADirectoryError)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    try:
        return os.open(path, flags, mode)
    except FileExistsError:
        if os.path.isdir(path) and not os.path.islink(path):
            message = "a folder stands where a file is wanted"
            raise IsADirectoryError(21, message, str(path)) from None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return os.open(path, flags, mode)


def open_append(path: Path) -> int:
    """An append descriptor of `path` (created if absent), refusing a link or a non-file."""
    refuse_link(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _NONBLOCK, 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"{path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd
