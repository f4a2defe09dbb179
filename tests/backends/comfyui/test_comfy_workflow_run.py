"""A user's own ComfyUI workflow (`workflow:`) end to end against the ComfyUI stand-in: the
job's values land in the right nodes and nothing else of the workflow changes; preflight
checks the workflow itself (classes, input names, its own values) and every value the job puts
in, all at once, before anything is queued; fields ComfyUI would ignore are refused.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunCli
from conftest import manifest_rows as rows
from PIL import Image

from sdbatch.backends.comfyui.usergraph import UserGraph
from sdbatch.job.workflow import Workflow
from sdbatch.standin.comfyui import MockComfy

CKPT = "tiny_sd15_random.safetensors"

WORKFLOW: dict[str, Any] = {
    "1": {"class_type": "CheckpointLoaderSimple", "_meta": {"title": "Model"},
          "inputs": {"ckpt_name": CKPT}},
    "2": {"class_type": "CLIPTextEncode", "_meta": {"title": "Positive"},
          "inputs": {"text": "placeholder", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "_meta": {"title": "Negative"},
          "inputs": {"text": "blurry", "clip": ["1", 1]}},
    "4": {"class_type": "EmptyLatentImage", "_meta": {"title": "Canvas"},
          "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "5": {"class_type": "KSampler", "_meta": {"title": "Sampler"},
          "inputs": {"seed": 0, "steps": 2, "cfg": 6.0, "sampler_name": "euler",
                     "scheduler": "karras", "denoise": 1.0, "model": ["1", 0],
                     "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0]}},
    "6": {"class_type": "VAEDecode", "_meta": {"title": "Decode"},
          "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
    "7": {"class_type": "SaveImage", "_meta": {"title": "Save"},
          "inputs": {"filename_prefix": "ComfyUI", "images": ["6", 0]}},
}  # fmt: skip


@pytest.fixture
def comfy() -> Iterator[MockComfy]:
    with MockComfy(step_delay=0.001, seed=3) as server:
        yield server


def graph(**changes: Any) -> dict[str, Any]:
    """WORKFLOW with {node: {input: value}} changes; a node given None is removed."""
    g = copy.deepcopy(WORKFLOW)
    for node, inputs in changes.items():
        if inputs is None:
            del g[node]
        else:
            g[node] = {**g[node], "inputs": {**g[node]["inputs"], **inputs}}
    return g


def write(tmp_path: Path, comfy: MockComfy, body: str, flow: dict[str, Any]) -> Path:
    (tmp_path / "flow.json").write_text(json.dumps(flow, indent=1))
    job = tmp_path / "job.yaml"
    job.write_text(
        f'name: t\nserver: {{url: "{comfy.url}", type: comfyui}}\nworkflow: flow.json\n{body}'
    )
    return job


def posts(comfy: MockComfy) -> list[Any]:
    return [r for r in comfy.recorder.requests if r.method == "POST" and r.path == "/prompt"]


# -- running ------------------------------------------------------------------------------------


def test_title_addressed_grid_axes_land_in_their_nodes_and_the_rest_stays(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    body = """prompts: ["a lighthouse", "a barn"]
seeds: [7]
defaults: {sampler_name: "Euler a", cfg_scale: 5}
grid: {"Sampler.steps": [1, 2], "4.width": [64, 96]}
"""
    job = write(tmp_path, comfy, body, WORKFLOW)
    out = tmp_path / "out"
    run_cli("run", str(job), "--out", str(out))
    done = rows(out)
    assert len(done) == 8 and {r["status"] for r in done} == {"ok"}
    cells = set()
    for row in done:
        sent = row["payload"]
        sampler = sent["5"]["inputs"]
        cells.add((sent["2"]["inputs"]["text"], sampler["steps"], sent["4"]["inputs"]["width"]))
        # The A1111 name mapped; the workflow's own scheduler kept (the job set none).
        assert (sampler["sampler_name"], sampler["scheduler"]) == ("euler_ancestral", "karras")
        assert (sampler["seed"], sampler["cfg"], row["seed"]) == (7, 5, 7)
        # Everything the job does not set is the workflow's, links included.
        expected = graph(
            **{
                "2": {"text": sent["2"]["inputs"]["text"]},
                "4": {"width": sent["4"]["inputs"]["width"]},
                "5": {k: sampler[k] for k in ("seed", "steps", "cfg", "sampler_name")},
                "7": {"filename_prefix": sent["7"]["inputs"]["filename_prefix"]},
            }
        )
        assert sent == expected
        assert sent["7"]["inputs"]["filename_prefix"].startswith("sdbatch/")
        with Image.open(out / row["file"]) as img:
            assert img.size == (sent["4"]["inputs"]["width"], 64)
            assert json.loads(img.info["prompt"]) == sent
        assert row["sd_model_name"] == CKPT and row["server_version"]
    assert cells == {
        (p, s, w) for p in ("a lighthouse", "a barn") for s in (1, 2) for w in (64, 96)
    }
    sent_before = len(posts(comfy))
    run_cli("run", str(job), "--out", str(out))  # resumed: nothing left to make
    assert len(posts(comfy)) == sent_before and len(rows(out)) == 8


def test_ksampler_advanced_takes_the_seed_as_noise_seed_and_clip_skip_goes_negative(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    flow = copy.deepcopy(WORKFLOW)
    inputs = flow["5"]["inputs"]
    flow["5"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "add_noise": "enable", "noise_seed": 1, "steps": 2, "cfg": 6.0,
            "sampler_name": "euler", "scheduler": "normal", "start_at_step": 0,
            "end_at_step": 10000, "return_with_leftover_noise": "disable",
            **{k: inputs[k] for k in ("model", "positive", "negative", "latent_image")},
        },
    }  # fmt: skip
    flow["8"] = {
        "class_type": "CLIPSetLastLayer",
        "inputs": {"clip": ["1", 1], "stop_at_clip_layer": -1},
    }
    flow["2"]["inputs"]["clip"] = flow["3"]["inputs"]["clip"] = ["8", 0]
    body = (
        "prompts: [a cat]\nseeds: [40]\n"
        "defaults: {n_iter: 2, override_settings: {CLIP_stop_at_last_layers: 2}}\n"
    )
    out = tmp_path / "out"
    run_cli("run", str(write(tmp_path, comfy, body, flow)), "--out", str(out))
    done = rows(out)
    assert [r["status"] for r in done] == ["ok", "ok"]
    assert sorted(r["payload"]["5"]["inputs"]["noise_seed"] for r in done) == [40, 41]
    assert sorted(r["seed"] for r in done) == [40, 41]
    assert {r["payload"]["8"]["inputs"]["stop_at_clip_layer"] for r in done} == {-2}


def test_the_size_is_checked_only_when_the_image_comes_straight_from_the_latent() -> None:
    straight = UserGraph(Workflow("f.json", WORKFLOW), (), ())
    assert straight.asked_size(WORKFLOW) == (64, 64)
    assert straight.asked_size(graph(**{"4": {"width": 100}})) == (96, 64)  # multiples of 8
    # An upscale between the decoder and the SaveImage: the size is the workflow's business.
    scaled = graph(**{"7": {"images": ["9", 0]}})
    scaled["9"] = {"class_type": "ImageScaleBy", "inputs": {"image": ["6", 0], "scale_by": 2}}
    assert UserGraph(Workflow("f.json", scaled), (), ()).asked_size(scaled) is None


# -- preflight ----------------------------------------------------------------------------------


def test_every_problem_of_workflow_and_job_at_once_with_nothing_queued(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    flow = graph(**{"1": {"ckpt_name": "nope.safetensors"}})
    flow["6"]["class_type"] = "VAEDecod"
    flow["5"]["inputs"]["stpes"] = flow["5"]["inputs"].pop("steps")
    body = """prompts: [a cat]
