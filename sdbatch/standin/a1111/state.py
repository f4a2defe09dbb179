"""The webui's shared state: the FIFO queue lock and the `shared.state` behind /progress.

Both are shared by all handler threads; everything here is guarded by its own lock, and nothing
here ever waits on the queue lock, so /progress, /interrupt and /skip answer during generation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class FifoLock:
    """A lock granted strictly in the order `acquire` was called (threading.Lock is unfair).

    The webui has used such a lock since v1.6.0 (a1111-api.md §4), so queued requests run in
    arrival order; clients may rely on that.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._now_serving = 0

    def acquire(self) -> None:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._now_serving:
                self._cond.wait()

    def release(self) -> None:
        with self._cond:
            self._now_serving += 1
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        """Holders plus waiters: how many requests are in the queue or generating."""
        with self._cond:
            return self._next_ticket - self._now_serving

    def __enter__(self) -> FifoLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class JobState:
    """`shared.state`: job counters for /progress plus the interrupt and skip flags."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._wake = threading.Event()  # set by interrupt/skip so delays end at once
        self.interrupted = False
        self.skipped = False
        self.job = ""
        self.job_count = 0
        self.job_no = 0
        self.job_timestamp = "0"
        self.sampling_step = 0
        self.sampling_steps = 0
        self._started = 0.0
        self._stopping = False

    def begin(self, job: str, job_count: int, timestamp: str) -> None:
        # state.begin() resets the flags: an interrupt sent while idle doesn't carry over.
        with self._lock:
            self.interrupted = self.skipped = False
            if not self._stopping:
                self._wake.clear()
            self.job, self.job_count, self.job_no = job, job_count, 0
            self.job_timestamp = timestamp
            self.sampling_step = self.sampling_steps = 0
            self._started = self._clock()

    def next_batch(self, job_no: int, job: str, steps: int) -> None:
        with self._lock:
            self.skipped = False
            if not (self.interrupted or self._stopping):
                self._wake.clear()
            self.job_no, self.job = job_no, job
            self.sampling_step, self.sampling_steps = 0, steps

    def step(self, n: int) -> None:
        with self._lock:
            self.sampling_step = n

    def end(self) -> None:
        # state.end() resets only job and job_count; the rest shows the last job.
        with self._lock:
            self.job, self.job_count = "", 0

    def interrupt(self) -> None:
        with self._lock:
            self.interrupted = True
            self._wake.set()

    def skip(self) -> None:
        with self._lock:
            self.skipped = True
            self._wake.set()

    def stop_requested(self) -> bool:
        with self._lock:
            return self.interrupted or self.skipped or self._stopping

    def wait(self, seconds: float) -> None:
        """Sleep, but wake as soon as an interrupt or skip arrives."""
        if seconds > 0:
            self._wake.wait(seconds)

    def shut_down(self) -> None:
        """Server stop: end the running job and every later delay at once."""
        with self._lock:
            self._stopping = True
            self._wake.set()

    def progress(self) -> dict[str, Any]:
        with self._lock:
            state = {
                "skipped": self.skipped,
                "interrupted": self.interrupted,
                "stopping_generation": False,
                "job": self.job,
                "job_count": self.job_count,
                "job_timestamp": self.job_timestamp,
                "job_no": self.job_no,
                "sampling_step": self.sampling_step,
                "sampling_steps": self.sampling_steps,
            }
            if self.job_count <= 0:
                return {
                    "progress": 0.0,
                    "eta_relative": 0.0,
                    "state": state,
                    "current_image": None,
                    "textinfo": None,
                }
            progress = 0.01 + self.job_no / self.job_count
            if self.sampling_steps > 0:
                progress += (1 / self.job_count) * (self.sampling_step / self.sampling_steps)
            progress = min(progress, 1.0)
            elapsed = self._clock() - self._started
            return {
                "progress": progress,
                "eta_relative": elapsed / progress - elapsed,
                "state": state,
                "current_image": None,
                "textinfo": None,
            }
