"""The user's workflow checked against what a ComfyUI server offers, before anything is queued.

Entry point: `check_workflow(job, user_graph, facts, problem)`, called by preflight for a job with
`workflow:`; each problem goes to `problem(found_or_None, message)`, which places it at the job
key that sets the value, or at `workflow:` for the workflow's own values. What ComfyUI would do
otherwise, once per prompt, mid-run: refuse an unknown node class or a value outside a list or
a range (400), or, worse, silently drop an input name its node does not have (a hand-edited
`"stpes": 30` runs with the default) -- so the workflow's own inputs are checked too.

The images are those of the one SaveImage node: with none sdbatch has nothing to keep, with
several it could not tell which are the job's (a PreviewImage keeps a preview out of the way).
Its `filename_prefix` is sdbatch's (the cache trap, translation.py), so a job may not set it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sdbatch.backends.comfyui.facts import ComfyFacts
from sdbatch.backends.comfyui.usergraph import FIELD_OF, PREFIX, SAVE_CLASS, UserGraph, save_nodes
from sdbatch.errors import did_you_mean
from sdbatch.job.loader import Job
from sdbatch.job.values import Found, fields_set, occurrences
from sdbatch.job.workflow import AddressError, describe, is_address

Report = Callable[[Found | None, str], None]
AT_WORKFLOW = Found("workflow", None, ("workflow",))  # the workflow's own values: its job key
_SHOWN = 12  # choices listed when no close one is found


def name_of(job: Job) -> str:
    return Path(job.workflow.file).name if job.workflow else "the workflow"


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def value_problem(spec: tuple[Any, Mapping[str, Any]], value: Any) -> str | None:
    """Why `value` does not suit an input of this /object_info spec, or None."""
    kind, options = spec
    choices = kind if isinstance(kind, list) else options.get("options")
    if isinstance(choices, list) and (isinstance(kind, list) or kind == "COMBO"):
        listed = [str(c) for c in choices]
        if str(value) in listed:
            return None
        hint = did_you_mean(value, listed)
        shown = "" if hint else f"; it has {', '.join(map(repr, listed[:_SHOWN]))}"
        return f"{value!r} is not in the server's list{hint}{shown}"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    wrong = {
        "INT": not (isinstance(value, int) and not isinstance(value, bool)),
        "FLOAT": not number,
        "STRING": not isinstance(value, str),
        "BOOLEAN": not isinstance(value, bool),
    }
    if wrong.get(str(kind), False):
        return f"{value!r} is not a{'n' if kind == 'INT' else ''} {kind}"
    low, high = options.get("min"), options.get("max")
    if number and ((low is not None and value < low) or (high is not None and value > high)):
        return f"{value!r} is outside {low}..{high}"
    return None


def _inputs_of(facts: ComfyFacts, class_type: str) -> tuple[list[str], list[str]]:
    """(required, every known) input names of a node class."""
    info = facts.classes.get(class_type)
    inputs = info.get("input", {}) if isinstance(info, Mapping) else {}
    groups = {g: list(inputs.get(g, {}) or {}) for g in ("required", "optional", "hidden")}
    return groups["required"], [n for names in groups.values() for n in names]


def _set_everywhere(job: Job, user: UserGraph) -> set[tuple[str, str]]:
    """The (node, input)s every payload sets (from defaults, grid or zip; the prompt and the
    seed always): the workflow's own value there is never sent, so it is not checked."""
    everywhere = [("defaults",), ("grid",), ("zip",), ("defaults", "override_settings")]
    keys = [key for path, key in fields_set(job) if path in everywhere]
    fields = {"prompt", "seed", *(FIELD_OF[k] for k in keys if k in FIELD_OF)}
    targets = {place for f in fields for place in user.targets.get(f, ())}
    for key in filter(is_address, keys):
        try:
            targets.add(user.address(key))
        except AddressError:
            continue  # the loader has said so already
    return targets


def _nodes(job: Job, facts: ComfyFacts, report: Report) -> Iterator[tuple[str, str, str, Any]]:
    """Each literal input of the workflow: (node id, class, input, value); problems with the
    classes and input names reported on the way."""
    graph = job.workflow.graph if job.workflow else {}
    for node_id, node in graph.items():
        class_type = str(node.get("class_type"))
        where = f"{name_of(job)} node {describe(graph, node_id)}"
        if class_type not in facts.classes:
            hint = did_you_mean(class_type, facts.classes)
            report(AT_WORKFLOW, f"{where}: {facts.url} has no node class {class_type!r}{hint}")
            continue
        inputs = node.get("inputs") or {}
        required, known = _inputs_of(facts, class_type)
        for name in inputs:
            if name not in known:
                hint = did_you_mean(name, known)
                report(
                    AT_WORKFLOW,
                    f"{where}: {class_type} has no input {name!r}{hint}; ComfyUI would ignore it",
                )
        for name in required:
            if name not in inputs:
                report(AT_WORKFLOW, f"{where}: required input {name!r} is missing")
        for name, value in inputs.items():
            if name in known and not _is_link(value):
                yield node_id, class_type, name, value


def check_workflow(job: Job, user: UserGraph, facts: ComfyFacts, report: Report) -> None:
    graph = user.workflow.graph
    saves = save_nodes(graph)
    if len(saves) != 1:
        listed = ", ".join(describe(graph, i) for i in saves) or "none"
        report(
            AT_WORKFLOW,
            f"the workflow needs exactly one {SAVE_CLASS} node, whose images are the "
            f"job's (found: {listed}); make the others PreviewImage nodes",
        )
    skipped = _set_everywhere(job, user) | {(i, PREFIX) for i in saves}
    for node_id, class_type, name, value in _nodes(job, facts, report):
        spec = facts.spec(class_type, name)
        if (node_id, name) in skipped or spec is None:
            continue
        problem = value_problem(spec, value)
        if problem:
            where = f"{name_of(job)} node {describe(graph, node_id)} input {name!r}"
            report(AT_WORKFLOW, f"{where}: {problem} on {facts.url}")
    for key in sorted({key for _, key in fields_set(job) if is_address(key)}):
        try:
            node_id, name = user.address(key)
        except AddressError:
            continue  # the loader has said so already
        class_type = str(graph[node_id].get("class_type"))
        for at in occurrences(job, key):
            if node_id in saves and name == PREFIX:
                report(
                    at,
                    "sdbatch names the files ComfyUI saves (a prefix of its "
                    "own per prompt, against the cache trap); name yours with output:",
                )
                continue
            spec = facts.spec(class_type, name)
            problem = value_problem(spec, at.value) if spec else None
            if problem:
                report(at, f"{problem} for {class_type}.{name} on {facts.url}")
