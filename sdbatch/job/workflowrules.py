"""A job's `workflow:`, read, and the job's fields checked against it.

Entry point: `check_workflow(data, job_path, positions, limit) -> WorkflowCheck`. Like `rules`
it runs on schema-checked data that may still be wrong anywhere.

- Without `workflow:`, a `NODE.input` key (in defaults, a prompt, grid or zip) is an error: it
  addresses a node of a workflow there is none of.
- With it, each such key must resolve (`resolve_address`), and each standard field the job sets
  must bind to one node (`standard_bindings`); the prompt and the seed always are set. Two keys
  reaching the same input would disagree, so that is an error too (`steps` and
  `KSampler.steps`, `3.steps` and `KSampler.steps`).
- Images are counted by `batch_size`: a workflow whose latent makes several per prompt and a
  job that does not say implies that `batch_size`, and its input can only be set as `batch_size`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdbatch.errors import Problem
from sdbatch.job.safeload import ReadError
from sdbatch.job.schema import Positions
from sdbatch.job.workflow import (
    FIELD_OF_KEY,
    FIELD_OF_SETTING,
    AddressError,
    Workflow,
    describe,
    is_address,
    resolve_address,
)
from sdbatch.job.workflowfile import WorkflowFileError, read_workflow

ALWAYS_SET = ("prompt", "seed")  # every payload carries them
_WHERE = {
    "prompt": "the prompts of prompts: go there",
    "seed": "sdbatch sets the seed there from seeds:",
    "batch_size": "sdbatch counts images by it",
}

Path_ = tuple[Any, ...]


@dataclass(frozen=True)
class WorkflowCheck:
    workflow: Workflow | None
    problems: list[Problem]
    implied: Mapping[str, Any] = field(default_factory=dict)  # defaults the workflow implies


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _layers(data: Mapping[str, Any]) -> Iterator[tuple[Path_, Mapping[str, Any]]]:
    """The mappings whose keys are payload fields: defaults, each prompt, grid and zip."""
    yield ("defaults",), _dict(data.get("defaults"))
    items = data.get("prompts")
    for i, item in enumerate(items if isinstance(items, list) else ()):
        yield ("prompts", i), _dict(item)
    yield ("grid",), _dict(data.get("grid"))
    yield ("zip",), _dict(data.get("zip"))


def check_workflow(
    data: Mapping[str, Any], job_path: Path, positions: Positions, limit: int
) -> WorkflowCheck:
    spec = data.get("workflow")
    addresses = [((*p, k), k) for p, layer in _layers(data) for k in layer if is_address(k)]
    if not isinstance(spec, str) or not spec:
        problems = [_needs_workflow(positions, p, k) for p, k in addresses]
        if data.get("bind") is not None:
            message = "bind: places standard fields in a ComfyUI workflow; it needs `workflow:`"
            problems.append(positions.problem(("bind",), message, key=True))
        return WorkflowCheck(None, problems)
    shown = str(Path(positions.file).parent / spec)  # spelled from the user's own path
    where = job_path.parent / spec
    try:
        workflow = read_workflow(where, shown, limit)
    except WorkflowFileError as exc:
        return WorkflowCheck(None, exc.problems)
    except FileNotFoundError:
        return WorkflowCheck(None, [positions.problem(("workflow",), f"no such file: {shown}")])
    except ReadError as exc:
        message = str(exc).replace(str(where), shown, 1)
        if "over the limit" in message:
            message += " (limits.max_workflow_bytes)"
        return WorkflowCheck(None, [positions.problem(("workflow",), message)])
    except OSError as exc:
        message = f"cannot read {shown}: {exc.strerror or exc}"
        return WorkflowCheck(None, [positions.problem(("workflow",), message)])
    problems = list(_use_problems(data, positions))
    workflow, bind_ok = _with_bind(workflow, data.get("bind"), positions, problems)
    # A wrong bind: address is the problem to fix first; what it leaves unbound is not.
    implied, targets = _bind(workflow, data, positions, problems if bind_ok else [])
    for path, key in addresses:
        try:
            target = resolve_address(workflow.graph, key)
        except AddressError as exc:
            problems.append(positions.problem(path, str(exc), key=True))
            continue
        first, _ = targets.setdefault(target, (key, path))
        if first != key:
            node = f"node {describe(workflow.graph, target[0])} input {target[1]!r}"
            reason = _WHERE.get(first, f"set it once, as {first}")
            message = f"{key} is the same input as {first} ({node}): {reason}"
            problems.append(positions.problem(path, message, key=True))
    return WorkflowCheck(workflow, problems, implied)


def _needs_workflow(positions: Positions, path: Path_, key: str) -> Problem:
    message = (
        f"{key!r} addresses an input of a ComfyUI workflow (NODE.input); it needs "
        "`workflow:` naming the workflow file (API format)"
    )
    return positions.problem(path, message, key=True)


def _use_problems(data: Mapping[str, Any], positions: Positions) -> Iterator[Problem]:
    if _dict(data.get("server")).get("type") == "a1111":
        message = "workflow: is a ComfyUI workflow, and server.type is a1111; use comfyui"
        yield positions.problem(("server", "type"), message)
    if "inputs" in data and data["inputs"] is not None:
        message = "inputs: (img2img) does not work with workflow: yet; load pictures in it"
        yield positions.problem(("inputs",), message, key=True)


def _standard_fields(data: Mapping[str, Any]) -> dict[str, Path_]:
    """Each standard field the job sets, with the first place it does (prompt/seed: workflow:)."""
    found: dict[str, Path_] = dict.fromkeys(ALWAYS_SET, ("workflow",))
    for path, layer in _layers(data):
        for key, value in layer.items():
            if key in FIELD_OF_KEY:
                found.setdefault(FIELD_OF_KEY[key], (*path, key))
            if key != "override_settings":
                continue
            settings = [value] if path[0] in ("defaults", "prompts") else value
            for item in settings if isinstance(settings, list) else ():
                for setting in _dict(item):
                    if setting in FIELD_OF_SETTING:
                        found.setdefault(FIELD_OF_SETTING[setting], (*path, key))
    return found


def _with_bind(
    workflow: Workflow, bind: Any, positions: Positions, problems: list[Problem]
) -> tuple[Workflow, bool]:
    """The workflow with the job's `bind:` (schema-checked: field -> address or list), each
    address resolved here so a wrong one is reported at its own line; and whether all were."""
    if not isinstance(bind, dict):
        return workflow, True
    kept: dict[str, tuple[str, ...]] = {}
    for name, value in bind.items():
        addresses = [value] if isinstance(value, str) else value
        paths = (
            [("bind", name)]
            if isinstance(value, str)
            else [("bind", name, i) for i in range(len(value))]
        )
        good = True
        for address, path in zip(addresses, paths, strict=True):
            try:
                resolve_address(workflow.graph, address)
            except AddressError as exc:
                problems.append(positions.problem(path, str(exc)))
                good = False
        if good and addresses:
            kept[name] = tuple(addresses)
    return dataclasses.replace(workflow, bind=kept), len(kept) == len(bind)


def _bind(
    workflow: Workflow,
    data: Mapping[str, Any],
    positions: Positions,
    problems: list[Problem],
) -> tuple[dict[str, Any], dict[tuple[str, str], tuple[str, Path_]]]:
    """(implied defaults, {(node, input): (the field bound there, where the job sets it)})."""
    graph = workflow.graph
    targets: dict[tuple[str, str], tuple[str, Path_]] = {}
    for name, path in _standard_fields(data).items():
        try:
            for target in workflow.targets(name):
                targets.setdefault(target, (name, path))
        except AddressError as exc:
            at_workflow = path == ("workflow",)
            advice = (
                "every payload sets it, so sdbatch must find one node for it (name the "
                f"node(s) with bind: {{{name}: NODE.input}})"
                if at_workflow
                else f"set the input you mean as NODE.input instead of {name}, or name it "
                f"with bind: {{{name}: NODE.input}}"
            )
            problems.append(positions.problem(path, f"{exc}; {advice}", key=not at_workflow))
    if "batch_size" in _standard_fields(data):
        return {}, targets
    try:
        node, name = workflow.targets("batch_size")[0]
    except (AddressError, IndexError):
        return {}, targets  # no latent sdbatch can read: the server's images are counted as sent
    targets.setdefault((node, name), ("batch_size", ("workflow",)))
    value = (graph[node].get("inputs") or {}).get(name)
    if isinstance(value, int) and not isinstance(value, bool) and value > 1:
        return {"batch_size": value}, targets
    return {}, targets
