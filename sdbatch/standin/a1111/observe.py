"""What tests read from the stand-in and how they steer it: logs, counters, fault injection.

A mixin of `MockWebui`, so the server class itself stays about lifecycle and jobs.
"""

from __future__ import annotations

from typing import Any

from sdbatch.standin.a1111.catalog import Checkpoint
from sdbatch.standin.a1111.faults import FaultInjector, FaultSettings
from sdbatch.standin.a1111.records import GeneratedImage, LoggedRequest, Recorder
from sdbatch.standin.a1111.state import FifoLock


class Observation:
    """Read-outs over the attributes MockWebui sets up."""

    recorder: Recorder
    queue_lock: FifoLock
    _faults: FaultInjector
    _loaded: Checkpoint
    _model_loads: int

    @property
    def requests(self) -> list[LoggedRequest]:
        return self.recorder.requests

    @property
    def generated(self) -> list[GeneratedImage]:
        return self.recorder.generated

    @property
    def txt2img_count(self) -> int:
        return self.recorder.txt2img_count

    @property
    def busy_seconds(self) -> float:
        return self.recorder.busy_seconds

    @property
    def first_start(self) -> float | None:
        """Server clock when the first job took the queue lock (for utilisation figures)."""
        return self.recorder.busy_window[0]

    @property
    def last_end(self) -> float | None:
        return self.recorder.busy_window[1]

    @property
    def model_loads(self) -> int:
        """Checkpoint loads since startup (a switch, or the reload after an override)."""
        return self._model_loads

    @property
    def loaded_model(self) -> str:
        """The title of the checkpoint in (pretend) VRAM."""
        return self._loaded.title

    @property
    def queue_depth(self) -> int:
        """Requests generating or waiting for the queue lock."""
        return self.queue_lock.waiting

    def inject(self, *, seed: int | None = None, **settings: Any) -> FaultSettings:
        """Set any subset of the FaultSettings fields (fail_next, fail_status, fail_error,
        fail_message, reset_next, hang_next, hang_seconds, fail_rate, reset_rate,
        oom_above_batch, oom_seeds, slow_next, slow_seconds, tamper, tamper_next, retry_after,
        route_answers); the others keep their values. `seed` reseeds the dice behind
        fail_rate/reset_rate."""
        return self._faults.update(seed=seed, **settings)

    @property
    def faults(self) -> FaultInjector:
        return self._faults

    def reset(self) -> None:
        """Clear faults and every log."""
        self._faults.clear()
        self.recorder.clear()
