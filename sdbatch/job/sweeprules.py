"""The sweep rules: ranges, zip, exclude, template variables, checkpoint/vae and sheet.

Entry point: `check_sweep(data, prompts, positions) -> (problems, names)`. Like `jobrules`, it
runs on schema-checked data that may still be wrong anywhere, so it re-checks every type it
relies on and stays quiet where the schema has spoken. `names` are the plan's own names a
filename template may use (checkpoint, vae, vars, variant_N, input), each with whether every image
has it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdbatch.errors import Problem
from sdbatch.job.axes import RangeError, expand_axis
from sdbatch.job.rules import PLAN_SAMPLES
from sdbatch.job.schema import (
    SHORTCUTS,
    Positions,
    did_you_mean,
    field_kind,
    txt2img_fields,
    value_problem,
)
from sdbatch.job.templates import TEMPLATE_FIELDS, Template, TemplateError, parse_template

INPUT_NAME = "input"  # {input}: the stem of the picture an img2img payload starts from
VARIANT_KEY = re.compile(r"variant_\d+")
SHEET_AXES = ("x", "y", "z")


@dataclass(frozen=True)
class PromptSource:
    """One prompt as the rules see it: its template text, its own fields, and where it is."""

    text: str
    fields: Mapping[str, Any]
    path: tuple[Any, ...] | None = None  # JSON path of the text in the job file
    line: tuple[str, int, int] | None = None  # (file, line, column) of a prompts_file line


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _key(value: Any) -> str:
    # Axis values may be lists or mappings (styles, override_settings): compare them as JSON.
    return json.dumps(value, sort_keys=True)


def check_sweep(
    data: Mapping[str, Any], prompts: Sequence[PromptSource], positions: Positions
) -> tuple[list[Problem], dict[str, bool]]:
    problems: list[Problem] = []
    axes = _axes(data, positions, problems)
    problems += _zip_rules(data, axes, positions)
    problems += _shortcut_rules(data, positions)
    used = _templates(data, prompts, positions, problems)
    problems += _var_rules(data, used, positions)
    problems += _exclude_rules(data, axes, positions)
    problems += _sheet_rules(data, axes, used, positions)
    return problems, _names(data, used)


def _axes(
    data: Mapping[str, Any], positions: Positions, problems: list[Problem]
) -> dict[str, tuple[Any, ...]]:
    """Every grid/zip/vars axis that expands, by name; range problems and repeats reported."""
    axes: dict[str, tuple[Any, ...]] = {}
    for section in ("grid", "zip", "vars"):
        for name, spec in _dict(data.get(section)).items():
            kind = field_kind(name) if section != "vars" else None
            try:
                values = expand_axis(spec, kind) if kind else spec
            except RangeError as exc:
                if not exc.malformed:
                    problems.append(positions.problem((section, name, *exc.path), exc.message))
                continue
            if not isinstance(values, (list, tuple)):
                continue  # a schema problem
            axes[name] = tuple(values)
            if kind and not isinstance(spec, list):  # a range: check what it expands to
                for value in values:
                    if (bad := value_problem(name, value)) is not None:
                        message = f"{bad} (the range gives {value!r})"
                        problems.append(positions.problem((section, name), message))
                        break
            first: dict[str, int] = {}
            for i, value in enumerate(values):
                if _key(value) in first:
                    # Two equal cells would be two payloads with the same id: resume could not
                    # tell them apart.
                    expanded = isinstance(spec, list) and len(spec) == len(values)
                    path = (section, name, i) if expanded else (section, name)
                    message = f"{name}: {value!r} appears twice (a cell would be planned twice)"
                    problems.append(positions.problem(path, message))
                    break
                first[_key(value)] = i
    return axes


def _zip_rules(
    data: Mapping[str, Any], axes: Mapping[str, tuple[Any, ...]], positions: Positions
) -> Iterator[Problem]:
    zipped = [name for name in _dict(data.get("zip")) if name in axes]
    grid = _dict(data.get("grid"))
    for name in _dict(data.get("zip")):
        if name in grid:
            message = f"{name!r} is also a grid axis; a field is either in grid: or in zip:"
            yield positions.problem(("zip", name), message, key=True)
    if zipped:
        first, length = zipped[0], len(axes[zipped[0]])
        for name in zipped[1:]:
            if len(axes[name]) != length:
                yield positions.problem(
                    ("zip", name),
                    f"zip: {name} has {len(axes[name])} values but {first} has {length}; "
                    "zipped fields vary together and need the same number of values",
                )


def _shortcut_rules(data: Mapping[str, Any], positions: Positions) -> Iterator[Problem]:
    """`checkpoint:` and `override_settings.sd_model_checkpoint` disagreeing at one level."""
    layers: list[tuple[tuple[Any, ...], Any]] = [(("defaults",), data.get("defaults"))]
    items = data.get("prompts")
    layers += [
        (("prompts", i), item) for i, item in enumerate(items if isinstance(items, list) else ())
    ]
    for path, layer in layers:
        settings = _dict(_dict(layer).get("override_settings"))
        for short, setting in SHORTCUTS.items():
            value = _dict(layer).get(short)
            if value is not None and settings.get(setting, value) != value:
                yield positions.problem(
                    (*path, short),
                    f"{short}: {value!r} and override_settings.{setting}: "
                    f"{settings[setting]!r} disagree; set it in one place",
                    key=True,
                )
    axes = {**_dict(data.get("zip")), **_dict(data.get("grid"))}
    for section in ("grid", "zip"):
        for short, setting in SHORTCUTS.items():
            overrides = axes.get("override_settings")
            if (
                short in _dict(data.get(section))
                and isinstance(overrides, list)
                and any(setting in _dict(v) for v in overrides)
            ):
                yield positions.problem(
                    (section, short),
                    f"{short} is an axis and the override_settings axis sets {setting} too; "
                    "set it in one place",
                    key=True,
                )


@dataclass(frozen=True)
class _Used:
    """What one prompt's payload templates use: variable names and variant group count."""

    names: frozenset[str]
    variants: int


