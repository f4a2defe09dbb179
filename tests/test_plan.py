from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

from sdbatch.loader import Job, OutputSpec, PromptSpec, SeedSpec, ServerConfig
from sdbatch.plan import build_plan, stable_hash


def make_job(**changes: Any) -> Job:
    base: dict[str, Any] = {
        "path": Path("job.yaml"),
        "name": "t",
        "server": ServerConfig(),
        "defaults": {"steps": 20},
        "prompts": (PromptSpec("a"), PromptSpec("b", {"cfg_scale": 4.0})),
        "grid": (),
        "seeds": SeedSpec(values=(1, 2)),
        "extra_fields": {},
        "output": OutputSpec(),
    }
    base.update(changes)
    return Job(**base)


def cross(*lists: list[Any]) -> list[tuple[Any, ...]]:
    return list(itertools.product(*lists))


def test_order_is_prompts_then_grid_then_seeds() -> None:
    job = make_job(grid=(("steps", (10, 30)), ("width", (512, 768))))
    plan = build_plan(job)
    got = [
        (p.payload["prompt"], p.payload["steps"], p.payload["width"], p.payload["seed"])
        for p in plan
    ]
    assert got == cross(["a", "b"], [10, 30], [512, 768], [1, 2])
    assert plan.payload_count == len(got) == 16
    assert plan.image_count == 16
    assert [p.index for p in plan] == list(range(16))


def test_payload_merges_layers() -> None:
    job = make_job(extra_fields={"my_ext": {"on": True}})
    payloads = [dict(p.payload) for p in build_plan(job)]
    assert payloads[2] == {
        "steps": 20,
        "cfg_scale": 4.0,
        "my_ext": {"on": True},
        "prompt": "b",
        "seed": 1,
    }
    assert payloads[0] == {"steps": 20, "my_ext": {"on": True}, "prompt": "a", "seed": 1}


def test_seed_forms() -> None:
    assert build_plan(make_job(seeds=SeedSpec(start=7, count=3))).seeds == (7, 8, 9)
    drawn = build_plan(make_job(seeds=SeedSpec(count=5)))
    again = build_plan(make_job(seeds=SeedSpec(count=5)))
    assert drawn.seeds == again.seeds and len(set(drawn.seeds)) == 5
    assert drawn.rng_seed is not None
    assert random.Random(drawn.rng_seed).sample(range(4294967294), 5) == list(drawn.seeds)
    explicit = build_plan(make_job(seeds=SeedSpec(count=2, rng_seed=42)))
    assert explicit.rng_seed == 42
    assert list(explicit.seeds) == random.Random(42).sample(range(4294967294), 2)
    injected = build_plan(make_job(seeds=SeedSpec(count=2)), rng=random.Random(3))
    assert list(injected.seeds) == random.Random(3).sample(range(4294967294), 2)
    assert all(0 <= s < 4294967294 for s in drawn.seeds)


def test_image_counts_with_batches_in_grid() -> None:
    job = make_job(
        defaults={"n_iter": 2},
        prompts=(PromptSpec("a"), PromptSpec("b", {"width": 640})),
        grid=(("batch_size", (1, 2)), ("steps", (5, 6, 7))),
    )
    plan = build_plan(job)
    items = list(plan)
    assert plan.image_count == sum(p.image_count for p in items) == 2 * 2 * 3 * (1 + 2) * 2
    firsts = [p.first_image for p in items]
    assert firsts == list(itertools.accumulate([0] + [p.image_count for p in items[:-1]]))


def test_ids_depend_on_content_not_position() -> None:
    one = {p.payload["prompt"]: p.id for p in build_plan(make_job())}
    edited = make_job(
        prompts=(PromptSpec("a"), PromptSpec("c"), PromptSpec("b", {"cfg_scale": 4.0}))
    )
    two = {p.payload["prompt"]: p.id for p in build_plan(edited)}
    assert one["b"] == two["b"] and one["a"] == two["a"]
    item = next(iter(build_plan(make_job())))
    assert item.id == stable_hash(dict(item.payload))
    assert item.image_id(0) != item.image_id(1)


def test_huge_grid_is_lazy() -> None:
    job = make_job(
        grid=(("steps", tuple(range(1000))), ("width", tuple(range(1000)))),
        seeds=SeedSpec(values=(1,)),
        prompts=(PromptSpec("a"),),
    )
    plan = build_plan(job)
    assert plan.payload_count == 10**6 == plan.image_count
    first = list(itertools.islice(plan, 3))
    assert [(p.payload["steps"], p.payload["width"]) for p in first] == [(0, 0), (0, 1), (0, 2)]
