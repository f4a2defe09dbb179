"""What the HTTP layer (`server`, `routes`) may ask of the stand-in webui it serves.

`webui.MockWebui` is the one implementation. The routes and the server are written against this
Protocol rather than the class, so they never import `webui`, which imports them: the stand-in's
modules import one way only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sdbatch.standin.a1111.behaviours import Behaviour
from sdbatch.standin.a1111.catalog import Catalog
from sdbatch.standin.a1111.faults import FaultInjector, FaultSettings
from sdbatch.standin.a1111.records import Recorder
from sdbatch.standin.a1111.state import JobState
from sdbatch.standin.a1111.substitution import Substitution


class Host(Protocol):
    host: str
    port: int
    auth: tuple[str, str] | None
    behaviour: Behaviour
    substitution: Substitution
    state: JobState
    recorder: Recorder
    stopping: threading.Event
    catalog: Catalog
    clock: Callable[[], float]

    @property
    def routes(self) -> Mapping[str, Mapping[str, Callable[..., Any]]]:
        """path -> method -> handler(host, request, outcome); the handlers are `routes`'."""
        ...

    @property
    def faults(self) -> FaultInjector: ...

    @property
    def model_loads(self) -> int: ...

    @property
    def loaded_model(self) -> str: ...

    def inject(self, *, seed: int | None = None, **settings: Any) -> FaultSettings: ...

    def reset(self) -> None: ...

    def options(self) -> dict[str, Any]: ...

    def models(self) -> list[dict[str, Any]]: ...

    def options_json(self) -> dict[str, Any]: ...

    def set_options(self, changes: Mapping[str, Any]) -> None: ...

    def txt2img(self, req: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[int, ...]]: ...
