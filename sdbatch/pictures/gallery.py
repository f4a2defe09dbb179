"""A static `index.html` gallery of a run: every image with its parameters, filter and sort.

Entry point: `build_gallery(out_dir) -> Path`. It reads the manifest only (never the server) and
writes one self-contained page: inline CSS and JS, no external asset, images referenced by
relative URLs, so it works from file:// and after the folder is copied or moved. The images
themselves serve as thumbnails (scaled by CSS, `loading="lazy"` so only what is on screen is
decoded); no thumbnail files are made and the page stays small.

The cards are plain HTML (the page shows everything without JS); the script only hides and
reorders them, using the plan fields from a JSON blob in `<script type="application/json">`.
Every text is HTML-escaped, and `<`, `>`, `&` in the JSON are \\u-escaped, so a prompt holding
`</script>` or quotes cannot break out.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sdbatch.output.atomic import replace_file
from sdbatch.output.manifest import InForce, Record, field_names, value_text

GALLERY = "index.html"
# Images per page: a 10^5-image run is 200 pages of ~0.3 MB, not one 66 MB page.
PAGE_SIZE = 500
# Shown first on a card, in this order; the template's vars and grid values follow.
_CARD_FIELDS = ("prompt", "seed", "steps", "cfg_scale", "sampler_name", "scheduler", "size")
_TAIL_FIELDS = ("sd_model_name", "negative_prompt")

_CSS = """
body{font:14px system-ui,sans-serif;margin:0;background:#f4f4f4;color:#222}
header{position:sticky;top:0;background:#fff;padding:8px 12px;border-bottom:1px solid #ccc;
display:flex;gap:12px;flex-wrap:wrap;align-items:center;z-index:1}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:10px;padding:12px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:4px;overflow:hidden}
figure img{width:100%;height:220px;object-fit:contain;background:#eee;display:block}
dl{display:grid;grid-template-columns:auto 1fr;gap:1px 6px;margin:6px;font-size:12px}
dt{color:#777}dd{margin:0;overflow-wrap:anywhere;max-height:4.5em;overflow:auto}
section{padding:0 12px 12px}table{border-collapse:collapse;background:#fff}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;font-size:12px}
.hidden{display:none}nav{padding:4px 0;width:100%}nav a,nav b{margin:0 3px}
"""

_JS = """
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const items = Array.from(document.querySelectorAll("[data-i]"));
const key = (v) => JSON.stringify(v === undefined ? null : v);
const text = (v) => (typeof v === "string" ? v : key(v));
function fillValues() {
  const field = $("field").value, select = $("value");
  select.replaceChildren(new Option("(any)", ""));
  const seen = new Map();
  for (const row of data.rows) if (field) seen.set(key(row[field]), row[field]);
  for (const [k, v] of seen) select.add(new Option(text(v), k));
}
function compare(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return text(a).localeCompare(text(b), undefined, {numeric: true});
}
function apply() {
  const field = $("field").value, want = $("value").value, sort = $("sort").value;
  const dir = $("desc").checked ? -1 : 1;
  let shown = 0;
  const order = items.slice().sort((p, q) => {
    const a = data.rows[p.dataset.i], b = data.rows[q.dataset.i];
    return sort ? dir * compare(a[sort], b[sort]) || a.index - b.index : a.index - b.index;
  });
  for (const el of order) {
    const row = data.rows[el.dataset.i];
    const hide = Boolean(field && want && key(row[field]) !== want);
    el.classList.toggle("hidden", hide);
    el.parentNode.appendChild(el);
    if (!hide && el.tagName === "FIGURE") shown++;
  }
  $("count").textContent = shown + " of " + data.images + " images";
}
for (const name of data.fields) {
  $("field").add(new Option(name, name));
  $("sort").add(new Option(name, name));
}
$("field").addEventListener("change", () => { fillValues(); apply(); });
for (const id of ["value", "sort", "desc"]) $(id).addEventListener("change", apply);
fillValues();
apply();
"""


def _e(value: Any) -> str:
    return html.escape(value_text(value), quote=True)


def _shown(record: Record) -> dict[str, Any]:
    """The parameters a card lists: the usual ones, then vars and grid values, then the rest."""
    fields = dict(record.fields)
    if "width" in fields and "height" in fields:
        fields["size"] = f"{fields['width']}x{fields['height']}"
    names = [*_CARD_FIELDS, *record.vars, *record.cell, *_TAIL_FIELDS]
    return {n: fields[n] for n in dict.fromkeys(names) if fields.get(n) is not None}


def _card(record: Record, i: int) -> str:
    href = quote(record.file or "")
    prompt = str(record.fields.get("prompt", ""))
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in _shown(record).items())
    return (
        f'<figure data-i="{i}"><a href="{href}"><img src="{href}" loading="lazy" '
        f'alt="{_e(prompt[:200])}"></a><dl>{rows}</dl></figure>'
    )


def _problem(record: Record, i: int, reason: str) -> str:
    cells = (reason, record.fields.get("prompt", ""), record.seed, record.payload_index)
    return f'<tr data-i="{i}">' + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>"


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


def render(
    records: Iterable[Record], out_dir: Path, title: str, *, page: int = 1, pages: int = 1
) -> str:
    """One page for these records: a card per image on disk, a table row for every failed
    payload and every image whose file is gone."""
    records = list(records)
    cards: list[str] = []
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    for record in records:
        i = len(rows)
        rows.append({**record.fields, "index": i, "status": record.status})
        if not record.ok:
            problems.append(_problem(record, i, f"failed: {record.error or 'no reason given'}"))
        elif record.file and (out_dir / record.file).is_file():
            cards.append(_card(record, i))
        else:
            problems.append(_problem(record, i, f"missing file: {record.file}"))
    names = [n for n in field_names(records) if n != "negative_prompt"]
    data = {"rows": rows, "fields": names, "images": len(cards)}
    failed = ""
    if problems:
        failed = (
            f"<section><h2>Not shown ({len(problems)})</h2><table><tr><th>why</th>"
            f"<th>prompt</th><th>seed</th><th>payload</th></tr>{''.join(problems)}</table>"
            "</section>"
        )
    nav = _nav(page, pages)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body><header><strong>{html.escape(title)}</strong>
<label>filter <select id="field"><option value="">(field)</option></select></label>
<label>= <select id="value"></select></label>
<label>sort <select id="sort"><option value="">plan order</option></select></label>
<label><input type="checkbox" id="desc"> descending</label>
<span id="count">{len(cards)} images</span>{nav}</header>
<main>{"".join(cards)}</main>{failed}{nav}
<script type="application/json" id="data">{_json(data)}</script>
<script>{_JS}</script></body></html>
"""


def build_gallery(out_dir: Path, *, page_size: int = PAGE_SIZE) -> Path:
    """Write `index.html` in `out_dir`, and `index-2.html`, ... when the run has more than
    `page_size` rows, each page replaced whole; pages left from a bigger earlier run are
    removed. Rows stream from the manifest a page at a time, so memory does not grow with the
    run; filtering and sorting work within a page. Returns the first page's path."""
    records = InForce(out_dir)
    pages = max(1, -(-len(records) // page_size))
    title = f"sdbatch: {', '.join(sorted(records.jobs)) or out_dir.name}"
    batch: list[Record] = []
    page = 0

    def flush() -> None:
        nonlocal page
        page += 1
        text = render(batch, out_dir, title, page=page, pages=pages)
        replace_file(out_dir / page_name(page), lambda tmp: tmp.write_text(text, encoding="utf-8"))
        batch.clear()

    for record in records:
        batch.append(record)
        if len(batch) == page_size and page + 1 < pages:
            flush()
    while page < pages:  # the last page (or the only, empty one)
        flush()
    stale = pages + 1
    while (out_dir / page_name(stale)).exists():
        (out_dir / page_name(stale)).unlink()
        stale += 1
    return out_dir / GALLERY
