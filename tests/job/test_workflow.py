"""ComfyUI workflows in job files: reading, addressing NODE.input, standard bindings, planning.

The recorded workflow (tests/data/comfyui/workflow-api.json) is the API-format graph the real
ComfyUI 0.3.64 ran in ../shared/real-webui: KSampler 3, checkpoint loader 4, latent 5, prompts
6 ("Positive") and 7 ("Negative"), decoder 8, SaveImage 9.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import RunCli

from sdbatch.errors import JobValidationError
from sdbatch.job.loader import Job, load_job
from sdbatch.job.workflow import AddressError, resolve_address, standard_bindings
from sdbatch.plan.expand import build_plan

REAL = Path(__file__).resolve().parents[1] / "data" / "comfyui" / "workflow-api.json"


def real_graph() -> dict[str, Any]:
    graph: dict[str, Any] = json.loads(REAL.read_text())
    return graph


def write(tmp_path: Path, job: str, graph: Any = None, name: str = "wf.json") -> Path:
    """A job file (and its workflow, unless `graph` is None) in tmp_path."""
    if graph is not None:
        text = graph if isinstance(graph, str) else json.dumps(graph, indent=1)
        (tmp_path / name).write_text(text)
    path = tmp_path / "job.yaml"
    path.write_text(job)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(JobValidationError) as info:
        load_job(path)
    return [str(p) for p in info.value.problems]


def one_problem(path: Path, pattern: str) -> str:
    """The single problem of `path`, which must match `pattern` (a regex)."""
    found = problems(path)
    assert len(found) == 1, found
    assert re.search(pattern, found[0]), found[0]
    return found[0]


# -- reading the workflow file ---------------------------------------------------------------


def test_job_holds_the_workflow_as_written(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, "workflow: wf.json\nprompts: [a cat]\n", real_graph()))
    assert job.workflow is not None
    assert job.workflow.graph == real_graph()
    assert job.workflow.file == str(tmp_path / "wf.json")
    assert job.server.type is None  # no type: detected when the run starts


def test_ui_format_is_refused_with_how_to_export(tmp_path: Path) -> None:
    ui = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": [], "version": 0.4}
    path = write(tmp_path, "workflow: wf.json\nprompts: [a cat]\n", ui)
    message = one_problem(path, "UI format")
    assert message.startswith(f"{tmp_path / 'wf.json'}:1:1:")
    assert "Export (API)" in message and "Save (API Format)" in message


def test_invalid_json_names_line_and_column_of_the_workflow(tmp_path: Path) -> None:
    text = '{\n "3": {\n  "class_type": "KSampler",\n  "inputs": {,}\n }\n}\n'
    path = write(tmp_path, "workflow: wf.json\nprompts: [a cat]\n", text)
    one_problem(path, r"wf\.json:4:14: \$: invalid JSON: Expecting property name")


@pytest.mark.parametrize(
    ("change", "where", "pattern"),
    [
        (lambda g: g["5"].pop("class_type"), r":\d+:\d+: \$\.5: ", "node '5' has no class_type"),
        (lambda g: g["6"].pop("inputs"), r":\d+:\d+: \$\.6: ", "node '6' has no inputs"),
        (
            lambda g: g["8"]["inputs"].update(samples=["99", 0]),
            r":\d+:\d+: \$\.8\.inputs\.samples: ",
            "links to node '99', which the workflow does not have",
        ),
        (
            lambda g: g["8"]["inputs"].update(samples=["3", "x"]),
            r":\d+:\d+: \$\.8\.inputs\.samples: ",
            "'x' is no output index",
        ),
    ],
    ids=["no-class-type", "no-inputs", "dangling-link", "bad-slot"],
)
def test_api_format_shape_is_checked(tmp_path: Path, change: Any, where: str, pattern: str) -> None:
    graph = real_graph()
    change(graph)
    path = write(tmp_path, "workflow: wf.json\nprompts: [a cat]\n", graph)
    message = one_problem(path, pattern)
    assert re.match(re.escape(str(tmp_path / "wf.json")) + where, message), message
    line = int(message.split(":")[1])
    assert line > 1  # the node's own line, found in the file


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[]", "a JSON list: an API-format workflow is an object of nodes"),
        ("{}", "an empty object"),
        ('{"3": {"class_type": "KSampler", "inputs": {"cfg": NaN}}}', "NaN is not a number"),
    ],
)
def test_not_a_graph(tmp_path: Path, text: str, pattern: str) -> None:
    one_problem(write(tmp_path, "workflow: wf.json\nprompts: [a cat]\n", text), pattern)


def test_workflow_file_is_bounded_and_regular(tmp_path: Path) -> None:
    job = "workflow: wf.json\nlimits: {max_workflow_bytes: 100}\nprompts: [a cat]\n"
    message = one_problem(write(tmp_path, job, real_graph()), "over the limit of 100 bytes")
    assert message.startswith(f"{tmp_path / 'job.yaml'}:1:11:")
    assert "limits.max_workflow_bytes" in message
    (tmp_path / "dir.json").mkdir()
    one_problem(write(tmp_path, "workflow: dir.json\nprompts: [a]\n"), "not a regular file")
    os.mkfifo(tmp_path / "fifo.json")  # never opened for reading: it would block
    one_problem(
        write(tmp_path, "workflow: fifo.json\nprompts: [a]\n"), r"not a regular file \(a FIFO"
    )
    one_problem(write(tmp_path, "workflow: gone.json\nprompts: [a]\n"), "no such file: .*gone.json")


# -- addresses ------------------------------------------------------------------------------


def test_addresses_by_title_and_id() -> None:
    graph = real_graph()
    assert resolve_address(graph, "KSampler.steps") == ("3", "steps")
    assert resolve_address(graph, "3.steps") == ("3", "steps")
    assert resolve_address(graph, "Empty Latent Image.width") == ("5", "width")
    assert resolve_address(graph, "Negative.text") == ("7", "text")


def test_a_title_with_dots_takes_the_longest_prefix() -> None:
    graph = real_graph()
    graph["20"] = {
        "class_type": "LatentUpscaleBy",
        "_meta": {"title": "Upscale 1"},
        "inputs": {"scale_by": 1.0, "samples": ["3", 0]},
    }
    graph["21"] = {
        "class_type": "LatentUpscaleBy",
        "_meta": {"title": "Upscale 1.5x"},
        "inputs": {"scale_by": 1.5, "samples": ["3", 0]},
    }
    assert resolve_address(graph, "Upscale 1.5x.scale_by") == ("21", "scale_by")
    assert resolve_address(graph, "Upscale 1.scale_by") == ("20", "scale_by")


def test_address_errors_name_the_candidates() -> None:
    graph = real_graph()
    with pytest.raises(
        AddressError,
        match=r"'stepz' is no input of node 3 \(KSampler\) "
        r"\(did you mean 'steps'\?\); its inputs: seed, steps, cfg",
    ):
        resolve_address(graph, "KSampler.stepz")
    with pytest.raises(AddressError, match=r"no node titled or numbered 'KSamplr'.*did you mean"):
        resolve_address(graph, "KSamplr.steps")
    with pytest.raises(AddressError, match=r"'model' is a link from node 4"):
        resolve_address(graph, "KSampler.model")
    with pytest.raises(AddressError, match="not an address"):
        resolve_address(graph, "steps")
    graph["12"] = copy.deepcopy(graph["3"])
    with pytest.raises(AddressError, match=r"'KSampler' names 2 nodes: 3 \(KSampler\), 12 "):
        resolve_address(graph, "KSampler.steps")
    assert resolve_address(graph, "12.steps") == ("12", "steps")  # an id always works


def test_address_problems_are_at_the_job_key(tmp_path: Path) -> None:
    graph = real_graph()
    graph["12"] = copy.deepcopy(graph["3"])
    job = (
        "workflow: wf.json\nprompts: [a cat]\n"
        "defaults:\n  Load Checkpoint.ckpt_nam: x.safetensors\n"
        "grid:\n  KSampler.cfg: [5, 7]\n"
    )
    found = problems(write(tmp_path, job, graph))
    file = tmp_path / "job.yaml"
    assert any(
        p.startswith(f"{file}:4:3: $.defaults.Load Checkpoint.ckpt_nam: ")
        and "did you mean 'ckpt_name'" in p
        for p in found
    ), found
    assert any(
        p.startswith(f"{file}:6:3: $.grid.KSampler.cfg: ") and "3 (KSampler), 12" in p
        for p in found
    )


def test_an_address_needs_a_workflow(tmp_path: Path) -> None:
    path = write(tmp_path, "prompts: [a cat]\ngrid:\n  KSampler.steps: [20, 30]\n")
    message = one_problem(path, r"needs `workflow:`")
    assert message.startswith(f"{path}:3:3: $.grid.KSampler.steps: ")


def test_two_keys_for_one_input_are_refused(tmp_path: Path) -> None:
    job = "workflow: wf.json\nprompts: [a cat]\ndefaults: {steps: 4}\ngrid: {3.steps: [2, 3]}\n"
    one_problem(write(tmp_path, job, real_graph()), r"4:8: .*3\.steps is the same input as steps")
    job = "workflow: wf.json\nprompts: [a cat]\ndefaults: {Positive.text: a dog}\n"
    one_problem(write(tmp_path, job, real_graph()), "the prompts of prompts: go there")


def test_workflow_and_a1111_server_disagree(tmp_path: Path) -> None:
    job = "workflow: wf.json\nserver: {type: a1111}\nprompts: [a cat]\n"
    one_problem(write(tmp_path, job, real_graph()), r"2:16: \$\.server\.type: .*use comfyui")


def test_an_address_cannot_be_a_filename_field(tmp_path: Path) -> None:
    job = (
        "workflow: wf.json\nprompts: [a cat]\ngrid: {KSampler.steps: [2, 3]}\n"
        'output: {filename: "{KSampler.steps}-{index}"}\n'
    )
    one_problem(write(tmp_path, job, real_graph()), "str.format reads the dot as attribute")


# -- standard bindings ----------------------------------------------------------------------


def test_standard_bindings_of_the_real_workflow() -> None:
    wanted = [
        "prompt",
        "negative_prompt",
        "seed",
        "steps",
        "cfg_scale",
        "sampler_name",
        "scheduler",
        "width",
        "height",
        "batch_size",
        "checkpoint",
        "denoise",
        "n_iter",
    ]
    assert standard_bindings(real_graph(), wanted) == {
        "prompt": ("6", "text"),
        "negative_prompt": ("7", "text"),
        "seed": ("3", "seed"),
        "steps": ("3", "steps"),
        "cfg_scale": ("3", "cfg"),
        "sampler_name": ("3", "sampler_name"),
        "scheduler": ("3", "scheduler"),
        "width": ("5", "width"),
        "height": ("5", "height"),
        "batch_size": ("5", "batch_size"),
        "checkpoint": ("4", "ckpt_name"),
        "denoise": ("3", "denoise"),
    }
    with pytest.raises(AddressError, match="clip_skip: the workflow has no CLIPSetLastLayer"):
        standard_bindings(real_graph(), ["clip_skip"])


def test_bindings_follow_links_through_other_nodes() -> None:
    graph = real_graph()
    graph["3"]["class_type"] = "KSamplerAdvanced"
    graph["3"]["inputs"]["noise_seed"] = graph["3"]["inputs"].pop("seed")
    graph["30"] = {
        "class_type": "ControlNetApply",
        "inputs": {"conditioning": ["6", 0], "control_net": ["31", 0], "strength": 1},
    }
    graph["31"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "c.pth"}}
    graph["3"]["inputs"]["positive"] = ["30", 0]
    found = standard_bindings(graph, ["seed", "prompt"])
    assert found == {"seed": ("3", "noise_seed"), "prompt": ("6", "text")}


def test_a_binding_is_ambiguous_only_when_the_job_sets_the_field() -> None:
    graph = real_graph()
    graph["40"] = copy.deepcopy(graph["4"])
    assert standard_bindings(graph, ["steps"]) == {"steps": ("3", "steps")}
    with pytest.raises(AddressError, match=r"checkpoint: ambiguous: 2 candidates.*4 \(.*40 \("):
        standard_bindings(graph, ["checkpoint"])


def test_ambiguous_standard_field_is_an_error_where_the_job_sets_it(tmp_path: Path) -> None:
    graph = real_graph()
    graph["40"] = copy.deepcopy(graph["4"])
    job = "workflow: wf.json\nprompts: [a cat]\ngrid:\n  checkpoint: [a.safetensors]\n"
    message = one_problem(write(tmp_path, job, graph), "checkpoint: ambiguous")
    assert message.startswith(f"{tmp_path / 'job.yaml'}:4:3: $.grid.checkpoint: ")
    assert "set the input you mean as NODE.input" in message
    two = real_graph()
    two["12"] = copy.deepcopy(two["3"])
    found = problems(write(tmp_path, "workflow: wf.json\nprompts: [a cat]\n", two))
    assert any(
        p.startswith(f"{tmp_path / 'job.yaml'}:1:11: $.workflow: seed: ambiguous") for p in found
    ), found


# -- planning -------------------------------------------------------------------------------


GRID_JOB = """\
workflow: wf.json
prompts: [a cat]
seeds: [7]
grid:
  KSampler.steps: [20, 30]
