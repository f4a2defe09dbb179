"""What a gallery shows of each row: the fields that vary across the run, on its card or its
line in the "not shown" table; the fields every row shares, once, at the top of every page.

Entry points: `Variation.of(records)` (one pass over the rows in force, one value kept per
field, so memory does not grow with the run), `card(...)` and `problem(...)` (HTML). Every text
is HTML-escaped; a URL is only ever one the caller built from a checked relative path.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sdbatch.output.manifest import Record, value_text

# Shown first, in this order; the template's vars and grid values follow, then the rest.
_FIRST = ("prompt", "seed", "steps", "cfg_scale", "sampler_name", "scheduler", "size")
_LAST = ("sd_model_name", "negative_prompt")
_HIDDEN = ("width", "height")  # shown together, as "size"
_FOLDED = ("override_settings_restore_afterwards",)  # sdbatch's own plumbing
MAX_ERROR_CHARS = 2000  # of a failed payload's error, on the page (the manifest has it all)


def e(value: Any) -> str:
    """A value as escaped HTML text (strings bare, anything else as compact JSON)."""
    return html.escape(value_text(value), quote=True)


def fields_of(record: Record) -> dict[str, Any]:
    fields = dict(record.fields)
    if "width" in fields and "height" in fields:
        fields["size"] = f"{fields['width']}x{fields['height']}"
    return fields


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) and type(a) is type(b)


@dataclass(frozen=True)
class Variation:
    varying: tuple[str, ...]  # in card order
    common: Mapping[str, Any]  # field -> the one value every row has (None left out)

    @classmethod
    def of(cls, records: Iterable[Record]) -> Variation:
        first: dict[str, Any] = {}
        seen: dict[str, int] = {}
        moving: set[str] = set()
        plan: dict[str, None] = {}  # vars and grid fields, in the job's order
        images = 0
        for record in records:
            images += record.ok
            plan.update(dict.fromkeys(record.vars))
            plan.update(dict.fromkeys(record.cell))
            for name, value in fields_of(record).items():
                seen[name] = seen.get(name, 0) + record.ok
                if name not in first:
                    first[name] = value
                elif name not in moving and not _same(first[name], value):
                    moving.add(name)
        # A field some images lack varies too (between a value and none). A failed payload
        # lacks what only the server reports (the model, the size): that is no variation.
        moving.update(n for n, count in seen.items() if count < images)
        order = [n for n in dict.fromkeys((*_FIRST, *plan, *first, *_LAST)) if n in first]
        order = [n for n in order if n not in _HIDDEN and n not in _LAST] + [
            n for n in _LAST if n in first
        ]
        varying = tuple(n for n in order if n in moving)
        common = {n: first[n] for n in order if n not in moving and first[n] is not None}
        return cls(varying, common)

    def top(self) -> str:
        """The shared fields as HTML: plain values listed, structured ones (the options
        preflight pins) folded away."""
        plain = {
            k: v
            for k, v in self.common.items()
            if not isinstance(v, (dict, list)) and k not in _FOLDED
        }
        folded = {k: v for k, v in self.common.items() if k not in plain}
        more = f"<details><summary>{len(folded)} more</summary>{dl(folded)}</details>"
        return (dl(plain) if plain else "") + (more if folded else "")

    def shown(self, record: Record) -> dict[str, Any]:
        fields = fields_of(record)
        return {n: fields[n] for n in self.varying if fields.get(n) is not None}


def dl(fields: Mapping[str, Any]) -> str:
    return "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in fields.items()) + "</dl>"


def card(record: Record, i: int, href: str, thumb: str, shown: Mapping[str, Any]) -> str:
    """One image: its thumbnail linking to the file, and the fields that vary."""
    name = e(record.file)
    return (
        f'<figure data-i="{i}"><a href="{href}" title="{name}">'
        f'<img src="{thumb}" loading="lazy" alt="{name}"></a>{dl(shown)}</figure>'
    )


def problem(record: Record, i: int, reason: str, shown: Mapping[str, Any]) -> str:
    """One row of the "not shown" table: why, and the payload's values that vary."""
    if len(reason) > MAX_ERROR_CHARS:
        reason = reason[:MAX_ERROR_CHARS] + "…"
    return (
        f'<tr data-i="{i}"><td>{record.payload_index}</td><td>{dl(shown)}</td>'
        f'<td class="why">{e(reason)}</td></tr>'
    )
