"""The order of the stand-in ComfyUI's request log, which the backend tests and the benchmark
read: a request is in the log before its answer goes out, the WebSocket upgrade included.

The upgrade used to be logged only after its 101 had gone out, so a client that had its socket
open and sent its next request at once (sdbatch posts right after `Listener.ensure()`) now and
then found that request logged BEFORE the upgrade (31 of 300 in a loop), and the backend's
"socket open before the first post" check failed now and then in the full suite.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from websockets.sync.client import connect

from sdbatch.standin.comfyui import LoggedRequest, MockComfy


@pytest.fixture
def comfy() -> Iterator[MockComfy]:
    with MockComfy() as server:
        yield server


# -- the upgrade is in the log before its answer ------------------------------------------------


def test_the_upgrade_is_logged_before_the_client_has_its_socket(comfy: MockComfy) -> None:
    """A slow log write (the race window, held open) must delay the 101, not come after it."""
    real = comfy.recorder.request

    def slow_for_upgrades(entry: LoggedRequest) -> None:
        if entry.path == "/ws":
            time.sleep(0.3)  # what the scheduler did now and then, every time
        real(entry)

    comfy.recorder.request = slow_for_upgrades  # type: ignore[method-assign]
    client_id = uuid.uuid4().hex
    with connect(comfy.ws_url(client_id), open_timeout=10) as ws:
        requests.get(comfy.url + "/prompt", timeout=10)
        logged = list(comfy.recorder.requests)
        ws.send("{}")  # and the socket works
    paths = [(r.path, r.query) for r in logged]
    assert ("/ws", f"clientId={client_id}") in paths, paths
    assert paths.index(("/ws", f"clientId={client_id}")) < paths.index(("/prompt", ""))
    assert [r.status for r in logged if r.path == "/ws"] == [101]
