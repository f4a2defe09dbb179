"""Read a run's `manifest.jsonl` (finished or crashed) into frozen records: sheets, galleries.

Entry point: `read_records(out_dir) -> list[Record]`: the rows still in force, in plan order.
Only the manifest is read, never the server, so this works on a copied or half-finished dir.

A record's plan fields (`Record.fields`) are looked up in the order `vars`, `cell`, `payload`
(`planned` where the payload sent is not by field names: a ComfyUI graph),
then what the server reported (`sampler_name`, `scheduler`, `sd_model_name`, `width`, `height`),
with `seed` the seed the server used. Rows written before `vars`/`template` existed read fine.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import stat
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sdbatch.errors import UsageError
from sdbatch.output.safepath import UnsafePath, inside, read_regular

# The writer appends to this file; everything downstream of it (resume, sheets, gallery) reads it.
MANIFEST = "manifest.jsonl"
# The axis values the run planned, written before its first request: a run killed half-way
# still tells its sheets which rows and columns it meant to fill.
PLANNED = "plan.json"

# Rows further than this out of plan order are sorted all at once, nearer ones through a heap.
WINDOW = 4096

# What the server says it used: the payload may leave these to the webui's defaults.
SERVER_FIELDS = ("sampler_name", "scheduler", "sd_model_name", "width", "height")
# Rows naming an unsafe file are reported by name up to this many times per reading, then
# counted: a tampered 10^5-row manifest must not bury the run's own messages.
WARN_ROWS = 3

_log = logging.getLogger("sdbatch")


@dataclass(frozen=True)
class Record:
    id: str
    job: str | None
    status: str  # "ok", "mismatch" (saved, made otherwise than asked) or "failed"
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
        """An image on record (a mismatch is one too, with a note)."""
        return self.status in ("ok", "mismatch")


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


# (manifest, row id) already warned about: a command reads a manifest more than once (a sheet
# checks its fields, then draws), and says each row once.
_WARNED: set[tuple[str, str]] = set()


class _Rejected:
    """Rows of one reading whose file the rule of `safepath` refuses; warned about, briefly."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0

    def __call__(self, row: Mapping[str, Any], reason: str) -> None:
        key = (str(self.path), str(row.get("id")))
        if key in _WARNED:
            return
        _WARNED.add(key)
        self.count += 1
        if self.count <= WARN_ROWS:
            _log.warning("%s: row %s not shown, nor its file opened: %s", *key, reason)
        elif self.count == WARN_ROWS + 1:
            _log.warning("%s: more rows naming files outside the rule not shown", self.path)


def _record(
    row: Mapping[str, Any], line: int, out_dir: Path | None = None, rejected: Any = None
) -> Record:
    """A row as a Record. With `out_dir`, an image row whose `file` the rule of `safepath`
    refuses (outside the dir, absolute, a link, a FIFO or device) becomes a failed record
    without a file, saying why: no reader ever opens, links to or shows that file."""
    status = str(row["status"]) if row.get("status") in ("ok", "mismatch") else "failed"
    file = str(row["file"]) if row.get("file") else None
    error = str(row["error"]) if row.get("error") else None
    if out_dir is not None and (status != "failed" or file is not None):
        try:
            inside(out_dir, row.get("file"))
        except UnsafePath as exc:
            status, file, error = "failed", None, f"not shown: {exc}"
            if rejected is not None:
                rejected(row, str(exc))
    # A ComfyUI row's payload is the graph sent; the plan's fields are its `planned`.
    payload = row.get("planned") if isinstance(row.get("planned"), dict) else row.get("payload")
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
        status=status,
        file=file,
        seed=_int(seed) if seed is not None else None,
        payload_id=str(row.get("payload_id", row.get("id"))),
        payload_index=_int(row.get("payload_index")),
        image_index=_int(row.get("image_index")),
        error=error,
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
        except (ValueError, RecursionError):  # a nesting bomb is no row either
            row = None
        yield line_no, row if isinstance(row, dict) else None


