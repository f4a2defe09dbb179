"""Fault injection for tests: failed, reset and hung txt2img requests, counted or at random;
out-of-memory errors that depend on the request; jobs that run long; answers spoiled after
they were made, and fixed raw answers for any route (tamper.py).

Faults only hit `POST /sdapi/v1/txt2img`, so health checks and progress polls never use one up.
Failures, resets and hangs are decided after the body is read and before validation and the
queue lock, so such a request consumes no seed and generates nothing. Out-of-memory errors and
slow jobs happen where the webui's would: inside the queue lock, once the job is planned.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from sdbatch.standin.a1111.errors import ApiError, http_exception, webui_exception
from sdbatch.standin.a1111.tamper import TAMPER_NAMES

FaultKind = Literal["fail", "reset", "hang"]

# torch's wording, as A1111 passes it through in `errors` (a1111-api.md §3).
OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 4.00 GiB. GPU 0 has a total capacity of "
    "7.79 GiB of which 1.21 GiB is free. (sdbatch stand-in)"
)


@dataclass(frozen=True)
class FaultSettings:
    """What to inject; counters count down as requests use them."""

    fail_next: int = 0
    fail_status: int = 500
    fail_error: str = "RuntimeError"
    fail_message: str = "injected failure (sdbatch stand-in webui)"
    reset_next: int = 0
    hang_next: int = 0
    hang_seconds: float = 30.0
    fail_rate: float = 0.0
    reset_rate: float = 0.0
    # Out of memory (500 OutOfMemoryError, nothing generated) for every job whose batch_size is
    # above this (0: never), and for every job that would make one of these seeds.
    oom_above_batch: int = 0
    oom_seeds: tuple[int, ...] = ()
    # The next `slow_next` jobs hold the queue lock `slow_seconds` longer before sampling, and
    # /progress shows them busy meanwhile: a long generation, where a hang is a network stall.
    slow_next: int = 0
    slow_seconds: float = 5.0
    # The next `tamper_next` txt2img answers are made, then spoiled as `tamper` names
    # (tamper.py: a truncated PNG, no images, garbage seeds, an HTML page, a cut body...).
    tamper: str = ""
    tamper_next: int = 0
    retry_after: int = 1  # the Retry-After of the "rate_limit" tamper, in seconds
    # Fixed raw answers by path, for any request: {path: [status, content type, body, {hdrs}]}.
    route_answers: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value


def _coerce(name: str, value: Any) -> Any:
    if name == "oom_seeds":
        return tuple(int(seed) for seed in value)
    if name == "route_answers":
        return {str(path): tuple(spec) for path, spec in dict(value).items()}
    if name == "tamper" and value and value not in TAMPER_NAMES:
        raise ValueError(f"unknown tamper {value!r}; one of {', '.join(sorted(TAMPER_NAMES))}")
    return type(getattr(FaultSettings, name))(value)


SETTING_NAMES = frozenset(f.name for f in fields(FaultSettings))


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    settings: FaultSettings

    def error(self) -> ApiError:
        """The answer for a "fail" fault: the webui's exception shape for 5xx, HTTPException's
        (detail set) for anything else, e.g. a 422 script error or a 400."""
        s = self.settings
        if s.fail_status >= 500:
            return webui_exception(s.fail_error, s.fail_message, s.fail_status)
        return http_exception(s.fail_status, s.fail_message)


class FaultInjector:
    """Thread-safe fault state; `rng` makes fail_rate/reset_rate reproducible."""

    def __init__(self, rng: random.Random) -> None:
        self._lock = threading.Lock()
        self._rng = rng
        self._settings = FaultSettings()

    @property
    def settings(self) -> FaultSettings:
        with self._lock:
            return self._settings

    def update(self, seed: int | None = None, **changes: Any) -> FaultSettings:
        """Change the given settings only; `seed` reseeds the random draws."""
        unknown = set(changes) - SETTING_NAMES
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        typed = {k: _coerce(k, v) for k, v in changes.items()}
        rates = [typed.get("fail_rate", 0.0), typed.get("reset_rate", 0.0)]
        if any(not 0.0 <= r <= 1.0 for r in rates):
            raise ValueError("fail_rate and reset_rate must be between 0 and 1")
        with self._lock:
            if seed is not None:
                self._rng.seed(seed)
            self._settings = replace(self._settings, **typed)
            return self._settings

    def clear(self) -> None:
        with self._lock:
            self._settings = FaultSettings()

    def draw(self) -> Fault | None:
        """The fault for the next txt2img request, if any. Counted faults come first (reset,
        then hang, then fail); otherwise one random draw decides between reset, fail and none."""
        with self._lock:
            s = self._settings
            if s.reset_next > 0:
                self._settings = replace(s, reset_next=s.reset_next - 1)
                return Fault("reset", s)
            if s.hang_next > 0:
                self._settings = replace(s, hang_next=s.hang_next - 1)
                return Fault("hang", s)
            if s.fail_next > 0:
                self._settings = replace(s, fail_next=s.fail_next - 1)
                return Fault("fail", s)
            # Draw only when a rate is set, so switching rates on doesn't shift other randomness.
            if s.fail_rate <= 0.0 and s.reset_rate <= 0.0:
                return None
            x = self._rng.random()
            if x < s.reset_rate:
                return Fault("reset", s)
            if x < s.reset_rate + s.fail_rate:
                return Fault("fail", s)
            return None

    def out_of_memory(self, batch_size: int, seeds: Sequence[int]) -> ApiError | None:
        """The 500 for a job that does not fit in the (pretend) GPU, or None if it fits."""
        s = self.settings
        too_big = 0 < s.oom_above_batch < batch_size
        if not too_big and not set(seeds) & set(s.oom_seeds):
            return None
        error = webui_exception("OutOfMemoryError", OOM_MESSAGE)
        error.fault = "oom"
        return error

    def take_tamper(self) -> str | None:
        """The tamper for the txt2img answer being made, if one is due (counted down)."""
        with self._lock:
            s = self._settings
            if s.tamper_next <= 0 or not s.tamper:
                return None
            self._settings = replace(s, tamper_next=s.tamper_next - 1)
            return s.tamper

    def take_slow(self) -> float:
        """Extra seconds for the job that just took the queue lock (0 when none are due)."""
        with self._lock:
            s = self._settings
            if s.slow_next <= 0:
                return 0.0
            self._settings = replace(s, slow_next=s.slow_next - 1)
            return s.slow_seconds
