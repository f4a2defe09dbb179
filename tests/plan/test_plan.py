from __future__ import annotations

import dataclasses
import itertools
import random
from pathlib import Path
from typing import Any

from sdbatch.job.loader import Job, OutputSpec, PromptSpec, SeedSpec, ServerConfig
from sdbatch.plan.expand import build_plan, stable_hash


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
    assert list(build_plan(make_job(seeds=SeedSpec(start=7, count=3))).seeds) == [7, 8, 9]
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


# --- issue 4: sweeps (zip, exclude, vars and variants, checkpoint axes) -----------------------


def one_prompt(text: str = "a", **changes: Any) -> Job:
    return make_job(prompts=(PromptSpec(text),), seeds=SeedSpec(values=(1,)), **changes)


def test_zip_varies_together_crossed_with_the_grid() -> None:
    job = one_prompt(
        grid=(("steps", (10, 20)),),
        zip=(("width", (512, 768, 1024)), ("height", (768, 512, 1024))),
    )
    plan = build_plan(job)
    got = [(p.payload["steps"], p.payload["width"], p.payload["height"]) for p in plan]
    sizes = [(512, 768), (768, 512), (1024, 1024)]
    assert got == [(s, w, h) for s in (10, 20) for w, h in sizes]
    assert plan.payload_count == 6
    assert [dict(p.cell) for p in plan][1] == {"steps": 10, "width": 768, "height": 512}


def test_exclude_removes_matching_cells_and_counts_stay_exact() -> None:
    job = one_prompt(
        grid=(("sampler_name", ("Euler", "DPM++ SDE")), ("steps", (10, 20, 30))),
        exclude=({"sampler_name": "DPM++ SDE", "steps": 10},),
    )
    plan = build_plan(job)
    got = [(p.payload["sampler_name"], p.payload["steps"]) for p in plan]
    all_cells = cross(["Euler", "DPM++ SDE"], [10, 20, 30])
    assert got == [c for c in all_cells if c != ("DPM++ SDE", 10)]
    assert plan.payload_count == plan.image_count == 5


def test_overlapping_excludes_are_not_counted_twice() -> None:
    grid = (("steps", (10, 20, 30)), ("cfg_scale", (3, 5)), ("width", (512, 768)))
    rules = (
        {"steps": 10},  # 4 cells
        {"cfg_scale": 3, "width": 512},  # 3 cells, 1 of them also steps 10
        {"steps": 10, "cfg_scale": 3},  # inside the first rule entirely
        {"steps": 30, "width": 768},  # 2 cells, disjoint from the others
    )
    job = make_job(prompts=(PromptSpec("a"),), grid=grid, exclude=rules)
    plan = build_plan(job)
    expected = [
        (s, c, w, seed)
        for s, c, w, seed in cross([10, 20, 30], [3, 5], [512, 768], [1, 2])
        if not (s == 10 or (c == 3 and w == 512) or (s == 30 and w == 768))
    ]
    got = [
        (p.payload["steps"], p.payload["cfg_scale"], p.payload["width"], p.payload["seed"])
        for p in plan
    ]
    assert got == expected
    assert plan.payload_count == len(expected) == 2 * (12 - 4 - 2 - 2)


def test_exclude_with_batch_axes_counts_images_exactly() -> None:
    job = one_prompt(
        defaults={"n_iter": 3},
        grid=(("batch_size", (1, 2, 4)), ("steps", (10, 20))),
        exclude=({"batch_size": 4, "steps": 20}, {"batch_size": 1}),
    )
    plan = build_plan(job)
    items = list(plan)
    assert [(p.payload["batch_size"], p.payload["steps"]) for p in items] == [
        (2, 10),
        (2, 20),
        (4, 10),
    ]
    assert plan.image_count == sum(p.image_count for p in items) == (2 + 2 + 4) * 3
    assert plan.payload_count == 3


def test_exclude_on_a_million_cells_counts_instantly() -> None:
    job = one_prompt(
        grid=(("steps", tuple(range(1000))), ("width", tuple(range(1000)))),
        exclude=(*({"steps": s} for s in range(0, 1000, 2)), {"width": 7}),
    )
    plan = build_plan(job)
    assert plan.payload_count == 500 * 999
    assert [p.payload["steps"] for p in itertools.islice(plan, 2)] == [1, 1]


def test_vars_cross_only_the_prompts_that_use_them() -> None:
    job = make_job(
        prompts=(PromptSpec("a {animal} on a {surface}"), PromptSpec("plain")),
        vars=(("animal", ("cat", "dog")), ("surface", ("rug", "sofa"))),
        seeds=SeedSpec(values=(1,)),
    )
    plan = build_plan(job)
    items = list(plan)
    assert [p.payload["prompt"] for p in items] == [
        f"a {a} on a {s}" for a, s in cross(["cat", "dog"], ["rug", "sofa"])
    ] + ["plain"]
    assert [dict(p.vars) for p in items][:2] == [
        {"animal": "cat", "surface": "rug"},
        {"animal": "cat", "surface": "sofa"},
    ]
    assert items[0].template == "a {animal} on a {surface}" and items[-1].template is None
    assert plan.payload_count == 5


