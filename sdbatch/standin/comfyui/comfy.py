"""`MockComfy`: the stand-in server object — its lifecycle, its parts (HTTP server, socket hub,
queue, worker, saver) and where messages go: to the posting client's socket only, and without a
client only what the real server sends to everyone (`status`, progress, an interrupt)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdbatch.standin.comfyui.catalog import MODEL_FOLDERS, Catalog
from sdbatch.standin.comfyui.faults import Faults, FaultSettings
from sdbatch.standin.comfyui.graph import Item
from sdbatch.standin.comfyui.images import Saver
from sdbatch.standin.comfyui.jobqueue import PromptQueue
from sdbatch.standin.comfyui.records import Recorder
from sdbatch.standin.comfyui.server import ComfyHTTPServer
from sdbatch.standin.comfyui.worker import Worker
from sdbatch.standin.comfyui.ws import Hub, Socket

VERSION = "0.3.64"  # the real server the stand-in was recorded from


class MockComfy:
    """A stand-in for ComfyUI 0.3.64 on a real loopback socket (see the package docs).

    `step_delay` seconds pass per sampler step; `seed` changes every picture; files go to
    `root`/output and `root`/temp (a temporary folder, removed at stop, when `root` is None).
    `version` is the ComfyUI version it reports (the recorded one's unless a test says otherwise).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        step_delay: float = 0.0,
        seed: int = 0,
        root: Path | str | None = None,
        catalog: Catalog | None = None,
        clock: Callable[[], float] = time.monotonic,
        version: str = VERSION,
    ) -> None:
        self.host, self.port, self.clock = host, port, clock
        self.version = version  # /system_stats' comfyui_version: servers of a run may differ
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="sdbatch-comfy-")) if root is None else Path(root)
        self.catalog = catalog or Catalog()
        self.saver = Saver(self.root, seed)
        self.hub = Hub()
        self.queue = PromptQueue(self._status)
        self.faults = Faults()
        self.recorder = Recorder()
        self.worker = Worker(
            self.queue,
            self.saver,
            self.catalog,
            self.faults,
            self.recorder,
            self._send,
            clock,
            step_delay,
        )
        self._httpd: ComfyHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> MockComfy:
        for kind in ("output", "temp", "input"):
            (self.root / kind).mkdir(parents=True, exist_ok=True)
        self.saver.ensure_example()
        self._httpd = ComfyHTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        worker = threading.Thread(
            target=self.worker.work, name=f"mockcomfy-worker:{self.port}", daemon=True
        )
        worker.start()
        self._threads = [self._httpd.serve_in_thread(f"mockcomfy:{self.port}"), worker]
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        # The network goes first, as when the real server is killed: stopping the worker
        # interrupts its prompt, and a client must not read an interruption the real one,
        # gone, would never have written to its history.
        self._httpd.shutdown()
        self.hub.close_all()
        self._httpd.close()
        self.queue.close()
        self.worker.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._httpd = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> MockComfy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def step_delay(self) -> float:
        """Seconds per sampler step; may be changed while the server runs."""
        return self.worker.step_delay

    @step_delay.setter
    def step_delay(self, seconds: float) -> None:
        self.worker.step_delay = seconds

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ws_url(self, client_id: str) -> str:
        return f"ws://{self.host}:{self.port}/ws?clientId={client_id}"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    # -- test hooks ------------------------------------------------------------------------
    def inject(self, **settings: Any) -> FaultSettings:
        """Change fault settings (faults.py), e.g. `inject(error_next=1)`."""
        return self.faults.update(**settings)

    def drop_sockets(self) -> None:
        """Close every registered WebSocket from the server side (a lost connection)."""
        self.hub.close_all()

    # -- what the routes ask ---------------------------------------------------------------
    def model_folders(self) -> tuple[str, ...]:
        return MODEL_FOLDERS

    def attach(self, sid: str, ws: Socket) -> None:
        """A new socket: it takes over `sid`, gets `status` with its sid and, when its client's
        prompt is running, the node running now (as the real one re-sends it)."""
        self.hub.connect(sid, ws)
        status = {"exec_info": {"queue_remaining": self.queue.remaining()}}
        if not self.faults.settings.ws_mute:
            ws.send({"type": "status", "data": {"status": status, "sid": sid}})
        run = self.worker.running
        if run is not None and run.item.client_id == sid and run.current is not None:
            ws.send({"type": "executing", "data": {"node": run.current}})

    def enqueue(
        self,
        number: float,
        prompt_id: str,
        graph: dict[str, Any],
        extra: dict[str, Any],
        outputs: list[str],
    ) -> None:
        self.queue.put(Item(number, prompt_id, graph, extra, outputs))

    def interrupt(self, prompt_id: str | None) -> None:
        self.worker.interrupt(prompt_id)

    def reset_cache(self) -> None:
        self.worker.reset_cache()

    # -- messages --------------------------------------------------------------------------
    def _status(self) -> None:
        status = {"status": {"exec_info": {"queue_remaining": self.queue.remaining()}}}
        self._send("status", status, None, True)

    def _send(self, event: str, data: dict[str, Any], sid: str | None, always: bool) -> None:
        """To `sid`'s socket; without a client only what the real one sends then (to all)."""
        if self.faults.settings.ws_mute or (sid is None and not always):
            return
        self.hub.send(event, data, sid)
