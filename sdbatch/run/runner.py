"""Drives a run: requests go out on request threads (dispatch) while a writer thread saves.

Entry point: `run_job(plan, out_dir, ...) -> RunResult`: claim the output dir, resume, run what
is left (`run_plan`), write summary.json and draw the pictures. Responses are decoded and written
on the writer thread, so the webuis never wait for our disk.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdbatch import __version__
from sdbatch.backends.base import Connection, Outcome, Worker
from sdbatch.errors import SdbatchError
from sdbatch.job.loader import Job
from sdbatch.output.atomic import replace_file
from sdbatch.output.done import Todo, todo
from sdbatch.output.manifest import MANIFEST, PLANNED
from sdbatch.output.resume import open_output
from sdbatch.output.safepath import read_regular
from sdbatch.output.writer import SUMMARY, RunInfo, Writer, write_json
from sdbatch.pictures.gallery import GALLERY, build_gallery
from sdbatch.pictures.sheet import SHEETS_DIR, build_sheets
from sdbatch.pictures.sheetnames import slicing_folder
from sdbatch.pictures.thumbs import Thumbs
from sdbatch.plan.expand import Plan
from sdbatch.plan.pictures import check_decodes
from sdbatch.run.dispatch import Stopper, dispatch
from sdbatch.run.progress import Console, Progress
from sdbatch.run.report import Pictures, RunResult, closing_lines

# Outcomes waiting for the writer hold whole response bodies; a few are enough to absorb a
# slow disk without letting memory grow with the plan.
WRITE_QUEUE_DEPTH = 4
# A flush syncs this many rows at most, or those of this many seconds: what a crash may cost.
GROUP_ROWS = 32
GROUP_SECONDS = 0.25
STEP_POLL = 1.0  # seconds between /progress polls for the bar
PICTURES_STAMP = ".sdbatch.pictures"  # what the gallery and sheets were last drawn from
UNSAFE_SHOWN = 3  # manifest rows naming an unsafe file, said one by one; the rest counted


class _WriterThread(threading.Thread):
    """Consumes outcomes as they come; remembers the first error so the run can stop on it."""

    def __init__(self, writer: Writer, progress: Progress, thumbs: Thumbs | None = None) -> None:
        super().__init__(name="sdbatch-writer", daemon=True)
        self.writer = writer
        self.progress = progress
        self.thumbs = thumbs
        self.inbox: queue.Queue[Outcome | None] = queue.Queue(maxsize=WRITE_QUEUE_DEPTH)
        self.error: BaseException | None = None

    def run(self) -> None:
        last_flush = time.monotonic()
        while (outcome := self.inbox.get()) is not None:
            if self.error is not None:
                continue  # keep draining so the producer never blocks on a dead consumer
            try:
                self.writer.write(outcome)
                # Group commit: sync when nothing else is waiting, or often enough anyway.
                now = time.monotonic()
                if (
                    self.inbox.empty()
                    or self.writer.pending >= GROUP_ROWS
                    or now - last_flush >= GROUP_SECONDS
                ):
                    self._flush()
                    last_flush = now
            except BaseException as exc:  # handed to the main thread, which raises it
                self.error = exc
        if self.error is None:
            try:
                self._flush()
            except BaseException as exc:
                self.error = exc

    def _flush(self) -> None:
        """Report rows only once they are on disk: a summary never counts an unrecorded image."""
        saved = []
        for row in self.writer.flush():
            if row["status"] in ("ok", "mismatch"):
                self.progress.image_saved(row)
                saved.append(row)
            else:
                self.progress.payload_failed(row)
        # Each image's gallery thumbnail now, while the webui makes the next ones: made at
        # the end, they were seconds to minutes of waiting after the last image (the gallery
        # finds them made). A failure here is the gallery's to report, not the run's.
        if self.thumbs is None:
            return
        try:
            for row in saved:
                self.thumbs.url(row["file"], row.get("width"), row.get("height"))
        except (SdbatchError, OSError):
            self.thumbs = None


def _poll_steps(worker: Worker, progress: Progress) -> None:
    """On a terminal, show the webui's sampling step next to the bar. Gently: once a second,
    without the live preview image, on a daemon thread that ends with the process."""

    def poll() -> None:
        while not progress.closed:
            step = worker.sampling_step()
            if step:
                progress.show_step(step)
            time.sleep(STEP_POLL)

    threading.Thread(target=poll, name="sdbatch-progress", daemon=True).start()


def run_plan(
    todo: Todo,
    out_dir: Path,
    *,
    connection: Connection,
    console: Console,
    run_info: RunInfo,
    strict: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Send every payload still to do and save what comes back; return the tally.

    A lost server (ServerUnreachableError) or an unwritable output dir (OutputError) stops the
    run and is returned in `RunResult.error`: what was saved stays, the writer has drained.
    """
    plan = todo.plan
    writer = Writer(
        out_dir,
        plan.job.output.filename,
        run_info,
        done=todo.done,
        plan=plan.fingerprint,
        decode=connection.decode,
        # Without preflight there is nothing to compare the image with.
        postcheck=connection.postcheck if connection.checked else None,
    )
    progress = Progress(console, todo.images, clock=clock)
    thread = _WriterThread(writer, progress, Thumbs(out_dir))
    result = RunResult(out_dir, plan.image_count, skipped=todo.done_images, strict=strict)
    workers = list(connection.workers)
    thread.start()
    if progress.has_bar and workers:
        _poll_steps(workers[0], progress)
    with Stopper(console) as stopper:
        try:
            result.error = dispatch(
                todo.payloads(),
                workers,
                thread.inbox.put,
                stopper,
                console,
                concurrency=plan.job.server.concurrency,
                should_stop=lambda: thread.error is not None,
            )
        finally:
            thread.inbox.put(None)
            thread.join()
            writer.close()
            progress.close()
    if thread.error is not None:
        if not isinstance(thread.error, SdbatchError):
            raise thread.error
        result.error = thread.error
    result.signal = stopper.signum
    result.hard_stop = stopper.hard_stop.as_json() if stopper.hard_stop else None
    result.saved = progress.done
    result.failed = [dict(row) for row in progress.failed_rows]
    result.mismatched = [dict(row) for row in progress.mismatched_rows]
    result.per_server = dict(progress.per_server)
    result.model_switches = sum(w.model_switches for w in workers)
    result.elapsed = progress.elapsed
    result.server_version = progress.server_version
    result.server_versions = dict(progress.versions)
    return result


