"""A user's ComfyUI workflow (API format) and how a job addresses its inputs.

Entry points: `resolve_address(graph, "KSampler.steps") -> (node_id, input)` and
`standard_bindings(graph, wanted) -> {field: (node_id, input)}`; `Workflow` is what `Job.workflow`
holds (read and shape-checked by `workflowfile`). Both raise `AddressError` (a plain ValueError:
the loader turns it into a `Problem` at the job's `file:line:col`, a backend into its own error).

Addresses are `NODE.input`, NODE a node's title (`_meta.title`, what ComfyUI's menu shows) or
its id. A title may hold dots itself ("Upscale 1.5x"), so the longest prefix that names a node
wins. A title two nodes share names neither: the message lists their ids, which always work.

The standard job fields bind to the "obvious" node, found by class and by the links of the one
sampler: seed/steps/cfg/sampler/scheduler/denoise to the only KSampler (or KSamplerAdvanced),
prompt/negative_prompt to the CLIPTextEncode feeding its positive/negative, width/height/
batch_size to the EmptyLatentImage feeding its latent_image, checkpoint to the only
CheckpointLoaderSimple, clip skip to the only CLIPSetLastLayer. Where that is not one node the
field cannot be placed, and the error names the candidates.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdbatch.errors import did_you_mean

SAMPLERS = ("KSampler", "KSamplerAdvanced")
# field -> (the node classes it binds to, the input of each class)
_SAMPLER_INPUTS: Mapping[str, Mapping[str, str]] = {
    "seed": {"KSampler": "seed", "KSamplerAdvanced": "noise_seed"},
    "steps": {"KSampler": "steps", "KSamplerAdvanced": "steps"},
    "cfg_scale": {"KSampler": "cfg", "KSamplerAdvanced": "cfg"},
    "sampler_name": {"KSampler": "sampler_name", "KSamplerAdvanced": "sampler_name"},
    "scheduler": {"KSampler": "scheduler", "KSamplerAdvanced": "scheduler"},
    "denoise": {"KSampler": "denoise"},
}
# field -> (the sampler's input it follows upstream, the class found there, that class's input)
_FED: Mapping[str, tuple[str, str, str]] = {
    "prompt": ("positive", "CLIPTextEncode", "text"),
    "negative_prompt": ("negative", "CLIPTextEncode", "text"),
    "width": ("latent_image", "EmptyLatentImage", "width"),
    "height": ("latent_image", "EmptyLatentImage", "height"),
    "batch_size": ("latent_image", "EmptyLatentImage", "batch_size"),
}
# field -> (the one class that takes it, its input)
_SINGLE: Mapping[str, tuple[str, str]] = {
    "checkpoint": ("CheckpointLoaderSimple", "ckpt_name"),
    "clip_skip": ("CLIPSetLastLayer", "stop_at_clip_layer"),
}
STANDARD_FIELDS = (*_SAMPLER_INPUTS, *_FED, *_SINGLE)
# How a job spells each standard field: a key (of defaults, a prompt, grid, zip, and so of a
# planned payload) ...
FIELD_OF_KEY: Mapping[str, str] = {
    **{name: name for name in STANDARD_FIELDS if name not in ("denoise", "clip_skip")},
    "denoising_strength": "denoise",
}
# ... or a setting under override_settings.
FIELD_OF_SETTING: Mapping[str, str] = {
    "sd_model_checkpoint": "checkpoint",
    "CLIP_stop_at_last_layers": "clip_skip",
}
# Inputs a conditioning or latent passes through on its way to the sampler (ControlNet apply,
# conditioning edits, latent upscales): followed when the node linked is not the one sought.
_THROUGH = ("conditioning", "positive", "negative", "samples", "latent", "latent_image")
_MAX_HOPS = 32  # links followed upstream; a graph deeper than this binds nothing
_LISTED = 20  # nodes or inputs named in one message


class AddressError(ValueError):
    """An address or a standard field that names no node input, or several; the message says
    which and lists the candidates."""


@dataclass(frozen=True)
class Workflow:
    file: str  # the path as written in the job
    graph: Mapping[str, Any]  # {node_id: {"class_type", "inputs", "_meta"?}}, as loaded
    # The job's `bind:`: standard field -> the addresses it goes to, where the obvious node is
    # not one (two samplers: a hires pass, a refiner) or not the one meant.
    bind: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @functools.cached_property
    def digest(self) -> str:
        """A hash of the graph's content and the bindings: either edited plans new payload
        ids (the graphs sent differ)."""
        content: Any = self.graph if not self.bind else [self.graph, dict(self.bind)]
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def targets(self, name: str) -> list[tuple[str, str]]:
        """Every (node_id, input) the standard field `name` is written to: those `bind:`
        names, else its obvious node. With `seed` bound, "the sampler" the other fields look
        for is the node of its first address. Raises AddressError."""
        if name in self.bind:
            return [resolve_address(self.graph, a) for a in self.bind[name]]
        sampler = None
        if self.bind.get("seed"):
            sampler = resolve_address(self.graph, self.bind["seed"][0])[0]
        return list(standard_bindings(self.graph, [name], sampler=sampler).values())


def is_address(key: str) -> bool:
    """Whether a job key is a `NODE.input` address (no standard field has a dot)."""
    return "." in key.strip(".")


def describe(graph: Mapping[str, Any], node_id: str) -> str:
    """`3 (KSampler "Base")`: a node as messages name it."""
    node = graph[node_id]
    title = _title(node)
    shown = f' "{title}"' if title is not None and title != node.get("class_type") else ""
    return f"{node_id} ({node.get('class_type')}{shown})"


def _title(node: Mapping[str, Any]) -> str | None:
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, Mapping) else None
    return title if isinstance(title, str) else None


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _named(graph: Mapping[str, Any], name: str) -> list[str]:
    """The ids of the nodes `name` names: by id, or by title."""
    return [i for i, node in graph.items() if i == name or _title(node) == name]


def resolve_address(graph: Mapping[str, Any], address: str) -> tuple[str, str]:
    """`"KSampler.steps"` or `"3.steps"` -> `("3", "steps")`, else `AddressError`."""
    splits = [i for i, c in enumerate(address) if c == "." and 0 < i < len(address) - 1]
    for cut in reversed(splits):  # the longest node name first: titles may hold dots
        name, wanted = address[:cut], address[cut + 1 :]
        ids = _named(graph, name)
        if len(ids) > 1:
            listed = ", ".join(describe(graph, i) for i in ids)
            raise AddressError(
                f"{address}: {name!r} names {len(ids)} nodes: {listed}; address one by its id "
                f"(e.g. {ids[0]}.{wanted}) or give the nodes distinct titles"
            )
        if ids:
            return ids[0], _input(graph, ids[0], address, wanted)
    if not splits:
        raise AddressError(f"{address!r} is not an address: write NODE.input, e.g. KSampler.steps")
    names = [t for node in graph.values() if (t := _title(node)) is not None] + list(graph)
    first = address[: splits[0]]
    nodes = ", ".join(describe(graph, i) for i in list(graph)[:_LISTED])
    more = ", ..." if len(graph) > _LISTED else ""
    raise AddressError(
        f"{address}: no node titled or numbered {first!r} in the workflow"
        f"{did_you_mean(first, names)}; its nodes: {nodes}{more}"
    )


def _input(graph: Mapping[str, Any], node_id: str, address: str, wanted: str) -> str:
    inputs = graph[node_id].get("inputs") or {}
    values = [k for k, v in inputs.items() if not _is_link(v)]
    if wanted in inputs and not _is_link(inputs[wanted]):
        return wanted
    if wanted in inputs:
        source = inputs[wanted][0]
        reason = f"is a link from node {source}, not a value a job can set"
    else:
        reason = f"is no input of node {describe(graph, node_id)}{did_you_mean(wanted, values)}"
    listed = ", ".join(values[:_LISTED]) + (", ..." if len(values) > _LISTED else "")
    raise AddressError(f"{address}: {wanted!r} {reason}; its inputs: {listed or '(none)'}")


def standard_bindings(
    graph: Mapping[str, Any], wanted: Iterable[str], *, sampler: str | None = None
) -> dict[str, tuple[str, str]]:
    """Where each standard field in `wanted` goes in `graph`, or `AddressError` for the first
    that has no node or several. Names that are no standard field are left out. `sampler`:
    the node taken for "the sampler" (`bind: {seed: ...}`), else the only one there is."""
    bindings: dict[str, tuple[str, str]] = {}
    for name in dict.fromkeys(wanted):
        if name in _SAMPLER_INPUTS:
            sampler = sampler or _sampler(graph, name)
            cls = graph[sampler]["class_type"]
            if cls not in _SAMPLER_INPUTS[name]:
                raise AddressError(f"{name}: node {describe(graph, sampler)} has no input for it")
            bindings[name] = (sampler, _SAMPLER_INPUTS[name][cls])
        elif name in _FED:
            link, cls, input_name = _FED[name]
            sampler = sampler or _sampler(graph, name)
            found = _upstream(graph, sampler, link, cls)
            if len(found) != 1:
                where = f"{cls} feeding the {link} of {describe(graph, sampler)}"
                raise AddressError(_count_message(graph, name, where, found))
            bindings[name] = (found[0], input_name)
        elif name in _SINGLE:
            cls, input_name = _SINGLE[name]
            found = [i for i, node in graph.items() if node.get("class_type") == cls]
            if len(found) != 1:
                raise AddressError(_count_message(graph, name, cls, found))
            bindings[name] = (found[0], input_name)
    return bindings


def _sampler(graph: Mapping[str, Any], name: str) -> str:
    found = [i for i, node in graph.items() if node.get("class_type") in SAMPLERS]
    if len(found) != 1:
        raise AddressError(_count_message(graph, name, " or ".join(SAMPLERS), found))
    return found[0]


def _upstream(graph: Mapping[str, Any], start: str, link: str, cls: str) -> list[str]:
    """The nodes of class `cls` reached from `start`'s input `link`, through `_THROUGH` inputs."""
    found: list[str] = []
    frontier = [(start, link)]
    seen: set[str] = set()
    for _ in range(_MAX_HOPS):
        following: list[tuple[str, str]] = []
        for node_id, input_name in frontier:
            value: Any = (graph.get(node_id, {}).get("inputs") or {}).get(input_name)
            source = str(value[0]) if _is_link(value) else None
            if source is None or source in seen or source not in graph:
                continue
            seen.add(source)
            if graph[source].get("class_type") == cls:
                found.append(source)
                continue
            inputs = graph[source].get("inputs") or {}
            following += [(source, n) for n in _THROUGH if _is_link(inputs.get(n))]
        if not following:
            break
        frontier = following
    return found


def _count_message(graph: Mapping[str, Any], name: str, what: str, found: list[str]) -> str:
    if not found:
        return f"{name}: the workflow has no {what} to put it in"
    listed = ", ".join(describe(graph, i) for i in found)
    return f"{name}: ambiguous: {len(found)} candidates ({what}): {listed}"