seeds: [1]
defaults:
  restore_faces: true
  Sampler.scheduler: karas
  Canvas.width: 99999
  Sampler.denoise: "high"
grid:
  Sampler.cfg: [3, 400]
"""
    job = write(tmp_path, comfy, body, flow)
    result = run_cli("run", str(job), "--out", str(tmp_path / "out"), expect=2)
    assert "Traceback" not in result.err
    wanted = [
        (3, r"flow\.json node 6 \(VAEDecod .*no node class 'VAEDecod' \(did you mean 'VAEDecode'"),
        (3, r"node 5 .*KSampler has no input 'stpes' \(did you mean 'steps'\?\); ComfyUI would"),
        (3, r"node 5 .*required input 'steps' is missing"),
        (3, r"node 1 .*'nope\.safetensors' is not in the server's list"),
        (7, r"restore_faces: ComfyUI \(the workflow\) has no place for it and would ignore it"),
        (8, r"'karas' is not in the server's list \(did you mean 'karras'\?\) for KSampler"),
        (9, r"99999 is outside 16\.\.16384 for EmptyLatentImage\.width"),
        (10, r"'high' is not a FLOAT for KSampler\.denoise"),
        (12, r"400 is outside 0\.0\.\.100\.0 for KSampler\.cfg"),
    ]
    lines = result.err.splitlines()
    for line, pattern in wanted:
        assert any(t.startswith(f"{job}:{line}:") and re.search(pattern, t) for t in lines), (
            pattern,
            result.err,
        )
    assert posts(comfy) == []
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"7": None}, r"needs exactly one SaveImage node.*\(found: none\)"),
        ({"8": "second save"}, r"needs exactly one SaveImage node.*found: 7 .*, 8 "),
    ],
)
def test_the_images_come_from_exactly_one_save_image_node(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli, change: dict[str, Any], message: str
) -> None:
    flow = copy.deepcopy(WORKFLOW)
    if change.get("7", 1) is None:
        del flow["7"]
    if "8" in change:
        flow["8"] = copy.deepcopy(WORKFLOW["7"])
    job = write(tmp_path, comfy, "prompts: [a cat]\nseeds: [1]\n", flow)
    result = run_cli("run", str(job), "--out", str(tmp_path / "out"), expect=2)
    assert re.search(message, result.err), result.err
    assert posts(comfy) == []


def test_the_save_prefix_is_sdbatchs_and_a_job_may_not_set_it(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    body = "prompts: [a cat]\nseeds: [1]\ndefaults: {Save.filename_prefix: mine}\n"
    result = run_cli(
        "run", str(write(tmp_path, comfy, body, WORKFLOW)), "--out", str(tmp_path / "o"), expect=2
    )
    assert ":6:" in result.err and "sdbatch names the files ComfyUI saves" in result.err
    assert posts(comfy) == []


# -- fields ComfyUI would ignore, on the built-in graph too --------------------------------------


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        ("tiling: true", "tiling: ComfyUI (the built-in graph) has no place for it"),
        ("denoising_strength: 0.5", "denoising_strength: ComfyUI (the built-in graph) has no"),
        ("override_settings: {eta_noise_seed_delta: 31337}", "eta_noise_seed_delta: ComfyUI"),
    ],
)
def test_the_built_in_graph_refuses_fields_it_would_drop(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli, defaults: str, message: str
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        f'name: t\nserver: {{url: "{comfy.url}", type: comfyui}}\n'
        f"prompts: [a cat]\nseeds: [1]\ndefaults: {{steps: 1, width: 64, height: 64, {defaults}}}\n"
    )
    result = run_cli("run", str(job), "--out", str(tmp_path / "o"), expect=2)
    assert f"{job}:5:" in result.err and message in result.err, result.err
    assert posts(comfy) == []


def test_a1111_extra_network_tags_are_refused_at_their_prompt(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        f'name: t\nserver: {{url: "{comfy.url}", type: comfyui}}\n'
        "vars: {w: [0.5, 0.8]}\n"
        'prompts: ["a cat", "a dog <lora:add_detail:{w}>"]\nseeds: [1]\n'
        "defaults: {steps: 1, width: 64, height: 64}\n"
    )
    result = run_cli("run", str(job), "--out", str(tmp_path / "o"), expect=2)
    refused = [line for line in result.err.splitlines() if "does not read <lora:" in line]
    assert len(refused) == 1 and refused[0].startswith(f"{job}:4:"), result.err
    assert posts(comfy) == []


def test_a_two_pass_workflow_runs_with_the_seed_bound_to_both_samplers(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    flow = copy.deepcopy(WORKFLOW)
    flow["8"] = copy.deepcopy(flow["5"])
    flow["8"]["_meta"] = {"title": "Second pass"}
    flow["8"]["inputs"].update(latent_image=["5", 0], denoise=0.5, steps=1)
    flow["6"]["inputs"]["samples"] = ["8", 0]
    body = """prompts: [a cat]
