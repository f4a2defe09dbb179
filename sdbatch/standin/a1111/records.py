"""What the stand-in webui saw and did: the request log, the generated images, busy time.

Handler threads append; tests and benchmarks read copies, so everything goes through one lock.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LoggedRequest:
    """One HTTP request. `status` is None when no answer was sent (a reset, or a hang cut short
    by stop); `seeds` are the seeds of the images a txt2img request generated."""

    method: str
    path: str
    query: str
    body: Any  # the decoded JSON body, None without one
    status: int | None
    time: float  # the server clock when the request was read
    seeds: tuple[int, ...] = ()
    images: int = 0  # images in the response, grid included
    fault: str | None = None  # "fail", "reset", "hang" or "oom" when one was injected


@dataclass(frozen=True)
class GeneratedImage:
    """One image the stand-in "sampled" (grids are not listed)."""

    prompt: str
    negative_prompt: str
    seed: int
    subseed: int
    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler_name: str
    schedule_type: str | None
    model: str  # the checkpoint title
    job_timestamp: str
    index: int  # position in the job, batch-major
    time: float = 0.0  # the server clock when it was done (the job ends right after its last)


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[LoggedRequest] = []
        self._generated: list[GeneratedImage] = []
        self._txt2img_count = 0
        self._busy = 0.0
        self._first_start: float | None = None
        self._last_end: float | None = None

    def request(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    def image(self, entry: GeneratedImage) -> None:
        with self._lock:
            self._generated.append(entry)

    def job_started(self, at: float) -> None:
        with self._lock:
            self._txt2img_count += 1
            if self._first_start is None:
                self._first_start = at

    def busy(self, start: float, end: float) -> None:
        with self._lock:
            self._busy += end - start
            if self._first_start is None:
                self._first_start = start
            self._last_end = end

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._generated.clear()
            self._txt2img_count = 0
            self._busy = 0.0
            self._first_start = self._last_end = None

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def generated(self) -> list[GeneratedImage]:
        with self._lock:
            return list(self._generated)

    @property
    def txt2img_count(self) -> int:
        with self._lock:
            return self._txt2img_count

    @property
    def busy_seconds(self) -> float:
        with self._lock:
            return self._busy

    @property
    def busy_window(self) -> tuple[float | None, float | None]:
        with self._lock:
            return self._first_start, self._last_end

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": [dataclasses.asdict(r) for r in self._requests],
                "generated": [dataclasses.asdict(g) for g in self._generated],
                "txt2img_count": self._txt2img_count,
                "busy_seconds": self._busy,
                "first_start": self._first_start,
                "last_end": self._last_end,
            }
