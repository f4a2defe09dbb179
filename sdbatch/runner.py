"""Drives a run: requests go out on two request threads while a writer thread decodes and saves.

Entry point: `run_plan(plan, out_dir, ...) -> RunResult`. The webui generates one request at a
time; sdbatch keeps the next request queued behind the current one and decodes and writes
responses on a writer thread, so the server never waits for the client.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdbatch.errors import ExitCode, SdbatchError
from sdbatch.plan import Plan
from sdbatch.progress import Console, Progress
from sdbatch.worker import Outcome, Worker
from sdbatch.writer import RunInfo, Writer

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
    planned_images: int
    saved: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # one row per failed payload
    elapsed: float = 0.0
    interrupted: bool = False

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        return ExitCode.PARTIAL if self.failed else ExitCode.OK

    def summary(self) -> str:
        rate = self.saved / self.elapsed * 60 if self.elapsed > 0 else 0.0
        text = (
            f"{self.saved}/{self.planned_images} images saved, {len(self.failed)} payload(s) "
            f"failed, {self.elapsed:.1f} s ({rate:.1f} images/min) -> {self.out_dir}"
        )
        return ("interrupted: " if self.interrupted else "") + text


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


def run_plan(
    plan: Plan,
    out_dir: Path,
    *,
    worker: Worker,
    console: Console,
    run_info: RunInfo,
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Send every payload of the plan and save what comes back; return the tally.

    A lost server (ServerUnreachableError) or an unwritable output dir (OutputError) stops the
    run: what was already saved stays, and the error propagates after the writer has drained.
    """
    writer = Writer(out_dir, plan.job.output.filename, run_info)
    progress = Progress(console, plan.image_count, clock=clock)
    thread = _WriterThread(writer, progress)
    result = RunResult(out_dir, plan.image_count)
    thread.start()
    failure: BaseException | None = None
    pending: deque[Future[Outcome]] = deque()
    pool = ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="sdbatch-request")
    try:
        try:
            for item in plan:
                if thread.error is not None:
                    break
                pending.append(pool.submit(worker.submit, item))
                if len(pending) >= IN_FLIGHT:
                    thread.inbox.put(pending.popleft().result())
        except KeyboardInterrupt:
            result.interrupted = True
        # Whatever is already at the server will be generated whether we wait or not (the webui
        # does not notice a client going away), so collect and save it before stopping.
        while pending:
            thread.inbox.put(pending.popleft().result())
    except SdbatchError as exc:
        failure = exc
        for future in pending:
            future.cancel()
    finally:
        pool.shutdown(wait=True)
        thread.inbox.put(None)
        thread.join()
        writer.close()
        progress.close()
        result.saved = progress.done
        result.failed = [dict(row) for row in progress.failed_rows]
        result.elapsed = progress.elapsed
        console.summary(result.summary())
    if thread.error is not None:
        raise thread.error
    if failure is not None:
        raise failure
    return result
