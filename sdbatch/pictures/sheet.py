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
- A cell whose image is missing, unreadable or failed is a grey placeholder saying so; a cell
  that the job's `exclude:` removed (the rules are in plan.json) is a lighter one saying
  "excluded", so a hole in the plan does not read as a lost image.
- Size budget: cells shrink until a sheet fits `budget_px` pixels, but no smaller than 128 px
  (or the image's own size); a grid still too large is tiled: `sheet-...-part1.png`, ...
- Files: `sheets/<x>-x-<y>[-per-<z>]/sheet-<z value or "all">[-<split values>][-partN].png`,
  written atomically. Each slicing has its own folder, so `sdbatch sheet --x .. --y ..` never
  overwrites the job's own sheets; a redraw of one slicing removes the files it no longer makes
  there. A null value is named after its field (`no-scheduler`), never `null`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from sdbatch.errors import UsageError, did_you_mean
from sdbatch.output.manifest import (
    MANIFEST,
    Record,
    distinct,
    field_names,
    read_records,
    value_key,
)
from sdbatch.pictures.files import folder, save, sweep, writing
from sdbatch.pictures.sheetaxes import axis_values, default_axes, split_fields, varying
from sdbatch.pictures.sheetcells import EXCLUDED, Slot, cells_of, excluded_cells, read_plan
from sdbatch.pictures.sheetdraw import Label, SheetLayout, layout, render
from sdbatch.pictures.sheetnames import fit_stem, name_part, slicing_folder, title

__all__ = ["DEFAULT_BUDGET_PX", "BuiltSheet", "Label", "SheetLayout", "build_sheets"]

DEFAULT_BUDGET_PX = 64_000_000
MIN_THUMB = 128
SHEETS_DIR = "sheets"


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
    excluded: frozenset[tuple[int, int]]  # cells the job's `exclude:` removed


def _pages(
    out_dir: Path,
    records: list[Record],
    x: str | None,
    y: str | None,
    z: str | None,
) -> list[_Page]:
    axes = {"x": x, "y": y, "z": z}
    planned, rules = read_plan(out_dir)
    named = [a for a in (x, y, z) if a]
    split = split_fields(records, named)
    groups: dict[tuple[str, ...], list[Record]] = {}
    for r in records:
        groups.setdefault(tuple(value_key(r.fields.get(f)) for f in split), []).append(r)
    pages, stems = [], set()
    for n, members in enumerate(groups.values(), start=1):
        xs = axis_values(members, x, planned.get(x)) if x else [None]
        ys = axis_values(members, y, planned.get(y)) if y else [None]
        group = "-".join(name_part(f, members[0].fields.get(f), 24) for f in split)
        sizes = [
            (int(r.fields.get("width") or 512), int(r.fields.get("height") or 512)) for r in members
        ]
        thumb = (max(w for w, _ in sizes), max(h for _, h in sizes))
        for zv in axis_values(members, z, planned.get(z)) if z else [None]:
            rs = [r for r in members if not z or value_key(r.fields.get(z)) == value_key(zv)]
            stem = "sheet-" + (name_part(z, zv) if z else "all") + (f"-{group}" if group else "")
            stem = fit_stem(stem)
            if stem in stems:  # two split values that sanitise alike
                stem += f"-{n}"
            stems.add(stem)
            slots, cells = cells_of(rs, out_dir, x, y, xs, ys)
            heading = title(rs, axes, zv)
            fixed = {f: members[0].fields.get(f) for f in split} | ({z: zv} if z else {})
            gone = excluded_cells(rs, rules, x, y, xs, ys, fixed)
            pages.append(_Page(stem, heading, tuple(xs), tuple(ys), slots, cells, thumb, gone))
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
    pages = _pages(out_dir, records, x, y, z)
    sheets_dir = folder(folder(out_dir, SHEETS_DIR), slicing_folder(x, y, z))
    sweep(sheets_dir)
    built: list[BuiltSheet] = []
    for page in pages:
        tiles = _tiles(page, budget_px)
        for n, (lay, cs, rs) in enumerate(tiles, start=1):
            cells = {
                (i, j): page.cells.get((c, r)) or _empty(page, (c, r))
                for i, c in enumerate(cs)
                for j, r in enumerate(rs)
            }
            for pos, slots in cells.items():
                if (cs[pos[0]], rs[pos[1]]) in page.excluded:
                    # Rows an earlier version of the job made stay; only the holes say why.
                    cells[pos] = tuple(Slot(None, EXCLUDED) if s.reason else s for s in slots)
            name = page.stem + (f"-part{n}" if len(tiles) > 1 else "") + ".png"
            built.append(BuiltSheet(_save_png(render(lay, cells), sheets_dir / name), lay))
    written = {b.path.name for b in built}
    for old in sheets_dir.glob("sheet-*.png"):
        if old.name not in written and not old.is_dir():
            with writing(old):
                old.unlink(missing_ok=True)
    return built


def _save_png(image: Image.Image, path: Path) -> Path:
    return save(path, lambda fh: image.save(fh, format="PNG"))


def _empty(page: _Page, pos: tuple[int, int]) -> tuple[Slot, ...]:
    return (Slot(None, EXCLUDED if pos in page.excluded else "missing"),) * page.slots


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
