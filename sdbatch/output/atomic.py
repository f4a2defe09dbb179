"""Files that are rewritten whole (summary.json, plan.json, sheets, index.html): a reader, or a
crash, sees the old file or the new one, never half of either.

Temporary files are named `.NAME.PID.tmp` beside their target (`is_temporary` tells them);
the next run on the dir sweeps those a killed run left (`output.resume.sweep`), in the dir and
in its folders.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sdbatch.errors import OutputError
from sdbatch.output.safepath import UnsafePath, create_new, refuse_link


def temporary(path: Path) -> Path:
    """The temporary sibling `path` is written to before it takes its name."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def is_temporary(name: str) -> bool:
    """A name `temporary` makes: what a sweep may remove."""
    return name.startswith(".") and name.endswith(".tmp")


def replace_file(path: Path, write: Callable[[Path], object]) -> Path:
    """`write` fills a temporary sibling of `path`, which then replaces `path` in one rename.

    The folder must not be a link (sdbatch follows none inside its output dir; the caller
    passes the output dir itself resolved), and the temporary file is created fresh, so a link
    planted at its name is removed rather than written through; the rename replaces a link
    at `path` itself, never its target. Any failure is an `OutputError` naming the file."""
    tmp = temporary(path)
    try:
        refuse_link(path.parent, what=" (a folder of the output dir)")
        os.close(create_new(tmp))
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            if not os.path.isdir(tmp):
                tmp.unlink(missing_ok=True)
    except (OSError, UnsafePath) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputError(f"cannot write {path}: {reason}") from exc
    return path
