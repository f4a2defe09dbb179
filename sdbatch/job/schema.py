"""The job file's JSON Schema, and its errors turned into `Problem`s with YAML positions.

Entry point: `schema_problems(data, positions) -> list[Problem]`. `Positions` maps a JSON path
(as in `ValidationError.absolute_path`) back to the composed YAML node, because jsonschema only
sees plain data and knows no line numbers.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from sdbatch.errors import Problem, did_you_mean, hide_credentials

JsonPath = Sequence[Any]  # str keys and int indices, as in ValidationError.absolute_path

SEED_MESSAGE = (
    "sdbatch fixes every seed at plan time and never sends -1; "
    "set seeds with the top-level `seeds:`"
)
PROMPT_MESSAGE = "prompts go in the top-level `prompts:` list (or `prompts_file:`)"
# sdbatch's short names for the two settings the webui's X/Y/Z plot treats as costly axes.
SHORTCUTS: Mapping[str, str] = {"checkpoint": "sd_model_checkpoint", "vae": "sd_vae"}


def _schema_text() -> str:
    # An installed wheel carries a copy inside the package (pyproject force-include); a source
    # checkout or an editable install only has the top-level schemas/ next to sdbatch/.
    packaged = resources.files("sdbatch") / "schemas" / "job.schema.json"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source = Path(__file__).resolve().parents[2] / "schemas" / "job.schema.json"
    return source.read_text(encoding="utf-8")


def schema_text() -> str:
    """The schema file's text, as shipped (`sdbatch schema` prints it)."""
    return _schema_text()


@functools.cache
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema())


def txt2img_fields() -> Mapping[str, Mapping[str, Any]]:
    """The txt2img fields a job may set (not `prompt`/`seed`), name -> JSON Schema."""
    fields: Mapping[str, Mapping[str, Any]] = load_schema()["$defs"]["txt2img"]["properties"]
    return fields


def field_kind(name: str) -> str | None:
    """ "integer" or "number" for a numeric txt2img field (one that takes ranges), else None."""
    schema = txt2img_fields().get(name, {})
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    return next((t for t in ("integer", "number") if t in types), None)


def value_problem(name: str, value: Any) -> str | None:
    """What is wrong with `value` for txt2img field `name`, in the schema's own words; for the
    values a range expands to, which the schema never sees."""
    field = txt2img_fields().get(name)
    if field is None:
        return None
    error = best_match(_validator().evolve(schema=field).iter_errors(value))
    if error is None:
        return None
    custom = field.get("errorMessage", {}).get(str(error.validator))
    return _fill(custom, error) if custom else error.message


def json_path(path: JsonPath) -> str:
    """`$.grid.steps[1]`, the same spelling as `ValidationError.json_path`."""
    text = "$"
    for elem in path:
        is_index = isinstance(elem, int) and not isinstance(elem, bool)
        text += f"[{elem}]" if is_index else f".{elem}"
    return text


