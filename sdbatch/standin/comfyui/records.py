"""What the stand-in ComfyUI saw and did, for tests: the HTTP requests (the WebSocket upgrade
included) and each prompt it ran — which nodes really ran, which came from the cache, and the
files written. Handler and worker threads append; readers get copies under one lock.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # without the /api prefix
    query: str
    raw: bytes
    status: int
    time: float  # the server clock when answered

    @property
    def body(self) -> Any:
        """The decoded JSON body, None without one (or when it does not parse)."""
        try:
            return json.loads(self.raw) if self.raw else None
        except ValueError:
            return None


@dataclass(frozen=True)
class Execution:
    """One prompt the worker took from the queue."""

    prompt_id: str
    client_id: str | None
    status: str  # "success" or "error" (interrupted or failed)
    ran: tuple[str, ...]  # node ids that ran, in order
    cached: tuple[str, ...]  # node ids served from the cache
    files: tuple[str, ...]  # files written, relative to the server's root (output/..., temp/...)
    started: float
    ended: float


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[LoggedRequest] = []
        self._executions: list[Execution] = []

    def request(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    def execution(self, entry: Execution) -> None:
        with self._lock:
            self._executions.append(entry)

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def executions(self) -> list[Execution]:
        with self._lock:
            return list(self._executions)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._executions.clear()
