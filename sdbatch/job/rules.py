"""The job-file rules a JSON Schema cannot express: conflicts, duplicates, templates, prompts.

Entry point: `check_rules(data, prompt_fields, positions, earlier, names) -> list[Problem]`. `data`
has been schema-checked but may still be wrong anywhere, so every rule re-checks the types it
relies on and stays quiet where the schema has already spoken. `key_problems` checks the
YAML node tree itself.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml

from sdbatch.errors import Problem, did_you_mean
from sdbatch.job.schema import (
    PROMPT_MESSAGE,
    SEED_MESSAGE,
    Positions,
    json_path,
    txt2img_fields,
)

# What the writer knows per image besides the payload's txt2img fields; sample values let a
# template be formatted once here, so `{steps:03d}` passes and `{index:zz}` fails before a run.
PLAN_SAMPLES: Mapping[str, Any] = {
    "index": 12,
    "payload_index": 3,
    "image_index": 0,
    "prompt_index": 1,
    "seed": 1234567890,
    "id": "0123456789abcdef",
    "name": "job",
    "date": "2024-01-31",
    "time": "235959",
    "prompt": "a cat",
}
DIR_FIELDS = ("name", "date", "time")
_TYPE_SAMPLES: Mapping[str, Any] = {
    "integer": 20,
    "number": 7.5,
    "string": "text",
    "boolean": True,
    "array": ["a"],
    "object": {},
}
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_TAG_KINDS = {
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a date",
}


def key_problems(root: yaml.Node | None, positions: Positions) -> list[Problem]:
    """Keys YAML would quietly mangle: a repeated key (only the last survives, so a second
    `grid:` hides the first) and an unquoted `on:`/`1:` key (a bool/int, where JSON needs a
    string; json.dumps would send "true").

    Run it before constructing the data: construction flattens `<<:` merges into the node tree,
    and a key that overrides a merged one is not a duplicate.
    """
    problems: list[Problem] = []
    seen: set[int] = set()  # aliases share nodes; check each once
    stack: list[tuple[yaml.Node | None, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                    continue
                line, col = key.start_mark.line + 1, key.start_mark.column + 1
                where = json_path((*path, key.value))
                if key.tag != _STR_TAG:
                    kind = _TAG_KINDS.get(key.tag, "a non-string")
                    problems.append(
                        Problem(
                            positions.file,
                            line,
                            col,
                            where,
                            f"YAML reads the unquoted key {key.value} as {kind}, but keys must be "
                            f'strings; quote it: "{key.value}"',
                        )
                    )
                if (key.tag, key.value) in first_line:
                    problems.append(
                        Problem(
                            positions.file,
                            line,
                            col,
                            where,
                            f"duplicate key {key.value!r} (first at line "
                            f"{first_line[key.tag, key.value]}); YAML would keep only the last one",
                        )
                    )
                first_line.setdefault((key.tag, key.value), line)
                stack.append((value, (*path, key.value)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))
    return problems


def check_rules(
    data: Mapping[str, Any],
    prompt_fields: Sequence[Mapping[str, Any]],
    positions: Positions,
    earlier: Sequence[Problem],
    names: Mapping[str, bool] | None = None,
) -> list[Problem]:
    """Every rule below, in one list; `earlier` lets a rule skip what was already reported.

    `names` are the plan's own names a filename may use besides PLAN_SAMPLES and txt2img
    fields (checkpoint, vae, vars, variant_N), each with whether every image has it.
    """
    problems = list(_prompt_rules(data, prompt_fields, positions, earlier))
    problems += _seed_rules(data, positions)
    problems += _field_rules(data, positions)
    problems += _hires_rules(data, positions)
    problems += _template_rules(data, prompt_fields, positions, names or {})
    return problems


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _prompt_rules(
    data: Mapping[str, Any],
    prompt_fields: Sequence[Mapping[str, Any]],
    positions: Positions,
    earlier: Sequence[Problem],
) -> Iterator[Problem]:
    items = data.get("prompts")
    for i, item in enumerate(items if isinstance(items, list) else ()):
        path: tuple[Any, ...] = ("prompts", i)
        if isinstance(item, dict):
            path = (*path, "prompt")
        text = item if isinstance(item, str) else _dict(item).get("prompt")
        if isinstance(text, str) and not text.strip():
            yield positions.problem(path, "empty prompt")
    if prompt_fields or any(p.json_path.startswith("$.prompts") for p in earlier):
        return  # there are prompts, or the reason there are none was reported already
    message = "no prompts: add at least one to `prompts:` or `prompts_file:`"
    if "prompts" in data:
        yield positions.problem(("prompts",), message, key=True)
    elif "prompts_file" in data:
        yield positions.problem(("prompts_file",), message + " (the file has none)")
    else:
        yield positions.problem((), message)


def _seed_rules(data: Mapping[str, Any], positions: Positions) -> Iterator[Problem]:
    seeds = data.get("seeds")
    first: dict[int, int] = {}
    for i, seed in enumerate(seeds if isinstance(seeds, list) else ()):
        if not isinstance(seed, int) or isinstance(seed, bool):
            continue
        if seed in first:
            where = positions.line_col(("seeds", first[seed]))[0]
            message = f"seed {seed} is listed twice (first at line {where})"
            yield positions.problem(("seeds", i), message)
        first.setdefault(seed, i)


def _field_rules(data: Mapping[str, Any], positions: Positions) -> Iterator[Problem]:
    """Two places that would set the same payload field in disagreeing ways."""
    axes = {
        **{k: "zip" for k in _dict(data.get("zip"))},
        **{k: "grid" for k in _dict(data.get("grid"))},
    }
    items = data.get("prompts")
    for i, item in enumerate(items if isinstance(items, list) else ()):
        for key in _dict(item):
            if key in axes and key != "prompt":
                yield positions.problem(
                    ("prompts", i, key),
                    f"{key!r} is also a {axes[key]} axis, which would override this prompt's "
                    "value; drop one of the two",
                    key=True,
                )
    known = txt2img_fields()
    for key in _dict(data.get("extra_fields")):
        if key == "seed":
            message = SEED_MESSAGE
        elif key == "prompt":
            message = PROMPT_MESSAGE
        elif key in known:
            message = (
                f"{key!r} is a txt2img field sdbatch knows; set it in defaults:, a prompt or "
                "grid: instead (extra_fields: is for fields the schema cannot know)"
            )
        else:
            continue
        yield positions.problem(("extra_fields", key), message, key=True)


HIRES_MESSAGE = (
    "enable_hr needs a denoising_strength (e.g. 0.5) for every image it applies to: without "
    "one the webui fails with a TypeError"
)


def _hires_rules(data: Mapping[str, Any], positions: Positions) -> Iterator[Problem]:
    """`enable_hr: true` with no denoising_strength is a 500 on every attempt (OBSERVED 7)."""

    def given(layer: Mapping[str, Any]) -> bool:
        return layer.get("denoising_strength") is not None

    defaults = _dict(data.get("defaults"))
    axes = {**_dict(data.get("grid")), **_dict(data.get("zip"))}
    strengths = axes.get("denoising_strength")
    everywhere = given(defaults) or (
        isinstance(strengths, list) and bool(strengths) and None not in strengths
    )
    if everywhere:
        return
    items = data.get("prompts")
    prompts = [_dict(p) for p in items] if isinstance(items, list) else []
    every_prompt = bool(prompts) and all(given(p) for p in prompts)
    if defaults.get("enable_hr") is True and not every_prompt:
        yield positions.problem(("defaults", "enable_hr"), HIRES_MESSAGE)
    for section in ("grid", "zip"):
        values = _dict(data.get(section)).get("enable_hr")
        if isinstance(values, list) and True in values and not every_prompt:
            yield positions.problem((section, "enable_hr", values.index(True)), HIRES_MESSAGE)
    for i, prompt in enumerate(prompts):
        if prompt.get("enable_hr") is True and not given(prompt):
            yield positions.problem(("prompts", i, "enable_hr"), HIRES_MESSAGE)


def _template_rules(
    data: Mapping[str, Any],
    prompt_fields: Sequence[Mapping[str, Any]],
    positions: Positions,
    names: Mapping[str, bool],
) -> Iterator[Problem]:
    output = _dict(data.get("output"))
    directory = output.get("dir")
    if isinstance(directory, str):
        samples = {k: PLAN_SAMPLES[k] for k in DIR_FIELDS}
        error = template_error(directory, samples, "output.dir may use only {name}, {date}, {time}")
        if error:
            yield positions.problem(("output", "dir"), error)
    filename = output.get("filename")
    if not isinstance(filename, str):
        return
    samples = {**_txt2img_samples(), **dict.fromkeys(names, "text"), **PLAN_SAMPLES}
    allowed = (
        "output.filename may use index, payload_index, image_index, prompt_index, seed, id, "
        "name, date, time, prompt and txt2img fields"
    )
    if names:
        allowed += f" (and this job's {', '.join(names)})"
    error = template_error(filename, samples, allowed)
    if not error and ("/" in filename or "\\" in filename or ".." in filename):
        error = "output.filename must not contain '/', '\\' or '..': images stay in output.dir"
    if not error:
        error = _unset_fields(filename, data, prompt_fields, names)
    if error:
        yield positions.problem(("output", "filename"), error)


def _txt2img_samples() -> dict[str, Any]:
    samples = {}
    for name, schema in txt2img_fields().items():
        types = schema.get("type", "string")
        types = [types] if isinstance(types, str) else types
        samples[name] = _TYPE_SAMPLES[next(t for t in types if t != "null")]
    return samples


def _field_names(template: str) -> Iterator[str]:
    for _, name, spec, _ in string.Formatter().parse(template):
        if name is not None:
            yield name
        if spec:  # `{index:{width}}` nests a field in the format spec
            yield from _field_names(spec)


def template_error(template: str, samples: Mapping[str, Any], allowed: str) -> str | None:
    """Why `template.format(**fields)` would fail at run time, or None."""
    try:
        names = list(_field_names(template))
    except ValueError as exc:  # `{unclosed`, a lone `}`
        return f"bad template: {exc}"
    for name in names:
        if name == "" or name.isdigit():
            return "positional fields like {} are not allowed; name the field, e.g. {index}"
        if name not in samples:
            if "." in name and name.split(".", 1)[0] not in samples:
                # `{KSampler.steps}` would be str.format's attribute access on a `KSampler`
                # field, never the workflow input: refused, not silently misread.
                return (
                    f"{{{name}}}: a workflow input (NODE.input) cannot be a filename field, "
                    "since str.format reads the dot as attribute access; the manifest records "
                    f"every value of each image; {allowed}"
                )
            if not name.isidentifier():  # {name.upper}, {seed[0]}: format's attribute access
                return f"{{{name}}}: only plain {{field}} names are allowed; {allowed}"
            return f"unknown field {{{name}}}{did_you_mean(name, samples)}; {allowed}"
    try:
        template.format(**samples)
    except (ValueError, TypeError) as exc:  # `{index:zz}`, `{name!x}`
        return f"bad template: {exc}"
    return None


def _unset_fields(
    filename: str,
    data: Mapping[str, Any],
    prompt_fields: Sequence[Mapping[str, Any]],
    names: Mapping[str, bool],
) -> str | None:
    """The writer formats with the payload; a txt2img field only some payloads carry would
    make it fail after the image was generated (sdbatch does not know the webui's defaults)."""
    defaults, grid, zipped = (_dict(data.get(k)) for k in ("defaults", "grid", "zip"))
    for name in _field_names(filename):
        if name in PLAN_SAMPLES or name in defaults or name in grid or name in zipped:
            continue
        if names.get(name):
            continue
        if name in names:
            return f"{{{name}}} is not set for every image: some prompts do not use it"
        if prompt_fields and all(name in fields for fields in prompt_fields):
            continue
        return (
            f"{{{name}}} is not set for every image (the webui's default is unknown here); "
            f"set {name} in defaults: or make it a grid axis"
        )
    return None
