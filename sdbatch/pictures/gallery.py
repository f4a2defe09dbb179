"""A static `index.html` gallery of a run: every image with the parameters that vary, filter and
sort, the failed payloads with their values and errors, and links to the sheets.

Entry point: `build_gallery(out_dir) -> Path`. It reads the manifest only (never the server) and
writes self-contained pages: inline CSS and JS (galleryassets), no external asset, images and
sheets referenced by relative URLs, so they work from file:// and after the folder is copied or
moved. A URL is only ever made from a file name that stays inside the output dir without a
symlink (pictures.files): a row naming `../../etc/passwd`, an absolute path or `javascript:` is
listed as refused, not linked, and its file is not read. Thumbnails come from pictures.thumbs.

The fields every row shares are listed once, at the top of each page; cards and the failed
table show only the fields that vary. The cards are plain HTML (the page shows everything
without JS); the script only hides and reorders them, using a JSON blob in
`<script type="application/json">`. Every text is HTML-escaped, and `<`, `>`, `&` in the JSON
are \\u-escaped, so a prompt holding `</script>` or quotes cannot break out.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sdbatch.output.manifest import InForce, Record
from sdbatch.pictures.files import image_file, relative_name, save, writing
from sdbatch.pictures.galleryassets import CSS, JS
from sdbatch.pictures.gallerycards import Variation, card, problem
from sdbatch.pictures.sheet import SHEETS_DIR
from sdbatch.pictures.thumbs import THUMB_PX, Thumbs

GALLERY = "index.html"
# Images per page: a 10^5-image run is 200 pages of ~0.3 MB, not one 66 MB page.
PAGE_SIZE = 500
MAX_SHEET_LINKS = 100  # on each page; the rest are a click away in sheets/


def _json(value: Any) -> str:
    # \\u-escapes keep "</script>" and "<!--" in a prompt from ending the script element.
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _nav(page: int, pages: int) -> str:
    """Links to the other pages: first, a window around this one, last."""
    if pages <= 1:
        return ""
    shown = sorted({1, pages, *range(max(1, page - 3), min(pages, page + 3) + 1)})
    parts, previous = [], 0
    for n in shown:
        if n - previous > 1:
            parts.append("…")
        parts.append(f"<b>{n}</b>" if n == page else f'<a href="{page_name(n)}">{n}</a>')
        previous = n
    return f"<nav>page {page} of {pages}: {' '.join(parts)}</nav>"


def page_name(page: int) -> str:
    return GALLERY if page == 1 else f"index-{page}.html"


def sheet_links(out_dir: Path, most: int = MAX_SHEET_LINKS) -> tuple[list[str], int]:
    """Relative names of the sheets (`sheets/<slicing>/<file>.png`, and older flat ones), the
    first `most` in name order, and how many there are; a symlink is neither listed nor
    followed."""
    found: list[str] = []
    top = out_dir / SHEETS_DIR
    if top.is_symlink() or not top.is_dir():
        return [], 0
    try:
        for entry in sorted(os.scandir(top), key=lambda x: x.name):
            if entry.is_dir(follow_symlinks=False):
                found += sorted(
                    f"{SHEETS_DIR}/{entry.name}/{f.name}"
                    for f in os.scandir(entry.path)
                    if f.name.endswith(".png") and f.is_file(follow_symlinks=False)
                )
            elif entry.name.endswith(".png") and entry.is_file(follow_symlinks=False):
                found.append(f"{SHEETS_DIR}/{entry.name}")
    except OSError:
        pass
    found = [f for f in found if not f.rpartition("/")[2].startswith(".")]
    return found[:most], len(found)


def _top(variation: Variation, sheets: tuple[list[str], int]) -> str:
    """The fields every row shares, and the sheets."""
    parts = []
    if variation.common:
        parts.append(variation.top())
    shown, total = sheets
    if total:
        links = " ".join(
            f'<a href="{quote(s)}">{html.escape(s[len(SHEETS_DIR) + 1 :])}</a>' for s in shown
        )
        more = (
            f' … <a href="{SHEETS_DIR}/">{total - len(shown)} more</a>'
            if total > len(shown)
            else ""
        )
        parts.append(f'<div class="sheets">sheets: {links}{more}</div>')
    return f'<section class="common">{"".join(parts)}</section>' if parts else ""


def render(
    records: Iterable[Record],
    out_dir: Path,
    title: str,
    *,
    variation: Variation,
    thumbs: Thumbs,
    sheets: tuple[list[str], int] = ([], 0),
    page: int = 1,
    pages: int = 1,
) -> str:
    """One page for these records: a card per image on disk, a table row for every failed
    payload and every image whose file is gone or refused."""
    cards: list[str] = []
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    for record in records:
        i = len(rows)
        shown = variation.shown(record)
        rows.append({**shown, "index": i, "status": record.status})
        if not record.ok:
            reason = f"failed: {record.error or 'no reason given'}"
            problems.append(problem(record, i, reason, shown))
        elif relative_name(record.file) is None:
            reason = f"refused: {record.file!r} is not a file inside the output dir"
            problems.append(problem(record, i, reason, shown))
        elif image_file(out_dir, record.file) is None:
            problems.append(problem(record, i, f"missing file: {record.file}", shown))
        else:
            assert record.file is not None
            fields = record.fields
            thumb = thumbs.url(record.file, fields.get("width"), fields.get("height"))
            cards.append(card(record, i, quote(record.file), thumb, shown))
    names = [n for n in variation.varying if n != "negative_prompt"]
    data = {"rows": rows, "fields": names, "images": len(cards)}
    failed = ""
    if problems:
        failed = (
            f"<section><h2>Not shown ({len(problems)})</h2><table><tr><th>payload</th>"
            f"<th>values</th><th>why</th></tr>{''.join(problems)}</table></section>"
        )
    nav = _nav(page, pages)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body><header><strong>{html.escape(title)}</strong>
<label>filter <select id="field"><option value="">(field)</option></select></label>
<label>= <select id="value"></select></label>
<label>sort <select id="sort"><option value="">plan order</option></select></label>
<label><input type="checkbox" id="desc"> descending</label>
<span id="count">{len(cards)} images</span>{nav}</header>{_top(variation, sheets)}
<main>{"".join(cards)}</main>{failed}{nav}
<script type="application/json" id="data">{_json(data)}</script>
<script>{JS}</script></body></html>
"""


