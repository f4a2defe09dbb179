"""The user's own workflow (`workflow:`) as the graphs to post, and where its parts are.

Entry point: `UserGraph(workflow, samplers, schedulers).graph(payload, seed, prompt_id)`: a
copy of the workflow with the payload's values put in. The standard fields go where the job
side's `Workflow.targets` places them (the job's `bind:`, else the only sampler, the text
encoders feeding it, its empty latent, the only checkpoint loader; a field bound to several
inputs is written to each); a `NODE.input` key goes where `resolve_address` says.
Every input the payload does not set keeps the workflow's own value: a workflow is the
user's settings, the job only what it sweeps.

The images are those of the workflow's one SaveImage node (`save_nodes`; preflight refuses a
workflow with none or several). Its `filename_prefix` is sdbatch's, as in the built-in graph,
so the cache trap never replays old file names (translation.py).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Collection, Mapping
from typing import Any

from sdbatch.backends.comfyui.names import CHECKPOINT_SETTING, CLIP_SKIP_SETTING, setting, to_comfy
from sdbatch.job.workflow import (
    FIELD_OF_KEY,
    FIELD_OF_SETTING,
    STANDARD_FIELDS,
    AddressError,
    Workflow,
    is_address,
    resolve_address,
)

SAVE_CLASS = "SaveImage"
PREFIX = "filename_prefix"
# Every job spelling of a standard field (a payload key or a setting) -> the field.
FIELD_OF = {**FIELD_OF_KEY, **FIELD_OF_SETTING}
# The payload keys whose value goes into the graph as it is; the seed (+ n_iter), the sampler
# names (mapped), the checkpoint and clip skip (settings) are put in by `_values` itself.
PAYLOAD_FIELDS = {
    key: name
    for key, name in FIELD_OF_KEY.items()
    if name not in ("seed", "sampler_name", "scheduler", "checkpoint")
}


def save_nodes(graph: Mapping[str, Any]) -> list[str]:
    return [i for i, node in graph.items() if node.get("class_type") == SAVE_CLASS]


def _link(value: Any) -> str | None:
    return str(value[0]) if isinstance(value, list) and len(value) == 2 else None


class UserGraph:
    """One workflow, its bindings found once (they depend on the graph, not on the payload)."""

    def __init__(
        self, workflow: Workflow, samplers: Collection[str], schedulers: Collection[str]
    ) -> None:
        self.workflow, self.samplers, self.schedulers = workflow, samplers, schedulers
        graph = workflow.graph
        # field -> every (node, input) it is written to; the first is where it is read back.
        self.targets: dict[str, list[tuple[str, str]]] = {}
        for name in STANDARD_FIELDS:
            # One at a time: a field the job never sets may well have no place.
            with contextlib.suppress(AddressError):
                self.targets[name] = workflow.targets(name)
        self.bindings = {name: places[0] for name, places in self.targets.items() if places}
        saves = save_nodes(graph)
        self.save = saves[0] if len(saves) == 1 else ""  # preflight refuses the others
        self._addresses: dict[str, tuple[str, str]] = {}

    @property
    def sampler(self) -> str:
        return self.bindings["seed"][0] if "seed" in self.bindings else ""

    def address(self, key: str) -> tuple[str, str]:
        if key not in self._addresses:
            self._addresses[key] = resolve_address(self.workflow.graph, key)
        return self._addresses[key]

    def checkpoint(self, graph: Mapping[str, Any]) -> str | None:
        place = self.bindings.get("checkpoint")
        return str(graph[place[0]]["inputs"][place[1]]) if place else None

    def seed(self, graph: Mapping[str, Any]) -> int:
        node, name = self.bindings["seed"]
        return int(graph[node]["inputs"][name])

    def asked_size(self, graph: Mapping[str, Any]) -> tuple[int, int] | None:
        """The size the saved images must have: the empty latent's, when the image goes
        straight from it through the sampler and a VAEDecode into the SaveImage. A workflow
        that resizes on the way (an upscale, a crop) asks for a size sdbatch cannot know."""
        place = self.bindings.get("width")
        if place is None or not self.save:
            return None
        decode = graph.get(_link(graph[self.save]["inputs"].get("images")) or "")
        if not decode or decode.get("class_type") != "VAEDecode":
            return None
        if _link(decode["inputs"].get("samples")) != self.sampler:
            return None
        if _link(graph[self.sampler]["inputs"].get("latent_image")) != place[0]:
            return None
        latent = graph[place[0]]["inputs"]
        return int(latent["width"]) // 8 * 8, int(latent["height"]) // 8 * 8

    def _values(self, payload: Mapping[str, Any], seed: int) -> dict[str, Any]:
        """{standard field: the value its input gets} for the fields the payload sets."""
        values = {PAYLOAD_FIELDS[k]: v for k, v in payload.items() if k in PAYLOAD_FIELDS}
        values["seed"] = seed
        if "sampler_name" in payload or "scheduler" in payload:
            node = self.workflow.graph[self.sampler]["inputs"]
            sampler, scheduler = to_comfy(
                payload.get("sampler_name", node.get("sampler_name")),
                payload.get("scheduler", node.get("scheduler")),
                self.samplers,
                self.schedulers,
            )
            values.update(sampler_name=sampler, scheduler=scheduler)
        checkpoint = setting(payload, CHECKPOINT_SETTING)
        if checkpoint is not None:
            values["checkpoint"] = checkpoint
        skip = setting(payload, CLIP_SKIP_SETTING)
        if isinstance(skip, int):
            values["clip_skip"] = -skip  # A1111 counts layers from the end upwards
        return values

    def graph(self, payload: Mapping[str, Any], seed: int, prompt_id: str) -> dict[str, Any]:
        graph: dict[str, Any] = copy.deepcopy(dict(self.workflow.graph))
        for name, value in self._values(payload, seed).items():
            for node, input_name in self.targets.get(name, ()):
                graph[node]["inputs"][input_name] = copy.deepcopy(value)
        for key, value in payload.items():
            if is_address(key):
                node, input_name = self.address(key)
                graph[node]["inputs"][input_name] = copy.deepcopy(value)
        if self.save:
            graph[self.save]["inputs"][PREFIX] = f"sdbatch/{prompt_id}/img"
        return graph