class Positions:
    """Line:col lookup in one composed YAML document; also the factory for its `Problem`s."""

    def __init__(self, file: str, root: yaml.Node | None) -> None:
        self.file = file
        self.root = root

    def _walk(self, path: JsonPath) -> tuple[yaml.Node | None, yaml.Node | None]:
        """(key node of the last step, deepest node reached): a path that leaves the tree
        (a default, a merged key) stops at the nearest existing ancestor."""
        key: yaml.Node | None = None
        node = self.root
        for elem in path:
            if isinstance(node, yaml.MappingNode):
                # The last duplicate wins, as in the constructed data.
                pairs = [(k, v) for k, v in node.value if _key_is(k, elem)]
                if not pairs:
                    break
                key, node = pairs[-1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(elem, int):
                if not 0 <= elem < len(node.value):
                    break
                key, node = None, node.value[elem]
            else:
                break
        return key, node

    def node(self, path: JsonPath) -> yaml.Node | None:
        return self._walk(path)[1]

    def line_col(self, path: JsonPath, *, key: bool = False) -> tuple[int, int]:
        key_node, value_node = self._walk(path)
        node = key_node if key and key_node is not None else value_node
        if node is None:
            return 1, 1
        return node.start_mark.line + 1, node.start_mark.column + 1  # marks are 0-based

    def problem(self, path: JsonPath, message: str, *, key: bool = False) -> Problem:
        """A problem at the value of `path`, or at its key (for keys that should not be there)."""
        line, col = self.line_col(path, key=key)
        return Problem(self.file, line, col, json_path(path), message)

    def text_problem(self, path: JsonPath, offset: int, message: str) -> Problem:
        """A problem at character `offset` of the string at `path` when the source spells the
        string verbatim on one line (plain or quoted without escapes), else at the string."""
        node = self.node(path)
        line, col = self.line_col(path)
        buffer = node.start_mark.buffer if isinstance(node, yaml.ScalarNode) else None
        if isinstance(node, yaml.ScalarNode) and isinstance(buffer, str):
            start, end = node.start_mark, node.end_mark
            raw = buffer[start.pointer : end.pointer]
            quoted = node.style in ("'", '"')
            if start.line == end.line and (raw[1:-1] if quoted else raw) == node.value:
                col += offset + quoted
        return Problem(self.file, line, col, json_path(path), message)


def _key_is(node: yaml.Node, elem: object) -> bool:
    if not isinstance(node, yaml.ScalarNode):
        return False
    if isinstance(elem, str):
        return bool(node.value == elem)
    # A non-string key (`1:`, `yes:`): compare what YAML makes of the key's text.
    return bool(yaml.safe_load(node.value) == elem)


def schema_problems(data: Any, positions: Positions) -> list[Problem]:
    """Every schema violation of `data`, one `Problem` per offending value or key."""
    problems: list[Problem] = []
    for error in _validator().iter_errors(data):
        for narrowed in _narrow(error):
            problems.extend(_to_problems(narrowed, positions))
    return list(dict.fromkeys(problems))  # one bad value can fail twice through a $ref


def _narrow(error: ValidationError) -> Iterator[ValidationError]:
    """anyOf/oneOf: the one error that matters, not the pile from every branch."""
    if error.validator not in ("anyOf", "oneOf"):
        yield error
        return
    # If only one branch has the right JSON type (a list where a list, a string or a range
    # would do), its errors are what the user meant to satisfy: every one of them, since a
    # grid axis may have several bad values. Otherwise best_match picks the likeliest.
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [
        errs
        for errs in branches.values()
        if not any(e.validator == "type" and not e.relative_path for e in errs)
    ]
    if len(fitting) == 1:
        for sub in fitting[0]:
            yield from _narrow(sub)
        return
    best = best_match([error])
    yield from (_narrow(best) if best is not error else [error])


def _to_problems(error: ValidationError, positions: Positions) -> list[Problem]:
    path = tuple(error.absolute_path)
    if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(
        error.instance, dict
    ):
        # jsonschema reports these at the parent mapping; point at each offending key instead.
        allowed = _declared_keys(error.schema)
        return [
            positions.problem((*path, key), _unknown_key_message(path, key, allowed), key=True)
            for key in error.instance
            if key not in allowed and isinstance(key, str)  # jobrules reports `yes:` keys
        ]
    schema = error.schema if isinstance(error.schema, dict) else {}
    custom = schema.get("errorMessage", {}).get(str(error.validator))
    message = _fill(custom, error) if custom else error.message
    if error.validator in ("type", "anyOf", "oneOf") and _accepts_string(schema):
        message += _unquoted_hint(error.instance, positions.node(path))
    return [positions.problem(path, message)]


def _fill(template: str, error: ValidationError) -> str:
    """An `errorMessage` with the offending value, and for `multipleOf` the two nearest
    values that would pass, so the message can say the fix."""
    text = template.replace("{instance}", hide_credentials(repr(error.instance)))
    step: Any = error.validator_value
    if error.validator == "multipleOf" and isinstance(error.instance, int | float):
        below = int(error.instance // step * step)
        text = text.replace("{below}", str(below)).replace("{above}", str(below + int(step)))
    return text


def _declared_keys(schema: Any) -> set[str]:
    keys = set(schema.get("properties", {})) if isinstance(schema, dict) else set()
    if isinstance(schema, dict) and schema.get("$ref") == "#/$defs/txt2img":
        keys |= set(txt2img_fields())
    return keys


def _unknown_key_message(parent: JsonPath, key: object, allowed: set[str]) -> str:
    in_defaults = tuple(parent) == ("defaults",)
    in_prompt = len(parent) == 2 and parent[0] == "prompts"
    in_grid = tuple(parent) in (("grid",), ("zip",))
    if not (in_defaults or in_prompt or in_grid):
        expected = ", ".join(sorted(allowed))
        return f"unknown key {key!r}{did_you_mean(key, allowed)}; expected one of: {expected}"
    if key == "seed":
        return SEED_MESSAGE
    if key == "prompt":
        return PROMPT_MESSAGE
    unknown = f"unknown txt2img field {key!r}{did_you_mean(key, [*txt2img_fields(), *SHORTCUTS])}"
    if in_grid:
        return f"{unknown}; only txt2img fields, checkpoint and vae can be grid axes"
    return (
        f"{unknown}; the webui would silently drop it — "
        "put it under extra_fields: to send it anyway"
    )


def _accepts_string(schema: Mapping[str, Any]) -> bool:
    types = schema.get("type", [])
    if types == "string" or (isinstance(types, list) and "string" in types):
        return True
    branches = schema.get("anyOf", []) + schema.get("oneOf", [])
    return any(isinstance(b, dict) and _accepts_string(b) for b in branches)


def _unquoted_hint(instance: Any, node: yaml.Node | None) -> str:
    """YAML 1.1 turns unquoted `yes`, `12`, `2024-01-01` or nothing into non-strings."""
    if isinstance(instance, str) or not isinstance(node, yaml.ScalarNode) or node.style:
        return ""
    if instance is None:
        return " (YAML reads an empty value or `null`/`~` as null)"
    kind = (
        "a boolean"
        if isinstance(instance, bool)
        else "a date"
        if isinstance(instance, dt.date)
        else "a number"
    )
    return f" (YAML reads the unquoted {node.value} as {kind}; put it in quotes)"