def build_gallery(out_dir: Path, *, page_size: int = PAGE_SIZE, thumb_px: int = THUMB_PX) -> Path:
    """Write `index.html` in `out_dir`, and `index-2.html`, ... when the run has more than
    `page_size` rows, each page replaced whole; pages left from a bigger earlier run are
    removed. Rows stream from the manifest a page at a time (after one pass that finds which
    fields vary), so memory does not grow with the run; filtering and sorting work within a
    page. Returns the first page's path. PicturesError when the dir cannot be written."""
    records = InForce(out_dir)
    variation = Variation.of(records)
    sheets = sheet_links(out_dir)
    thumbs = Thumbs(out_dir, thumb_px)
    pages = max(1, -(-len(records) // page_size))
    title = f"sdbatch: {', '.join(sorted(records.jobs)) or out_dir.name}"
    batch: list[Record] = []
    page = 0

    def flush() -> None:
        nonlocal page
        page += 1
        text = render(
            batch,
            out_dir,
            title,
            variation=variation,
            thumbs=thumbs,
            sheets=sheets,
            page=page,
            pages=pages,
        ).encode("utf-8")
        save(out_dir / page_name(page), lambda fh: fh.write(text))
        batch.clear()

    for record in records:
        batch.append(record)
        if len(batch) == page_size and page + 1 < pages:
            flush()
    while page < pages:  # the last page (or the only, empty one)
        flush()
    stale = pages + 1
    while (out_dir / page_name(stale)).exists():
        with writing(out_dir / page_name(stale)):
            (out_dir / page_name(stale)).unlink()
        stale += 1
    return out_dir / GALLERY
