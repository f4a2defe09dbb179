"""What the HTTP side (server.py, routes.py, control.py) may ask of the stand-in it serves.

`comfy.MockComfy` is the one implementation. The HTTP modules are written against this Protocol
rather than the class, so they never import `comfy`, which imports them: the stand-in's modules
import one way only (tests/test_layout.py holds the package to that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sdbatch.standin.comfyui.catalog import Catalog
from sdbatch.standin.comfyui.faults import Faults, FaultSettings
from sdbatch.standin.comfyui.images import Saver
from sdbatch.standin.comfyui.jobqueue import PromptQueue
from sdbatch.standin.comfyui.records import Recorder
from sdbatch.standin.comfyui.ws import Hub, Socket


class Host(Protocol):
    catalog: Catalog
    saver: Saver
    queue: PromptQueue
    faults: Faults
    recorder: Recorder
    hub: Hub
    clock: Callable[[], float]
    version: str

    def model_folders(self) -> tuple[str, ...]: ...

    def attach(self, sid: str, ws: Socket) -> None: ...

    def enqueue(
        self,
        number: float,
        prompt_id: str,
        graph: dict[str, Any],
        extra: dict[str, Any],
        outputs: list[str],
    ) -> None: ...

    def interrupt(self, prompt_id: str | None) -> None: ...

    def reset_cache(self) -> None: ...

    def inject(self, **settings: Any) -> FaultSettings: ...

    def drop_sockets(self) -> None: ...
