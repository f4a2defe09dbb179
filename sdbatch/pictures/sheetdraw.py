"""The pixels of a contact sheet: where every label and cell goes, and drawing them (Pillow).

Entry points: `layout(...) -> SheetLayout` measures a sheet without drawing it (so the budget
can be checked first); `render(layout, cells) -> Image` draws it. `sheet` decides what
goes in which cell.

Geometry, exactly: the image is `margin_left + cols * cell_w` wide and `margin_top + rows *
cell_h` high. A cell holds `slots` images in a near-square sub-grid of `thumb_w x thumb_h` boxes
`inner` pixels apart, centred in the cell, each image shrunk to fit its box and centred; the
rest of the cell is white, so neighbouring cells stand at least `gap` pixels apart (images that
touch read as one picture).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from sdbatch.output.manifest import value_text
from sdbatch.pictures.files import shrink
from sdbatch.pictures.sheetcells import EXCLUDED, Slot

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive)

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
PLACEHOLDER = (200, 200, 200)
PLACEHOLDER_INK = (70, 70, 70)
EXCLUDED_FILL = (236, 236, 236)  # lighter than a missing image: nothing was meant to be there
EXCLUDED_INK = (130, 130, 130)


@dataclass(frozen=True)
class Label:
    text: str
    box: Box  # the label's whole band along its row or column


@dataclass(frozen=True)
class SheetLayout:
    cell_w: int
    cell_h: int
    thumb_w: int
    thumb_h: int
    slot_cols: int
    slot_rows: int
    inner: int  # between the images of one cell
    gap: int  # at least this much white between two cells
    cols: int
    rows: int
    margin_left: int
    margin_top: int
    font_size: int
    title: tuple[str, ...]
    col_labels: tuple[Label, ...]  # empty without an x axis
    row_labels: tuple[Label, ...]  # empty without a y axis

    @property
    def width(self) -> int:
        return self.margin_left + self.cols * self.cell_w

    @property
    def height(self) -> int:
        return self.margin_top + self.rows * self.cell_h

    def cell_box(self, col: int, row: int) -> Box:
        left, top = self.margin_left + col * self.cell_w, self.margin_top + row * self.cell_h
        return left, top, left + self.cell_w, top + self.cell_h

    def slot_box(self, col: int, row: int, slot: int) -> Box:
        left, top, _, _ = self.cell_box(col, row)
        used_w = self.slot_cols * (self.thumb_w + self.inner) - self.inner
        used_h = self.slot_rows * (self.thumb_h + self.inner) - self.inner
        left += (self.cell_w - used_w) // 2 + (slot % self.slot_cols) * (self.thumb_w + self.inner)
        top += (self.cell_h - used_h) // 2 + (slot // self.slot_cols) * (self.thumb_h + self.inner)
        return left, top, left + self.thumb_w, top + self.thumb_h


@functools.lru_cache(maxsize=16)
def font(size: int) -> Font:
    """A scalable TrueType font (Pillow >= 10.1 ships one); the bitmap default without FreeType."""
    try:
        return ImageFont.load_default(size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _text_w(f: Font, text: str) -> int:
    return math.ceil(f.getlength(text))


def _line_h(f: Font) -> int:
    return int(f.getbbox("Ag|")[3]) + 2


def fit(f: Font, text: str, width: int) -> str:
    """`text`, cut with "..." to fit `width` pixels."""
    if _text_w(f, text) <= width:
        return text
    while text and _text_w(f, text + "...") > width:
        text = text[:-1]
    return text + "..." if text else ""


def _pack(f: Font, title: Sequence[str], width: int, most: int = 6) -> tuple[str, ...]:
    """The first title line as is, the parameters after it packed into as few lines as fit."""
    lines = list(title[:1])
    for item in title[1:]:
        if len(lines) > 1 and _text_w(f, lines[-1] + "   " + item) <= width:
            lines[-1] += "   " + item
        else:
            lines.append(item)
    return tuple(fit(f, t, width) for t in lines[:most])


def layout(
    title: Sequence[str],
    x_values: Sequence[Any],
    y_values: Sequence[Any],
    slots: int,
    thumb_w: int,
    thumb_h: int,
    scale: float,
) -> SheetLayout:
    """Measure a sheet whose images are scaled by `scale` (labels follow the cell size)."""
    slot_cols = max(1, math.ceil(math.sqrt(slots)))
    slot_rows = max(1, math.ceil(slots / slot_cols))
    tw, th = max(1, round(thumb_w * scale)), max(1, round(thumb_h * scale))
    # The white gap belongs to the cells (half on each side), so the geometry stays margins +
    # n * cell; the images of one cell stand closer together than two cells do.
    gap = max(8, min(tw, th) // 16)
    inner = 0 if slots == 1 else max(2, gap // 4)
    cell_w = tw * slot_cols + inner * (slot_cols - 1) + gap
    cell_h = th * slot_rows + inner * (slot_rows - 1) + gap
    size = max(12, min(64, min(cell_w, cell_h) // 16))
    f = font(size)
    pad, line = size // 2, _line_h(f)
    has_x, has_y = tuple(x_values) != (None,), tuple(y_values) != (None,)
    xs = [value_text(v) for v in x_values] if has_x else []
    ys = [value_text(v) for v in y_values] if has_y else []
    # Images smaller than their column's label (64 px, "DPM++ 2M Karras") widen the cell, up to
    # 300 px, so the label stays readable; longer ones are cut.
    cell_w = max(cell_w, min(300, max((_text_w(f, t) for t in xs), default=0) + 2 * pad))
    # Row labels get what they need, up to a cell's width or 300 px; longer ones are cut.
    cap = max(cell_w, 300)
    margin_left = min(cap, max((_text_w(f, t) for t in ys), default=-2 * pad) + 2 * pad)
    cols, rows = max(1, len(xs)), max(1, len(ys))
    lines = _pack(f, title, margin_left + cols * cell_w - 2 * pad)
    title_h = pad + line * len(lines)
    margin_top = title_h + (line + pad if has_x else 0) + pad
    col_labels = tuple(
        Label(
            fit(f, t, cell_w - pad),
            (margin_left + i * cell_w, title_h, margin_left + (i + 1) * cell_w, margin_top),
        )
        for i, t in enumerate(xs)
    )
    row_labels = tuple(
        Label(
            fit(f, t, margin_left - pad),
            (0, margin_top + j * cell_h, margin_left, margin_top + (j + 1) * cell_h),
        )
        for j, t in enumerate(ys)
    )
    return SheetLayout(
        cell_w,
        cell_h,
        tw,
        th,
        slot_cols,
        slot_rows,
        inner,
        gap,
        cols,
        rows,
        margin_left,
        margin_top,
        size,
        lines,
        col_labels,
        row_labels,
    )


def _placeholder(draw: ImageDraw.ImageDraw, box: Box, reason: str, size: int) -> None:
    left, top, right, bottom = box
    excluded = reason == EXCLUDED
    fill, ink = (EXCLUDED_FILL, EXCLUDED_INK) if excluded else (PLACEHOLDER, PLACEHOLDER_INK)
    draw.rectangle((left, top, right - 1, bottom - 1), fill=fill, outline=BACKGROUND)
    f = font(max(10, min(size, (right - left) // 8)))
    # Wrap the reason word by word into the box; what does not fit is cut.
    lines: list[str] = []
    for word in reason.split():
        if lines and _text_w(f, lines[-1] + " " + word) <= right - left - 8:
            lines[-1] += " " + word
        else:
            lines.append(fit(f, word, right - left - 8))
    line = _line_h(f)
    lines = lines[: max(1, (bottom - top - 8) // line)]
    y = top + (bottom - top - line * len(lines)) // 2
    for text in lines:
        x = left + (right - left - _text_w(f, text)) // 2
        draw.text((x, y), text, fill=ink, font=f)
        y += line


def _paste(sheet: Image.Image, box: Box, path: Path) -> bool:
    thumb = shrink(path, (box[2] - box[0], box[3] - box[1]))
    if thumb is None:
        return False
    left = box[0] + (box[2] - box[0] - thumb.width) // 2
    top = box[1] + (box[3] - box[1] - thumb.height) // 2
    sheet.paste(thumb, (left, top))
    return True


def _centred(draw: ImageDraw.ImageDraw, label: Label, f: Font) -> None:
    left, top, right, bottom = label.box
    x = left + (right - left - _text_w(f, label.text)) // 2
    y = top + (bottom - top - _line_h(f)) // 2
    draw.text((x, y), label.text, fill=INK, font=f)


def render(lay: SheetLayout, cells: Mapping[tuple[int, int], Sequence[Slot]]) -> Image.Image:
    """Draw the sheet: title, labels, and each cell's images or placeholders."""
    sheet = Image.new("RGB", (lay.width, lay.height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    f = font(lay.font_size)
    pad, line = lay.font_size // 2, _line_h(f)
    for n, text in enumerate(lay.title):
        draw.text((pad, pad + n * line), text, fill=INK, font=f)
    for label in (*lay.col_labels, *lay.row_labels):
        _centred(draw, label, f)
    for row in range(lay.rows):
        for col in range(lay.cols):
            slots = cells.get((col, row)) or (Slot(None, "missing"),)
            for n, slot in enumerate(slots):
                box = lay.slot_box(col, row, n)
                if slot.path is None or not _paste(sheet, box, slot.path):
                    _placeholder(draw, box, slot.reason or "unreadable", lay.font_size)
    return sheet
