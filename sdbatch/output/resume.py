"""Between plan and worker: claim the output dir and find what an earlier run already finished.

Entry point: `open_output(out_dir, job_name, verify=...) -> OutputState`. It takes the dir's lock
(one run per dir), sweeps temporary files a killed run left, cuts a torn last manifest line, and
reads which image ids are done: an `ok` row whose file is still there with the recorded content.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from sdbatch.errors import OutputError, RunLockedError, UsageError
from sdbatch.output.manifest import MANIFEST, parse_lines
from sdbatch.plan.expand import Plan, PlannedPayload

LOCK = ".sdbatch.lock"
OWNER = ".sdbatch.owner"  # the pid of the run holding the lock, for the message of the next one


@dataclass(frozen=True)
class OutputState:
    out_dir: Path
    lock: filelock.BaseFileLock
    done: frozenset[str]  # image ids whose file is on disk as recorded
    files: frozenset[str]  # files named by ok rows, done or not
    torn_lines: int  # unparsable manifest lines skipped (a crash mid-append)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            (self.out_dir / OWNER).unlink()
        self.lock.release()


@dataclass
class Todo:
    """The plan minus what is done: `payloads` yields the ones with at least one image to make."""

    plan: Plan
    done: frozenset[str]
    done_images: int = 0
    images: int = 0
    _skip: set[int] = field(default_factory=set)

    def payloads(self) -> Iterator[PlannedPayload]:
        for item in self.plan:
            if item.index not in self._skip:
                yield item


def _lock(out_dir: Path) -> filelock.BaseFileLock:
    lock = filelock.FileLock(out_dir / LOCK, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            owner = (out_dir / OWNER).read_text().strip() or "?"
        except OSError:
            owner = "?"
        raise RunLockedError(f"another sdbatch run (pid {owner}) is writing to {out_dir}") from None
    # The lock itself dies with its process (it is an flock), so a run killed with -9 leaves a
    # stale owner file but never a lock that blocks the next night.
    (out_dir / OWNER).write_text(f"{os.getpid()}\n")
    return lock


@dataclass(frozen=True)
class _Done:
    """What resuming needs of an ok row; the rest (payloads) is dropped as soon as it is read,
    which keeps a 100,000-row manifest from tying up the garbage collector."""

    id: str
    file: str
    size: object
    mtime_ns: object
    sha256: object


def _read_manifest(path: Path, job_name: str, strict: bool) -> tuple[list[_Done], int]:
    """The ok rows and the number of unparsable lines. A line cut short by a crash is dropped
    from the file itself, so the next append starts on a fresh line."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1  # everything after the last newline is a torn row
    ok, torn = [], 0
    for _, row in parse_lines(data[:cut].decode("utf-8", errors="replace")):
        if row is None:
            torn += 1
            continue
        if row.get("job", job_name) != job_name:
            raise UsageError(
                f"{path.parent} holds the manifest of job {row['job']!r}, not {job_name!r}: "
                "pick another --out, or use --fresh"
            )
        # A mismatch (the webui made it otherwise than asked) is kept, not made again: the same
        # webui would substitute again. Under --strict it counts as failed and is retried.
        if row.get("status") == "ok" or (row.get("status") == "mismatch" and not strict):
            ok.append(
                _Done(
                    str(row.get("id")),
                    str(row.get("file")),
                    row.get("size"),
                    row.get("mtime_ns"),
                    row.get("sha256"),
                )
            )
    if cut < len(data):
        torn += 1
        with path.open("r+b") as fh:
            fh.truncate(cut)
    return ok, torn


def _intact(out_dir: str, row: _Done, verify: bool) -> bool:
    """The file is there with the recorded content. Size and mtime as recorded stand in for the
    hash (a 100,000-image dir must resume in seconds); anything else, or --verify, hashes."""
    path = os.path.join(out_dir, row.file)
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not verify and st.st_size == row.size and st.st_mtime_ns == row.mtime_ns:
        return True
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == row.sha256


def open_output(
    out_dir: Path, job_name: str, *, verify: bool = False, strict: bool = False
) -> OutputState:
    """Claim `out_dir` for this run and read what is done in it."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock(out_dir)
    except OSError as exc:
        raise OutputError(f"cannot write to {out_dir}: {exc.strerror or exc}") from exc
    try:
        for tmp in out_dir.glob(".*.tmp"):  # half-written images of a killed run
            tmp.unlink()
        # Reading builds 100,000s of small objects and no cycles; the cyclic collector would
        # only rescan them over and over (it doubled the time), so it pauses meanwhile.
        gc.disable()
        try:
            ok, torn = _read_manifest(out_dir / MANIFEST, job_name, strict)
        finally:
            gc.enable()
        done = frozenset(row.id for row in ok if _intact(str(out_dir), row, verify))
    except BaseException:
        lock.release()
        raise
    return OutputState(out_dir, lock, done, frozenset(row.file for row in ok), torn)


def todo(plan: Plan, done: frozenset[str]) -> Todo:
    """Count and mark what is left. A payload is sent again if any of its images is missing;
    the writer then skips the images already done, so none is recorded twice."""
    result = Todo(plan, done)
    if not done:  # a fresh run: nothing to look up
        result.images = plan.image_count
        return result
    for item in plan:
        finished = sum(item.image_id(i) in done for i in range(item.image_count))
        result.done_images += finished
        result.images += item.image_count - finished
        if finished == item.image_count:
            result._skip.add(item.index)
    return result


def fresh_dir(out_dir: Path) -> Path:
    """`out_dir` if it holds no run yet, else the first free `out_dir-2`, `out_dir-3`, ..."""
    candidate, n = out_dir, 1
    while (candidate / MANIFEST).exists():
        n += 1
        candidate = out_dir.with_name(f"{out_dir.name}-{n}")
    return candidate