def test_combinatorial_variants_in_order_and_across_negative_prompt() -> None:
    job = one_prompt(
        "a {red|blue} {cat|dog}",
        defaults={"negative_prompt": "{ugly|bad}"},
        grid=(("steps", (10, 20)),),
    )
    plan = build_plan(job)
    got = [(p.payload["prompt"], p.payload["negative_prompt"], p.payload["steps"]) for p in plan]
    expected = [
        (f"a {c} {a}", n, s)
        for c, a, n, s in cross(["red", "blue"], ["cat", "dog"], ["ugly", "bad"], [10, 20])
    ]
    assert got == expected
    assert plan.payload_count == 16
    first = next(iter(plan))
    assert dict(first.vars) == {"variant_1": "red", "variant_2": "cat", "variant_3": "ugly"}


def test_random_variants_are_drawn_per_prompt_vars_and_seed_reproducibly() -> None:
    from sdbatch.job.loader import VariantMode

    job = make_job(
        prompts=(PromptSpec("a {red|green|blue} {animal}"),),
        vars=(("animal", ("cat", "dog")),),
        grid=(("steps", (10, 20)),),
        seeds=SeedSpec(values=(1, 2, 3)),
        variants=VariantMode.RANDOM,
        variant_seed=42,
    )
    plan = build_plan(job)
    items = list(plan)
    assert plan.variant_seed == 42 and plan.payload_count == len(items) == 2 * 2 * 3
    assert all(p.variant_seed == 42 for p in items)
    # One draw per (prompt, vars, seed): every grid cell of a seed shows the same prompt.
    by_key: dict[tuple[str, int], set[str]] = {}
    for p in items:
        by_key.setdefault((p.vars["animal"], p.payload["seed"]), set()).add(p.payload["prompt"])
    assert all(len(texts) == 1 for texts in by_key.values())
    # Reproducible from the recorded seed: the documented per-(prompt, vars, seed) generator.
    for p in items:
        key = [42, {"prompt": "a {red|green|blue} {animal}"}, {"animal": p.vars["animal"]}]
        rng = random.Random(int(stable_hash([*key, p.payload["seed"]]), 16))
        assert p.vars["variant_1"] == rng.choice(["red", "green", "blue"])
        assert p.payload["prompt"] == f"a {p.vars['variant_1']} {p.vars['animal']}"
    assert [p.payload for p in build_plan(job)] == [p.payload for p in items]
    injected = build_plan(dataclasses.replace(job, variant_seed=None), variant_rng=random.Random(3))
    assert injected.variant_seed == random.Random(3).randrange(4294967294)


def test_checkpoint_axis_is_outermost_and_becomes_override_settings() -> None:
    checkpoints = ("a.safetensors", "b.safetensors", "c.safetensors")
    job = make_job(
        defaults={"steps": 20, "override_settings": {"CLIP_stop_at_last_layers": 2}},
        prompts=(PromptSpec("p"), PromptSpec("q")),
        grid=(("cfg_scale", (3, 5, 7, 9, 11)), ("checkpoint", checkpoints)),
        seeds=SeedSpec(values=(1,)),
    )
    plan = build_plan(job)
    items = list(plan)
    assert plan.payload_count == len(items) == 3 * 10
    got = [(p.cell["checkpoint"], p.payload["prompt"], p.payload["cfg_scale"]) for p in items]
    assert got == cross(list(checkpoints), ["p", "q"], [3, 5, 7, 9, 11])
    assert items[0].payload["override_settings"] == {
        "CLIP_stop_at_last_layers": 2,
        "sd_model_checkpoint": "a.safetensors",
    }
    assert "checkpoint" not in items[0].payload


def test_checkpoint_in_a_zip_group_and_vae_ordering() -> None:
    job = one_prompt(
        grid=(("steps", (10, 20)), ("vae", ("v1", "v2"))),
        zip=(("checkpoint", ("sd15", "sdxl")), ("width", (512, 1024))),
    )
    got = [
        (
            p.payload["override_settings"]["sd_model_checkpoint"],
            p.payload["override_settings"]["sd_vae"],
            p.payload["width"],
            p.payload["steps"],
        )
        for p in build_plan(job)
    ]
    assert got == [
        (c, v, w, s)
        for (c, w), v, s in cross([("sd15", 512), ("sdxl", 1024)], ["v1", "v2"], [10, 20])
    ]


def test_checkpoint_shortcut_layers_follow_precedence() -> None:
    job = make_job(
        defaults={"checkpoint": "base", "override_settings": {"sd_model_checkpoint": "base"}},
        prompts=(
            PromptSpec("a"),
            PromptSpec("b", {"override_settings": {"sd_model_checkpoint": "other"}}),
        ),
        seeds=SeedSpec(values=(1,)),
    )
    items = list(build_plan(job))
    assert [p.payload["override_settings"] for p in items] == [
        {"sd_model_checkpoint": "base"},
        {"sd_model_checkpoint": "other"},  # the prompt's own setting replaces the default
    ]
    assert [dict(p.cell) for p in items] == [{"checkpoint": "base"}, {"checkpoint": "other"}]


def test_plain_job_payloads_are_unchanged_by_the_sweep_features() -> None:
    item = next(iter(build_plan(make_job(defaults={"override_settings": {"sd_vae": "x"}}))))
    assert item.payload == {"override_settings": {"sd_vae": "x"}, "prompt": "a", "seed": 1}
    assert (item.template, dict(item.vars), item.variant_seed) == (None, {}, None)
