"""img2img over a folder of pictures, end to end through the CLI against the stand-in over real
HTTP: what is sent, what each row records, what a rerun does after a picture changes, and
that a broken input stops the run before any generation request."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunCli
from conftest import manifest_rows as rows
from PIL import Image

from sdbatch.standin.a1111 import MockWebui

GENERATE = ("/sdapi/v1/txt2img", "/sdapi/v1/img2img")


def make_pictures(folder: Path, count: int, size: tuple[int, int] = (64, 64)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"pic{i}.png"
        Image.new("RGB", size, (40 * i, 90, 200 - 20 * i)).save(path)
        paths.append(path)
    return paths


def generations(server: MockWebui, since: int = 0) -> list[dict[str, Any]]:
    return [r.body for r in server.requests[since:] if r.path in GENERATE and r.method == "POST"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


FOLDER_JOB = """\
name: restyle
inputs: {dir: pics}
defaults: {steps: 2, cfg_scale: 7}
prompts: ["a watercolor of {input}"]
grid: {denoising_strength: [0.3, 0.6]}
seeds: [5]
output: {filename: "{input}-{denoising_strength}"}
sheet: {x: input, y: denoising_strength}
"""


@pytest.fixture
def folder_job(tmp_path: Path) -> Iterator[tuple[Path, list[Path]]]:
    pictures = make_pictures(tmp_path / "pics", 6)
    job = tmp_path / "restyle.yaml"
    job.write_text(FOLDER_JOB, encoding="utf-8")
    yield job, pictures


def test_a_folder_runs_through_img2img_and_a_changed_picture_reruns_alone(
    run_cli: RunCli, tmp_path: Path, webui: MockWebui, folder_job: tuple[Path, list[Path]]
) -> None:
    job, pictures = folder_job
    out = tmp_path / "out"
    args = ("run", str(job), "--server", webui.url, "--out", str(out))
    run_cli(*args)
    sent = generations(webui)
    assert [r.path for r in webui.requests if r.path in GENERATE] == ["/sdapi/v1/img2img"] * 12
    # Plain base64 of the file's own bytes, the size from the picture, the stem in the prompt.
    first = sent[0]
    assert base64.b64decode(first["init_images"][0]) in {p.read_bytes() for p in pictures}
    assert (first["width"], first["height"]) == (64, 64)
    assert first["override_settings"]["return_mask"] is False
    found = rows(out)
    assert len(found) == 12 and {r["status"] for r in found} == {"ok"}
    for row in found:
        (recorded,) = row["payload"]["init_images"]
        picture = tmp_path / recorded["file"]
        assert recorded["sha256"] == sha256(picture)
        assert row["payload"]["prompt"] == f"a watercolor of {picture.stem}"
        assert row["file"] == f"{picture.stem}-{row['payload']['denoising_strength']}.png"
        assert row["parameters"]["Denoising strength"] == str(row["payload"]["denoising_strength"])
    pairs = sorted((r["vars"]["input"], r["payload"]["denoising_strength"]) for r in found)
    assert pairs == [(f"pic{i}", d) for i in range(6) for d in (0.3, 0.6)]

    before = len(webui.requests)
    result = run_cli(*args)
    assert generations(webui, before) == []
    assert "12 done, 0 to do" in result.err

    Image.new("RGB", (64, 64), (1, 2, 3)).save(pictures[3])
    before = len(webui.requests)
    run_cli(*args)
    again = generations(webui, before)
    assert len(again) == 2
    assert {base64.b64decode(r["init_images"][0]) for r in again} == {pictures[3].read_bytes()}
    new = rows(out)[12:]
    assert len(new) == 2
    assert {r["payload"]["init_images"][0]["sha256"] for r in new} == {sha256(pictures[3])}
    assert sorted(r["payload"]["denoising_strength"] for r in new) == [0.3, 0.6]
    # One sheet, pictures along x: the changed picture's two versions are one column.
    assert [p.name for p in (out / "sheets" / "input-x-denoising_strength").iterdir()] == [
        "sheet-all.png"
    ]


def test_plan_order_is_files_then_the_folder_sorted_and_sizes_follow_the_picture(
    run_cli: RunCli, tmp_path: Path
) -> None:
    make_pictures(tmp_path / "pics", 3)
    Image.new("RGB", (100, 60)).save(tmp_path / "pics" / "wide.PNG")  # case-blind glob
    Image.new("RGB", (30, 30)).save(tmp_path / "lead.png")
    (tmp_path / "job.yaml").write_text(
        "inputs: {files: [lead.png, pics/pic2.png], dir: pics}\n"
        "prompts: [a cat]\ndefaults: {steps: 2}\nseeds: [1]\n",
        encoding="utf-8",
    )
    lines = run_cli("plan", str(tmp_path / "job.yaml"), "--json").out.splitlines()
    payloads = [json.loads(line) for line in lines]
    names = [p["init_images"][0]["file"] for p in payloads]
    assert names == ["lead.png", "pics/pic2.png", "pics/pic0.png", "pics/pic1.png", "pics/wide.PNG"]
    sizes = [(p["width"], p["height"]) for p in payloads]
    assert sizes[0] == (32, 32) and sizes[-1] == (104, 64)  # nearest multiples of 8


def test_one_given_size_keeps_the_pictures_aspect(run_cli: RunCli, tmp_path: Path) -> None:
    Image.new("RGB", (300, 200)).save(tmp_path / "a.png")
    (tmp_path / "job.yaml").write_text(
        "inputs: {files: [a.png]}\nprompts: [a cat]\ndefaults: {steps: 2, width: 96}\n",
        encoding="utf-8",
    )
    (payload,) = [
        json.loads(x)
        for x in run_cli("plan", str(tmp_path / "job.yaml"), "--json").out.splitlines()
    ]
    assert (payload["width"], payload["height"]) == (96, 64)


def test_a_mask_for_every_picture_is_sent_and_recorded(
    run_cli: RunCli, tmp_path: Path, webui: MockWebui
) -> None:
    make_pictures(tmp_path / "pics", 2)
    mask = tmp_path / "mask.png"
    Image.new("L", (64, 64), 255).save(mask)
    (tmp_path / "job.yaml").write_text(
        "inputs: {dir: pics, mask: mask.png}\nprompts: [a red door]\n"
        "defaults: {steps: 2, denoising_strength: 0.5, inpainting_fill: 1}\nseeds: [3]\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    run_cli("run", str(tmp_path / "job.yaml"), "--server", webui.url, "--out", str(out))
    assert [base64.b64decode(r["mask"]) for r in generations(webui)] == [mask.read_bytes()] * 2
    found = rows(out)
    assert {r["status"] for r in found} == {"ok"}
    assert [r["payload"]["mask"] for r in found] == [
        {"file": "mask.png", "sha256": sha256(mask)}
    ] * 2


NETWORKS_JOB = """\
name: nets
inputs: {dir: pics}
defaults: {steps: 2, denoising_strength: 0.4, negative_prompt: "EasyNegatve"}
prompts:
  - "a cat <lora:add_detail:0.8>"
  - {prompt: "a dog", styles: [cinematic]}
