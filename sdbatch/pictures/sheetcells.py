"""What goes in each cell of a sheet: which image fills which slot, and why a slot is empty.

Entry points: `cells_of(records, ...)` (the slots of every cell that has rows),
`excluded_cells(records, rules, ...)` (the cells that the job's `exclude:` rules removed: drawn
"excluded", not "missing") and `read_plan(out_dir)` (the planned axes and those rules).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdbatch.output.manifest import PLANNED, Record, planned_axes, value_key
from sdbatch.pictures.files import image_file

EXCLUDED = "excluded"  # the reason of a slot that the job's `exclude:` removed


@dataclass(frozen=True)
class Slot:
    """One image place in a cell: a file to show, or the reason there is none."""

    path: Path | None
    reason: str | None  # "missing", "missing file", "failed: ...", EXCLUDED


# plan.json holds the axis values (a 10^6-seed list drawn at random is ~11 MB); a bigger one
# was not written by sdbatch.
MAX_PLAN_BYTES = 64 << 20


def cells_of(
    records: Sequence[Record],
    out_dir: Path,
    x: str | None,
    y: str | None,
    xs: list[Any],
    ys: list[Any],
) -> tuple[int, dict[tuple[int, int], tuple[Slot, ...]]]:
    xi = {value_key(v): i for i, v in enumerate(xs)}
    yi = {value_key(v): i for i, v in enumerate(ys)}
    by_cell: dict[tuple[int, int], list[Record]] = {}
    for r in records:
        col = xi[value_key(r.fields.get(x))] if x else 0
        row = yi[value_key(r.fields.get(y))] if y else 0
        by_cell.setdefault((col, row), []).append(r)

    def key(r: Record) -> tuple[Any, int]:
        return (None if "seed" in (x, y) else r.seed, r.image_index)

    # Seeds shared by every cell keep their slot; otherwise images fill slots in plan order.
    keys = list(dict.fromkeys(key(r) for r in records))
    most = max((len({key(r) for r in rs}) for rs in by_cell.values()), default=1)
    aligned = len(keys) <= most
    slots = max(1, len(keys) if aligned else most)  # a sheet with no row yet still has cells
    cells: dict[tuple[int, int], tuple[Slot, ...]] = {}
    for pos, rs in by_cell.items():
        chosen: dict[int, Record] = {}
        for r in rs:
            at = keys.index(key(r)) if aligned else len(chosen)
            old = chosen.get(at)
            if old is None or (r.ok and (not old.ok or r.line > old.line)):
                chosen[at] = r
        cells[pos] = tuple(slot_of(chosen.get(i), out_dir) for i in range(slots))
    return slots, cells


def slot_of(record: Record | None, out_dir: Path) -> Slot:
    if record is None:
        return Slot(None, "missing")
    if not record.ok:
        reason = ((record.error or "").strip().splitlines() or ["no reason given"])[0]
        return Slot(None, f"failed: {reason[:60]}")
    # Only a regular file inside the output dir, reached without a symlink, is read.
    path = image_file(out_dir, record.file)
    return Slot(path, None) if path is not None else Slot(None, "missing file")


def read_plan(out_dir: Path) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """plan.json's axis values and `exclude:` rules; none of either when it is not a regular
    file inside the dir (a FIFO there would hang the reader), is over MAX_PLAN_BYTES, or is
    nested too deep to parse. The sheets then go by the manifest alone."""
    path = image_file(out_dir, PLANNED)
    try:
        if path is None or path.stat().st_size > MAX_PLAN_BYTES:
            return {}, []
        return planned_axes(out_dir), planned_exclude(out_dir)
    except (OSError, RecursionError):
        return {}, []


def planned_exclude(out_dir: Path) -> list[dict[str, Any]]:
    """The job's `exclude:` rules as plan.json keeps them; [] without them (an older run)."""
    try:
        data = json.loads((out_dir / PLANNED).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return []
    rules = data.get("exclude") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        return []
    return [dict(r) for r in rules if isinstance(r, dict) and r]


def _same(a: Any, b: Any) -> bool:
    # As the plan compares (7 == 7.0), but true is not 1.
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


class _Shared:
    """Per group of records: each watched field's value while they all share one."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.mixed: set[str] = set()

    def add(self, fields: Mapping[str, Any], names: Sequence[str]) -> None:
        for name in names:
            if name in self.mixed or name not in fields:
                continue
            if name in self.values and not _same(self.values[name], fields[name]):
                self.mixed.add(name)
                del self.values[name]
            elif name not in self.values:
                self.values[name] = fields[name]


def excluded_cells(
    records: Sequence[Record],
    rules: Sequence[Mapping[str, Any]],
    x: str | None,
    y: str | None,
    xs: Sequence[Any],
    ys: Sequence[Any],
    fixed: Mapping[str, Any],
) -> frozenset[tuple[int, int]]:
    """The (column, row) cells of one sheet that a rule removes: every field the rule names has
    its value there — the cell's x or y value, a value `fixed` for the whole sheet (its z value,
    the values that split it), or one that all images of the sheet, or of the cell's column or
    row, share (a zip partner of an axis). One pass over the records, whatever the grid's
    size."""
    names = sorted({n for rule in rules for n in rule})
    if not names:
        return frozenset()
    xi = {value_key(v): i for i, v in enumerate(xs)}
    yi = {value_key(v): i for i, v in enumerate(ys)}
    sheet, cols, rows = _Shared(), [_Shared() for _ in xs], [_Shared() for _ in ys]
    for r in records:
        sheet.add(r.fields, names)
        if x and value_key(r.fields.get(x)) in xi:
            cols[xi[value_key(r.fields.get(x))]].add(r.fields, names)
        if y and value_key(r.fields.get(y)) in yi:
            rows[yi[value_key(r.fields.get(y))]].add(r.fields, names)
    gone = set()
    for c, xv in enumerate(xs):
        for w, yv in enumerate(ys):
            known = {**sheet.values, **cols[c].values, **rows[w].values, **fixed}
            if x:
                known[x] = xv
            if y:
                known[y] = yv
            if any(
                all(k in known and _same(known[k], v) for k, v in rule.items()) for rule in rules
            ):
                gone.add((c, w))
    return frozenset(gone)
