"""Every value's place in the job file, as a frozen mapping the `Job` carries to later stages.

Entry point: `node_positions(positions) -> JobPositions`, built from the node tree the loader
has already composed (no second parse). Keys are the JSON paths `jobschema.json_path` spells
(`$.defaults.sampler_name`, `$.grid.sampler_name[1]`, `$.prompts[2].scheduler`), values
1-based `(line, col)` of the value. `locate` answers for paths the file does not spell (a
range's expanded values) with the nearest ancestor that it does.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import yaml

from sdbatch.job.schema import JsonPath, Positions, json_path

JobPositions = Mapping[str, tuple[int, int]]


def no_positions() -> JobPositions:
    """The default for a `Job` built in code rather than loaded from a file."""
    return MappingProxyType({})


MERGE_TAG = "tag:yaml.org,2002:merge"


def node_positions(positions: Positions) -> JobPositions:
    found: dict[str, tuple[int, int]] = {}
    if positions.root is not None:
        _walk(positions.root, (), found, set())
    return MappingProxyType(found)


def _walk(
    node: yaml.Node, path: JsonPath, found: dict[str, tuple[int, int]], seen: set[int]
) -> None:
    key = json_path(path)
    # The first spelling wins: explicit keys are walked before `<<:` merges fill the gaps.
    found.setdefault(key, (node.start_mark.line + 1, node.start_mark.column + 1))
    if id(node) in seen:  # an alias of an anchor on its own path: a recursive document
        return
    seen = seen | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), found, seen)
    elif isinstance(node, yaml.MappingNode):
        merges = []
        for k, v in reversed(node.value):  # the last duplicate wins, as in the constructed data
            if k.tag == MERGE_TAG:
                merges.append(v)
            elif isinstance(k, yaml.ScalarNode):
                _walk(v, (*path, _key(k)), found, seen)
        for merged in reversed(merges):
            for m in merged.value if isinstance(merged, yaml.SequenceNode) else [merged]:
                _walk(m, path, found, seen)


def _key(node: yaml.ScalarNode) -> Any:
    # Keys are strings in a valid job; a `1:` key reads as the number YAML makes of it.
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    return yaml.safe_load(node.value)


def locate(positions: JobPositions, path: JsonPath) -> tuple[int, int]:
    """(line, col) of `path`, or of its nearest ancestor the file spells; (0, 0) if none."""
    elems = list(path)
    while True:
        hit = positions.get(json_path(elems))
        if hit is not None:
            return hit
        if not elems:
            return 0, 0
        elems.pop()
