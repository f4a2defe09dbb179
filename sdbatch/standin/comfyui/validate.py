"""POST /prompt's checks, giving the real ComfyUI 0.3.64's 400 bodies (tests/data/real-comfyui):
graph-level errors (`no_prompt`, `invalid_prompt`, `prompt_no_outputs`) refuse the whole graph;
per-node reasons go in `node_errors` under the node that failed, with the output nodes depending
on it. A graph is queued when at least one output node is valid; its failed outputs are dropped
and still reported in the 200's `node_errors` (comfyui-api.md C2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdbatch.standin.comfyui.catalog import Catalog, is_output, output_types
from sdbatch.standin.comfyui.inputs import (
    CUSTOM,
    Reason,
    custom_reason,
    link_reason,
    literal,
    reason,
)


@dataclass(frozen=True)
class Checked:
    """A graph that may be queued: the output nodes to run and the errors of the dropped ones."""

    outputs: list[str]
    node_errors: dict[str, Any]


class Rejected(Exception):
    """The 400 answer for a graph that runs nothing."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["error"]["message"])
        self.body = body


def _error(kind: str, message: str, details: str = "") -> Rejected:
    error = {"type": kind, "message": message, "details": details, "extra_info": {}}
    return Rejected({"error": error, "node_errors": {}})


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


class _InnerKeyError(Exception):
    """A link to a node the graph lacks, raised where the real server raises its KeyError."""


def check(body: Mapping[str, Any], catalog: Catalog, inputs: list[str]) -> Checked:
    prompt = body.get("prompt")
    if "prompt" not in body:
        raise _error("no_prompt", "No prompt provided", "No prompt provided")
    if not isinstance(prompt, dict):
        if prompt in ([], ""):  # iterates as an empty graph (recorded: `"prompt": []`)
            raise _error("prompt_no_outputs", "Prompt has no outputs")
        raise TypeError("the prompt is not an object")  # the real server's unhandled 500
    for node_id, node in prompt.items():
        class_type = node.get("class_type") if isinstance(node, dict) else None
        if class_type is None:
            raise _error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
        if not catalog.object_info(inputs, class_type):
            raise _error(
                "invalid_prompt",
                f"Cannot execute because node {class_type} does not exist.",
                f"Node ID '#{node_id}'",
            )
    outputs = [n for n, node in prompt.items() if is_output(node["class_type"])]
    if not outputs:
        raise _error("prompt_no_outputs", "Prompt has no outputs")
    validator = _Validator(prompt, catalog, inputs)
    good: list[str] = []
    node_errors: dict[str, Any] = {}
    for out in outputs:
        try:
            ok = validator.node_ok(out, None)
        except _InnerKeyError as exc:  # an output linking to nothing (from the source; unrecorded)
            ok, validator.done[out] = False, False
            validator.failures[out] = [
                reason(
                    "exception_during_validation",
                    "Exception when validating node",
                    repr(str(exc.args[0])),
                    {"exception_type": "KeyError", "traceback": [f"  validating node {out}\n"]},
                )
            ]
        if ok:
            good.append(out)
            continue
        for failed, reasons in validator.failures.items():
            if validator.depends(out, failed):
                entry = node_errors.setdefault(
                    failed,
                    {"errors": reasons, "dependent_outputs": [], "class_type": ""},
                )
                entry["dependent_outputs"].append(out)
                entry["class_type"] = prompt[failed]["class_type"]
    if not good:
        error = {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",  # the real 0.3.64 leaves it empty (comfyui-api.md says joined)
            "extra_info": {},
        }
        raise Rejected({"error": error, "node_errors": node_errors})
    return Checked(good, node_errors)


class _Validator:
    def __init__(self, prompt: dict[str, Any], catalog: Catalog, inputs: list[str]) -> None:
        self.prompt, self.catalog, self.inputs = prompt, catalog, inputs
        self.done: dict[str, bool] = {}
        self.failures: dict[str, list[Reason]] = {}

    def depends(self, node_id: str, on: str, seen: set[str] | None = None) -> bool:
        if node_id == on:
            return True
        seen = set() if seen is None else seen
        seen.add(node_id)
        node = self.prompt.get(node_id) or {}
        links = [v[0] for v in node.get("inputs", {}).values() if is_link(v)]
        return any(src not in seen and self.depends(src, on, seen) for src in links)

    def node_ok(self, node_id: str, parent: tuple[str, str, Any] | None) -> bool:
        """Validate `node_id` and its ancestors; `parent` is (consumer id, input, link)."""
        if node_id in self.done:
            return self.done[node_id]
        try:
            ok = self._validate(node_id)
        except _InnerKeyError as exc:
            if parent is None:  # an output node linking to nothing: no consumer caught it
                raise
            consumer, input_name, link = parent
            config = self._spec(consumer)[input_name]
            self.failures[node_id] = [
                {
                    "type": "exception_during_inner_validation",
                    "message": "Exception when validating inner node",
                    "details": repr(str(exc.args[0])),
                    "extra_info": {
                        "input_name": input_name,
                        "input_config": config,
                        "exception_message": repr(str(exc.args[0])),
                        "exception_type": "KeyError",
                        "traceback": [f"  (sdbatch stand-in) validating node {node_id}\n"],
                        "linked_node": link,
                    },
                }
            ]
            ok = False
        self.done[node_id] = ok
        return ok

    def _spec(self, node_id: str) -> dict[str, Any]:
        entry = self.catalog.entry(self.prompt[node_id]["class_type"], self.inputs)
        return {**entry["input"]["required"], **entry["input"].get("optional", {})}

    def _validate(self, node_id: str) -> bool:
        node = self.prompt[node_id]
        given = node.get("inputs") or {}
        required = self._spec(node_id)
        entry = self.catalog.entry(node["class_type"], self.inputs)
        reasons: list[Reason] = []
        ok = True
        for name, config in required.items():
            if name not in given:
                if name in entry["input"]["required"]:
                    reasons.append(
                        reason(
                            "required_input_missing",
                            "Required input is missing",
                            name,
                            {"input_name": name},
                        )
                    )
                continue
            value = given[name]
            if isinstance(value, list):  # a link, or an attempt at one
                source = str(value[0]) if len(value) == 2 else ""
                if len(value) == 2 and value[0] not in self.prompt:
                    raise _InnerKeyError(source)
                outputs = output_types(self.prompt[source]["class_type"]) if source else []
                found = link_reason(name, value, config, outputs)
                if found is not None:
                    reasons.append(found)
                elif not self.node_ok(source, (node_id, name, value)):
                    ok = False
                continue
            if (node["class_type"], name) in CUSTOM:
                found = custom_reason(node["class_type"], name, value, self.inputs)
            else:
                found, given[name] = literal(name, value, config)  # kept as converted
            if found is not None:
                reasons.append(found)
        if reasons:
            self.failures[node_id] = reasons
        return ok and not reasons
