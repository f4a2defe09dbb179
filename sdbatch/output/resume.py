"""Between plan and worker: claim the output dir and find what an earlier run already finished.

Entry point: `open_output(out_dir, job_name, verify=...) -> OutputState`. It takes the dir's lock
(one run per dir), sweeps temporary files a killed run left, cuts a torn last manifest line, and
reads which image ids are done: an `ok` row whose file is still there with the recorded content.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from sdbatch.errors import OutputError, RunLockedError, UsageError
from sdbatch.output.atomic import is_temporary
from sdbatch.output.done import Done, Masks
from sdbatch.output.index import INDEX, IndexAppender, IndexReader, remove_index
from sdbatch.output.manifest import MANIFEST, iter_rows
from sdbatch.output.safepath import (
    UnsafePath,
    check_name,
    create_new,
    inside,
    lstat_at,
    open_regular,
    read_regular,
    refuse_link,
)

# A row's image index beyond this is no image of any plan (a batch is at most a few hundred):
# each is a bit in a mask, and a row edited to say 10^12 must not make a resume allocate it.
MAX_IMAGES = 1 << 16
MAX_PAYLOADS = 1 << 40  # the same for plan positions, when the caller gives no plan count
LOCK = ".sdbatch.lock"
OWNER = ".sdbatch.owner"  # the pid of the run holding the lock, for the message of the next one


@dataclass(frozen=True)
class OutputState:
    out_dir: Path
    lock: filelock.BaseFileLock
    done: Done  # images whose file is on disk as recorded
    torn_lines: int  # unparsable manifest lines skipped (a crash mid-append)
    unsafe: tuple[str, ...] = ()  # why rows naming a file outside the rule were not trusted

    def release(self) -> None:
        with contextlib.suppress(OSError):
            (self.out_dir / OWNER).unlink()
        self.lock.release()


def _lock(out_dir: Path) -> filelock.BaseFileLock:
    # The lock file is opened for writing (and truncated): a link there would be written through.
    for name in (LOCK, OWNER):
        refuse_link(out_dir / name)
    lock = filelock.FileLock(out_dir / LOCK, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        try:  # a regular file only: a FIFO planted at its name would block the read
            owner = read_regular(out_dir / OWNER, limit=32).decode().strip() or "?"
        except (OSError, ValueError):  # UnsafePath and UnicodeDecodeError are ValueErrors
            owner = "?"
        raise RunLockedError(f"another sdbatch run (pid {owner}) is writing to {out_dir}") from None
    # The lock itself dies with its process (it is an flock), so a run killed with -9 leaves a
    # stale owner file but never a lock that blocks the next night.
    fd = create_new(out_dir / OWNER)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    return lock


def _own_file(path: Path) -> None:
    """sdbatch's own files in the dir (the manifest, its index) are regular files, not links:
    a run would append through a link, and a folder there cannot be a manifest."""
    try:
        refuse_link(path)
        if path.exists() and not path.is_file():
            raise UnsafePath(f"{path} is not a regular file")
    except UnsafePath as exc:
        raise OutputError(
            f"{exc}: sdbatch keeps its {path.name} there; move it away or pick another --out"
        ) from None


def sweep(out_dir: Path) -> None:
    """Remove the temporary files a killed run left (`.NAME.PID.tmp`: half-written images,
    pages, sheets), in the dir and its folders, one level down; links among them are removed
    as links and folders are not entered through a link. A folder with such a name is not
    sdbatch's: it stops the run rather than being deleted. scandir streams: Path.glob lists
    the whole folder first, which at 10^6 images was 200 MB."""
    folders = [out_dir]
    with os.scandir(out_dir) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if is_temporary(entry.name):
                    raise OutputError(
                        f"{entry.path} is a folder named like a temporary file of sdbatch; "
                        "move it away or pick another --out"
                    )
                folders.append(Path(entry.path))
            elif is_temporary(entry.name):
                os.unlink(entry.path)
    for folder in folders[1:]:
        with os.scandir(folder) as entries:
            for entry in entries:
                if is_temporary(entry.name) and not entry.is_dir(follow_symlinks=False):
                    os.unlink(entry.path)


def _intact(out_dir: Path, out_fd: int, row: Mapping[str, Any], verify: bool) -> bool:
    """The file is there with the recorded content. Size and mtime as recorded stand in for the
    hash (a 100,000-image dir must resume in seconds); anything else, or --verify, hashes.
    Raises UnsafePath for a row naming a file the rule of `safepath` refuses (outside the dir,
    a link, a FIFO or device): never opened, so never read or waited on."""
    name = row.get("file")
    if isinstance(name, str) and "/" not in name:
        # The usual name, of a file right in the dir: one lstat from the open dir, and no path
        # built unless it must be read (a 10^6-row resume does this 10^6 times).
        st = lstat_at(out_fd, check_name(name))
        if st is None:
            return False
        path = None
    else:
        path = inside(out_dir, name)
        try:
            st = os.lstat(path)
        except OSError:
            return False
    if not verify and st.st_size == row.get("size") and st.st_mtime_ns == row.get("mtime_ns"):
        return True
    path = path or out_dir / str(name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(open_regular(path), "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == row.get("sha256")


def _read_manifest(
    out_dir: Path,
    job_name: str,
    *,
    strict: bool,
    verify: bool,
    plan: str | None,
    payloads: int,
) -> tuple[Done, int, tuple[str, ...]]:
    """One pass over the manifest: each kept row's file is checked as it is read, and only what
    resuming needs of it is kept: its plan position or payload, and which image it is.
    A line cut short by a crash is dropped from the file itself, so the next append starts on
    a fresh line."""
    path = out_dir / MANIFEST
    _own_file(path)
    _own_file(out_dir / INDEX)
    if not path.exists():
        return Done(), 0, ()
    # Names are looked up from the open dir (`_intact`): no path joined and walked per row.
    out_fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        by_index = Masks()
        by_payload: dict[int, int] = {}
        ids: set[str] = set()
        count = torn = 0
        unsafe: list[str] = []

        def keep(row: dict[str, Any]) -> None:
            nonlocal count
            # A mismatch (the webui made it otherwise than asked) is kept, not made again: the
            # same webui would substitute again. Under --strict it counts as failed and is retried.
            status = row.get("status")
            if not (status == "ok" or (status == "mismatch" and not strict)):
                return
            try:
                if not _intact(out_dir, out_fd, row, verify):
                    return
            except UnsafePath as exc:
                unsafe.append(f"image {row.get('id')}: {exc}")
                return
            count += 1
            index, image, payload_id = (
                row.get("payload_index"),
                row.get("image_index"),
                row.get("payload_id"),
            )
            if not isinstance(image, int) or not isinstance(payload_id, str):
                ids.add(str(row.get("id")))
            elif not 0 <= image < MAX_IMAGES or len(payload_id) > 64:
                return  # no image of any plan: a row edited to make a resume allocate without end
            elif plan is not None and row.get("plan") == plan and isinstance(index, int):
                if 0 <= index < payloads:
                    by_index.add(index, image)
            else:
                try:
                    key = int(payload_id, 16)
                except ValueError:
                    ids.add(str(row.get("id")))
                    return
                by_payload[key] = by_payload.get(key, 0) | 1 << image

        # The index holds what resuming needs of most rows, a tenth of their bytes; the rows after
        # its last entry are parsed, and indexed for the next time.
        indexed = IndexReader(out_dir)
        for entry in indexed:
            keep(entry)
        if indexed.end:
            _check_job(path, job_name)
        if indexed.stale:
            remove_index(out_dir)  # built again below from the manifest itself
        catch_up = IndexAppender(out_dir)
        last_line = indexed.end
        batch: list[tuple[dict[str, Any], int]] = []
        for _, offset, row in iter_rows(path, indexed.end):  # a stream, never the whole file
            last_line = offset
            batch.append((row or {}, offset))  # a torn line is no entry, but ends the one before
            if row is None:
                torn += 1
                continue
            if row.get("job", job_name) != job_name:
                raise UsageError(
                    f"{path.parent} holds the manifest of job {row['job']!r}, not {job_name!r}: "
                    "pick another --out, or use --fresh"
                )
            keep(row)
            if len(batch) >= 1000:
                _index(catch_up, path, batch)
        _index(catch_up, path, batch, final=True)
        catch_up.close()
        with path.open("r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    fh.truncate(last_line)  # the torn last line, counted above
        return Done(by_index, by_payload, frozenset(ids), count), torn, tuple(unsafe)
    finally:
        os.close(out_fd)


def _check_job(path: Path, job_name: str) -> None:
    """The manifest's first row names this job (the index does not say)."""
    with path.open("rb") as fh:
        first = fh.readline()
    try:
        row = json.loads(first)
    except ValueError:
        return
    if isinstance(row, dict) and row.get("job", job_name) != job_name:
        raise UsageError(
            f"{path.parent} holds the manifest of job {row['job']!r}, not {job_name!r}: "
            "pick another --out, or use --fresh"
        )