seeds: [1]
"""


def test_loras_styles_and_embeddings_are_checked_for_img2img_too(
    run_cli: RunCli, tmp_path: Path, webui: MockWebui
) -> None:
    make_pictures(tmp_path / "pics", 2)
    job = tmp_path / "job.yaml"
    job.write_text(NETWORKS_JOB, encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("run", str(job), "--server", webui.url, "--out", str(out))
    found = rows(out)
    assert len(found) == 4 and {r["status"] for r in found} == {"ok"}
    cat = next(r for r in found if r["payload"]["prompt"].startswith("a cat"))
    assert "Lora hashes" in cat["parameters"]
    assert "'EasyNegatve' is no embedding on" in result.err  # a word may be no embedding

    bad = NETWORKS_JOB.replace("add_detail", "add_detial").replace("[cinematic]", "[cinematik]")
    job.write_text(bad, encoding="utf-8")
    before = len(webui.requests)
    result = run_cli("run", str(job), "--server", webui.url, "--out", str(out), expect=2)
    assert f"{job}:5:5: $.prompts[0]: unknown LoRA 'add_detial'" in result.err
    assert "did you mean 'add_detail'?" in result.err
    assert "'cinematik'" in result.err and "did you mean 'cinematic'?" in result.err
    assert generations(webui, before) == []


def _truncated(path: Path) -> None:
    Image.new("RGB", (64, 64), (9, 9, 9)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_an_image(path: Path) -> None:
    path.write_text("just some text, named like a picture\n", encoding="utf-8")


def _huge(path: Path) -> None:
    # Noise: a flat picture would compress to less than the byte limit below.
    Image.frombytes("RGB", (200, 200), random.Random(1).randbytes(200 * 200 * 3)).save(path)


@pytest.mark.parametrize(
    ("spoil", "limits", "expected"),
    [
        (_truncated, "", "pics/pic1.png: a broken picture"),
        (_not_an_image, "", "pics/pic1.png: not a picture sdbatch can read"),
        (_huge, ", max_pixels: 10000", "pics/pic1.png: 200x200 pixels, over the limit of 10,000"),
        (_huge, ", max_bytes: 5000", "over the limit of 5,000 (inputs.max_bytes)"),
    ],
    ids=["truncated", "not-an-image", "too-many-pixels", "too-many-bytes"],
)
def test_a_bad_picture_stops_the_run_before_anything_is_generated(
    run_cli: RunCli, tmp_path: Path, webui: MockWebui, spoil: Any, limits: str, expected: str
) -> None:
    pictures = make_pictures(tmp_path / "pics", 3, size=(32, 32))
    spoil(pictures[1])
    job = tmp_path / "job.yaml"
    job.write_text(
        f"inputs: {{dir: pics{limits}}}\nprompts: [a cat]\ndefaults: {{steps: 2}}\nseeds: [1]\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = run_cli("run", str(job), "--server", webui.url, "--out", str(out), expect=2)
    assert expected in result.err and "Traceback" not in result.err
    assert generations(webui) == []
    assert not (out / "manifest.jsonl").exists() or rows(out) == []


def test_a_picture_replaced_after_planning_is_a_failed_row_not_a_wrong_one(
    tmp_path: Path, webui: MockWebui
) -> None:
    from sdbatch.backends.a1111.worker import Worker
    from sdbatch.job.loader import load_job
    from sdbatch.plan.expand import build_plan

    (path,) = make_pictures(tmp_path / "pics", 1)
    job = tmp_path / "job.yaml"
    job.write_text("inputs: {dir: pics}\nprompts: [a cat]\ndefaults: {steps: 2}\n", "utf-8")
    plan = build_plan(load_job(job))
    Image.new("RGB", (64, 64), (255, 0, 0)).save(path)  # a new file since the plan read it
    (item,) = list(plan)
    outcome = Worker(load_job(job).server, url=webui.url).submit(item)
    assert outcome.error is not None and "changed since the plan was made" in outcome.error
    assert generations(webui) == []