seeds: [30]
bind: {seed: [Sampler.seed, Second pass.seed], denoise: Second pass.denoise}
defaults: {steps: 2, denoising_strength: 0.3}
grid: {Second pass.cfg: [4, 5]}
"""
    out = tmp_path / "out"
    run_cli("run", str(write(tmp_path, comfy, body, flow)), "--out", str(out))
    done = rows(out)
    assert [r["status"] for r in done] == ["ok", "ok"]
    for row in done:
        first, second = row["payload"]["5"]["inputs"], row["payload"]["8"]["inputs"]
        assert first["seed"] == second["seed"] == row["seed"] == 30
        assert (first["steps"], second["steps"]) == (2, 1)  # steps: the first sampler's
        assert (first["denoise"], second["denoise"]) == (1.0, 0.3)
        assert first["cfg"] == 6.0 and second["cfg"] in (4, 5)
        assert row["payload"]["2"]["inputs"]["text"] == "a cat"
    assert sorted(r["payload"]["8"]["inputs"]["cfg"] for r in done) == [4, 5]


def test_sheets_and_gallery_read_the_plans_fields_not_the_graphs_node_ids(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    body = """prompts: ["a lighthouse", "a barn"]
seeds: [7]
grid: {"Sampler.steps": [1, 2], "Canvas.width": [64, 96]}
sheet: {x: Sampler.steps, y: Canvas.width}
"""
    out = tmp_path / "out"
    run_cli("run", str(write(tmp_path, comfy, body, WORKFLOW)), "--out", str(out))
    done = rows(out)
    assert all(r["planned"]["prompt"] == r["payload"]["2"]["inputs"]["text"] for r in done)
    # One sheet per prompt (the prompt varies, and is no axis), named by it.
    sheets = sorted(p.name for p in (out / "sheets").rglob("*.png"))
    assert sheets == ["sheet-all-a_barn.png", "sheet-all-a_lighthouse.png"], sheets
    with Image.open(next((out / "sheets").rglob("sheet-all-a_barn.png"))) as sheet:
        assert sheet.width > 2 * 96  # two columns of pictures, not one per node dict
    page = (out / "index.html").read_text()
    assert "class_type" not in page and "<dt>prompt</dt>" in page
