"""Stage 4: save images atomically and append one manifest row per image (or failed payload).

Entry points: `Writer.write(outcome)` saves the outcome's images and queues their rows;
`Writer.flush() -> list[dict]` makes the queued images durable (fsync, several at a time: fsync
releases the GIL), then appends their rows in one write and syncs the manifest once — a group
commit, so one writer thread keeps up with many webuis. An image file is linked into place and
synced before its row is written, so a crash can leave an image without a row (the next run
adopts it) but never a row without its image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdbatch.backends.base import USED_FIELDS, DecodeError, GeneratedImage, Outcome, Response
from sdbatch.errors import OutputError
from sdbatch.output.atomic import replace_file, temporary
from sdbatch.output.done import Done
from sdbatch.output.index import IndexAppender
from sdbatch.output.manifest import MANIFEST, iter_rows
from sdbatch.output.safepath import UnsafePath, create_new, open_append, read_regular

SUMMARY = "summary.json"
SYNC_THREADS = 4  # image files synced at once by a flush


def image_extension(data: bytes) -> str:
    """The file extension the bytes call for: the server's `samples_format` decides, not us."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".bin"


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def safe_filename(name: str) -> str:
    """A template may pull in a prompt: keep it one file inside the output dir, of a length
    every filesystem accepts (255 bytes, leaving room for a suffix and the extension)."""
    name = name.replace("/", "_").replace("\\", "_").replace("\0", "").strip().lstrip(".")
    return name.encode()[:200].decode(errors="ignore") or "image"


def _taken(path: Path) -> bool:
    # lexists: a link takes its name even when it dangles; it is never written through.
    return os.path.lexists(path)


def unique_path(path: Path, exists: Callable[[Path], bool] = _taken) -> Path:
    """`path`, or `stem-1.ext`, `stem-2.ext`, ... : the first name not taken yet."""
    candidate, n = path, 0
    while exists(candidate):
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


ASKED = ("sampler_name", "scheduler")
# (server url, image) -> the differences {field: [asked, got]}; {} when the image is as asked.
PostCheck = Callable[[str, GeneratedImage], Mapping[str, list[Any]]]
# The server kind's reading of one answer (`Connection.decode`); raises DecodeError.
Decode = Callable[[Response], list[GeneratedImage]]


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Replace a small JSON file whole (temporary file + rename): summary.json and plan.json
    describe the latest run."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    replace_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))  # OutputError


@dataclass(frozen=True)
class RunInfo:
    """What every row shares: the names a filename template may use besides plan fields."""

    name: str
    date: str  # YYYY-MM-DD, fixed once per run
    time: str  # HHMMSS
    rng_seed: int | None = None  # the generator behind `seeds: {count: N}`


class _Claimed:
    """The files that ok rows point at, looked up only when a new image's name is taken on
    disk (an orphan of a killed run, or a template that repeats names): read from the manifest
    then, and kept up to date from there on. A run whose names never collide holds none of
    them, so its memory does not grow with the run."""

    def __init__(self, manifest: Path) -> None:
        self._manifest = manifest
        self._names: set[str] | None = None

    def __contains__(self, name: str) -> bool:
        if self._names is None:
            self._names = {
                str(row.get("file"))
                for _, _, row in iter_rows(self._manifest)
                if row and row.get("status") in ("ok", "mismatch")
            }
        return name in self._names

    def add(self, name: str) -> None:
        if self._names is not None:
            self._names.add(name)


