"""Contact sheets (X/Y/Z plots) of a run, from its manifest and image files alone.

Entry points: `build_sheets(out_dir, x=..., y=..., z=...) -> list[Path]` (the end of a run) and
`sheet_command(out_dir, x, y, z) -> list[Path]` (`sdbatch sheet`: checks the fields, picks
defaults). Neither contacts the server, so both work on a crashed or copied output dir.

How images become sheets:
- One sheet per value of `z`, and per value of every other field that varies but is not an axis
  and not merely follows from the axes (a prompt list splits sheets per prompt; a prompt built
  from a template var that is an axis does not). Seeds never split: every image of a cell (its
  seeds, its batch) is shown, side by side in a near-square sub-grid, in plan order. When the
  cells share their seeds, each seed keeps its slot in every cell and a missing one gets a
  placeholder. (The webui's own plot shows only the first image; users dislike that.)
- Axis values in plan order (steps 10, 20, 30), not sorted. Column labels (top) and row labels
  (left) are the bare values ("10", "7.5"); the axis names are in the title, with every field
  that is the same across the sheet (prompt, seed, sampler, size, model...).
- A cell whose image is missing, unreadable or failed is a grey placeholder saying so.
- Size budget: cells shrink until a sheet fits `budget_px` pixels, but no smaller than 128 px
  (or the image's own size); a grid still too large is tiled: `sheet-...-part1.png`, ...
- Files: `sheets/sheet-<z value or "all">[-<split values>][-partN].png`, written atomically;
  sheet files of an earlier slicing are removed, so the dir shows one slicing at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdbatch.errors import UsageError, did_you_mean
from sdbatch.output.atomic import replace_file
from sdbatch.output.manifest import (
    MANIFEST,
    Record,
    distinct,
    field_names,
    planned_axes,
    read_records,
    value_key,
    value_text,
)
from sdbatch.pictures.sheetaxes import axis_values, default_axes, split_fields, varying
from sdbatch.pictures.sheetdraw import Label, SheetLayout, Slot, layout, render

__all__ = ["DEFAULT_BUDGET_PX", "BuiltSheet", "Label", "SheetLayout", "build_sheets"]

DEFAULT_BUDGET_PX = 64_000_000
MIN_THUMB = 128
SHEETS_DIR = "sheets"
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


@dataclass(frozen=True)
class BuiltSheet:
    path: Path
    layout: SheetLayout


@dataclass(frozen=True)
class _Page:
    """One sheet's content: the records of each (x, y) cell, before any pixel is placed."""

    stem: str
    title: tuple[str, ...]
    x_values: tuple[Any, ...]  # (None,) when there is no x axis
    y_values: tuple[Any, ...]
    slots: int
    cells: dict[tuple[int, int], tuple[Slot, ...]]
    thumb: tuple[int, int]  # the largest image, before scaling


