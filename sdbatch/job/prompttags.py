"""The prompt texts a job can send, and the `<type:args>` tags in them.

Entry points: `tags(text) -> list[Tag]`, parsed as A1111's `extra_networks.parse_prompt` does
(`<(\\w+):([^>]+)>`, args split on `:`, a1111-img2img-and-extra-networks.md B3), and
`job_texts(job) -> Iterator[Text]`: every prompt, negative prompt and hires prompt of the job,
each with where the job writes it and every text its template can become. A `{w}` in a weight or
a `{name}` in a LoRA's name is filled with each value of its variable, so the name the webui will
see is the one checked.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdbatch.errors import Problem
from sdbatch.job.loader import Job
from sdbatch.job.positions import locate
from sdbatch.job.schema import json_path
from sdbatch.job.templates import Template, TemplateError, parse_template
from sdbatch.job.values import occurrences

TAG = re.compile(r"<(\w+):([^>]+)>")
POSITIVE = ("prompt", "hr_prompt")  # the only texts the webui reads tags from (B3)
NEGATIVE = ("negative_prompt", "hr_negative_prompt")
# Renderings of one text tried in full; past this, each variable and variant group is varied
# on its own (a tag spanning two varied parts may then go unchecked).
EXPANSION_LIMIT = 1000


@dataclass(frozen=True)
class Tag:
    kind: str  # "lora", "lyco", "hypernet", ...
    name: str
    args: tuple[str, ...]  # the items after the name, `key=value` ones included
    text: str  # as written, `<lora:x:0.8>`

    def bad_number(self) -> str | None:
        """The first multiplier the webui cannot read as a number (named ones it does not
        know it ignores)."""
        for item in self.args:
            key, sep, value = item.partition("=")
            if not sep:
                key, value = "", item
            try:
                if key == "dyn":
                    int(value)
                elif key in ("", "te", "unet"):
                    float(value)
            except ValueError:
                return item
        return None


def tags(text: str) -> list[Tag]:
    found = []
    for match in TAG.finditer(text):
        name, *rest = match[2].split(":")
        found.append(Tag(match[1], name, tuple(rest), match[0]))
    return found


@dataclass(frozen=True)
class Where:
    file: str
    line: int
    column: int
    json_path: str

    def problem(self, message: str) -> Problem:
        return Problem(self.file, self.line, self.column, self.json_path, message)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.json_path}"


@dataclass(frozen=True)
class Text:
    field: str
    where: Where
    template: Template

    @property
    def positive(self) -> bool:
        return self.field in POSITIVE


def where(job: Job, path: tuple[Any, ...]) -> Where:
    line, col = locate(job.positions, path)
    return Where(job.file or str(job.path), line, col, json_path(path))


def _prompt_where(job: Job, index: int) -> Where:
    if json_path(("prompts", index)) in job.positions:
        inner = ("prompts", index, "prompt")
        return where(job, inner if json_path(inner) in job.positions else ("prompts", index))
    # A line of prompts_file: its origin is "FILE:LINE".
    file, _, line = job.prompts[index].origin.rpartition(":")
    return Where(file, int(line) if line.isdigit() else 0, 1, "$.prompts_file")


def _template(text: str, literal: bool) -> Template:
    if not literal:
        try:
            return parse_template(text)
        except TemplateError:
            pass  # the loader reported it; a Job built in code is taken as written
    return Template(text, (text,))


def job_texts(job: Job) -> Iterator[Text]:
    """Every prompt-like text of the job where it is written; grid and zip values are sent
    as literal text, and a field that is an axis is never sent from defaults or a prompt."""
    axes = {name for name, _ in (*job.grid, *job.zip)}
    for i, prompt in enumerate(job.prompts):
        yield Text("prompt", _prompt_where(job, i), _template(prompt.text, False))
    for field in (*POSITIVE[1:], *NEGATIVE):
        for found in occurrences(job, field):
            literal = found.path[0] in ("grid", "zip")
            if isinstance(found.value, str) and (literal or field not in axes):
                yield Text(field, where(job, found.path), _template(found.value, literal))


def renderings(template: Template, job: Job) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each text `template` can become, with the variable values that made it."""
    values = dict(job.vars)
    dropped = [dict(rule) for rule in job.exclude if len(rule) == 1]
    names = list(template.names)
    slots: list[Sequence[Any]] = [
        [v for v in values.get(n, (f"{{{n}}}",)) if {n: v} not in dropped] or [""] for n in names
    ]
    slots += [list(options) for options in template.variants]
    combos: Iterator[Sequence[Any]]
    if math.prod(len(s) for s in slots) <= EXPANSION_LIMIT:
        combos = itertools.product(*slots)
    else:
        first = [s[0] for s in slots]
        combos = ((*first[:i], v, *first[i + 1 :]) for i, s in enumerate(slots) for v in s)
    for combo in combos:
        chosen = dict(zip(names, combo[: len(names)], strict=True))
        yield template.render(chosen, [str(c) for c in combo[len(names) :]]), chosen


def origin(part: str, chosen: Mapping[str, Any]) -> str:
    """` (vars: name='x')` for the variables whose values made `part`, else nothing."""
    made = [f"{n}={v!r}" for n, v in chosen.items() if str(v) and str(v) in part]
    return f" (vars: {', '.join(made)})" if made else ""