zip:
  Negative.text: [blurry, dark]
  KSampler.cfg: [5.0, 6.0]
exclude:
  - {KSampler.steps: 30, KSampler.cfg: 6.0}
sheet: {x: KSampler.steps, y: KSampler.cfg}
"""


def plan_payloads(job: Job) -> list[dict[str, Any]]:
    return [dict(p.payload) for p in build_plan(job)]


def test_grid_over_workflow_inputs_plans_those_keys(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, GRID_JOB, real_graph()))
    payloads = plan_payloads(job)
    cells = [(p["KSampler.steps"], p["Negative.text"], p["KSampler.cfg"]) for p in payloads]
    assert cells == [(20, "blurry", 5.0), (20, "dark", 6.0), (30, "blurry", 5.0)]
    assert {p["prompt"] for p in payloads} == {"a cat"} and {p["seed"] for p in payloads} == {7}
    # The workflow's latent makes 2 images a prompt; the plan counts them.
    assert {p["batch_size"] for p in payloads} == {2}
    assert build_plan(job).image_count == 6


def test_an_edited_workflow_changes_payload_ids(tmp_path: Path) -> None:
    first = build_plan(load_job(write(tmp_path, GRID_JOB, real_graph())))
    again = build_plan(load_job(write(tmp_path, GRID_JOB, real_graph())))
    assert [p.id for p in first] == [p.id for p in again]
    assert first.fingerprint == again.fingerprint
    edited = real_graph()
    edited["8"]["_meta"]["title"] = "Decode"  # same payloads, another graph
    changed = build_plan(load_job(write(tmp_path, GRID_JOB, edited)))
    assert [p.payload for p in changed] == [p.payload for p in first]
    assert not {p.id for p in changed} & {p.id for p in first}
    assert changed.fingerprint != first.fingerprint


# -- the command line -----------------------------------------------------------------------


def test_validate_and_plan_on_the_command_line(tmp_path: Path, run_cli: RunCli) -> None:
    path = write(tmp_path, GRID_JOB, real_graph())
    assert run_cli("validate", str(path)).err.strip().endswith("ok")
    lines = run_cli("plan", "--json", str(path)).out.splitlines()
    assert [json.loads(line)["KSampler.steps"] for line in lines] == [20, 20, 30]
    bad = write(tmp_path, GRID_JOB.replace("KSampler.steps: [", "KSampler.stepz: ["), real_graph())
    result = run_cli("validate", str(bad), expect=2)
    assert f"{bad}:5:3: $.grid.KSampler.stepz: " in result.err
    assert "Traceback" not in result.err + result.out


# -- bind: where the obvious node is not one -----------------------------------------------------


def two_samplers() -> dict[str, Any]:
    """The recorded workflow with a second pass: node 12 samples node 3's latent again."""
    graph = real_graph()
    graph["3"]["_meta"] = {"title": "Base"}
    graph["12"] = copy.deepcopy(graph["3"])
    graph["12"]["_meta"] = {"title": "Refiner"}
    graph["12"]["inputs"]["latent_image"] = ["3", 0]
    return graph