def iter_rows(path: Path, start: int = 0) -> Iterator[tuple[int, int, dict[str, Any] | None]]:
    """(line number, byte offset, row) for each line of a manifest from byte `start` (a line's
    beginning), read as a stream: a 10^6-row manifest is never held whole. The row is None for
    a line that is not a JSON object, and for a last line without its newline (a crash cut it
    short mid-append). Line numbers count from `start`."""
    with path.open("rb") as fh:
        offset = fh.seek(start)
        for line_no, raw in enumerate(fh):
            row: Any = None
            if raw.endswith(b"\n"):
                try:
                    row = json.loads(raw)
                except (ValueError, RecursionError):  # a nesting bomb is no row either
                    row = None
            yield line_no, offset, row if isinstance(row, dict) else None
            offset += len(raw)


def _open_manifest(out_dir: Path) -> Path:
    path = out_dir / MANIFEST
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        raise UsageError(f"{out_dir} has no {MANIFEST}: not an sdbatch output dir") from None
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        raise UsageError(f"{path} is {kind}: sdbatch reads only its own manifest")
    return path


class _Seen:
    """A Bloom filter over id hashes, about two bytes per expected row: "maybe seen" or "not
    seen". Only its "maybe" answers are remembered exactly, so InForce stays exact with no set
    of every id (that set was most of the memory of drawing a 10^5-image gallery)."""

    def __init__(self, rows: int) -> None:
        self._size = max(1 << 16, rows * 16)  # bits
        self._bits = bytearray(self._size // 8 + 1)

    def add(self, value: int) -> bool:
        """Mark `value`; True if it may have been marked before."""
        found = True
        for h in (value, value >> 21 ^ value * 0x9E3779B1):
            bit = h % self._size
            byte, mask = bit >> 3, 1 << (bit & 7)
            if not self._bits[byte] & mask:
                found = False
                self._bits[byte] |= mask
        return found


class InForce:
    """The rows in force (as `in_force` decides) in plan order, without holding them all. The
    first pass (on creation) keeps two numbers per row (plan position, byte offset) in flat
    arrays, and which ids repeat; iterating reads the rows back one at a time in plan order —
    the order they were written in, unless a rerun appended some later, then sorted. About 20
    bytes per row, not the kilobytes a parsed row takes."""

    def __init__(self, out_dir: Path) -> None:
        self.path = _open_manifest(out_dir)
        self._where = array("Q")  # per kept line: payload_index << 20 | image_index
        self._offsets = array("Q")
        self._idbits = array("L")  # the low 32 bits of each id hash, to find repeats fast
        self._last: dict[int, int] = {}  # id hash -> its last line, for ids that may repeat
        self.jobs: set[str] = set()
        failed_at: dict[int, int] = {}  # payload id hash -> line of its latest failed row
        made_after: dict[int, int] = {}  # payload id hash -> last ok line after a failure
        seen = _Seen(self.path.stat().st_size // 300)
        self._sorted = True
        try:
            for _, offset, row in iter_rows(self.path):
                if not row or "id" not in row:
                    continue
                line = len(self._offsets)  # rows are numbered as kept: later is bigger
                ident, payload = _hashes(row)
                if row.get("job"):
                    self.jobs.add(str(row["job"]))
                if seen.add(ident & 0xFFFFFFFFFFFFFFFF):
                    self._last[ident] = line  # a false "maybe" names the row itself: harmless
                if row.get("status") in ("ok", "mismatch"):
                    if payload in failed_at:
                        made_after[payload] = line
                else:
                    failed_at[payload] = line
                image = min(_int(row.get("image_index")), 0xFFFFF)
                where = min(_int(row.get("payload_index")), 1 << 43) << 20 | image
                if self._where and where < self._where[-1]:
                    self._sorted = False
                self._where.append(where)
                self._offsets.append(offset)
                self._idbits.append(ident & 0xFFFFFFFF)
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        # A failed payload that a later run made after all is not in force (its id is the
        # payload's; the images made later have their own).
        self._made_after = {
            p: made_after[p] for p, at in failed_at.items() if made_after.get(p, -1) > at
        }
        self._count = len(self._where) - len(self._made_after) - self._superseded()

    def _superseded(self) -> int:
        """Rows a later row of the same id replaces (read back only for the ids that repeat)."""
        if not self._last:
            return 0
        later = set(self._last.values())
        maybe = {ident & 0xFFFFFFFF for ident in self._last}
        count = 0
        with self.path.open("rb") as fh:
            for n, bits in enumerate(self._idbits):
                if bits not in maybe or n in later:
                    continue
                fh.seek(self._offsets[n])
                ident, _ = _hashes(json.loads(fh.readline()))
                count += ident in self._last
        return count

    def __len__(self) -> int:
        return self._count

    def _windowed(self) -> Iterator[tuple[int, int]]:
        """(plan position, row number) in plan order for rows at most WINDOW rows out of place
        — two requests in flight, or several webuis, finish a little out of order — with a
        heap of WINDOW entries instead of sorting them all."""
        heap: list[tuple[int, int]] = []
        for n, where in enumerate(self._where):
            heapq.heappush(heap, (where, n))
            if len(heap) > WINDOW:
                yield heapq.heappop(heap)
        while heap:
            yield heapq.heappop(heap)

    def _order(self) -> Iterable[int]:
        if self._sorted:
            return range(len(self._where))
        # The heap order is right if it never goes back (checked on the numbers alone first).
        previous = -1
        for where, _ in self._windowed():
            if where < previous:  # a rerun appended rows far from their place: sort them all
                return sorted(range(len(self._where)), key=self._where.__getitem__)
            previous = where
        return (n for _, n in self._windowed())

    def __iter__(self) -> Iterator[Record]:
        order = self._order()
        rejected = _Rejected(self.path)
        try:
            with self.path.open("rb") as fh:
                for line in order:
                    fh.seek(self._offsets[line])
                    row = json.loads(fh.readline())
                    ident, payload = _hashes(row)
                    if self._last.get(ident, line) != line:
                        continue  # a later row of the same id supersedes this one
                    record = _record(row, line, self.path.parent, rejected)
                    if not record.ok and self._made_after.get(payload, -1) > line:
                        continue
                    yield record
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror or exc}") from exc


def _hashes(row: Mapping[str, Any]) -> tuple[int, int]:
    """The row's id and its payload's id, hashed (within one process: never stored)."""
    ident = str(row["id"])
    return hash(ident), hash(str(row.get("payload_id", ident)))


def read_records(out_dir: Path) -> list[Record]:
    """The rows in force in `out_dir`'s manifest. A torn or foreign line is skipped: the run
    that wrote it may have been killed mid-append."""
    return list(InForce(out_dir))


def planned_axes(out_dir: Path) -> dict[str, list[Any]]:
    """Each planned axis's values in plan order, from plan.json; {} when there is none."""
    try:
        data = json.loads(read_regular(out_dir / PLANNED))
    except (OSError, ValueError, RecursionError):  # UnsafePath is a ValueError
        return {}
    axes = data.get("axes") if isinstance(data, dict) else None
    if not isinstance(axes, dict):
        return {}
    found = {k: v for k, v in axes.items() if isinstance(v, list)}
    seeds = axes.get("seed")
    if (
        isinstance(seeds, dict)
        and isinstance(seeds.get("range"), list)
        and len(seeds["range"]) == 2
    ):
        start, stop = seeds["range"]
        if isinstance(start, int) and isinstance(stop, int):
            found["seed"] = list(range(start, stop))  # seeds: {start, count}, written short
    return found


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