def _planned(plan: Plan) -> dict[str, Any]:
    """plan.json: the axis values in plan order, so sheets of a stopped run still show the
    rows and columns it did not reach."""
    job = plan.job
    axes: dict[str, Any] = {name: list(values) for name, values in (*job.grid, *job.zip, *job.vars)}
    seeds = plan.seeds
    # A range stays a range ({"range": [start, stop]}): a 10^6-seed list is ~10 MB of JSON.
    axes["seed"] = {"range": [seeds.start, seeds.stop]} if isinstance(seeds, range) else list(seeds)
    return {
        "job": job.name,
        "payloads": plan.payload_count,
        "images": plan.image_count,
        "axes": axes,
        # The sheets draw the cells these rules removed as "excluded", not "missing".
        "exclude": [dict(rule) for rule in job.exclude],
    }


def _pictures_stamp(job: Job, out_dir: Path) -> str:
    """What the pictures were drawn from: the manifest as it stands and the sheet asked for."""
    try:
        st = (out_dir / MANIFEST).stat()
    except OSError:
        return ""
    sheet = (job.sheet.x, job.sheet.y, job.sheet.z) if job.sheet else None
    return json.dumps([__version__, st.st_size, st.st_mtime_ns, sheet])


def _pictures(job: Job, out_dir: Path, console: Console) -> Pictures:
    """The gallery after every run, even a stopped one, and the job's sheets if it asks for
    them. Both are drawn from the manifest alone and can be rebuilt at any time, so a failure
    here costs no image and does not change the run's exit code. A rerun that changed nothing
    (the manifest is as it was when they were drawn) draws nothing: at 10^5 images that was
    most of a no-op resume. Returns what there is to look at."""
    stamp_file = out_dir / PICTURES_STAMP
    stamp = _pictures_stamp(job, out_dir)
    try:
        if stamp and (out_dir / GALLERY).exists() and read_regular(stamp_file).decode() == stamp:
            return Pictures(out_dir / GALLERY, _sheets_of(job, out_dir))
    except (OSError, ValueError):  # absent, not a file, not text: drawn again
        pass
    drawn = True
    if job.sheet is not None:  # first: the gallery links the sheets
        try:
            build_sheets(out_dir, x=job.sheet.x, y=job.sheet.y, z=job.sheet.z)
        except (SdbatchError, OSError) as exc:
            drawn = False
            console.error(f"could not draw the sheets ({exc}); `sdbatch sheet` draws them")
    try:
        build_gallery(out_dir)
        if drawn:  # else the next run tries the sheets again
            replace_file(stamp_file, lambda tmp: tmp.write_text(stamp))
    except (SdbatchError, OSError) as exc:
        console.error(f"could not draw the gallery ({exc}); `sdbatch gallery` draws it")
    gallery = out_dir / GALLERY
    return Pictures(gallery if gallery.is_file() else None, _sheets_of(job, out_dir))


