"""Where a run writes: the output dir's template filled in, and the dir resolved once.

Entry points: `fill_dir_template(template, values, source) -> str` and `real_dir(path)`.
A template (`--out`, or the job's `output.dir`) may name only `{name}`, `{date}` and `{time}`:
plain names, nothing evaluated (`str.format` would also take `{name.__class__}`, `{name[0]}`
or `{name!r}`, reaching into Python objects), and each filled-in value must be one folder
name, so a job named `..` or `a/b` cannot move its dir elsewhere.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from pathlib import Path

from sdbatch.errors import UsageError, did_you_mean

DIR_FIELDS = ("name", "date", "time")


def _shown(field: str, spec: str | None, conversion: str | None) -> str:
    conv = f"!{conversion}" if conversion else ""
    return "{" + field + conv + (f":{spec}" if spec else "") + "}"


def fill_dir_template(template: str, values: Mapping[str, str], source: str) -> str:
    """`template` with `{name}`, `{date}`, `{time}` filled; UsageError (exit 2) for anything
    else, naming `source` (`--out` or `output.dir`)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # a lone { or }
        raise UsageError(f"{source} {template!r}: {exc} (write {{{{ and }}}} for braces)") from None
    text = []
    for literal, field, spec, conversion in parsed:
        text.append(literal)
        if field is None:
            continue
        if field not in DIR_FIELDS or spec or conversion:
            hint = did_you_mean(field, DIR_FIELDS)
            raise UsageError(
                f"{source} {template!r}: {_shown(field, spec, conversion)} is not a field it "
                f"can use{hint}; use {', '.join('{' + f + '}' for f in DIR_FIELDS)}"
            )
        value = values[field]
        if value in ("", ".", "..") or any(c in value for c in "/\\\0"):
            raise UsageError(
                f"{source} {template!r}: {{{field}}} is {value!r}, which cannot name a folder; "
                "set `name:` in the job"
            )
        text.append(value)
    return "".join(text)


def real_dir(out_dir: Path) -> Path:
    """The output dir with every link on its way resolved, once: the dir may live behind a
    link the user made, but below it sdbatch follows none (`output.safepath`)."""
    return Path(os.path.realpath(out_dir))
