"""load_job: every invalid case reports its position and message; valid files give exact Jobs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sdbatch.errors import JobFileError, JobValidationError
from sdbatch.job.loader import (
    Job,
    OutputSpec,
    PromptSpec,
    SeedSpec,
    ServerConfig,
    SheetSpec,
    VariantMode,
    load_job,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "jobs"
INVALID = sorted((DATA / "invalid").glob("*.yaml"))
VALID = DATA / "valid"


def expectation(path: Path) -> tuple[int, int, str]:
    """The first line of an invalid case: `# expect: LINE:COL SUBSTRING`."""
    match = re.fullmatch(r"# expect: (\d+):(\d+) (.+)", path.read_text().splitlines()[0])
    assert match, f"{path.name}: first line must be '# expect: LINE:COL SUBSTRING'"
    return int(match[1]), int(match[2]), match[3]


def problems_of(path: str | Path) -> JobValidationError:
    with pytest.raises(JobValidationError) as info:
        load_job(path)
    return info.value


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_job_reports_position_and_message(path: Path) -> None:
    line, col, substring = expectation(path)
    text = str(problems_of(path))
    assert any(
        row.startswith(f"{path}:{line}:{col}: ") and substring in row for row in text.splitlines()
    ), text


def test_several_problems_are_all_reported_sorted_by_line(tmp_path: Path) -> None:
    job = tmp_path / "many.yaml"
    job.write_text(
        "output:\n"
        "  filename: '{nope}'\n"
        "grid:\n"
        "  steps: [20, thirty]\n"
        "defaults:\n"
        "  cfgscale: 7\n"
        "  seed: 3\n"
        "prompts: ['a cat', '  ']\n"
        "seeds: [1, 1]\n"
        "bogus: 1\n"
    )
    error = problems_of(job)
    assert [(p.line, p.column, p.json_path) for p in error.problems] == [
        (2, 13, "$.output.filename"),
        (4, 15, "$.grid.steps[1]"),
        (6, 3, "$.defaults.cfgscale"),
        (7, 3, "$.defaults.seed"),
        (8, 20, "$.prompts[1]"),
        (9, 12, "$.seeds[1]"),
        (10, 1, "$.bogus"),
    ]
    assert str(error).splitlines()[0] == (
        f"{job}:2:13: $.output.filename: unknown field {{nope}}; output.filename may use "
        "index, payload_index, image_index, prompt_index, seed, id, name, date, time, prompt "
        "and txt2img fields"
    )


def test_problem_file_is_spelled_as_the_user_gave_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("x.yaml").write_text("prompts: [42]\n")
    assert str(problems_of("./x.yaml")).startswith("./x.yaml:1:11: $.prompts[0]: 42 is not")


def test_missing_and_unreadable_job_files_are_file_errors(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match=r"nope\.yaml: no such job file"):
        load_job(tmp_path / "nope.yaml")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("prompts: ['caf\xe9']\n".encode("latin-1"))
    with pytest.raises(JobFileError, match="not UTF-8"):
        load_job(latin1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ":1:1: $: the job file is empty; it needs at least `prompts:`"),
        ("# only a comment\n", ":1:1: $: the job file is empty"),
        ("- a cat\n", ":1:1: $: ['a cat'] is not of type 'object'"),
        ("prompts: [a]\n---\nprompts: [b]\n", ":2:1: $: invalid YAML: but found another document"),
        ("prompts:\n\t- a\n", ":2:1: $: invalid YAML: found character '\\t' that cannot start"),
        ("prompts: [a]\nname: \x07\n", ":2:7: $: invalid YAML: unacceptable character #x0007"),
        ("yes: 1\nprompts: [a]\n", ":1:1: $.yes: YAML reads the unquoted key yes as a boolean"),
    ],
)
def test_documents_that_are_not_a_job(tmp_path: Path, text: str, expected: str) -> None:
    job = tmp_path / "j.yaml"
    job.write_text(text)
    assert expected in str(problems_of(job))


def test_merge_keys_are_not_duplicates_and_aliases_are_checked_once(tmp_path: Path) -> None:
    job = tmp_path / "merge.yaml"
    job.write_text(
        "defaults: &d {steps: 20, cfg_scale: 5}\n"
        "prompts:\n"
        "  - {prompt: a, <<: *d, steps: 30}\n"
        "  - {prompt: b, <<: *d}\n"
    )
    loaded = load_job(job)
    assert [dict(p.fields) for p in loaded.prompts] == [
        {"steps": 30, "cfg_scale": 5},
        {"steps": 20, "cfg_scale": 5},
    ]


def test_a_bad_value_reached_through_an_alias_points_at_the_anchor(tmp_path: Path) -> None:
    job = tmp_path / "alias.yaml"
    job.write_text("defaults: &d {steps: x}\nprompts: [{prompt: a, <<: *d}]\n")
    rows = str(problems_of(job)).splitlines()
    assert rows == [
        f"{job}:1:22: $.defaults.steps: 'x' is not of type 'integer', 'null'",
        f"{job}:1:22: $.prompts[0].steps: 'x' is not of type 'integer', 'null'",
    ]


def test_minimal_job_gets_every_default() -> None:
    path = VALID / "minimal.yaml"
    assert load_job(path) == Job(
        path=path,
        name="minimal",
        server=ServerConfig(url="http://127.0.0.1:7860", timeout=600.0, retries=5),
        defaults={},
        prompts=(PromptSpec("a cat", {}, f"{path}:1"),),
        grid=(),
        seeds=SeedSpec(count=1),
        extra_fields={},
        output=OutputSpec(dir="output/{name}", filename="{index:05d}-{seed}"),
    )


def test_full_job() -> None:
    path = VALID / "full.yaml"
    defaults = {
        "steps": 20,
        "cfg_scale": 7,
        "styles": ["cinematic"],
        "restore_faces": None,
        "override_settings": {"sd_model_checkpoint": "model.safetensors"},
        "distilled_cfg_scale": 3.5,
    }
    prompts_file = VALID / "full-prompts.txt"
    assert load_job(path) == Job(
        path=path,
        name="full-job",
        server=ServerConfig(url="https://webui.example:8443/sd", timeout=30.5, retries=0),
        defaults=defaults,
        prompts=(
            PromptSpec("a cat", {}, f"{path}:15"),
            PromptSpec("a dog", {**defaults, "steps": 30}, f"{path}:16"),
            PromptSpec("yes", {}, f"{path}:19"),  # quoted, so a string and not True
            PromptSpec("a red fox in the snow", {}, f"{prompts_file}:3"),
            PromptSpec("a boat # not a comment: only whole lines are", {}, f"{prompts_file}:4"),
        ),
        grid=(("width", (512, 768)), ("enable_hr", (False,))),
        seeds=SeedSpec(start=100, count=2),
        extra_fields={"my_ext": {"on": True, "level": 2}},
        output=OutputSpec(
            dir="out/{name}/{date}_{time}",
            filename="{prompt_index}-{steps:03d}-{cfg_scale:.1f}-{width}x{seed}",
        ),
    )


def test_null_sections_count_as_absent() -> None:
    job = load_job(VALID / "null-sections.yaml")
    assert (job.server, job.defaults, job.grid, job.extra_fields, job.output) == (
        ServerConfig(),
        {},
        (),
        {},
        OutputSpec(),
    )
    assert job.seeds == SeedSpec(count=3, rng_seed=9)


def test_integral_floats_become_ints_where_plan_does_arithmetic(tmp_path: Path) -> None:
    job = tmp_path / "floats.yaml"
    job.write_text("prompts: [a]\nserver: {retries: 2.0}\nseeds: {start: 5.0, count: 2.0}\n")
    loaded = load_job(job)
    assert loaded.server.retries == 2 and isinstance(loaded.server.retries, int)
    assert loaded.seeds == SeedSpec(start=5, count=2)
    assert all(isinstance(v, int) for v in (loaded.seeds.start, loaded.seeds.count))


def test_sweep_features_load_expanded() -> None:
    path = VALID / "sweep-features.yaml"
    job = load_job(path)
    assert job.grid == (
        ("steps", (10, 20, 30)),
        ("cfg_scale", (3.0, 6.0, 9.0, 12.0)),
        ("sampler_name", ("Euler", "DPM++ SDE")),
    )
    assert job.zip == (("width", (512, 1024)), ("height", (768, 1024)))
    assert job.vars == (("animal", ("cat", "dog")), ("surface", ("rug", "sofa")))
    assert job.exclude == (
        {"sampler_name": "DPM++ SDE", "steps": 10},
        {"animal": "dog", "cfg_scale": 3.0},
    )
    assert (job.variants, job.variant_seed) == (VariantMode.RANDOM, 5)
    assert job.sheet == SheetSpec(x="cfg_scale", y="steps", z="animal")
    assert job.defaults["checkpoint"] == "base.safetensors"
    assert [p.text for p in job.prompts] == [
        "a {animal} on a {surface}, {red|blue} light",
        "{{literal}} {animal}",
    ]


def test_a_plain_job_has_no_sweep_extras() -> None:
    job = load_job(VALID / "minimal.yaml")
    assert (job.zip, job.vars, job.exclude, job.sheet) == ((), (), (), None)
    assert (job.variants, job.variant_seed) == (VariantMode.COMBINATORIAL, None)


def test_template_problems_in_prompts_file_point_into_that_file(tmp_path: Path) -> None:
    (tmp_path / "more.txt").write_text("# comment\n  a {colour} cat\nan {animal|\n")
    job = tmp_path / "job.yaml"
    job.write_text("prompts: ['a {animal}']\nprompts_file: more.txt\nvars: {animal: [cat]}\n")
    rows = str(problems_of(job)).splitlines()
    assert rows == [
        f"{tmp_path / 'more.txt'}:2:5: $.prompts_file: unknown variable {{colour}} "
        "('{{' and '}}' write literal braces); define it in vars:",
        f"{tmp_path / 'more.txt'}:3:4: $.prompts_file: unbalanced '{{' (write '{{{{' for a "
        "literal brace)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A numeric axis item that is neither a value nor a range keeps the schema's wording.
        (
            "grid: {steps: [10, true]}\n",
            ":1:20: $.grid.steps[1]: True is not of type 'integer' nor a range",
        ),
        (
            "grid: {steps: {range: [1, 2]}}\n",
            ":1:23: $.grid.steps.range: range is [start, stop, step]",
        ),
        (
            "grid: {steps: {range: [1, 9, 1], linspace: [1, 9, 3]}}\n",
            ":1:15: $.grid.steps: a range is {range",
        ),
        (
            "grid: {sampler_name: 'Euler, DPM++ 2M'}\n",
            ":1:22: $.grid.sampler_name: a grid axis is a list of values",
        ),
        ("grid: {chekpoint: [a]}\n", "did you mean 'checkpoint'?"),
        (
            "grid: {checkpoint: [a], override_settings: [{sd_model_checkpoint: b}]}\n",
            "$.grid.checkpoint: checkpoint is an axis and the override_settings axis sets "
            "sd_model_checkpoint too",
        ),
        (
            "vars: {steps: [1]}\nprompts: ['{steps}']\n",
            "$.vars.steps: 'steps' is a plan field name",
        ),
        ("vars: {a: [x, x]}\nprompts: ['{a}']\n", "$.vars.a[1]: a: 'x' appears twice"),
        (
            "variants: sometimes\n",
            "$.variants: 'sometimes' is not one of ['combinatorial', 'random']",
        ),
        ("zip: {width: [1, 2]}\nprompts: [{prompt: p, width: 3}]\n", "'width' is also a zip axis"),
        ("sheet: {y: seed}\n", "$.sheet: 'x' is a required property"),
        (
            "grid: {steps: [1, 2]}\nsheet: {x: steps, y: steps}\n",
            "sheet y: 'steps' is already the sheet's x",
        ),
        (
            "vars: {a: [x, y]}\nprompts: ['{a}', 'b']\noutput: {filename: '{a}'}\n",
            "{a} is not set for every image",
        ),
    ],
)
def test_sweep_rules(tmp_path: Path, text: str, expected: str) -> None:
    job = tmp_path / "j.yaml"
    job.write_text(text if "prompts:" in text else text + "prompts: [a]\n")
    assert expected in str(problems_of(job))
