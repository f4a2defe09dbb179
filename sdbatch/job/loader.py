"""Stage 1: read a YAML job file, validate it, and turn it into a frozen `Job`.

Entry point: `load_job(path) -> Job`. Every problem is collected and raised at once as a
`JobValidationError` whose `Problem`s carry `file:line:col` positions. The schema and its error
mapping live in `jobschema`, the rules a schema cannot express in `jobrules`.

A hostile file is refused before it costs anything: `safeload` reads only regular files, up to a
byte limit, and composes the YAML under node, alias and depth limits; `limits` checks the values
a schema lets through and counts the images the job plans before anything is expanded.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdbatch.errors import JobFileError, JobValidationError, Problem
from sdbatch.job.axes import expand_axis
from sdbatch.job.inputs import InputsSpec, input_rules, resolve_inputs
from sdbatch.job.limits import (
    count_images,
    prompt_problems,
    read_limits,
    value_problems,
    work_problems,
)
from sdbatch.job.positions import JobPositions, no_positions, node_positions
from sdbatch.job.prompts import PromptSpec, read_prompts  # PromptSpec: also Job's, from here
from sdbatch.job.rules import check_rules, key_problems
from sdbatch.job.safeload import MAX_JOB_BYTES, ReadError, compose, read_regular
from sdbatch.job.schema import Positions, field_kind, schema_problems
from sdbatch.job.sweeprules import check_sweep
from sdbatch.job.templates import prompt_templates
from sdbatch.job.workflow import Workflow
from sdbatch.job.workflowrules import check_workflow
from sdbatch.job.yamlerrors import prompt_mapping_problems, yaml_problem

DEFAULT_URL = "http://127.0.0.1:7860"


@dataclass(frozen=True)
class ServerConfig:
    url: str = DEFAULT_URL
    type: str | None = None  # the server kind, picks the backend; None: detected (registry.py)
    timeout: float = 600.0  # seconds per request
    retries: int = 5  # attempts after the first failure
    wait: float = 0.0  # seconds to wait for the webui to come up before the run; 0: don't
    urls: tuple[str, ...] = ()  # several webuis sharing the work; empty: just `url`
    concurrency: int = 1  # generations at once per webui (each webui serialises its own)
    # Extra request headers for reverse proxies. Values may name environment variables
    # (${TOKEN}); they are expanded only when the session is built, so the job as loaded, and
    # everything recorded from it, never holds the secret.
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: bool | str = True  # TLS verification, or a CA bundle path
    gzip: bool = False  # let the webui gzip txt2img answers (worth it only on a slow link)
    # Caps on what a server may send (None: the environment's, else backends.limits' default).
    max_response_bytes: int | None = None
    max_image_pixels: int | None = None

    @property
    def all_urls(self) -> tuple[str, ...]:
        return self.urls or (self.url,)


@dataclass(frozen=True)
class SeedSpec:
    """`seeds:` as written. `plan` turns it into concrete seeds."""

    values: tuple[int, ...] = ()  # an explicit list
    start: int | None = None  # {start: S, count: N}
    count: int = 0  # {count: N} or {start: S, count: N}
    rng_seed: int | None = None  # {count: N[, random_seed: R]}: the generator's own seed


@dataclass(frozen=True)
class OutputSpec:
    dir: str = "output/{name}"
    filename: str = "{index:05d}-{seed}"


class VariantMode(enum.Enum):
    """How `{a|b|c}` in a prompt expands."""

    COMBINATORIAL = "combinatorial"  # every option, in order
    RANDOM = "random"  # one drawn option per (prompt, variable values, seed)


@dataclass(frozen=True)
class SheetSpec:
    """`sheet:` as written: the plan field along each axis of a contact sheet."""

    x: str | None = None
    y: str | None = None
    z: str | None = None


Axis = tuple[str, tuple[Any, ...]]  # a field and its values, ranges already expanded


@dataclass(frozen=True)
class Job:
    path: Path
    name: str
    server: ServerConfig
    defaults: Mapping[str, Any]  # may hold the shortcuts `checkpoint` and `vae`
    prompts: tuple[PromptSpec, ...]  # texts are templates; `plan` fills them
    grid: tuple[Axis, ...]  # axes in the order the job writes them
    seeds: SeedSpec
    extra_fields: Mapping[str, Any]
    output: OutputSpec
    zip: tuple[Axis, ...] = ()  # columns of equal length that vary together, as one axis
    vars: tuple[Axis, ...] = ()  # template variables, in the order the job writes them
    exclude: tuple[Mapping[str, Any], ...] = ()  # a cell matching all of one entry is left out
    variants: VariantMode = VariantMode.COMBINATORIAL
    variant_seed: int | None = None  # `variants: {random_seed: R}`
    sheet: SheetSpec | None = None
    inputs: InputsSpec | None = None  # pictures for img2img; None: txt2img
    workflow: Workflow | None = None  # the user's ComfyUI graph; None: the built-in one
    # Where each value sits in the job file (`$.grid.sampler_name[1]` -> (line, col), 1-based),
    # and the file as the user typed it: later stages (preflight) report `file:line:col` too.
    # Not part of what the job means: two jobs differing only in layout compare equal.
    positions: JobPositions = field(default_factory=no_positions, compare=False, repr=False)
    file: str = field(default="", compare=False)


SEEDS_DEFAULT = SeedSpec(count=1)


def load_job(path: str | Path) -> Job:
    """Read, validate and freeze a job file.

    Raises `JobFileError` when the file cannot be read, else `JobValidationError` carrying every
    problem at once (YAML syntax, schema, and the rules a schema cannot express).
    """
    job_path = Path(path)
    file = str(path)  # messages name the file the way the user did
    try:
        text = read_regular(job_path, MAX_JOB_BYTES, "job file").decode("utf-8")
    except FileNotFoundError:
        raise JobFileError(f"{file}: no such job file") from None
    except UnicodeDecodeError as exc:
        raise JobFileError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ReadError as exc:
        raise JobFileError(f"{file}: {exc}".replace(f"{job_path} ", "", 1)) from None
    except OSError as exc:
        raise JobFileError(f"{file}: cannot read the job file: {exc.strerror or exc}") from None
    positions, data, problems = _parse(text, file)
    if positions.root is None:  # the schema would say "None is not of type 'object'"
        message = "the job file is empty; it needs at least `prompts:`"
        raise JobValidationError([Problem(file, 1, 1, "$", message)])
    problems += _checked(data, job_path, positions)
    if not isinstance(data, dict):
        raise JobValidationError(problems)  # the schema said so already; nothing more to check
    limits = read_limits(data)
    prompts, sources = read_prompts(data, job_path, positions, problems, limits)
    problems += prompt_problems(sources, limits, positions)
    inputs = resolve_inputs(data, job_path, positions, problems)
    workflow = check_workflow(data, job_path, positions, limits.max_workflow_bytes)
    problems += workflow.problems
    sweep_problems, names = check_sweep(data, sources, positions)
    problems += check_rules(data, [p.fields for p in prompts], positions, problems, names)
    problems += input_rules(data, positions)
    problems += sweep_problems
    if problems:
        raise JobValidationError(problems)
    job = _build(data, job_path, prompts)
    job = dataclasses.replace(
        job,
        inputs=inputs,
        workflow=workflow.workflow,
        defaults={**workflow.implied, **job.defaults},
    )
    problems += work_problems(_images(job), limits, positions)
    if problems:
        raise JobValidationError(problems)
    return dataclasses.replace(job, positions=node_positions(positions), file=file)


def _checked(data: Any, job_path: Path, positions: Positions) -> list[Problem]:
    """The schema's problems and the values it lets through that make no sense; a prompt YAML
    made a mapping and a number that is not finite get one clear message, not the schema's."""
    own = prompt_mapping_problems(data, positions) if isinstance(data, dict) else []
    if isinstance(data, dict):
        own += value_problems(data, job_path, positions)
    covered = tuple(p.json_path for p in own if p.json_path != "$")
    return own + [
        p
        for p in schema_problems(data, positions)
        if not any(p.json_path == c or p.json_path.startswith((f"{c}.", f"{c}[")) for c in covered)
    ]


