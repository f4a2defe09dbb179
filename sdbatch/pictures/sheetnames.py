"""The words of a sheet: its title (the axes, and every field the sheet shares) and its file
names (a folder per slicing, a file per page), which never read `null`.

Entry points: `title(records, axes, z_value)`, `slicing_folder(x, y, z)`, `name_part(field,
value)`, `fit_stem(stem)`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from sdbatch.output.manifest import Record, distinct, field_names, value_text

_TITLE_ORDER = (
    "prompt",
    "seed",
    "seeds",
    "steps",
    "cfg_scale",
    "sampler_name",
    "scheduler",
    "size",
)


def _safe(text: str, limit: int = 40) -> str:
    return re.sub(r"[^\w.+=-]+", "_", text).strip("._")[:limit] or "_"


def name_part(field: str, value: Any, limit: int = 40) -> str:
    """A value as a piece of a file name: readable, never `null`."""
    if value is None:
        return f"no-{_safe(field, limit)}"
    if value == "":
        return f"empty-{_safe(field, limit)}"
    return _safe(value_text(value), limit)


def slicing_folder(x: str | None, y: str | None, z: str | None) -> str:
    """The folder of one slicing's sheets: `cfg_scale-x-steps`, `cfg_scale-x-1-per-sampler_name`
    (a missing axis is one column or row). Field names that do not survive as a file name get
    a short hash, so two slicings never share a folder."""
    text = f"{x or '1'}-x-{y or '1'}" + (f"-per-{z}" if z else "")
    safe = _safe(text, 100)
    if safe != text:
        safe += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return fit_stem(safe)


# File names are at most 255 bytes; a sheet split by many fields (or long non-ASCII values)
# keeps a readable head and a hash of the rest ("-part12.png" still fits).
MAX_STEM_BYTES = 200


def fit_stem(stem: str) -> str:
    data = stem.encode()
    if len(data) <= MAX_STEM_BYTES:
        return stem
    head = data[: MAX_STEM_BYTES - 9].decode(errors="ignore")
    return f"{head}-{hashlib.sha256(data).hexdigest()[:8]}"


def title(records: Sequence[Record], axes: dict[str, str | None], z_value: Any) -> tuple[str, ...]:
    head = "   ".join(f"{k}: {v}" for k, v in axes.items() if v and k != "z")
    if axes.get("z"):
        head += f"   z: {axes['z']} = {value_text(z_value)}"
    fixed: dict[str, str] = {}
    names = [n for n in field_names(records) if n not in axes.values()]
    for name in names:
        values = distinct(records, name)
        if len(values) == 1 and not isinstance(values[0], (dict, list)) and values[0] is not None:
            fixed[name] = value_text(values[0])
    if "seed" not in axes.values() and "seed" not in fixed:
        seeds = distinct(records, "seed")
        fixed["seeds"] = ", ".join(map(value_text, seeds[:8])) + (", ..." if len(seeds) > 8 else "")
    if "width" in fixed and "height" in fixed:
        fixed["size"] = f"{fixed.pop('width')}x{fixed.pop('height')}"
    fixed.pop("negative_prompt", None)  # long, and rarely what a sheet is about
    fixed.pop("override_settings_restore_afterwards", None)  # sdbatch's own plumbing
    order = [k for k in _TITLE_ORDER if k in fixed] + [k for k in fixed if k not in _TITLE_ORDER]
    if "prompt" in fixed and len(fixed["prompt"]) > 80:
        fixed["prompt"] = fixed["prompt"][:77] + "..."
    return (head, *(f"{k}: {fixed[k]}" for k in order))