class Writer:
    def __init__(
        self,
        out_dir: Path,
        filename_template: str,
        run: RunInfo,
        *,
        decode: Decode,
        done: Done | None = None,
        plan: str | None = None,
        postcheck: PostCheck | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.postcheck = postcheck
        self.decode = decode
        self.template = filename_template
        self.run = run
        self.done = done or Done()  # images finished by an earlier run: never written again
        self.plan = plan  # the plan's fingerprint, in every row: resume matches by position
        self._claimed = _Claimed(out_dir / MANIFEST)
        self._index = IndexAppender(out_dir)
        # Rows waiting for the next flush, with the image file each one names.
        self._pending: list[tuple[Path | None, dict[str, Any]]] = []
        self._syncs = ThreadPoolExecutor(
            max_workers=SYNC_THREADS, thread_name_prefix="sdbatch-sync"
        )
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            # Unbuffered: a row that failed to go out (disk full) must not linger in a buffer
            # and be flushed, half, by close().
            # Not through a link planted at its name, nor into a FIFO (see safepath).
            fd = open_append(out_dir / MANIFEST)
            self._manifest = os.fdopen(fd, "ab", buffering=0)
            self._end = os.fstat(self._manifest.fileno()).st_size
        except (OSError, UnsafePath) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise OutputError(f"cannot write to {out_dir}: {reason}") from exc

    def close(self) -> None:
        """Without a flush: what is still pending was never recorded (the caller flushes)."""
        self._syncs.shutdown()
        self._manifest.close()
        self._index.close()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> list[dict[str, Any]]:
        """Sync the pending images, then append and sync their rows; return the rows."""
        if not self._pending:
            return []
        pending, self._pending = self._pending, []
        try:
            files = [path for path, _ in pending if path is not None]
            list(self._syncs.map(_sync_file, files))
            lines = [(json.dumps(row, ensure_ascii=False) + "\n").encode() for _, row in pending]
            data = memoryview(b"".join(lines))
            while data:  # a raw write may take only part of it
                data = data[self._manifest.write(data) or 0 :]
            os.fsync(self._manifest.fileno())
        except OSError as exc:
            raise OutputError(f"cannot append to {self.out_dir / MANIFEST}: {exc}") from exc
        entries = []
        for (_, row), line in zip(pending, lines, strict=True):
            entries.append((row, self._end, self._end + len(line)))
            self._end += len(line)
        self._index.add(entries)  # after the rows are safe: the index only ever trails them
        return [row for _, row in pending]

    def _append(self, row: dict[str, Any], path: Path | None = None) -> None:
        self._pending.append((path, row))

    def _adoptable(self, path: Path, data: bytes, digest: str) -> bool:
        """A file no row claims, with exactly these bytes: this very image, saved by a run that
        was killed before it could append the row. Taking it over keeps one file per image."""
        if path.name in self._claimed or any(
            p is not None and p.name == path.name for p, _ in self._pending
        ):
            return False
        try:
            # A regular file only, and no more of it than the image's size: a link, FIFO or
            # device planted at the name is never read (nor waited on), only stepped around.
            found = read_regular(path, limit=len(data) + 1)
        except (OSError, UnsafePath):
            return False
        return hashlib.sha256(found).hexdigest() == digest

    def _save(self, name: str, data: bytes, digest: str) -> Path:
        """Write to a temporary name, sync, then link into place: the final name either holds
        the whole image or does not exist, and an existing file is never replaced."""
        final = self.out_dir / name
        tmp = temporary(final)
        try:
            # Created fresh: a link planted at the temporary name is removed, not written through.
            with os.fdopen(create_new(tmp), "wb") as fh:
                fh.write(data)  # synced by flush(), with others, before its row is written
            while True:
                final = unique_path(
                    final, lambda p: _taken(p) and not self._adoptable(p, data, digest)
                )
                try:
                    os.link(tmp, final)  # unlike rename, link refuses to replace a file
                    break
                except FileExistsError:  # the adoptable orphan, or a name taken meanwhile
                    if self._adoptable(final, data, digest):
                        break
        except OSError as exc:
            raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._claimed.add(final.name)
        return final

    def _base_row(self, outcome: Outcome) -> dict[str, Any]:
        item = outcome.item
        return {
            "job": self.run.name,
            "server": outcome.server,
            "payload_id": item.id,
            "payload_index": item.index,
            "plan": self.plan,
            "prompt_index": item.prompt_index,
            "cell": dict(item.cell),
            "template": item.template,  # the prompt as written, when it is a template
            "vars": dict(item.vars),  # its variables and variant_N choices
            "variant_seed": item.variant_seed,  # the generator behind `variants: random`
            "payload": dict(item.payload),
            "rng_seed": self.run.rng_seed,
            "attempts": outcome.attempts,
            "error": outcome.error,
            "started": _iso(outcome.started),
            "finished": _iso(outcome.finished),
        }

    def _failed(self, outcome: Outcome, error: str) -> dict[str, Any]:
        row = {"id": outcome.item.id, "status": "failed", **self._base_row(outcome)}
        row["error"] = error
        self._append(row)
        return row

    def write(self, outcome: Outcome) -> list[dict[str, Any]]:
        """Decode and save the outcome's images, queue their rows and its failure if any, for
        the next `flush`; return the queued rows."""
        rows: list[dict[str, Any]] = []
        error = outcome.error
        for response in outcome.responses:
            try:
                images = self.decode(response)
            except DecodeError as exc:
                error = str(exc)
                continue
            rows.extend(
                self._write_image(outcome, image)
                for image in images
                if not self.done.has(outcome.item, image.image_index)
            )
        if error is not None:
            rows.append(self._failed(outcome, error))
        return rows

    def _write_image(self, outcome: Outcome, image: GeneratedImage) -> dict[str, Any]:
        item = outcome.item
        fields = {
            **item.cell,  # for checkpoint and vae by their short names; the payload wins
            # The plan's fields, then the request's: a ComfyUI request is a graph of node ids,
            # and `{steps}` in a file name means the job's steps on either kind of server.
            **item.payload,
            **image.payload,
            **item.vars,
            "index": item.first_image + image.image_index,
            "payload_index": item.index,
            "image_index": image.image_index,
            "prompt_index": item.prompt_index,
            "seed": image.seed,
            "id": item.image_id(image.image_index),
            "name": self.run.name,
            "date": self.run.date,
            "time": self.run.time,
        }
        name = safe_filename(self.template.format(**fields)) + image_extension(image.data)
        digest = hashlib.sha256(image.data).hexdigest()
        path = self._save(name, image.data, digest)
        stat = path.stat()
        width, height = image.size  # the header only; the post-check reuses it
        # What the webui says it used, against what was asked: it substitutes silently.
        mismatch = self.postcheck(outcome.server, image) if self.postcheck else {}
        row = {
            "id": fields["id"],
            "status": "mismatch" if mismatch else "ok",
            "file": path.relative_to(self.out_dir).as_posix(),
            "image_index": image.image_index,
            "seed": image.seed,
            "sha256": digest,
            # Size and mtime let a resume trust the file without hashing it again.
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "width": width,
            "height": height,
            # What the server says it used: sampler, scheduler, model, version.
            **{name: image.used.get(name) for name in USED_FIELDS},
            # ... and the names the job asked for, which a server kind may spell otherwise
            # (ComfyUI's dpmpp_2m + karras for "DPM++ 2M" + "Karras").
            "asked": {k: item.payload[k] for k in ASKED if k in item.payload} or None,
            **self._base_row(outcome),
            "payload": dict(image.payload),
            **({} if image.keeps_fields else {"planned": dict(item.payload)}),
            "error": None,
            "mismatch": mismatch or None,
        }
        self._append(row, path)
        return row
