"""Stage 2: expand a `Job` into the payloads to send (txt2img, or img2img with `inputs:`), lazily.

Entry point: `build_plan(job) -> Plan`. Iterating a `Plan` streams `PlannedPayload`s; their
number and the number of images are known up front (counted, not expanded, even with
`exclude:`, by `cells.count_work`), so a 10^6-cell grid is never held in memory. The
axes and templates the plan expands come from `cells` too, so both always agree.

Plan order (documented in the README), outermost first:

1. costly axes, so each model is loaded once: the grid axis (or zip group) holding
   `checkpoint`, then the one holding `vae`;
2. the `inputs:` pictures of an img2img job, in `job.inputs` order;
3. prompts in file order (`prompts:` first, then the lines of `prompts_file:`);
4. the `vars:` the prompt uses, in the order `vars:` writes them (others do not multiply it);
5. `{a|b}` variants, the first group outermost (with `variants: random`, one drawn choice);
6. the other grid axes in the order `grid:` writes them, then the `zip:` group as one axis;
7. seeds innermost.

Cells that match an `exclude:` entry are skipped. Each payload is
`defaults | prompt's own fields | templates filled | cell | extra_fields | {prompt, seed}`,
plus, with a picture, `init_images`/`mask` (the files' stamps: the worker sends their bytes)
and the width/height the layers leave unset (`pictures.fit_size`); then `checkpoint`/`vae`
become `override_settings.sd_model_checkpoint`/`sd_vae` (the layer
that sets one last wins, whichever spelling it uses); the loader has already rejected every
way two layers could disagree.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdbatch import __version__
from sdbatch.job.loader import Job, PromptSpec, VariantMode
from sdbatch.job.schema import SHORTCUTS
from sdbatch.job.sweeprules import INPUT_NAME
from sdbatch.job.templates import PromptTemplates, draw
from sdbatch.plan.cells import (
    JobAxes,
    Row,
    applicable,
    count_work,
    excluded,
    job_axes,
    job_templates,
    uniform_images,
)
from sdbatch.plan.pictures import Picture, fit_size, read_pictures

# The webui draws random seeds from randrange(4294967294); ours come from the same range.
SEED_RANGE = 4294967294
REPEATS_WARNED = 3  # repeated payloads named in a warning, per plan; the rest go unsaid

_log = logging.getLogger("sdbatch")


def stable_hash(value: object) -> str:
    """A short content hash that does not depend on dict order or the Python version."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PlannedPayload:
    """One txt2img request, fixed down to its seed, and the images it will produce."""

    index: int  # position in plan order
    first_image: int  # plan-wide number of its first image
    prompt_index: int
    cell: Mapping[str, Any]  # grid and zip values; `checkpoint`/`vae` by their short names
    payload: Mapping[str, Any]  # exactly what is sent
    template: str | None = None  # the prompt as written, when it is a template
    vars: Mapping[str, Any] = field(default_factory=dict)  # variables and variant_N choices
    variant_seed: int | None = None  # the plan's generator seed for `variants: random`
    input: Picture | None = None  # the picture an img2img payload starts from
    repeat: int = 0  # how many earlier payloads of the plan are exactly this one
    workflow: str | None = None  # the digest of the job's ComfyUI workflow, when it has one

    @functools.cached_property
    def id(self) -> str:
        # Only the payload's content counts, not its position: an edited job keeps the ids of
        # every payload it did not change. A payload the plan holds twice (two identical
        # prompts) is two planned images, so its repeats get ids of their own: counts, rows,
        # resume and gallery then agree on every one of them.
        # The workflow the payload is posted into is part of what it makes: an edited
        # workflow reruns. (Without one the ids stay what they always were.)
        if self.workflow is not None:
            content = {"payload": self.payload, "repeat": self.repeat, "workflow": self.workflow}
            return stable_hash(content)
        if self.repeat:
            return stable_hash({"payload": self.payload, "repeat": self.repeat})
        return stable_hash(self.payload)

    @property
    def image_count(self) -> int:
        return int(self.payload.get("batch_size") or 1) * int(self.payload.get("n_iter") or 1)

    def image_id(self, image_index: int) -> str:
        # Hashed from the payload id directly: a resume computes this for every planned image.
        return hashlib.sha256(f"{self.id}:{image_index}".encode()).hexdigest()[:16]


