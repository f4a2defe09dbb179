"""Reading the file `workflow:` names: a ComfyUI workflow in the API format, shape-checked.

Entry point: `read_workflow(where, shown, limit) -> Workflow`, raising `WorkflowFileError` with
every problem at `shown:line:col` (`shown` is the path the way the job spells it).

The file is read like every file a job names (`safeload.read_regular`: regular files only, at
most `limit` bytes). ComfyUI saves two formats: the UI format (`nodes`/`links` lists, what
"Save" writes) cannot be posted, so it is refused with how to get the API format. The API
format is checked for what a job's addresses and ComfyUI both rely on: every node an object
with a `class_type` and `inputs`, every link `[node_id, output_index]` to a node that exists.
Whether the classes exist on the server is the backend's preflight (`/object_info`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from sdbatch.errors import Problem
from sdbatch.job.safeload import compose, read_regular
from sdbatch.job.schema import Positions
from sdbatch.job.workflow import Workflow

UI_FORMAT_MESSAGE = (
    "this is a workflow in ComfyUI's UI format (it has `nodes` and `links` lists), which "
    "cannot be posted; export the API format: in ComfyUI's menu, Workflow > Export (API) "
    '(older versions: enable "Dev mode Options" in the settings, then "Save (API Format)")'
)


class WorkflowFileError(ValueError):
    """The workflow file cannot be used; `problems` says why, at the file's line:col."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a number JSON allows")


def read_workflow(where: Path, shown: str, limit: int) -> Workflow:
    """The workflow at `where` (an `OSError` or `ReadError` when it cannot be read)."""
    data = read_regular(where, limit, "workflow file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _error(shown, 1, 1, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        graph = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise _error(shown, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}") from None
    except _NotJson as exc:
        raise _error(shown, 1, 1, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise _error(shown, 1, 1, "invalid JSON: values nest too deep") from None
    problems = list(_shape_problems(graph, text, shown))
    if problems:
        raise WorkflowFileError(problems)
    return Workflow(file=shown, graph=graph)


def _error(shown: str, line: int, col: int, message: str) -> WorkflowFileError:
    return WorkflowFileError([Problem(shown, line, col, "$", message)])


def _positions(text: str, shown: str) -> Positions:
    """Line:col of the JSON's values, read by the YAML composer (JSON is YAML's flow style).
    Only for messages, and only once something is wrong: a text YAML cannot compose (or that
    is over safeload's limits) gives positions at the file's start."""
    try:
        loader, root = compose(text)
        loader.dispose()
    except (yaml.YAMLError, RecursionError):
        root = None
    return Positions(shown, root)


def _shape_problems(graph: Any, text: str, shown: str) -> Iterator[Problem]:
    if isinstance(graph, dict) and isinstance(graph.get("nodes"), list):
        yield Problem(shown, 1, 1, "$", UI_FORMAT_MESSAGE)
        return
    if not isinstance(graph, dict) or not graph:
        kind = "an empty object" if graph == {} else f"a JSON {type(graph).__name__}"
        yield Problem(shown, 1, 1, "$", f"{kind}: an API-format workflow is an object of nodes")
        return
    positions: Positions | None = None
    for message, path, key in _node_problems(graph):
        positions = positions or _positions(text, shown)
        yield positions.problem(path, message, key=key)


def _node_problems(graph: Mapping[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], bool]]:
    """(message, JSON path, at the key) for each node that is not what ComfyUI expects."""
    for node_id, node in graph.items():
        if not isinstance(node, dict):
            yield f"node {node_id!r} is not an object with class_type and inputs", (node_id,), True
            continue
        if not isinstance(node.get("class_type"), str) or not node["class_type"]:
            yield f"node {node_id!r} has no class_type", (node_id,), True
        meta = node.get("_meta", {})
        if not isinstance(meta, dict) or not isinstance(meta.get("title", ""), str):
            yield f"node {node_id!r}: _meta.title must be a string", (node_id, "_meta"), False
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            yield f"node {node_id!r} has no inputs object", (node_id,), True
            continue
        for name, value in inputs.items():
            if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
                continue  # a value, not a link
            path = (node_id, "inputs", name)
            source, slot = value
            if source not in graph:
                message = f"links to node {source!r}, which the workflow does not have"
            elif not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
                message = f"is a link [node_id, output_index], and {slot!r} is no output index"
            else:
                continue
            yield f"node {node_id!r} input {name!r} {message}", path, False
