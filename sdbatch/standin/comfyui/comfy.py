"""`MockComfy`: the stand-in server object — lifecycle, the worker, message routing."""

from __future__ import annotations

import functools
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdbatch.standin.comfyui import nodes
from sdbatch.standin.comfyui.catalog import MODEL_FOLDERS, Catalog
from sdbatch.standin.comfyui.executor import Run, Send
from sdbatch.standin.comfyui.faults import Faults, FaultSettings
from sdbatch.standin.comfyui.graph import Cache, Item
from sdbatch.standin.comfyui.images import Saver
from sdbatch.standin.comfyui.jobqueue import PromptQueue
from sdbatch.standin.comfyui.records import Execution, Recorder
from sdbatch.standin.comfyui.server import ComfyHTTPServer
from sdbatch.standin.comfyui.ws import Hub, Socket

# The real worker applies POST /free's flags after the prompt it runs next, or once it is idle
# this long after the last one (its garbage-collection wake-up): recorded, a /free right before
# a prompt leaves that prompt's nodes cached.
GC_INTERVAL = 10.0
# Sent even for a prompt posted without a client_id (then to every socket), as observed.
UNADDRESSED = frozenset({"progress", "progress_state", "execution_interrupted"})


class MockComfy:
    """A stand-in for ComfyUI 0.3.64 on a real loopback socket (see the package docs).

    `step_delay` seconds pass per sampler step; `seed` changes every picture; files go to
    `root`/output and `root`/temp (a temporary folder, removed at stop, when `root` is None).
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
    ) -> None:
        self.host, self.port, self.step_delay, self.clock = host, port, step_delay, clock
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="sdbatch-comfy-")) if root is None else Path(root)
        self.catalog = catalog or Catalog()
        self.saver = Saver(self.root, seed)
        self.hub = Hub()
        self.queue = PromptQueue(self._status)
        self.cache = Cache()
        self.faults = Faults()
        self.recorder = Recorder()
        self._interrupt = threading.Event()
        self._lock = threading.Lock()
        self._run: Run | None = None
        self._free = False
        self._gc_due: float | None = None
        self._httpd: ComfyHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> MockComfy:
        for kind in ("output", "temp", "input"):
            (self.root / kind).mkdir(parents=True, exist_ok=True)
        self.saver.ensure_example()
        self._httpd = ComfyHTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        serve = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"mockcomfy:{self.port}",
            daemon=True,
        )
        worker = threading.Thread(
            target=self._work, name=f"mockcomfy-worker:{self.port}", daemon=True
        )
        self._threads = [serve, worker]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self.queue.close()
        self._interrupt.set()
        self._httpd.shutdown()
        self.hub.close_all()
        self._httpd.drop_connections()
        self._httpd.server_close()
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
        with self._lock:
            run = self._run
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
        """Interrupt the running prompt (only if it is `prompt_id`, when given)."""
        with self._lock:
            run = self._run
            if run is not None and prompt_id in (None, run.item.prompt_id):
                self._interrupt.set()

    def reset_cache(self) -> None:
        """POST /free {"free_memory": true}: the caches go when the worker next looks (see
        GC_INTERVAL), not at once."""
        with self._lock:
            self._free = True

    def _apply_flags(self) -> None:
        with self._lock:
            if self._free:
                self.cache.clear()
                self._free = False

    # -- the worker ------------------------------------------------------------------------
    def _status(self) -> None:
        self._send(
            "status",
            {"status": {"exec_info": {"queue_remaining": self.queue.remaining()}}},
            None,
            always=True,
        )

    def _send(self, event: str, data: dict[str, Any], sid: str | None, always: bool) -> None:
        if self.faults.settings.ws_mute or (sid is None and not always):
            return
        self.hub.send(event, data, sid)

    def _sender(self, sid: str | None) -> Send:
        return lambda event, data: self._send(event, data, sid, event in UNADDRESSED)

    def _work(self) -> None:
        while not self.queue.closed:
            item = self.queue.get(timeout=0.2)
            if item is None:
                if self._gc_due is not None and self.clock() >= self._gc_due:
                    self._apply_flags()
                    self._gc_due = None
                continue
            with self._lock:
                self._interrupt.clear()  # the real flag is reset as each prompt starts
                files: list[str] = []
                run = Run(
                    item,
                    self.cache,
                    self._sender(item.client_id),
                    self._interrupt,
                    functools.partial(self._context, files=files),
                )
                self._run = run
            started = self.clock()
            run.execute()
            with self._lock:
                self._run = None
            self._apply_flags()
            self._gc_due = self.clock() + GC_INTERVAL
            self.queue.done(item, run.entry())
            self._send(
                "executing", {"node": None, "prompt_id": item.prompt_id}, item.client_id, False
            )
            cached: list[str] = next(
                (m[1]["nodes"] for m in run.messages if m[0] == "execution_cached"), []
            )
            self.recorder.execution(
                Execution(
                    item.prompt_id,
                    item.client_id,
                    run.status,
                    tuple(run.ran),
                    tuple(cached),
                    tuple(files),
                    started,
                    self.clock(),
                )
            )

    def _context(self, run: Run, node_id: str, files: list[str]) -> nodes.Context:
        def save(pictures: nodes.Pictures, prefix: str, kind: str) -> list[dict[str, str]]:
            pnginfo = run.item.extra_data.get("extra_pnginfo")
            saved = self.saver.save(pictures, prefix, kind, run.item.graph, pnginfo)
            files.extend(
                "/".join(p for p in (i["type"], i["subfolder"], i["filename"]) if p) for i in saved
            )
            return saved

        def before_sampling() -> None:
            fault = self.faults.take_runtime_error()
            if fault is not None:
                raise nodes.NodeFailure(*fault)

        def load_input(name: str) -> nodes.Pictures:
            try:
                return self.saver.load_input(name)
            except OSError as exc:
                raise nodes.NodeFailure("FileNotFoundError", str(exc)) from exc

        def step(done: int, total: int) -> None:
            run.step(node_id, done, total, self.step_delay)

        return nodes.Context(self.catalog, step, save, load_input, before_sampling)