def _draw_seeds(count: int, rng: random.Random) -> tuple[int, ...]:
    # sample() over a range never materialises it and gives distinct seeds.
    return tuple(rng.sample(range(SEED_RANGE), count))


def default_rng_seed(job: Job) -> int:
    """The generator seed used for `seeds: {count: N}` when the job names none.

    Derived from the job's name only, so editing a prompt does not reshuffle every seed.
    """
    return int(stable_hash(["seeds", job.name]), 16) % SEED_RANGE


def default_variant_seed(job: Job) -> int:
    """The generator seed for `variants: random` when the job names none (from the name)."""
    return int(stable_hash(["variants", job.name]), 16) % SEED_RANGE


def _variant_choices(templates: PromptTemplates, mode: VariantMode) -> list[tuple[str, ...] | None]:
    """Combinatorial: every choice, first group outermost. Random: None, drawn per seed."""
    if mode is VariantMode.RANDOM and templates.variants:
        return [None]
    return list(itertools.product(*templates.variants))


def _apply_shortcuts(
    payload: dict[str, Any], layers: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """`checkpoint`/`vae` -> override_settings; per layer the shortcut or the setting (the
    loader made them agree), and the last layer that sets either wins, as for any field.
    Returns the resolved shortcuts by their short names, for the cell."""
    resolved: dict[str, Any] = {}
    for short, setting in SHORTCUTS.items():
        if not any(short in layer for layer in layers):
            continue  # jobs without the shortcut keep exactly the payloads they had
        value = None
        for layer in layers:
            settings = layer.get("override_settings") or {}
            value = layer.get(short, settings.get(setting, value))
        payload.pop(short, None)
        payload["override_settings"] = {**(payload.get("override_settings") or {}), setting: value}
        resolved[short] = value
    return resolved


@dataclass(frozen=True)
class Plan:
    job: Job
    seeds: Sequence[int]  # a range for `seeds: {start, count}`: a 10^6-seed plan holds no list
    rng_seed: int | None  # the generator seed behind `seeds`, when they were drawn
    payload_count: int
    image_count: int
    variant_seed: int | None = None  # the generator seed behind `variants: random`
    pictures: tuple[Picture, ...] = ()  # the img2img inputs, stat and header read
    # Repeated payloads already warned about (each plan says so once, however often iterated).
    _told: set[int] = field(default_factory=set, compare=False, repr=False)

    @functools.cached_property
    def images_per_payload(self) -> int | None:
        """The same number of images in every payload, or None where an axis varies it."""
        return uniform_images(self.job)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Everything that decides the payloads, hashed: two plans with the same fingerprint
        have the same payload at every position, so a resume can match rows by position
        instead of hashing every payload again. The sdbatch version is in it, since a new
        version may plan the same job differently."""
        job = self.job
        what = (
            __version__,
            job.name,
            job.defaults,
            tuple((p.text, p.fields) for p in job.prompts),  # not where they stand in the file
            job.grid,
            job.zip,
            job.vars,
            job.exclude,
            job.variants,
            self.variant_seed,
            # Drawn seeds follow from their generator seed and count: no repr of 10^6 numbers.
            (self.rng_seed, len(self.seeds)) if self.rng_seed is not None else self.seeds,
            job.extra_fields,
            # A picture changed since the last run changes its payloads, found by their ids.
            tuple((p.stamp, p.mask and p.mask.stamp) for p in self.pictures),
            job.workflow.digest if job.workflow is not None else None,
        )
        return hashlib.sha256(repr(what).encode()).hexdigest()[:16]

    @functools.cached_property
    def _may_repeat(self) -> bool:
        """Whether two payloads of this plan can be the same. Not for one plain prompt whose
        fields no `extra_fields` entry overrides: its cells differ in their axis values, which
        the loader keeps distinct, and its seeds are distinct. Then nothing is tracked, and a
        10^6-cell grid holds no key per cell (~110 MB)."""
        job = self.job
        if len(job.prompts) != 1 or len(self.pictures) > 1:
            return True
        axes = {name for name, _ in (*job.grid, *job.zip)}
        plain = job_templates(job, job.prompts[0]).is_plain
        return not plain or bool(axes & set(job.extra_fields))

    def __iter__(self) -> Iterator[PlannedPayload]:
        job, axes = self.job, job_axes(self.job)
        first_image, index = 0, 0
        repeats = _Repeats(self._told) if self._may_repeat else None
        repeat = 0
        workflow = job.workflow.digest if job.workflow is not None else None
        for costly in itertools.product(*(a.rows for a in axes.costly)):
            for picture in self.pictures or (None,):
                for prompt_index, prompt in enumerate(job.prompts):
                    payloads = self._prompt_payloads(prompt, axes, costly, picture)
                    for cell, payload, template, values, key, starts in payloads:
                        if repeats is not None and starts:
                            repeat = repeats.count(key, index, prompt_index)
                        item = PlannedPayload(
                            index,
                            first_image,
                            prompt_index,
                            cell,
                            payload,
                            template,
                            values,
                            self.variant_seed,
                            picture,
                            repeat,
                            workflow,
                        )
                        index += 1
                        first_image += item.image_count
                        yield item

    def _prompt_payloads(
        self, prompt: PromptSpec, axes: JobAxes, costly: Row, picture: Picture | None
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any], str | None, dict[str, Any], int, bool]]:
        """One prompt's payloads for one costly row: (cell, payload, template, vars, key,
        starts). `key` hashes what the payload holds besides its seed; `starts` marks where
        a new run of seeds over that content begins (`_Repeats`).

        The innermost loop runs once per payload of a plan that may have millions: whatever
        does not change with the seed is worked out before it."""
        job = self.job
        templates = job_templates(job, prompt)
        var_axes = [a for n, a in axes.vars.items() if n in templates.names]
        all_axes = axes.for_prompt(templates.names)
        rules = applicable(job.exclude, {n for a in all_axes for n in a.names})
        base = {**job.defaults, **prompt.fields}
        written = {name: t.text for name, t in templates.fields}
        template = None if templates.is_plain and "{" not in prompt.text else prompt.text
        layers = (job.defaults, prompt.fields)
        shortcuts = any(s in axes.order or any(s in layer for layer in layers) for s in SHORTCUTS)
        named = {INPUT_NAME: picture.stem} if picture is not None else {}
        for var_rows in itertools.product(*(a.rows for a in var_axes)):
            values = dict(named)
            for axis, row in zip(var_axes, var_rows, strict=True):
                values.update(axis.values(row))
            for choices in _variant_choices(templates, job.variants):
                for rest in itertools.product(*(a.rows for a in axes.rest)):
                    found = dict(values)
                    for a, row in zip((*axes.costly, *axes.rest), (*costly, *rest), strict=True):
                        found.update(a.values(row))
                    if excluded(found, rules):
                        continue
                    axis_cell = {n: found[n] for n in axes.order}
                    rendered = templates.render(values, choices) if choices is not None else None
                    stamp = picture.stamp if picture is not None else None
                    # The seeds of one cell are distinct (the loader sees to it), so two payloads
                    # are the same only if their cells hold the same: one key per cell.
                    content = 0
                    if self._may_repeat:
                        cell_content = [base, rendered, axis_cell, job.extra_fields, stamp]
                        content = _content_key(cell_content)
                    for n, seed in enumerate(self.seeds):
                        picked = choices
                        if picked is None:  # variants: random, drawn per prompt, vars and seed
                            key = [self.variant_seed, written, values, seed]
                            picked = draw(
                                templates.variants, random.Random(int(stable_hash(key), 16))
                            )
                            rendered = templates.render(values, picked)
                        assert rendered is not None
                        payload = {
                            **base,
                            **rendered,
                            **axis_cell,
                            **job.extra_fields,
                            "seed": seed,
                        }
                        if picture is not None:
                            _attach(payload, picture)
                        cell = axis_cell
                        if shortcuts:
                            resolved = _apply_shortcuts(payload, (*layers, axis_cell))
                            cell = {**axis_cell, **resolved}
                        chosen = {f"variant_{i}": c for i, c in enumerate(picked, start=1)}
                        if choices is None:  # drawn per seed: the payload itself is the key
                            yield (
                                cell,
                                payload,
                                template,
                                {**values, **chosen},
                                _content_key(payload) if self._may_repeat else 0,
                                True,
                            )
                        else:
                            yield cell, payload, template, {**values, **chosen}, content, n == 0


def _content_key(value: object) -> int:
    """An in-process key of a value's content: equal content, equal key. (The key is never
    stored; only how often it repeats is, as `PlannedPayload.repeat`.)"""
    return hash(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))


class _Repeats:
    """How often each content has come before in plan order, and one warning per repeated
    content naming both places. One int per distinct cell: a 10^6-cell plan holds ~100 MB
    less than it would keeping the payloads."""

    def __init__(self, told: set[int]) -> None:
        self._first: dict[int, int] = {}  # key -> first payload index << 20 | prompt index
        self._count: dict[int, int] = {}  # key -> times seen, for keys seen more than once
        self._told = told

    def count(self, key: int, index: int, prompt_index: int) -> int:
        first = self._first.setdefault(key, index << 20 | min(prompt_index, 0xFFFFF))
        if first >> 20 == index:
            return 0
        repeat = self._count.get(key, 0) + 1
        self._count[key] = repeat
        if key not in self._told and len(self._told) < REPEATS_WARNED:
            self._told.add(key)
            where = f"payload #{first >> 20} (prompt {(first & 0xFFFFF) + 1})"
            _log.warning(
                "payload #%d (prompt %d) is the same as %s, seeds included: both are planned "
                "and made, as separate images; make them differ if one is enough",
                index,
                prompt_index + 1,
                where,
            )
        return repeat


def _attach(payload: dict[str, Any], picture: Picture) -> None:
    payload["init_images"] = [picture.stamp]
    if picture.mask is not None:
        payload["mask"] = picture.mask.stamp
    payload.update(fit_size(picture, payload.get("width"), payload.get("height")))


def build_plan(
    job: Job, *, rng: random.Random | None = None, variant_rng: random.Random | None = None
) -> Plan:
    """Fix the seeds and count the work; nothing is expanded until the plan is iterated.

    `rng` draws `seeds: {count: N}`, `variant_rng` the generator seed of `variants: random`
    (each defaults to one seeded from the job, so a plan is reproducible). An img2img job's
    pictures are stat'ed and their headers read here: `InputError` names one that is missing,
    not a picture, or over `inputs.max_bytes`/`max_pixels`.
    """
    spec = job.seeds
    rng_seed: int | None = None
    seeds: Sequence[int]
    if spec.values:
        seeds = spec.values
    elif spec.start is not None:
        seeds = range(spec.start, spec.start + spec.count)
    else:
        if rng is None:
            rng_seed = spec.rng_seed if spec.rng_seed is not None else default_rng_seed(job)
            rng = random.Random(rng_seed)
        seeds = _draw_seeds(spec.count, rng)
    variant_seed: int | None = None
    if job.variants is VariantMode.RANDOM:
        if job.variant_seed is not None:
            variant_seed = job.variant_seed
        elif variant_rng is not None:
            variant_seed = variant_rng.randrange(SEED_RANGE)
        else:
            variant_seed = default_variant_seed(job)
    pictures = read_pictures(job.inputs) if job.inputs is not None else ()
    payloads, images = count_work(job, len(seeds))
    if job.inputs is not None:
        payloads, images = payloads * len(pictures), images * len(pictures)
    return Plan(
        job=job,
        seeds=seeds,
        rng_seed=rng_seed,
        payload_count=payloads,
        image_count=images,
        variant_seed=variant_seed,
        pictures=pictures,
    )
