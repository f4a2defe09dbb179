"""Drives a run: requests go out on two request threads while a writer thread decodes and saves.

Entry point: `run_plan(plan, out_dir, ...) -> RunResult`. The webui generates one request at a
time; sdbatch keeps the next request queued behind the current one and decodes and writes
responses on a writer thread, so the server never waits for the client.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdbatch.errors import ExitCode, SdbatchError
from sdbatch.gallery import build_gallery
from sdbatch.loader import Job
from sdbatch.manifest import PLANNED
from sdbatch.plan import Plan, PlannedPayload
from sdbatch.progress import Console, Progress
from sdbatch.resume import Todo, open_output, todo
from sdbatch.sheet import build_sheets
from sdbatch.worker import Outcome, Worker
from sdbatch.writer import SUMMARY, RunInfo, Writer, write_json

# One request generating and one waiting in the webui's FIFO queue: the GPU starts the next image
# the moment it finishes one, instead of idling while the response travels, is decoded and
# written, and the next request arrives. More would only sit in the webui's queue (and its
# thread pool), where a Ctrl-C can no longer take them back.
IN_FLIGHT = 2

# Outcomes waiting for the writer hold whole response bodies; a few are enough to absorb a
# slow disk without letting memory grow with the plan.
WRITE_QUEUE_DEPTH = 4


@dataclass
class RunResult:
    out_dir: Path
    planned_images: int  # the whole plan, including what an earlier run finished
    skipped: int = 0  # images an earlier run finished
    saved: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # one row per failed payload
    elapsed: float = 0.0
    server_version: str | None = None
    signal: int | None = None  # the signal that stopped the run early
    error: SdbatchError | None = None  # what aborted the run

    @property
    def exit_code(self) -> ExitCode:
        if self.error is not None:
            return self.error.exit_code
        if self.signal is not None:
            return ExitCode.TERMINATED if self.signal == signal.SIGTERM else ExitCode.INTERRUPTED
        return ExitCode.PARTIAL if self.failed else ExitCode.OK

    def summary(self) -> str:
        rate = self.saved / self.elapsed * 60 if self.elapsed > 0 else 0.0
        text = (
            f"{self.saved} images saved, {self.skipped} already done, {len(self.failed)} "
            f"payload(s) failed, {self.skipped + self.saved}/{self.planned_images} done, "
            f"{self.elapsed:.1f} s ({rate:.1f} images/min), exit {int(self.exit_code)}"
            f" -> {self.out_dir}"
        )
        if self.signal is not None:
            text = f"stopped by {signal.Signals(self.signal).name}: {text}"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "planned": self.planned_images,
            "skipped": self.skipped,
            "done": self.saved,
            "failed": [
                {"id": r["id"], "payload_index": r["payload_index"], "error": r["error"]}
                for r in self.failed
            ],
            "images_per_minute": round(self.saved / self.elapsed * 60, 2) if self.elapsed else 0,
            "wall_time": round(self.elapsed, 3),
            "server_version": self.server_version,
            "signal": signal.Signals(self.signal).name if self.signal else None,
            "error": str(self.error) if self.error else None,
            "exit_code": int(self.exit_code),
        }


class _WriterThread(threading.Thread):
    """Consumes outcomes in plan order; remembers the first error so the run can stop on it."""

    def __init__(self, writer: Writer, progress: Progress) -> None:
        super().__init__(name="sdbatch-writer", daemon=True)
        self.writer = writer
        self.progress = progress
        self.inbox: queue.Queue[Outcome | None] = queue.Queue(maxsize=WRITE_QUEUE_DEPTH)
        self.error: BaseException | None = None

    def run(self) -> None:
        while (outcome := self.inbox.get()) is not None:
            if self.error is not None:
                continue  # keep draining so the producer never blocks on a dead consumer
            try:
                for row in self.writer.write(outcome):
                    if row["status"] == "ok":
                        self.progress.image_saved(row)
                    else:
                        self.progress.payload_failed(row)
            except BaseException as exc:  # handed to the main thread, which raises it
                self.error = exc


class _Stopper:
    """SIGINT/SIGTERM handling. The first signal stops new payloads and lets the ones at the
    server finish and be saved; a second one asks the webui to interrupt and stops waiting."""

    def __init__(self, worker: Worker, console: Console) -> None:
        self.worker = worker
        self.console = console
        self.signum: int | None = None
        self.hard = threading.Event()
        self._saved: dict[int, Any] = {}

    def __call__(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
            self.console.error(
                f"{signal.Signals(signum).name}: finishing the request(s) in flight; "
                "send it again to interrupt them"
            )
            return
        self.hard.set()
        self.console.error("interrupting the webui and stopping now")
        threading.Thread(target=self.worker.interrupt, daemon=True).start()

    def __enter__(self) -> _Stopper:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._saved[signum] = signal.signal(signum, self)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)


def _in_thread(fn: Callable[[PlannedPayload], Outcome], item: PlannedPayload) -> Future[Outcome]:
    # Daemon threads, unlike a ThreadPoolExecutor's, do not hold the process open at exit, so a
    # hard stop need not wait for a request the webui is still working on.
    future: Future[Outcome] = Future()

    def target() -> None:
        try:
            future.set_result(fn(item))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=target, name=f"sdbatch-request-{item.index}", daemon=True).start()
    return future


def _result(future: Future[Outcome], stopper: _Stopper) -> Outcome | None:
    """The outcome, or None once a hard stop means we no longer want it: an answer that comes
    after the webui was told to interrupt may hold a half-denoised image."""
    while not stopper.hard.is_set():
        try:
            outcome = future.result(timeout=0.2)
        except FutureTimeout:
            continue
        return None if stopper.hard.is_set() else outcome
    return None


def run_plan(
    todo: Todo,
    out_dir: Path,
    *,
    worker: Worker,
    console: Console,
    run_info: RunInfo,
    claimed: frozenset[str] = frozenset(),
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Send every payload still to do and save what comes back; return the tally.

    A lost server (ServerUnreachableError) or an unwritable output dir (OutputError) stops the
    run and is returned in `RunResult.error`: what was saved stays, the writer has drained.
    """
    plan = todo.plan
    writer = Writer(out_dir, plan.job.output.filename, run_info, done=todo.done, claimed=claimed)
    progress = Progress(console, todo.images, clock=clock)
    thread = _WriterThread(writer, progress)
    result = RunResult(out_dir, plan.image_count, skipped=todo.done_images)
    thread.start()
    pending: deque[Future[Outcome]] = deque()

    def collect() -> None:
        outcome = _result(pending.popleft(), stopper)
        if outcome is not None:
            thread.inbox.put(outcome)

    with _Stopper(worker, console) as stopper:
        try:
            for item in todo.payloads():
                if thread.error is not None or stopper.signum is not None:
                    break
                pending.append(_in_thread(worker.submit, item))
                if len(pending) >= IN_FLIGHT:
                    collect()
            # What is already at the server is generated whether we wait or not (the webui
            # does not notice a client going away), so it is collected and saved too.
            while pending and not stopper.hard.is_set():
                collect()
        except SdbatchError as exc:
            result.error = exc
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
    result.saved = progress.done
    result.failed = [dict(row) for row in progress.failed_rows]
    result.elapsed = progress.elapsed
    result.server_version = progress.server_version
    return result


