"""The fixed parts of a gallery page: its style sheet and its script (filter and sort).

The script only hides and reorders the cards, using the plan fields from the page's JSON blob in
`<script type="application/json" id="data">`: the page shows everything without it.
"""

from __future__ import annotations

CSS = """
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
.common{padding:8px 12px;background:#fff;border-bottom:1px solid #ddd}
.common dl{margin:0;font-size:13px}.common dd{max-height:3em}.common summary{font-size:13px}
.sheets{font-size:13px;padding-top:6px}.sheets a{margin-right:10px}
td dl{margin:0}td.why{max-width:40em;overflow-wrap:anywhere;color:#a00}
"""

JS = """
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
