"""The job schema as a file a user's editor can read: `sdbatch schema [--write DIR_OR_JOB]`.

Entry point: `write_schema(target) -> Path`. An installed sdbatch
carries the schema inside the package (`schema.schema_text`); a job kept outside the
repository gets editor completion from a copy written next to it, which the job names with a
relative `# yaml-language-server: $schema=job.schema.json` line (the shipped jobs carry it).
"""

from __future__ import annotations

import os
from pathlib import Path

from sdbatch.errors import OutputError, UsageError
from sdbatch.job.schema import schema_text

SCHEMA_NAME = "job.schema.json"
HEADER = f"# yaml-language-server: $schema={SCHEMA_NAME}"


def write_schema(target: Path) -> Path:
    """Write the schema as `job.schema.json` into the folder `target`, or next to the job file
    `target`; return the path written. The copy is replaced whole (write, then rename), so an
    editor never reads half a schema."""
    if target.is_dir():
        folder = target
    elif target.is_file():
        folder = target.parent
    else:
        raise UsageError(f"{target}: no such folder or job file to write {SCHEMA_NAME} next to")
    path = folder / SCHEMA_NAME
    partial = folder / f".{SCHEMA_NAME}.partial"
    try:
        partial.write_text(schema_text(), encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
