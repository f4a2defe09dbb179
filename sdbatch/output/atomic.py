"""Files that are rewritten whole (summary.json, plan.json, sheets, index.html): a reader, or a
crash, sees the old file or the new one, never half of either."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def replace_file(path: Path, write: Callable[[Path], object]) -> Path:
    """`write` fills a temporary sibling of `path`, which then replaces `path` in one rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