def test_bind_names_the_nodes_of_a_field_and_the_sampler_the_others_follow(
    tmp_path: Path,
) -> None:
    job = (
        "workflow: wf.json\nprompts: [a cat]\n"
        "bind: {seed: [Base.seed, Refiner.seed], denoise: Refiner.denoise}\n"
        "defaults: {steps: 3, denoising_strength: 0.4}\n"
    )
    loaded = load_job(write(tmp_path, job, two_samplers()))
    assert loaded.workflow is not None
    flow = loaded.workflow
    assert flow.bind == {"seed": ("Base.seed", "Refiner.seed"), "denoise": ("Refiner.denoise",)}
    assert flow.targets("seed") == [("3", "seed"), ("12", "seed")]
    assert flow.targets("steps") == [("3", "steps")]  # the first seed address's sampler
    assert flow.targets("prompt") == [("6", "text")]  # fed to that sampler
    assert flow.targets("denoise") == [("12", "denoise")]
    # The bindings are part of what is sent: other bindings, other payload ids.
    other = load_job(
        write(tmp_path, job.replace("Refiner.denoise", "Base.denoise"), two_samplers())
    )
    assert other.workflow is not None and other.workflow.digest != flow.digest


def test_two_samplers_without_bind_say_how_to_bind(tmp_path: Path) -> None:
    found = problems(write(tmp_path, "workflow: wf.json\nprompts: [a cat]\n", two_samplers()))
    seed = next(p for p in found if "seed: ambiguous" in p)
    assert "bind: {seed: NODE.input}" in seed and '3 (KSampler "Base")' in seed


def test_bind_problems_are_at_their_lines(tmp_path: Path) -> None:
    job = "workflow: wf.json\nprompts: [a cat]\nbind:\n  seed: [Base.seed, Refinr.seed]\n"
    message = one_problem(write(tmp_path, job, two_samplers()), "no node titled or numbered")
    assert message.startswith(f"{tmp_path / 'job.yaml'}:4:21: $.bind.seed[1]: ")
    assert "did you mean 'Refiner'" in message
    job = "prompts: [a cat]\nbind: {seed: KSampler.seed}\n"
    one_problem(write(tmp_path, job), r"bind: places standard fields .*needs `workflow:`")
    job = "workflow: wf.json\nprompts: [a cat]\nbind: {sed: KSampler.seed}\n"
    one_problem(write(tmp_path, job, real_graph()), r"\$\.bind")
