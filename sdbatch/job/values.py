"""The values a job will send for a few fields, with where the job file writes each one.

Entry point: `occurrences(job, field) -> list[Found]`, and `combos(job, fields)` for the
values that travel together in one payload; `fields_set(job)` lists every key the job sets.
They read the job's sections (defaults, prompt mappings, grid, zip), never the plan: a plan may
hold 10^6 payloads, the sections a handful of values. A value that an `exclude:` entry naming
only that field removes is never sent, so it is left out.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdbatch.job.loader import Job
from sdbatch.job.schema import SHORTCUTS

Path = tuple[Any, ...]  # JSON path elements: str keys, int indices
CHECKPOINT = "checkpoint"  # sdbatch's shortcut; override_settings.sd_model_checkpoint too


@dataclass(frozen=True)
class Found:
    field: str
    value: Any
    path: Path  # where the job writes it


def _read(item: Mapping[str, Any], field: str, path: Path) -> list[Found]:
    """`field` of one layer (defaults, a prompt mapping, a grid/zip cell); the checkpoint may
    be the shortcut or the override setting, which the loader has made agree."""
    found = []
    if field in item:
        found.append(Found(field, item[field], (*path, field)))
    setting = SHORTCUTS.get(field)
    settings = item.get("override_settings")
    if setting and isinstance(settings, Mapping) and setting in settings:
        found.append(Found(field, settings[setting], (*path, "override_settings", setting)))
    return found


def _axis_found(section: str, name: str, index: int, value: Any, field: str) -> list[Found]:
    if name == field:
        return [Found(field, value, (section, name, index))]
    setting = SHORTCUTS.get(field)
    if name == "override_settings" and setting and isinstance(value, Mapping) and setting in value:
        return [Found(field, value[setting], (section, name, index, setting))]
    return []


def _dropped(job: Job, field: str, value: Any) -> bool:
    return any(dict(rule) == {field: value} for rule in job.exclude)


def occurrences(job: Job, field: str) -> list[Found]:
    """Every place the job writes `field`, in file order of the sections."""
    found = _read(job.defaults, field, ("defaults",))
    for i, prompt in enumerate(job.prompts):
        # Prompts with fields come from `prompts:` and keep its index; file lines have none.
        found += _read(prompt.fields, field, ("prompts", i))
    for section, axes in (("grid", job.grid), ("zip", job.zip)):
        for name, values in axes:
            for k, value in enumerate(values):
                if not _dropped(job, name, value):
                    found += _axis_found(section, name, k, value, field)
    return found


Choice = Mapping[str, Found]  # field -> where one payload's value comes from


def _sources(job: Job, fields: Sequence[str], prompt_index: int) -> list[list[Choice]]:
    """Per independent source (one grid axis, the zip group, a fixed value), its choices."""
    prompt = job.prompts[prompt_index] if job.prompts else None
    grid = dict(job.grid)
    zipped = dict(job.zip)
    sources: list[list[Choice]] = []
    zip_fields = [f for f in fields if f in zipped]
    if zip_fields:
        rows = zip(*(zipped[f] for f in zip_fields), strict=True)
        sources.append(
            [
                {f: Found(f, v, ("zip", f, k)) for f, v in zip(zip_fields, row, strict=True)}
                for k, row in enumerate(rows)
            ]
        )
    for f in fields:
        if f in zipped:
            continue
        if f in grid:
            sources.append([{f: Found(f, v, ("grid", f, k))} for k, v in enumerate(grid[f])])
        elif prompt is not None and f in prompt.fields:
            sources.append([{f: Found(f, prompt.fields[f], ("prompts", prompt_index, f))}])
        elif f in job.defaults:
            sources.append([{f: Found(f, job.defaults[f], ("defaults", f))}])
    return sources


def combos(job: Job, fields: Sequence[str]) -> Iterator[Choice]:
    """Every combination of `fields` some payload carries (a field no layer sets is absent),
    each once; cells an `exclude:` entry on these fields alone removes are left out."""
    rules = [dict(r) for r in job.exclude if set(r) <= set(fields)]
    seen: set[tuple[Any, ...]] = set()
    # Prompts without fields all combine the same way; only the first of them is looked at.
    indices = [i for i, p in enumerate(job.prompts) if p.fields]
    plain = next((i for i, p in enumerate(job.prompts) if not p.fields), None)
    for i in [*indices, *([] if plain is None else [plain])] or [0]:
        for parts in itertools.product(*_sources(job, fields, i)):
            choice = {f: found for part in parts for f, found in part.items()}
            values = {f: found.value for f, found in choice.items()}
            if any(all(values.get(k) == v for k, v in rule.items()) for rule in rules):
                continue
            key = tuple(sorted((f, repr(found.value), found.path) for f, found in choice.items()))
            if key not in seen:
                seen.add(key)
                yield choice


def fields_set(job: Job) -> Iterator[tuple[Path, str]]:
    """(path, key) of every field the job sets: in defaults, a prompt, grid or zip, and each
    setting under override_settings (path ending in "override_settings")."""
    layers: list[tuple[Path, Mapping[str, Any]]] = [(("defaults",), job.defaults)]
    layers += [(("prompts", i), p.fields) for i, p in enumerate(job.prompts)]
    for path, layer in layers:
        for key, value in layer.items():
            yield path, key
            if key == "override_settings" and isinstance(value, Mapping):
                yield from (((*path, key), name) for name in value)
    for section, axes in (("grid", job.grid), ("zip", job.zip)):
        for key, values in axes:
            yield (section,), key
            for k, value in enumerate(values if key == "override_settings" else ()):
                if isinstance(value, Mapping):
                    yield from (((section, key, k), name) for name in value)
