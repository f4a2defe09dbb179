"""The cells of a sweep: axes crossed, minus `exclude:`, counted without being expanded.

Entry point: `count_work(job, seeds) -> (payloads, images)`, what a plan will send, counted
per prompt as `surviving(axes, rules, weight)`: the number (or, with `weight`, the weighted
number) of cells no rule excludes. A grid axis, a vars axis and a whole zip group are each one
`CellAxis`; a rule excludes a cell when every field it names has its value there. The plan
iterates the same axes (`job_axes`) and templates (`job_templates`), so counting and expanding
agree.

Counting is exact and never walks the cells: the axes are folded in one by one, keeping for
every set of rules still fully matched (a bitmask) the weighted number of partial cells. Rows
of an axis that satisfy the same rules fall into one class, so the work is about
axes x distinct masks x classes, not the size of the grid: a 10^6-cell grid with a few rules
counts in microseconds, and overlapping rules are handled without inclusion-exclusion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdbatch.job.loader import Job, PromptSpec, VariantMode
from sdbatch.job.templates import PromptTemplates, prompt_templates

Row = tuple[Any, ...]
COSTLY = ("checkpoint", "vae")  # the axes that reload weights on the server, costliest first


@dataclass(frozen=True)
class CellAxis:
    names: tuple[str, ...]  # one field, or the fields of a zip group
    rows: tuple[Row, ...]  # one value per name in each row

    def __len__(self) -> int:
        return len(self.rows)

    def values(self, row: Row) -> Iterator[tuple[str, Any]]:
        return zip(self.names, row, strict=True)


@dataclass(frozen=True)
class JobAxes:
    """A job's cell axes split the way the plan order needs them."""

    costly: tuple[CellAxis, ...]  # checkpoint's axis, then vae's
    rest: tuple[CellAxis, ...]  # the other grid axes, then the zip group
    vars: Mapping[str, CellAxis]
    order: tuple[str, ...]  # cell keys: grid then zip fields, as written

    def for_prompt(self, names: Sequence[str]) -> tuple[CellAxis, ...]:
        """Every axis of one prompt's cells, in plan order (vars in `vars:` order)."""
        used = tuple(axis for name, axis in self.vars.items() if name in names)
        return (*self.costly, *used, *self.rest)


def job_axes(job: Job) -> JobAxes:
    axes = [CellAxis((name,), tuple((v,) for v in values)) for name, values in job.grid]
    if job.zip:
        columns = [values for _, values in job.zip]
        axes.append(CellAxis(tuple(n for n, _ in job.zip), tuple(zip(*columns, strict=True))))
    costly = tuple(a for short in COSTLY for a in axes if short in a.names)
    costly = tuple(dict.fromkeys(costly))  # a zip group holding both counts once
    return JobAxes(
        costly=costly,
        rest=tuple(a for a in axes if a not in costly),
        vars={name: CellAxis((name,), tuple((v,) for v in values)) for name, values in job.vars},
        order=tuple(n for n, _ in (*job.grid, *job.zip)),
    )


def job_templates(job: Job, prompt: PromptSpec) -> PromptTemplates:
    # A template field that is an axis comes from the cell, as literal text.
    axis_names = {n for n, _ in (*job.grid, *job.zip)}
    fields = {k: v for k, v in {**job.defaults, **prompt.fields}.items() if k not in axis_names}
    return prompt_templates(prompt.text, fields)


def applicable(rules: Sequence[Mapping[str, Any]], names: set[str]) -> list[Mapping[str, Any]]:
    """The rules that can match here: one naming a field these cells lack matches none."""
    return [rule for rule in rules if set(rule) <= names]


def excluded(cell: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]) -> bool:
    return any(all(cell[k] == v for k, v in rule.items()) for rule in rules)


def _mask(axis: CellAxis, row: Row, rules: Sequence[Mapping[str, Any]]) -> int:
    """Bit r is set unless this row contradicts a field that rule r names."""
    mask = 0
    for r, rule in enumerate(rules):
        if all(rule[name] == value for name, value in axis.values(row) if name in rule):
            mask |= 1 << r
    return mask


def surviving(
    axes: Sequence[CellAxis],
    rules: Sequence[Mapping[str, Any]],
    weight: Callable[[CellAxis, Row], int] = lambda axis, row: 1,
) -> int:
    """Sum over the cells no rule excludes of the product of their rows' weights.

    `rules` must only name fields of `axes` (see `applicable`).
    """
    states = {(1 << len(rules)) - 1: 1}  # rules matched so far -> weighted partial cells
    for axis in axes:
        classes: dict[int, int] = {}
        for row in axis.rows:
            mask = _mask(axis, row, rules)
            classes[mask] = classes.get(mask, 0) + weight(axis, row)
        folded: dict[int, int] = {}
        for state, count in states.items():
            for mask, total in classes.items():
                folded[state & mask] = folded.get(state & mask, 0) + count * total
        states = folded
    return states.get(0, 0)  # a cell with any bit left matches a rule in full


def _batch_weight(base: Mapping[str, Any]) -> tuple[int, Any]:
    """Images per payload that no axis changes, and the weight of an axis row."""
    fixed = int(base.get("batch_size") or 1) * int(base.get("n_iter") or 1)

    def weight(axis: CellAxis, row: Row) -> int:
        images = 1
        for name, value in axis.values(row):
            if name in ("batch_size", "n_iter"):
                images *= int(value or 1)
        return images

    return fixed, weight


def count_work(job: Job, seeds: int) -> tuple[int, int]:
    """(payloads, images), per prompt: surviving cells x variant choices x seeds."""
    axes = job_axes(job)
    payloads = images = 0
    for prompt in job.prompts:
        templates = job_templates(job, prompt)
        all_axes = axes.for_prompt(templates.names)
        rules = applicable(job.exclude, {n for a in all_axes for n in a.names})
        choices = 1
        if job.variants is VariantMode.COMBINATORIAL:
            choices = math.prod(len(options) for options in templates.variants)
        base = {**job.defaults, **prompt.fields}
        fixed, weight = _batch_weight(base)
        # A field is never both an axis and a prompt field, so an axis weight replaces `fixed`.
        if any(n in ("batch_size", "n_iter") for a in all_axes for n in a.names):
            axis_fields = {n for a in all_axes for n in a.names}
            fixed = math.prod(
                int(base.get(n) or 1) for n in ("batch_size", "n_iter") if n not in axis_fields
            )
        payloads += surviving(all_axes, rules) * choices * seeds
        images += surviving(all_axes, rules, weight) * fixed * choices * seeds
    return payloads, images


def uniform_images(job: Job) -> int | None:
    """Images per payload when it is the same for every payload (no axis sets `batch_size` or
    `n_iter`, and every prompt has the same product of them), else None. Resume uses it to count
    what is left from the finished-image masks alone, without walking a 10^6-payload plan."""
    axes = job_axes(job)
    found: set[int] = set()
    for prompt in job.prompts:
        all_axes = axes.for_prompt(job_templates(job, prompt).names)
        if any(n in ("batch_size", "n_iter") for a in all_axes for n in a.names):
            return None
        found.add(_batch_weight({**job.defaults, **prompt.fields})[0])
    return found.pop() if len(found) == 1 else None