def _images(job: Job) -> int:
    """The images `job` plans, counted the way `plan` counts them (see `count_images`)."""
    axis_names = {n for n, _ in (*job.grid, *job.zip)}
    variables = dict(job.vars)
    per_prompt = []
    for prompt in job.prompts:
        base = {**job.defaults, **prompt.fields}
        fields = {k: v for k, v in base.items() if k not in axis_names}
        templates = prompt_templates(prompt.text, fields)
        sizes = [len(variables[n]) for n in templates.names if n in variables]
        if job.variants is VariantMode.COMBINATORIAL:
            sizes += [len(options) for options in templates.variants]
        fixed = 1
        for name in ("batch_size", "n_iter"):
            if name not in axis_names:
                fixed *= int(base.get(name) or 1)
        per_prompt.append((sizes, fixed))
    spec = job.seeds
    seeds = len(spec.values) or spec.count
    pictures = len(job.inputs.files) if job.inputs is not None else 1
    return count_images(job.grid, job.zip, per_prompt, seeds, pictures)


def _parse(text: str, file: str) -> tuple[Positions, Any, list[Problem]]:
    """One compose for the node tree (positions) and one construct of the same tree (data)."""
    try:
        loader, root = compose(text)  # checks for unprintable characters already
        try:
            positions = Positions(file, root)
            key_issues = key_problems(root, positions)  # before construction flattens merges
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise JobValidationError([yaml_problem(exc, file, text)]) from None
    return positions, data, key_issues


