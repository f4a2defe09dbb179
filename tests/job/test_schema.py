"""The job schema is code: it must be a valid schema, and every shipped job must pass it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from sdbatch.job import schema as jobschema
from sdbatch.job.loader import SheetSpec, load_job

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "job.schema.json"
JOBS = sorted((ROOT / "jobs").glob("*.yaml"))


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_loader_uses_the_schema_in_the_tree() -> None:
    # In CI the package is installed non-editable, so this compares the wheel's copy too.
    assert jobschema.load_schema() == json.loads(SCHEMA.read_text(encoding="utf-8"))


def test_packaged_schema_wins_over_the_source_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "job.schema.json").write_text('{"packaged": true}')
    monkeypatch.setattr(jobschema.resources, "files", lambda package: tmp_path)
    assert json.loads(jobschema._schema_text()) == {"packaged": True}


def test_schema_knows_the_webui_and_forge_fields_but_not_prompt_and_seed() -> None:
    fields = jobschema.txt2img_fields()
    for name in (
        "negative_prompt",
        "steps",
        "cfg_scale",
        "sampler_name",
        "scheduler",
        "override_settings",
        "alwayson_scripts",
        "distilled_cfg_scale",
        "hr_cfg",
        "hr_distilled_cfg",
        "hr_additional_modules",
    ):
        assert name in fields
    assert "prompt" not in fields and "seed" not in fields  # sdbatch's own: prompts:, seeds:
    assert fields["steps"]["type"] == ["integer", "null"]
    assert fields["send_images"]["type"] == "boolean"  # the webui rejects null here


@pytest.mark.parametrize("path", JOBS, ids=[p.name for p in JOBS])
def test_every_shipped_job_loads(path: Path) -> None:
    load_job(path)


def test_jobs_folder_is_not_empty() -> None:
    assert {p.name for p in JOBS} >= {"cats.yaml", "sweep.yaml", "example.yaml"}


def test_cats_job_is_the_original_request() -> None:
    job = load_job(ROOT / "jobs" / "cats.yaml")
    assert job.name == "cats" and job.server.url == "http://127.0.0.1:7860"
    assert [p.text for p in job.prompts] == [
        "a fluffy white cat lying on a wooden floor, natural sunlight from the window, "
        "photorealistic, ultra detailed, 8k, soft shadow, close-up"
    ]
    assert job.defaults == {
        "negative_prompt": "low quality, blurry, deformed, bad anatomy, bad eyes, cross-eyed, "
        "asymmetrical eyes, mutated eyes, fused eyes, extra eyes, extra limbs, cropped, "
        "out of frame, watermark, text, nsfw, unnatural colors",
        "steps": 25,
        "cfg_scale": 7.5,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
    }
    assert job.grid == () and job.extra_fields == {}
    assert job.seeds.values == (1001, 1002, 1003, 1004)


def test_sweep_job_is_a_4_by_4_grid() -> None:
    job = load_job(ROOT / "jobs" / "sweep.yaml")
    assert len(job.prompts) == 1 and len(job.seeds.values) == 1
    assert job.grid == (("steps", (10, 20, 30, 40)), ("cfg_scale", (3, 5, 7, 9)))
    assert job.sheet == SheetSpec(x="cfg_scale", y="steps")
