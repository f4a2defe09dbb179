"""Running one queued prompt the way the real ComfyUI 0.3.64 does, message for message.

Order (tests/data/real-comfyui): `execution_start`, `execution_cached` (the graph's nodes whose
outputs the cache holds, in the graph's key order), then per node that runs `progress_state`
(running) and `executing`, for a sampler `progress_state` + `progress` per step, `executed` for
an output node, `progress_state` (finished); last `execution_success`, or `execution_error` /
`execution_interrupted`. A cached output node only replays `executed` with its OLD outputs.
Which nodes run, in which order, and what the cache holds: graph.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from sdbatch.standin.comfyui import nodes
from sdbatch.standin.comfyui.graph import Cache, Item, signatures, stage
from sdbatch.standin.comfyui.validate import is_link

Send = Callable[[str, dict[str, Any]], None]
TRACEBACK = ['  File "sdbatch/standin/comfyui/executor.py", in run (the stand-in has no model)\n']


class Interrupted(Exception):
    """POST /interrupt reached a sampler step."""


class Run:
    """One prompt's execution; `entry()` is its history entry."""

    def __init__(
        self,
        item: Item,
        cache: Cache,
        send: Send,
        interrupt: threading.Event,
        ctx: Callable[[Run, str], nodes.Context],
        changed: Callable[[str, Mapping[str, Any]], Any] | None = None,
    ) -> None:
        self.item, self.cache, self._send, self.interrupt = item, cache, send, interrupt
        self._ctx, self.changed = ctx, changed
        self.messages: list[list[Any]] = []
        self.ui: dict[str, Any] = {}
        self.progress: dict[str, dict[str, Any]] = {}
        self.ran: list[str] = []  # nodes that ran (not served from the cache)
        self.status = "success"
        self.current: str | None = None

    def event(self, name: str, data: dict[str, Any], *, record: bool = False) -> None:
        """Send one message; `record`ed ones (run-level) get a timestamp and go to history.
        Callers give the keys in the real server's order."""
        if record:
            data["timestamp"] = int(time.time() * 1000)
            self.messages.append([name, data])
        self._send(name, data)

    def state(self, node_id: str, value: float, top: float, state: str) -> None:
        self.progress[node_id] = {
            "value": value,
            "max": top,
            "state": state,
            "node_id": node_id,
            "prompt_id": self.item.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        self.event(
            "progress_state",
            {
                "prompt_id": self.item.prompt_id,
                "nodes": {k: dict(v) for k, v in self.progress.items()},
            },
        )

    def step(self, node_id: str, done: int, total: int, delay: float) -> None:
        if delay > 0:
            self.interrupt.wait(delay)
        if self.interrupt.is_set():
            raise Interrupted
        self.state(node_id, done, total, "running")
        self.event(
            "progress",
            {"value": done, "max": total, "prompt_id": self.item.prompt_id, "node": node_id},
        )

    def execute(self) -> None:
        graph, item, pid = self.item.graph, self.item, self.item.prompt_id
        self.event("execution_start", {"prompt_id": pid}, record=True)
        try:
            sigs = signatures(graph, self.changed)
            self.cache.keep(set(sigs.values()))
            cached = [n for n in graph if sigs[n] in self.cache.entries]
            self.event("execution_cached", {"nodes": cached, "prompt_id": pid}, record=True)
            order = stage(graph, item.outputs, set(cached))
        except nodes.NodeFailure as exc:
            self.fail(next(iter(graph)), exc)
            return
        results: dict[str, tuple[Any, ...]] = {n: self.cache.entries[sigs[n]][0] for n in cached}
        for node_id in order:
            if node_id in cached:
                self.done(node_id, self.cache.entries[sigs[node_id]][1], 1, 1)
                continue
            self.current = node_id
            self.state(node_id, 0.0, 1.0, "running")
            self.event("executing", {"node": node_id, "display_node": node_id, "prompt_id": pid})
            inputs = {
                name: results[v[0]][v[1]] if is_link(v) else v
                for name, v in graph[node_id].get("inputs", {}).items()
            }
            try:
                outputs, ui = nodes.run(
                    graph[node_id]["class_type"], inputs, self._ctx(self, node_id)
                )
            except Interrupted:
                self.status = "error"
                self.event(
                    "execution_interrupted",
                    {
                        "prompt_id": pid,
                        "node_id": node_id,
                        "node_type": graph[node_id]["class_type"],
                        "executed": [],
                    },
                    record=True,
                )
                return
            except nodes.NodeFailure as exc:
                self.fail(node_id, exc, inputs)
                return
            self.ran.append(node_id)
            self.cache.entries[sigs[node_id]] = (outputs, ui)
            results[node_id] = outputs
            shown = self.progress[node_id]
            if isinstance(shown["max"], float):  # not a sampler: 1.0 of 1.0
                self.done(node_id, ui, 1.0, 1.0)
            else:  # a sampler ends at its last step, as ints
                self.done(node_id, ui, shown["value"], shown["max"])
        self.event("execution_success", {"prompt_id": pid}, record=True)

    def done(self, node_id: str, ui: Any, value: float, top: float) -> None:
        if ui is not None:
            self.ui[node_id] = ui
            self.event(
                "executed",
                {
                    "node": node_id,
                    "display_node": node_id,
                    "output": ui,
                    "prompt_id": self.item.prompt_id,
                },
            )
        self.state(node_id, value, top, "finished")

    def fail(
        self, node_id: str, exc: nodes.NodeFailure, inputs: Mapping[str, Any] | None = None
    ) -> None:
        self.status = "error"
        shown = {
            k: [v if isinstance(v, str | int | float | bool) else str(v)]
            for k, v in (inputs or {}).items()
        }
        self.event(
            "execution_error",
            {
                "prompt_id": self.item.prompt_id,
                "node_id": node_id,
                "node_type": self.item.graph[node_id]["class_type"],
                "executed": [],
                "exception_message": exc.message,
                "exception_type": exc.exception_type,
                "traceback": TRACEBACK,
                "current_inputs": shown,
                "current_outputs": list(self.item.graph),
            },
            record=True,
        )

    def entry(self) -> dict[str, Any]:
        ok = self.status == "success"
        return {
            "prompt": self.item.as_json(),
            "outputs": self.ui,
            "status": {"status_str": self.status, "completed": ok, "messages": self.messages},
            "meta": {
                n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                for n in self.ui
            },
        }