def _planned(plan: Plan) -> dict[str, Any]:
    """plan.json: the axis values in plan order, so sheets of a stopped run still show the
    rows and columns it did not reach."""
    job = plan.job
    axes = {name: list(values) for name, values in (*job.grid, *job.zip, *job.vars)}
    axes["seed"] = list(plan.seeds)
    return {
        "job": job.name,
        "payloads": plan.payload_count,
        "images": plan.image_count,
        "axes": axes,
    }


def _pictures(job: Job, out_dir: Path, console: Console) -> None:
    """The gallery after every run, even a stopped one, and the job's sheets if it asks for
    them. Both are drawn from the manifest alone and can be rebuilt at any time, so a failure
    here costs no image and does not change the run's exit code."""
    try:
        build_gallery(out_dir)
        if job.sheet is not None:
            build_sheets(out_dir, x=job.sheet.x, y=job.sheet.y, z=job.sheet.z)
    except (SdbatchError, OSError) as exc:
        console.error(
            f"could not draw the gallery or sheets ({exc}); `sdbatch gallery` and "
            "`sdbatch sheet` rebuild them"
        )


def run_job(
    plan: Plan,
    out_dir: Path,
    *,
    worker: Worker,
    console: Console,
    run_info: RunInfo,
    verify: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Claim the output dir, resume what an earlier run left, run the rest, write summary.json.

    Raises the error that aborted the run, if any, after the summary is written.
    """
    state = open_output(out_dir, plan.job.name, verify=verify)
    try:
        left = todo(plan, state.done)
        write_json(out_dir / PLANNED, _planned(plan))
        if state.torn_lines:
            console.error(f"{state.torn_lines} torn manifest line(s) from a crash ignored")
        console.info(f"{out_dir}: {left.done_images} done, {left.images} to do")
        result = run_plan(
            left,
            out_dir,
            worker=worker,
            console=console,
            run_info=run_info,
            claimed=state.files,
            clock=clock,
        )
        _pictures(plan.job, out_dir, console)
        console.summary(result.summary())
        write_json(out_dir / SUMMARY, {"job": plan.job.name, **result.as_json()})
    finally:
        state.release()
    if result.error is not None:
        raise result.error
    return result
