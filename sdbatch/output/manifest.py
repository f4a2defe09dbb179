"""Read a run's `manifest.jsonl` (finished or crashed) into frozen records: sheets, galleries.

Entry point: `read_records(out_dir) -> list[Record]`: the rows still in force, in plan order.
Only the manifest is read, never the server, so this works on a copied or half-finished dir.

A record's plan fields (`Record.fields`) are looked up in the order `vars`, `cell`, `payload`,
then what the server reported (`sampler_name`, `scheduler`, `sd_model_name`, `width`, `height`),
with `seed` the seed the server used. Rows written before `vars`/`template` existed read fine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sdbatch.errors import UsageError

# The writer appends to this file; everything downstream of it (resume, sheets, gallery) reads it.
MANIFEST = "manifest.jsonl"
# The axis values the run planned, written before its first request: a run killed half-way
# still tells its sheets which rows and columns it meant to fill.
PLANNED = "plan.json"

# What the server says it used: the payload may leave these to the webui's defaults.
SERVER_FIELDS = ("sampler_name", "scheduler", "sd_model_name", "width", "height")


@dataclass(frozen=True)
class Record:
    id: str
    job: str | None
    status: str  # "ok" or "failed"
    file: str | None  # relative to the output dir; None for a failed payload
    seed: int | None
    payload_id: str
    payload_index: int
    image_index: int
    error: str | None
    template: str | None
    vars: Mapping[str, Any]
    cell: Mapping[str, Any]
    fields: Mapping[str, Any]  # every plan field, looked up as the module doc says
    line: int  # position in the manifest: later rows supersede earlier ones

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def value_key(value: Any) -> str:
    """A hashable, type-exact key for a field value (5 and 5.0 and "5" stay apart)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def value_text(value: Any) -> str:
    """How a value reads in a label: strings bare, everything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _mapping(value: Any) -> Mapping[str, Any]:
    return MappingProxyType(dict(value)) if isinstance(value, dict) else MappingProxyType({})


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _record(row: Mapping[str, Any], line: int) -> Record:
    payload = row.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    vars_, cell = _mapping(row.get("vars")), _mapping(row.get("cell"))
    # A failed row has no top-level seed: the payload's is the one it would have used.
    seed = row.get("seed", payload.get("seed"))
    server = {k: row[k] for k in SERVER_FIELDS if row.get(k) is not None}
    fields = {**server, **payload, **cell, **vars_}
    if seed is not None:
        fields["seed"] = seed
    template = row.get("template")
    if isinstance(template, str):
        # A field too: two templates over the same vars are two different sheets.
        fields["template"] = template
    return Record(
        id=str(row.get("id")),
        job=str(row["job"]) if row.get("job") else None,
        status="ok" if row.get("status") == "ok" else "failed",
        file=str(row["file"]) if row.get("file") else None,
        seed=_int(seed) if seed is not None else None,
        payload_id=str(row.get("payload_id", row.get("id"))),
        payload_index=_int(row.get("payload_index")),
        image_index=_int(row.get("image_index")),
        error=str(row["error"]) if row.get("error") else None,
        template=template if isinstance(template, str) else None,
        vars=vars_,
        cell=cell,
        fields=MappingProxyType(fields),
        line=line,
    )


def in_force(records: Iterable[Record]) -> list[Record]:
    """The latest row per id, minus failed payloads that a later run made after all, in plan
    order. (A failed row's id is its payload's; the images made later have their own ids.)"""
    latest: dict[str, Record] = {}
    for record in sorted(records, key=lambda r: r.line):
        latest[record.id] = record
    made_later: dict[str, int] = {}
    for record in latest.values():
        if record.ok:
            made_later[record.payload_id] = max(made_later.get(record.payload_id, -1), record.line)
    kept = [r for r in latest.values() if r.ok or made_later.get(r.payload_id, -1) < r.line]
    return sorted(kept, key=lambda r: (r.payload_index, r.image_index, r.line))


def parse_lines(text: str) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """Each line of a manifest as (line number, row); the row is None for a line that is not
    a JSON object: the one a crash cut short mid-append. Resume and pictures both read this."""
    for line_no, line in enumerate(text.splitlines()):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        yield line_no, row if isinstance(row, dict) else None


def read_records(out_dir: Path) -> list[Record]:
    """The rows in force in `out_dir`'s manifest. A torn or foreign line is skipped: the run
    that wrote it may have been killed mid-append."""
    path = out_dir / MANIFEST
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UsageError(f"{out_dir} has no {MANIFEST}: not an sdbatch output dir") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    records = [_record(row, n) for n, row in parse_lines(text) if row and "id" in row]
    return in_force(records)


def planned_axes(out_dir: Path) -> dict[str, list[Any]]:
    """Each planned axis's values in plan order, from plan.json; {} when there is none."""
    try:
        data = json.loads((out_dir / PLANNED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    axes = data.get("axes") if isinstance(data, dict) else None
    return {k: v for k, v in axes.items() if isinstance(v, list)} if isinstance(axes, dict) else {}


def field_names(records: Iterable[Record]) -> list[str]:
    """Every plan field present in any record, in first-seen order."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record.fields))
    return list(names)


def distinct(records: Iterable[Record], name: str) -> list[Any]:
    """The values `name` takes, in plan order (first appearance), not sorted: steps 10, 20, 30."""
    seen: dict[str, Any] = {}
    for record in records:
        value = record.fields.get(name)
        seen.setdefault(value_key(value), value)
    return list(seen.values())
