"""The graph side of running a prompt: the queue item, the node signatures the cache is keyed
by, the classic cache, and the order nodes run in.

Signatures follow the real classic cache (comfyui-api.md C12): class and inputs, recursively over
the ancestors; node ids and hidden inputs (the PNG info) are not part of them, so the same graph
under other ids, or with another `extra_pnginfo`, is the same work. The cache keeps only what the
current prompt uses, so a prompt is cached only against the one before it (recorded: seed 42,
then 43, then 42 again runs the sampler again). The order copies what the real one was seen to
do: the nodes the outputs need, found depth-first from each output (a stack, inputs in their
given order), each time the first whose inputs are done, an output node first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sdbatch.standin.comfyui import nodes
from sdbatch.standin.comfyui.catalog import is_output
from sdbatch.standin.comfyui.validate import is_link


@dataclass(frozen=True)
class Item:
    """A queued prompt, as `/queue` and history show it: [number, id, graph, extra, outputs]."""

    number: float
    prompt_id: str
    graph: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def as_json(self) -> list[Any]:
        return [self.number, self.prompt_id, self.graph, self.extra_data, self.outputs]

    @property
    def client_id(self) -> str | None:
        return self.extra_data.get("client_id")


class Cache:
    """Node outputs by signature; `keep` drops what the new prompt does not use."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[tuple[Any, ...], Any]] = {}

    def keep(self, signatures: set[str]) -> None:
        self.entries = {k: v for k, v in self.entries.items() if k in signatures}

    def clear(self) -> None:
        self.entries.clear()


def signatures(
    graph: Mapping[str, Any], changed: Callable[[str, Mapping[str, Any]], Any] | None = None
) -> dict[str, str]:
    """Each node's cache key. `changed(class_type, inputs)` adds what a node's IS_CHANGED would
    (LoadImage: its file's content), so a new file under the old name runs again."""
    found: dict[str, str] = {}

    def sig(node_id: str, depth: int = 0) -> str:
        if node_id not in found:
            if depth > len(graph):
                raise nodes.NodeFailure("DependencyCycleError", "Dependency cycle detected")
            node = graph[node_id]
            parts = sorted(
                (name, ("link", sig(v[0], depth + 1), v[1]) if is_link(v) else repr(v))
                for name, v in node.get("inputs", {}).items()
            )
            extra = changed(node["class_type"], node.get("inputs", {})) if changed else None
            found[node_id] = nodes.key(node["class_type"], parts, extra)
        return found[node_id]

    for node_id in graph:
        sig(node_id)
    return found


def stage(graph: Mapping[str, Any], outputs: list[str], cached: set[str]) -> list[str]:
    pending: list[str] = []
    deps: dict[str, set[str]] = {}
    for out in outputs:
        stack = [out]
        while stack:
            node_id = stack.pop()
            if node_id in deps:
                continue
            pending.append(node_id)
            links = [v[0] for v in graph[node_id].get("inputs", {}).values() if is_link(v)]
            deps[node_id] = {src for src in links if src not in cached}
            stack.extend(src for src in links if src not in cached)
    order: list[str] = []
    while len(order) < len(pending):
        ready = [n for n in pending if n not in order and deps[n] <= set(order)]
        if not ready:
            raise nodes.NodeFailure("DependencyCycleError", "Dependency cycle detected")
        order.append(next((n for n in ready if is_output(graph[n]["class_type"])), ready[0]))
    return order
