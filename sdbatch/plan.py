"""Stage 2: expand a `Job` into the txt2img payloads to send, lazily and deterministically.

Entry point: `build_plan(job) -> Plan`. Iterating a `Plan` streams `PlannedPayload`s; their
number and the number of images are known up front, so a 10^6-cell grid is never held in memory.

Plan order (documented in the README): prompts in file order (`prompts:` first, then the lines of
`prompts_file:`), then grid cells with the first grid axis outermost and the last one changing
fastest, then seeds innermost. Each payload is
`defaults | prompt's own fields | grid cell | extra_fields | {prompt, seed}`; the loader has
already rejected every way two of those could disagree.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sdbatch.loader import Job

# The webui draws random seeds from randrange(4294967294); ours come from the same range.
SEED_RANGE = 4294967294


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
    cell: Mapping[str, Any]  # the grid values of this payload
    payload: Mapping[str, Any]  # exactly what is sent

    @functools.cached_property
    def id(self) -> str:
        # Only the payload's content counts, not its position: an edited job keeps the ids of
        # every payload it did not change.
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


@dataclass(frozen=True)
class Plan:
    job: Job
    seeds: tuple[int, ...]
    rng_seed: int | None  # the generator seed behind `seeds`, when they were drawn
    payload_count: int
    image_count: int

    def __iter__(self) -> Iterator[PlannedPayload]:
        job = self.job
        axes = [name for name, _ in job.grid]
        cells = itertools.product(*(values for _, values in job.grid))
        combos = itertools.product(enumerate(job.prompts), cells, self.seeds)
        first_image = 0
        for index, ((prompt_index, prompt), cell_values, seed) in enumerate(combos):
            cell = dict(zip(axes, cell_values, strict=True))
            payload = {
                **job.defaults,
                **prompt.fields,
                **cell,
                **job.extra_fields,
                "prompt": prompt.text,
                "seed": seed,
            }
            item = PlannedPayload(index, first_image, prompt_index, cell, payload)
            first_image += item.image_count
            yield item


def _images_per_cell_sum(job: Job) -> int:
    """Images of one seed of every grid cell, summed over prompts, without expanding the grid.

    batch_size and n_iter may be grid axes; the product over the grid then factorises into
    (sum of batch sizes) x (sum of n_iters) x (number of cells of the other axes).
    """
    grid = dict(job.grid)
    other_cells = math.prod(len(v) for k, v in job.grid if k not in ("batch_size", "n_iter"))
    total = 0
    for prompt in job.prompts:
        merged = {**job.defaults, **prompt.fields}
        sums = []
        for name in ("batch_size", "n_iter"):
            values = grid.get(name, (merged.get(name) or 1,))
            sums.append(sum(int(v or 1) for v in values))
        total += sums[0] * sums[1] * other_cells
    return total


def build_plan(job: Job, *, rng: random.Random | None = None) -> Plan:
    """Fix the seeds and count the work; nothing is expanded until the plan is iterated."""
    spec = job.seeds
    rng_seed: int | None = None
    if spec.values:
        seeds = spec.values
    elif spec.start is not None:
        seeds = tuple(range(spec.start, spec.start + spec.count))
    else:
        if rng is None:
            rng_seed = spec.rng_seed if spec.rng_seed is not None else default_rng_seed(job)
            rng = random.Random(rng_seed)
        seeds = _draw_seeds(spec.count, rng)
    cells = math.prod(len(values) for _, values in job.grid)
    return Plan(
        job=job,
        seeds=seeds,
        rng_seed=rng_seed,
        payload_count=len(job.prompts) * cells * len(seeds),
        image_count=_images_per_cell_sum(job) * len(seeds),
    )