def _templates(
    data: Mapping[str, Any],
    prompts: Sequence[PromptSource],
    positions: Positions,
    problems: list[Problem],
) -> list[_Used]:
    """What each prompt uses; parse errors and unknown placeholders reported in place, once
    per written text (a defaults field is shared by every prompt)."""
    known = {**_dict(data.get("vars"))}
    if isinstance(data.get("inputs"), dict):
        known[INPUT_NAME] = True  # the picture's file stem

    def parse(text: str, path: Any, source: PromptSource | None = None) -> Template | None:
        def report(offset: int, message: str) -> None:
            if source is not None and source.line is not None:
                file, line, column = source.line
                problems.append(Problem(file, line, column + offset, "$.prompts_file", message))
            else:
                problems.append(positions.text_problem(path, offset, message))

        try:
            template = parse_template(text)
        except TemplateError as exc:
            report(exc.offset, exc.message)
            return None
        for name, offset in template.placeholders:
            if name not in known:
                hint = did_you_mean(name, known) or " ('{{' and '}}' write literal braces)"
                report(offset, f"unknown variable {{{name}}}{hint}; define it in vars:")
        return template

    axes = {*_dict(data.get("grid")), *_dict(data.get("zip"))}
    defaults = _dict(data.get("defaults"))
    shared = {
        name: parse(value, ("defaults", name))
        for name in TEMPLATE_FIELDS
        if isinstance(value := defaults.get(name), str) and name not in axes
    }
    used: list[_Used] = []
    for source in prompts:
        templates = [parse(source.text, source.path, source)]
        for name in TEMPLATE_FIELDS:
            value = source.fields.get(name)
            if isinstance(value, str) and source.path is not None and name not in axes:
                templates.append(parse(value, (*source.path[:2], name)))
            else:
                templates.append(shared.get(name))
        parsed = [t for t in templates if t is not None]
        names = frozenset(n for t in parsed for n in t.names)
        used.append(_Used(names, sum(len(t.variants) for t in parsed)))
    return used