def _index(
    appender: IndexAppender,
    path: Path,
    batch: list[tuple[dict[str, Any], int]],
    *,
    final: bool = False,
) -> None:
    """Index rows given with their start offsets: each ends where the next starts; the last
    of all ends at the manifest's end, if its line is complete."""
    if not batch:
        return
    entries = [(row, start, nxt) for (row, start), (_, nxt) in itertools.pairwise(batch)]
    if final:
        row, start = batch[-1]
        with path.open("rb") as fh:
            fh.seek(start)
            line = fh.readline()
        if line.endswith(b"\n"):
            entries.append((row, start, start + len(line)))
        appender.add(entries)
    else:
        appender.add(entries)
        batch[:] = batch[-1:]  # the last one's end is the next batch's first start


def open_output(
    out_dir: Path,
    job_name: str,
    *,
    verify: bool = False,
    strict: bool = False,
    plan: str | None = None,
    payloads: int = MAX_PAYLOADS,
) -> OutputState:
    """Claim `out_dir` for this run and read what is done in it. `plan` is this run's plan
    fingerprint (`Plan.fingerprint`): rows written under it are matched by position, up to
    `payloads` (the plan's count; a row claiming a later position is no row of this plan)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock(out_dir)
    except (OSError, UnsafePath) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise OutputError(f"cannot write to {out_dir}: {reason}") from exc
    try:
        try:
            sweep(out_dir)
        except OSError as exc:
            raise OutputError(f"cannot clean {out_dir}: {exc.strerror or exc}") from exc
        # Reading builds 100,000s of small objects and no cycles; the cyclic collector would
        # only rescan them over and over (it doubled the time), so it pauses meanwhile.
        gc.disable()
        try:
            done, torn, unsafe = _read_manifest(
                out_dir, job_name, strict=strict, verify=verify, plan=plan, payloads=payloads
            )
        except OSError as exc:
            raise OutputError(f"cannot read {out_dir / MANIFEST}: {exc.strerror or exc}") from exc
        finally:
            gc.enable()
    except BaseException:
        lock.release()
        raise
    return OutputState(out_dir, lock, done, torn, unsafe)


def fresh_dir(out_dir: Path) -> Path:
    """`out_dir` if it holds no run yet, else the first free `out_dir-2`, `out_dir-3`, ..."""
    candidate, n = out_dir, 1
    while (candidate / MANIFEST).exists():
        n += 1
        candidate = out_dir.with_name(f"{out_dir.name}-{n}")
    return candidate
