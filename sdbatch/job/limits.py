"""Limits a job must keep, and the values a schema lets through that make no sense.

Entry points: `read_limits(data) -> Limits`, `value_problems(data, job_path, positions)` (run on
the schema-checked data), `prompt_problems(sources, limits, positions)`, and
`work_problems(images, limits, positions)` with the images `count_images` counts for the built
job. The limits that are a choice are the job's `limits:` section, with defaults
no ordinary job reaches (README, "Limits and hostile job files").
"""

from __future__ import annotations

import math
import unicodedata
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from sdbatch.errors import Problem
from sdbatch.job.schema import Positions, load_schema
from sdbatch.job.sweeprules import PromptSource

SEED_MAX = 4294967294  # the webui's own seeds come from randrange(4294967294)


@dataclass(frozen=True)
class Limits:
    """`limits:`; the defaults are the schema's (`properties.limits`)."""

    max_images: int = 1_000_000  # images one job may plan
    max_prompt_bytes: int = 65_536  # UTF-8 bytes of one prompt
    max_prompts_file_bytes: int = 4_194_304  # bytes of prompts_file:
    max_workflow_bytes: int = 8_388_608  # bytes of the workflow: file
    given: bool = field(default=False, compare=False)  # max_images written in the job file


_SETTABLE = ("max_images", "max_prompt_bytes", "max_prompts_file_bytes", "max_workflow_bytes")


def read_limits(data: Mapping[str, Any]) -> Limits:
    section = data.get("limits")
    given = section if isinstance(section, dict) else {}
    values = {
        name: value
        for name in _SETTABLE
        if isinstance(value := given.get(name), int) and not isinstance(value, bool) and value > 0
    }
    return Limits(**values, given="max_images" in values)


def work_problems(images: int, limits: Limits, positions: Positions) -> list[Problem]:
    if images <= limits.max_images:
        return []
    message = (
        f"this job plans {images:,} images, over limits.max_images ({limits.max_images:,}); "
        "counted before exclude: (prompts x vars x variants x grid x zip x seeds x batch_size "
        "x n_iter x inputs): shrink the sweep, or raise limits.max_images"
    )
    return [positions.problem(("limits", "max_images") if limits.given else (), message)]


def count_images(
    axes: Sequence[tuple[str, Sequence[Any]]],
    zipped: Sequence[tuple[str, Sequence[Any]]],
    per_prompt: Sequence[tuple[Sequence[int], int]],
    seeds: int,
    pictures: int,
) -> int:
    """The images of a plan, with every cell kept (an upper bound when `exclude:` is used).

    `per_prompt` holds, for each prompt, the sizes of the vars it uses and of its `{a|b}`
    groups, and its batch_size x n_iter where no axis sets them. The arithmetic of
    `plan.cells.count_work` without the exclude rules: a batch_size/n_iter axis weighs each
    cell by its value instead of counting it once.
    """
    cells = 1
    for name, values in axes:
        cells *= sum(_weight(name, v) for v in values)
    if zipped:
        rows = zip(*(values for _, values in zipped), strict=False)
        names = [name for name, _ in zipped]
        cells *= sum(
            math.prod(_weight(n, v) for n, v in zip(names, row, strict=True)) for row in rows
        )
    total = sum(math.prod(sizes) * fixed for sizes, fixed in per_prompt)
    return cells * total * seeds * pictures


def _weight(name: str, value: Any) -> int:
    if name in ("batch_size", "n_iter") and isinstance(value, int):
        return max(value, 1)
    return 1


def value_problems(data: Mapping[str, Any], job_path: Path, positions: Positions) -> list[Problem]:
    """Non-finite numbers anywhere, seed ranges past the webui's, ports, the job's name."""
    problems = list(_nonfinite(data, positions))
    problems += _seed_range(data, positions)
    problems += _ports(data, positions)
    problems += _name(data, job_path, positions)
    return problems


def _nonfinite(data: Any, positions: Positions) -> Iterator[Problem]:
    """NaN and infinity are no JSON: the webui gets `NaN` and fails, or json.dumps does."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    seen: set[int] = set()  # aliases share objects; the composer bounded the expanded size
    while stack:
        value, path = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            yield positions.problem(
                path, f"{value} is not a finite number (YAML reads .inf, .nan and 1.0e+309 so)"
            )
        elif isinstance(value, dict | list) and id(value) not in seen:
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, (*path, k)) for k, v in items)


def _seed_range(data: Mapping[str, Any], positions: Positions) -> Iterator[Problem]:
    seeds = data.get("seeds")
    if not isinstance(seeds, dict):
        return
    start, count = seeds.get("start"), seeds.get("count")
    if isinstance(start, int) and isinstance(count, int) and start + count - 1 > SEED_MAX:
        yield positions.problem(
            ("seeds", "count"),
            f"seeds {start}..{start + count - 1} go past {SEED_MAX}, the webui's largest seed",
        )


def _ports(data: Mapping[str, Any], positions: Positions) -> Iterator[Problem]:
    server = data.get("server")
    if not isinstance(server, dict):
        return
    urls: list[tuple[tuple[Any, ...], Any]] = [(("server", "url"), server.get("url"))]
    urls += [(("server", "urls", i), u) for i, u in enumerate(server.get("urls") or ())]
    for path, url in urls:
        if not isinstance(url, str):
            continue
        try:
            port = urllib.parse.urlsplit(url).port
        except ValueError:  # out of range, or not a number: the schema caught the latter
            yield positions.problem(path, "the port is out of range: a port is 1 to 65535")
            continue
        if port == 0:
            yield positions.problem(path, "port 0 is no port a webui listens on: use 1 to 65535")


def _name(data: Mapping[str, Any], job_path: Path, positions: Positions) -> Iterator[Problem]:
    """The name becomes a directory: `name:` is checked by the schema; a name taken from the
    file name (`...yaml` is named `..`) passes the same rule here."""
    if "name" in data:
        return
    stem = job_path.stem
    rule = Draft202012Validator(load_schema()["properties"]["name"])
    if any(True for _ in rule.iter_errors(stem)):
        yield positions.problem(
            (),
            f"the job is named after its file, {stem!r}, which is not a safe directory name "
            "(empty, '.' or '..', or with '/', '\\' or a control character); add a name: line",
        )


def prompt_problems(
    sources: Sequence[PromptSource], limits: Limits, positions: Positions
) -> list[Problem]:
    """A prompt over `max_prompt_bytes`, or holding a character that breaks lines elsewhere
    (U+2028, NEL, VT, FF: str.splitlines and editors split on them) or another control one."""
    problems = []
    for source in sources:
        message, offset = _text_problem(source.text, limits)
        if message is None:
            continue
        if source.path is not None:
            problems.append(positions.text_problem(source.path, offset, message))
        elif source.line is not None:
            file, line, column = source.line
            problems.append(Problem(file, line, column + offset, "$.prompts_file", message))
    return problems


def _text_problem(text: str, limits: Limits) -> tuple[str | None, int]:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_prompt_bytes:
        return (
            f"this prompt is {size:,} bytes, over limits.max_prompt_bytes "
            f"({limits.max_prompt_bytes:,})",
            0,
        )
    for offset, char in enumerate(text):
        if char not in "\t\n" and unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            name = unicodedata.name(char, "a control character")
            return (
                f"U+{ord(char):04X} ({name}) in a prompt: some tools show it as a line break, "
                "others not at all; remove it (one prompt per line, split on newlines only)",
                offset,
            )
    return None, 0