def _var_rules(
    data: Mapping[str, Any], used: Sequence[_Used], positions: Positions
) -> Iterator[Problem]:
    names = {name for prompt in used for name in prompt.names}
    reserved = {*txt2img_fields(), *SHORTCUTS, *PLAN_SAMPLES, INPUT_NAME}
    for name in _dict(data.get("vars")):
        if name in reserved or VARIANT_KEY.fullmatch(name):
            message = f"{name!r} is a plan field name; name the variable differently"
            yield positions.problem(("vars", name), message, key=True)
        elif name not in names:
            message = f"variable {name!r} is not used by any prompt; use {{{name}}} or remove it"
            yield positions.problem(("vars", name), message, key=True)


def _exclude_rules(
    data: Mapping[str, Any], axes: Mapping[str, tuple[Any, ...]], positions: Positions
) -> Iterator[Problem]:
    names = [n for s in ("grid", "zip", "vars") for n in _dict(data.get(s))]
    rules = data.get("exclude")
    for i, rule in enumerate(rules if isinstance(rules, list) else ()):
        for name, value in _dict(rule).items():
            if name not in names:
                yield positions.problem(
                    ("exclude", i, name),
                    f"exclude names {name!r}, which is not an axis{did_you_mean(name, names)}; "
                    "it may name grid, zip and vars axes",
                    key=True,
                )
            elif name in axes and _key(value) not in {_key(v) for v in axes[name]}:
                shown = ", ".join(repr(v) for v in axes[name][:10])
                more = ", ..." if len(axes[name]) > 10 else ""
                yield positions.problem(
                    ("exclude", i, name),
                    f"{value!r} is not a value of the {name} axis ({shown}{more}), so this "
                    "entry would exclude nothing",
                )


def _seed_count(seeds: Any) -> int:
    if isinstance(seeds, list):
        return len(seeds)
    count = _dict(seeds).get("count", 1)
    return count if isinstance(count, int) else 1


def _sheet_rules(
    data: Mapping[str, Any],
    axes: Mapping[str, tuple[Any, ...]],
    used: Sequence[_Used],
    positions: Positions,
) -> Iterator[Problem]:
    sheet = _dict(data.get("sheet"))
    sizes = {name: len(values) for name, values in axes.items()}
    sizes["seed"] = _seed_count(data.get("seeds"))
    templated = any(u.names or u.variants for u in used)
    sizes["prompt"] = len(used) if not templated else max(len(used), 2)
    for n in range(1, max((u.variants for u in used), default=0) + 1):
        sizes[f"variant_{n}"] = 2
    if isinstance(data.get("inputs"), dict):
        sizes[INPUT_NAME] = 2  # the loader counts the pictures after these rules
    known = {*sizes, *txt2img_fields(), *SHORTCUTS}
    seen: dict[str, str] = {}
    for axis in SHEET_AXES:
        name = sheet.get(axis)
        if not isinstance(name, str):
            continue
        if name not in known:
            message = (
                f"sheet {axis}: {name!r} is not a field of this plan{did_you_mean(name, sizes)}"
            )
        elif sizes.get(name, 1) < 2:
            message = (
                f"sheet {axis}: {name!r} does not vary in this job; a sheet axis is a grid, zip "
                "or vars axis with two or more values, prompt, seed or input"
            )
        elif name in seen:
            message = f"sheet {axis}: {name!r} is already the sheet's {seen[name]}"
        else:
            seen[name] = axis
            continue
        yield positions.problem(("sheet", axis), message)


def _names(data: Mapping[str, Any], used: Sequence[_Used]) -> dict[str, bool]:
    """checkpoint/vae, vars and variant_N, each with whether every image has it."""
    names: dict[str, bool] = {}
    items = data.get("prompts")
    mappings = [_dict(item) for item in (items if isinstance(items, list) else ())]
    everywhere = {*_dict(data.get("defaults")), *_dict(data.get("grid")), *_dict(data.get("zip"))}
    for short in SHORTCUTS:
        if short in everywhere or any(short in m for m in mappings):
            names[short] = short in everywhere or all(short in m for m in mappings)
    for name in _dict(data.get("vars")):
        names[name] = bool(used) and all(name in u.names for u in used)
    if isinstance(data.get("inputs"), dict):
        names[INPUT_NAME] = True
    fewest = min((u.variants for u in used), default=0)
    for n in range(1, max((u.variants for u in used), default=0) + 1):
        names[f"variant_{n}"] = n <= fewest
    return names
