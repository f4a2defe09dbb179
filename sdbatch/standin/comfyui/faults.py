"""Fault hooks for tests of a ComfyUI client: what goes wrong on a real server, on demand.

- `http_fail_next`: the next POST /prompt answers aiohttp's 500 page (status `http_fail_status`)
  and queues nothing, as an unhandled server error does.
- `error_next`: the next prompts fail at run time at their first sampler (or, without one,
  their first node that runs): `execution_error` with `error_type` / `error_message`, history
  `status_str: "error"`, as an out-of-memory error does.
- `ws_mute`: the server keeps sockets open but sends nothing on them, a socket lost without a
  close; `MockComfy.drop_sockets()` closes them instead.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields, replace
from typing import Any

OOM_TYPE = "torch.OutOfMemoryError"
OOM_MESSAGE = "Allocation on device would exceed allowed memory. (sdbatch stand-in)"


@dataclass(frozen=True)
class FaultSettings:
    http_fail_next: int = 0
    http_fail_status: int = 500
    error_next: int = 0
    error_type: str = OOM_TYPE
    error_message: str = OOM_MESSAGE
    ws_mute: bool = False


NAMES = frozenset(f.name for f in fields(FaultSettings))


class Faults:
    """Thread-safe settings; counters count down as prompts use them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings = FaultSettings()

    @property
    def settings(self) -> FaultSettings:
        with self._lock:
            return self._settings

    def update(self, **changes: Any) -> FaultSettings:
        unknown = set(changes) - NAMES
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        with self._lock:
            typed = {k: type(getattr(self._settings, k))(v) for k, v in changes.items()}
            self._settings = replace(self._settings, **typed)
            return self._settings

    def clear(self) -> None:
        with self._lock:
            self._settings = FaultSettings()

    def take_http_failure(self) -> int | None:
        """The status to fail this POST /prompt with, or None."""
        with self._lock:
            s = self._settings
            if s.http_fail_next <= 0:
                return None
            self._settings = replace(s, http_fail_next=s.http_fail_next - 1)
            return s.http_fail_status

    def take_runtime_error(self) -> tuple[str, str] | None:
        """(exception type, message) for the prompt starting now, or None."""
        with self._lock:
            s = self._settings
            if s.error_next <= 0:
                return None
            self._settings = replace(s, error_next=s.error_next - 1)
            return s.error_type, s.error_message