def _safe(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", text).strip("._")[:limit] or "_"


def _title(records: Sequence[Record], axes: dict[str, str | None], z_value: Any) -> tuple[str, ...]:
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
    order = [k for k in _TITLE_ORDER if k in fixed] + [k for k in fixed if k not in _TITLE_ORDER]
    if "prompt" in fixed and len(fixed["prompt"]) > 80:
        fixed["prompt"] = fixed["prompt"][:77] + "..."
    return (head, *(f"{k}: {fixed[k]}" for k in order))


def _cells(
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
    slots = len(keys) if aligned else most
    cells: dict[tuple[int, int], tuple[Slot, ...]] = {}
    for pos, rs in by_cell.items():
        chosen: dict[int, Record] = {}
        for r in rs:
            at = keys.index(key(r)) if aligned else len(chosen)
            old = chosen.get(at)
            if old is None or (r.ok and (not old.ok or r.line > old.line)):
                chosen[at] = r
        cells[pos] = tuple(_slot(chosen.get(i), out_dir) for i in range(slots))
    return slots, cells


def _slot(record: Record | None, out_dir: Path) -> Slot:
    if record is None:
        return Slot(None, "missing")
    if not record.ok:
        reason = (record.error or "no reason given").strip().splitlines()[0]
        return Slot(None, f"failed: {reason[:60]}")
    path = out_dir / (record.file or "")
    return Slot(path, None) if record.file and path.is_file() else Slot(None, "missing file")


def _pages(
    out_dir: Path,
    records: list[Record],
    x: str | None,
    y: str | None,
    z: str | None,
) -> list[_Page]:
    axes = {"x": x, "y": y, "z": z}
    planned = planned_axes(out_dir)
    named = [a for a in (x, y, z) if a]
    split = split_fields(records, named)
    groups: dict[tuple[str, ...], list[Record]] = {}
    for r in records:
        groups.setdefault(tuple(value_key(r.fields.get(f)) for f in split), []).append(r)
    pages, stems = [], set()
    for n, members in enumerate(groups.values(), start=1):
        xs = axis_values(members, x, planned.get(x)) if x else [None]
        ys = axis_values(members, y, planned.get(y)) if y else [None]
        group = "-".join(_safe(value_text(members[0].fields.get(f)), 24) for f in split)
        sizes = [
            (int(r.fields.get("width") or 512), int(r.fields.get("height") or 512)) for r in members
        ]
        thumb = (max(w for w, _ in sizes), max(h for _, h in sizes))
        for zv in axis_values(members, z, planned.get(z)) if z else [None]:
            rs = [r for r in members if not z or value_key(r.fields.get(z)) == value_key(zv)]
            stem = (
                "sheet-" + (_safe(value_text(zv)) if z else "all") + (f"-{group}" if group else "")
            )
            if stem in stems:  # two split values that sanitise alike
                stem += f"-{n}"
            stems.add(stem)
            slots, cells = _cells(rs, out_dir, x, y, xs, ys)
            title = _title(rs, axes, zv)
            pages.append(_Page(stem, title, tuple(xs), tuple(ys), slots, cells, thumb))
    return pages


def _tiles(page: _Page, budget_px: int) -> list[tuple[SheetLayout, list[int], list[int]]]:
    """The layout(s) for a page: one, shrunk to fit the budget, or tiles at the smallest size."""
    cols, rows = list(range(len(page.x_values))), list(range(len(page.y_values)))
    tw, th = page.thumb
    smallest = min(1.0, MIN_THUMB / max(tw, th))
    scale = 1.0
    while True:
        lay = layout(page.title, page.x_values, page.y_values, page.slots, tw, th, scale)
        if lay.width * lay.height <= budget_px:
            return [(lay, cols, rows)]
        if scale <= smallest:
            break
        scale = max(smallest, scale * math.sqrt(budget_px / (lay.width * lay.height)) * 0.98)
    per_row = (budget_px / (lay.margin_top + lay.cell_h) - lay.margin_left) / lay.cell_w
    ncols = max(1, min(len(cols), int(per_row)))
    per_col = (budget_px / (lay.margin_left + ncols * lay.cell_w) - lay.margin_top) / lay.cell_h
    nrows = max(1, min(len(rows), int(per_col)))
    tiles = []
    for r0 in range(0, len(rows), nrows):
        for c0 in range(0, len(cols), ncols):
            cs, rs = cols[c0 : c0 + ncols], rows[r0 : r0 + nrows]
            xs = tuple(page.x_values[c] for c in cs)
            ys = tuple(page.y_values[r] for r in rs)
            tiles.append((layout(page.title, xs, ys, page.slots, tw, th, scale), cs, rs))
    return tiles


def render_sheets(
    out_dir: Path,
    *,
    x: str | None,
    y: str | None,
    z: str | None = None,
    budget_px: int = DEFAULT_BUDGET_PX,
) -> list[BuiltSheet]:
    """Build every sheet and return each file with its layout (for tests and callers that
    want to point at a cell)."""
    records = read_records(out_dir)
    sheets_dir = out_dir / SHEETS_DIR
    built: list[BuiltSheet] = []
    for page in _pages(out_dir, records, x, y, z):
        tiles = _tiles(page, budget_px)
        for n, (lay, cs, rs) in enumerate(tiles, start=1):
            missing = (Slot(None, "missing"),) * page.slots
            cells = {
                (i, j): page.cells.get((c, r), missing)
                for i, c in enumerate(cs)
                for j, r in enumerate(rs)
            }
            name = page.stem + (f"-part{n}" if len(tiles) > 1 else "") + ".png"
            built.append(BuiltSheet(_save(render(lay, cells), sheets_dir / name), lay))
    written = {b.path.name for b in built}
    for old in sheets_dir.glob("sheet-*.png"):
        if old.name not in written:
            old.unlink(missing_ok=True)
    return built


def _save(image: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return replace_file(path, lambda tmp: image.save(tmp, format="PNG"))


def build_sheets(
    out_dir: Path,
    *,
    x: str | None,
    y: str | None,
    z: str | None = None,
    budget_px: int = DEFAULT_BUDGET_PX,
) -> list[Path]:
    """Write the sheets for these axes (None: no such axis) and return their paths."""
    return [b.path for b in render_sheets(out_dir, x=x, y=y, z=z, budget_px=budget_px)]


def sheet_command(
    out_dir: Path, x: str | None = None, y: str | None = None, z: str | None = None
) -> list[Path]:
    """`sdbatch sheet OUTDIR [--x F] [--y F] [--z F]`: check the fields, default x and y when
    both are omitted, and (re)build the sheets. UsageError (exit 2) for a bad dir or field."""
    records = read_records(out_dir)
    if not records:
        raise UsageError(f"{out_dir / MANIFEST} has no rows yet: nothing to draw")
    known = field_names(records)
    given = [(flag, name) for flag, name in (("x", x), ("y", y), ("z", z)) if name]
    for flag, name in given:
        if name not in known:
            hint = did_you_mean(name, known)
            raise UsageError(f"--{flag} {name}: no such field in {out_dir}{hint}")
        if len(distinct(records, name)) < 2:
            moving = ", ".join(varying(records)) or "none"
            raise UsageError(f"--{flag} {name}: the same in every image (varying: {moving})")
    if len({name for _, name in given}) < len(given):
        raise UsageError("--x, --y and --z must name different fields")
    if x is None and y is None:
        x, y = default_axes(records, exclude=[z] if z else [])
    return build_sheets(out_dir, x=x, y=y, z=z)
