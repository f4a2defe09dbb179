"""The one worker thread: takes the next prompt, runs it (executor.py), writes history, and
keeps the real worker's habits — the interrupt flag reset as each prompt starts, POST /free's
flags read only after a run or at the idle wake-up, `executing {node: null}` after the history
entry and its `status`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sdbatch.standin.comfyui import nodes
from sdbatch.standin.comfyui.catalog import Catalog
from sdbatch.standin.comfyui.executor import Run, Send
from sdbatch.standin.comfyui.faults import Faults
from sdbatch.standin.comfyui.graph import Cache
from sdbatch.standin.comfyui.images import Saver
from sdbatch.standin.comfyui.jobqueue import PromptQueue
from sdbatch.standin.comfyui.records import Execution, Recorder

# The real worker applies POST /free's flags after the prompt it runs next, or once it is idle
# this long after the last one (its garbage-collection wake-up): recorded, a /free right before
# a prompt leaves that prompt's nodes cached.
GC_INTERVAL = 10.0
# Sent even for a prompt posted without a client_id (then to every socket), as observed.
UNADDRESSED = frozenset({"progress", "progress_state", "execution_interrupted"})

# send(event, data, client_id or None, send even without a client)
Deliver = Callable[[str, dict[str, Any], str | None, bool], None]


class Worker:
    def __init__(
        self,
        queue: PromptQueue,
        saver: Saver,
        catalog: Catalog,
        faults: Faults,
        recorder: Recorder,
        deliver: Deliver,
        clock: Callable[[], float],
        step_delay: float,
    ) -> None:
        self.queue, self.saver, self.catalog, self.faults = queue, saver, catalog, faults
        self.recorder, self._deliver, self.clock = recorder, deliver, clock
        self.step_delay = step_delay  # read at each step: a test may change it between prompts
        self.cache = Cache()
        self._interrupt = threading.Event()
        self._lock = threading.Lock()
        self._run: Run | None = None
        self._free = False
        self._gc_due: float | None = None

    @property
    def running(self) -> Run | None:
        with self._lock:
            return self._run

    def stop(self) -> None:
        self._interrupt.set()

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

    def _changed(self, class_type: str, inputs: Mapping[str, Any]) -> Any:
        """LoadImage's IS_CHANGED: its file's content (the real one hashes it too)."""
        if class_type != "LoadImage":
            return None
        return self.saver.input_digest(str(inputs.get("image", "")))

    def _sender(self, sid: str | None) -> Send:
        return lambda event, data: self._deliver(event, data, sid, event in UNADDRESSED)

    def work(self) -> None:
        """The thread's loop, until the queue is closed."""
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
                    self._changed,
                )
                self._run = run
            started = self.clock()
            run.execute()
            with self._lock:
                self._run = None
            self._apply_flags()
            self._gc_due = self.clock() + GC_INTERVAL
            self.queue.done(item, run.entry())
            self._deliver(
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
