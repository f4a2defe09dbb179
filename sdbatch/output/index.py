"""`manifest.idx`: what a resume needs of each saved image, a tenth of the manifest's bytes.

Entry points: `IndexAppender(out_dir).add(rows)` (the writer, after each group commit, and a
resume catching up) and `IndexReader(out_dir)`, iterated. A row of the manifest is about a
kilobyte of JSON (payload, parameters); parsing 10^6 of them is most of a resume. The index
keeps one tab-separated line per `ok`/`mismatch` row: the row's start and end offsets in the
manifest, then id, status, file, size, mtime_ns, sha256, payload_index, image_index, plan,
payload_id. It is only ever a cache: the manifest stays the record. Its first line names the
manifest's first row (a hash), so an index left beside another manifest is ignored; its last
entry must name the row standing at its offsets (else the manifest was cut back, and the index
is not used); entries stop at the first line that does not parse or points past the manifest's
end; and the part of the manifest after the last entry is read as JSON, as if there were none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sdbatch.output.manifest import MANIFEST
from sdbatch.output.safepath import UnsafePath, open_append, open_regular

INDEX = "manifest.idx"
_HEADER = "#sdbatch-index 1 "
FIELDS = (
    "id",
    "status",
    "file",
    "size",
    "mtime_ns",
    "sha256",
    "payload_index",
    "image_index",
    "plan",
    "payload_id",
)
_INTS = ("size", "mtime_ns", "payload_index", "image_index")
_FILE = FIELDS.index("file")


def _first_line_hash(out_dir: Path) -> str | None:
    try:
        with (out_dir / MANIFEST).open("rb") as fh:
            first = fh.readline()
    except OSError:
        return None
    return hashlib.sha256(first).hexdigest()[:32] if first.endswith(b"\n") else None


def _line(row: dict[str, Any], start: int, end: int) -> str | None:
    if row.get("status") not in ("ok", "mismatch"):
        return None  # a resume never counts a failed row as done
    cells = [str(start), str(end)]
    for name in FIELDS:
        value = row.get(name)
        # JSON for the file name (it may hold a tab); "" stands for a missing value.
        cells.append(json.dumps(value) if name == "file" else "" if value is None else str(value))
    if any("\t" in c or "\n" in c for c in cells):
        return None
    return "\t".join(cells) + "\n"


class IndexAppender:
    """Adds (row, its start and end offsets in the manifest) entries. Best effort: a cache that
    cannot be written only makes the next resume parse more of the manifest."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._fh: Any = None
        self._broken = False

    def add(self, rows: Iterable[tuple[dict[str, Any], int, int]]) -> None:
        if self._broken:
            return
        try:
            if self._fh is None:
                path = self.out_dir / INDEX
                new = not path.exists() or path.stat().st_size == 0
                header = _first_line_hash(self.out_dir) if new else None
                if new and header is None:
                    return  # no complete first row yet
                # Not through a link planted at its name (see safepath).
                self._fh = os.fdopen(open_append(path), "a", encoding="utf-8")
                if new:
                    self._fh.write(f"{_HEADER}{header}\n")
            self._fh.write("".join(line for r, a, b in rows if (line := _line(r, a, b))))
            self._fh.flush()
        except (OSError, UnsafePath):
            self._broken = True

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None


class IndexReader:
    """Iterating yields the entries that agree with the manifest, as row dicts, streaming;
    afterwards `end` is the manifest offset where they stop (0: no usable index)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.end = 0
        self.stale = False  # there is an index, but not one of this manifest as it stands

    def __iter__(self) -> Iterator[dict[str, Any]]:
        path = self.out_dir / INDEX
        try:
            size = (self.out_dir / MANIFEST).stat().st_size
            fh = os.fdopen(open_regular(path), encoding="utf-8", errors="replace")
        except (OSError, UnsafePath):
            return
        with fh:
            if fh.readline() != f"{_HEADER}{_first_line_hash(self.out_dir)}\n":
                self.stale = True  # another manifest's index
                return
            if not self._last_entry_holds(size):
                self.stale = True
                return
            for raw in fh:
                cells = raw[:-1].split("\t")
                if not raw.endswith("\n") or len(cells) != len(FIELDS) + 2:
                    return
                first, at = cells[0], cells[1]
                if not (first.isdigit() and at.isdigit()) or int(at) <= self.end or int(at) > size:
                    return
                row = _row(cells[2:])
                if row is None:
                    return
                self.end = int(at)
                yield row

    def _last_entry_holds(self, size: int) -> bool:
        """The index's last entry names the row that stands there in the manifest: else the
        manifest was cut back (and perhaps grown again) since, and the index is not used."""
        try:
            with (self.out_dir / INDEX).open("rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - 8192))
                lines = fh.read().split(b"\n")
            last = next((x for x in reversed(lines[:-1]) if x and not x.startswith(b"#")), None)
            if last is None:
                return True  # a header alone
            cells = last.decode("utf-8").split("\t")
            start, end, ident = int(cells[0]), int(cells[1]), cells[2]
            if end > size:
                return False
            with (self.out_dir / MANIFEST).open("rb") as manifest:
                manifest.seek(start)
                line = manifest.readline()
            return len(line) == end - start and json.loads(line).get("id") == ident
        except (OSError, ValueError, IndexError, AttributeError):
            return False


def _row(cells: list[str]) -> dict[str, Any] | None:
    # Built in one go, then mended: a loop over the fields per entry was a fifth of a
    # 10^6-row resume.
    row: dict[str, Any] = {k: v or None for k, v in zip(FIELDS, cells, strict=True)}
    try:
        for name in _INTS:
            if row[name] is not None:
                row[name] = int(row[name])
        text = cells[_FILE]
        # A JSON string without escapes is its own text between the quotes; most names are.
        plain = len(text) >= 2 and text[0] == text[-1] == '"' and "\\" not in text
        row["file"] = text[1:-1] if plain else json.loads(text)
    except ValueError:
        return None
    return row


def remove_index(out_dir: Path) -> None:
    """Drop an index that no longer matches, so the next append starts a fresh one."""
    try:
        os.unlink(out_dir / INDEX)
    except OSError:
        return