def _build(data: Mapping[str, Any], job_path: Path, prompts: list[PromptSpec]) -> Job:
    """The validated dict -> frozen dataclasses; null sections count as absent."""
    server = data.get("server") or {}
    output = data.get("output") or {}
    variants = data.get("variants") or VariantMode.COMBINATORIAL.value
    sheet = data.get("sheet")
    return Job(
        path=job_path,
        name=data.get("name", job_path.stem),
        server=ServerConfig(
            url=server.get("url", DEFAULT_URL),
            type=server.get("type"),
            timeout=float(server.get("timeout", ServerConfig.timeout)),
            retries=int(server.get("retries", ServerConfig.retries)),
            wait=float(server.get("wait", ServerConfig.wait)),
            urls=tuple(server.get("urls") or ()),
            concurrency=int(server.get("concurrency", ServerConfig.concurrency)),
            headers=dict(server.get("headers") or {}),
            verify=server.get("verify", True),
            gzip=bool(server.get("gzip", ServerConfig.gzip)),
            max_response_bytes=server.get("max_response_bytes"),
            max_image_pixels=server.get("max_image_pixels"),
        ),
        defaults=dict(data.get("defaults") or {}),
        prompts=tuple(prompts),
        grid=_axes(data.get("grid")),
        seeds=_seed_spec(data.get("seeds")),
        extra_fields=dict(data.get("extra_fields") or {}),
        output=OutputSpec(
            dir=output.get("dir", OutputSpec.dir),
            filename=output.get("filename", OutputSpec.filename),
        ),
        zip=_axes(data.get("zip")),
        vars=tuple((name, tuple(values)) for name, values in (data.get("vars") or {}).items()),
        exclude=tuple(dict(rule) for rule in data.get("exclude") or ()),
        variants=VariantMode(variants if isinstance(variants, str) else variants["mode"]),
        variant_seed=None if isinstance(variants, str) else variants.get("random_seed"),
        sheet=SheetSpec(**sheet) if sheet else None,
    )


def _axes(section: Mapping[str, Any] | None) -> tuple[Axis, ...]:
    """grid:/zip: with every range expanded; the rules have checked that they expand."""
    axes = []
    for name, spec in (section or {}).items():
        kind = field_kind(name)
        axes.append((name, expand_axis(spec, kind) if kind else tuple(spec)))
    return tuple(axes)


def _seed_spec(seeds: Any) -> SeedSpec:
    # The schema lets 3.0 pass as an integer; plan does arithmetic on these, so make them ints.
    if isinstance(seeds, list):
        return SeedSpec(values=tuple(int(s) for s in seeds))
    if isinstance(seeds, dict):
        start, rng = seeds.get("start"), seeds.get("random_seed")
        return SeedSpec(
            start=None if start is None else int(start),
            count=int(seeds["count"]),
            rng_seed=None if rng is None else int(rng),
        )
    return SEEDS_DEFAULT