def _sheets_of(job: Job, out_dir: Path) -> tuple[Path, ...]:
    """The job's sheets as they stand in the sheets folder (none if it asks for none)."""
    if job.sheet is None:
        return ()
    root = out_dir / SHEETS_DIR
    folder = root / slicing_folder(job.sheet.x, job.sheet.y, job.sheet.z)
    if root.is_symlink() or not folder.is_dir() or folder.is_symlink():
        return ()
    return tuple(sorted(p for p in folder.glob("*.png") if p.is_file() and not p.is_symlink()))


def run_job(
    plan: Plan,
    out_dir: Path,
    *,
    connection: Connection,
    console: Console,
    run_info: RunInfo,
    verify: bool = False,
    strict: bool = False,
    clock: Callable[[], float] = time.monotonic,
    command: str | None = None,
) -> RunResult:
    """Claim the output dir, resume what an earlier run left, run the rest, write summary.json,
    and say where everything is; `command` is the command line that resumes the run.

    Raises the error that aborted the run, if any, after the summary is written.
    """
    state = open_output(
        out_dir,
        plan.job.name,
        verify=verify,
        strict=strict,
        plan=plan.fingerprint,
        payloads=plan.payload_count,
    )
    try:
        left = todo(plan, state.done)
        if plan.pictures:
            # A truncated picture passes the plan's header read, and the webui would fail it
            # only after its turn in the queue: each one still to send is decoded once, first.
            check_decodes(dict.fromkeys(p.input for p in left.payloads() if p.input is not None))
        write_json(out_dir / PLANNED, _planned(plan))
        if state.torn_lines:
            console.warning(f"{state.torn_lines} torn manifest line(s) from a crash ignored")
        for reason in state.unsafe[:UNSAFE_SHOWN]:
            console.warning(f"manifest row not trusted, its image is made again: {reason}")
        if len(state.unsafe) > UNSAFE_SHOWN:
            console.warning(f"{len(state.unsafe) - UNSAFE_SHOWN} more manifest row(s) not trusted")
        console.info(f"{out_dir}: {left.done_images} done, {left.images} to do")
        result = run_plan(
            left,
            out_dir,
            connection=connection,
            console=console,
            run_info=run_info,
            strict=strict,
            clock=clock,
        )
        pictures = _pictures(plan.job, out_dir, console)
        write_json(out_dir / SUMMARY, {"job": plan.job.name, **result.as_json()})
        for kind, line in closing_lines(result, pictures, command):
            (console.summary if kind == "summary" else console.info)(line)
    finally:
        state.release()
    if result.error is not None:
        raise result.error
    return result
