"""The ComfyUI backend end to end against the ComfyUI stand-in, over real HTTP and WebSocket:
the cats job, preflight refusals, the cache trap, runtime and validation errors, regeneration.
Tiny sizes and steps only.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import RunCli
from conftest import manifest_rows as rows
from PIL import Image

from sdbatch.backends.comfyui.listener import Listener
from sdbatch.backends.comfyui.worker import POLL, POLL_DEAF
from sdbatch.standin.comfyui import Catalog, MockComfy

CKPT = "tiny_sd15_random.safetensors"


@pytest.fixture
def comfy() -> Iterator[MockComfy]:
    with MockComfy(step_delay=0.001, seed=7) as server:
        yield server


def write_job(tmp_path: Path, comfy: MockComfy, body: str, name: str = "job.yaml") -> Path:
    job = tmp_path / name
    job.write_text(f'name: t\nserver: {{url: "{comfy.url}", type: comfyui}}\n{body}')
    return job


CATS = f"""defaults:
  checkpoint: {CKPT}
  steps: 2
  width: 64
  height: 64
  negative_prompt: "blurry"
  sampler_name: "DPM++ 2M"
  scheduler: "Karras"
  n_iter: 2
  batch_size: 2
prompts: ["a fluffy white cat"]
seeds: [1001, 1003]
"""


def chunk(path: Path) -> Any:
    with Image.open(path) as img:
        return json.loads(img.info["prompt"])


def posts(comfy: MockComfy) -> list[Any]:
    return [r for r in comfy.recorder.requests if r.method == "POST" and r.path == "/prompt"]


# -- the cats job ------------------------------------------------------------------------------


def test_cats_job_runs_every_image_with_the_graph_as_payload(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    out = tmp_path / "out"
    run_cli("run", str(write_job(tmp_path, comfy, CATS)), "--out", str(out))
    done = rows(out)
    assert len(done) == 8 and all(r["status"] == "ok" for r in done)
    version = requests.get(comfy.url + "/system_stats", timeout=5).json()["system"]
    for row in done:
        graph = row["payload"]
        assert chunk(out / row["file"]) == graph  # the file is the graph sent
        assert row["seed"] == graph["3"]["inputs"]["seed"]
        assert (row["sampler_name"], row["scheduler"]) == ("dpmpp_2m", "karras")
        assert row["sd_model_name"] == CKPT
        assert row["server_version"] == version["comfyui_version"]
        assert (row["width"], row["height"]) == (64, 64)
    # n_iter: separate prompts with seeds s, s+1; batch_size on the latent.
    seeds = sorted(r["payload"]["3"]["inputs"]["seed"] for r in done)
    assert seeds == [1001, 1001, 1002, 1002, 1003, 1003, 1004, 1004]
    sent = posts(comfy)
    assert len(sent) == 4
    client_ids = {p.body["client_id"] for p in sent}
    assert len(client_ids) == 1  # one worker, one client_id of sdbatch's own
    (client_id,) = client_ids
    # The socket of that client_id was open before the first prompt was posted.
    first_post = comfy.recorder.requests.index(sent[0])
    opened = [
        i for i, r in enumerate(comfy.recorder.requests) if r.path == "/ws" and client_id in r.query
    ]
    assert opened and opened[0] < first_post


# -- preflight ----------------------------------------------------------------------------------


def test_misspelled_names_are_refused_at_their_lines_with_nothing_queued(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    job = write_job(
        tmp_path,
        comfy,
        """defaults:
  checkpoint: tiny_sd15_randm.safetensors
  sampler_name: "dpmpp_2n"
  scheduler: "karas"
prompts: ["a cat"]
seeds: [1]
""",
    )
    result = run_cli("run", str(job), "--out", str(tmp_path / "out"), expect=2)
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    for line, hint in ((4, CKPT), (5, "dpmpp_2m"), (6, "karras")):
        assert any(f"{job}:{line}:" in t and f"did you mean {hint!r}" in t for t in lines), hint
    assert posts(comfy) == []


# -- the cache trap -----------------------------------------------------------------------------


def test_rerun_after_outputs_deleted_yields_every_image(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    # One prompt: the rerun's graph is the one ComfyUI ran last, which it replays from its
    # cache with the old file names (C12) unless the graph differs.
    job = write_job(tmp_path, comfy, CATS.replace("n_iter: 2", "n_iter: 1").replace(", 1003", ""))
    out = tmp_path / "out"
    run_cli("run", str(job), "--out", str(out))
    first = {r["id"]: r for r in rows(out)}
    shutil.copytree(out, tmp_path / "before")
    for deleted in ("sdbatch", "sdbatch and server"):
        shutil.rmtree(out)
        if "server" in deleted:
            shutil.rmtree(comfy.output_dir)
            comfy.output_dir.mkdir()
        run_cli("run", str(job), "--out", str(out))
        again = rows(out)
        assert len(again) == 2 and all(r["status"] == "ok" for r in again), deleted
        for row in again:
            assert chunk(out / row["file"]) == row["payload"]
            # The same image as before: the prompt chunk differs only in filename_prefix.
            with (
                Image.open(out / row["file"]) as a,
                Image.open(out / first[row["id"]]["file"]) as b,
            ):
                assert a.tobytes() == b.tobytes()


def test_a_rows_graph_posted_again_regenerates_its_image_byte_identically(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    out = tmp_path / "out"
    run_cli("run", str(write_job(tmp_path, comfy, CATS)), "--out", str(out))
    row = rows(out)[0]
    requests.post(comfy.url + "/free", json={"free_memory": True}, timeout=5)  # no cache replay
    answer = requests.post(comfy.url + "/prompt", json={"prompt": row["payload"]}, timeout=5)
    prompt_id = answer.json()["prompt_id"]
    for _ in range(200):
        entry = requests.get(f"{comfy.url}/history/{prompt_id}", timeout=5).json()
        if entry:
            break
        time.sleep(0.05)  # bounded: 200 polls
    images = entry[prompt_id]["outputs"]["9"]["images"]
    wanted = row["image_index"]
    data = requests.get(comfy.url + "/view", params=images[wanted], timeout=5).content
    assert data == (out / row["file"]).read_bytes()


# -- errors ---------------------------------------------------------------------------------------


def test_broken_checkpoint_is_a_failed_row_with_comfyuis_message(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    job = write_job(
        tmp_path,
        comfy,
        f"""defaults: {{steps: 1, width: 64, height: 64}}
grid: {{checkpoint: [{CKPT}, zz_broken.safetensors]}}
prompts: ["a cat"]
seeds: [1]
""",
    )
    out = tmp_path / "out"
    result = run_cli("run", str(job), "--out", str(out), expect=1)
    assert "Traceback" not in result.err
    by_status = {r["status"]: r for r in rows(out)}
    assert set(by_status) == {"ok", "failed"}
    failed = by_status["failed"]
    history = requests.get(comfy.url + "/history", timeout=5).json()
    errors = [
        m[1]
        for entry in history.values()
        for m in entry["status"]["messages"]
        if m[0] == "execution_error"
    ]
    assert len(errors) == 1
    assert errors[0]["exception_message"].strip()[:100] in failed["error"]
    assert errors[0]["node_type"] in failed["error"]


def test_a_400_with_node_errors_is_a_failed_row_naming_the_input(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    job = write_job(
        tmp_path,
        comfy,
        f"""defaults: {{checkpoint: {CKPT}, steps: 1, width: 64, height: 64}}
grid: {{sampler_name: [euler, eulr]}}
prompts: ["a cat"]
seeds: [1]
""",
    )
    out = tmp_path / "out"
    run_cli("run", str(job), "--out", str(out), "--no-preflight", expect=1)
    failed = [r for r in rows(out) if r["status"] == "failed"]
    assert len(failed) == 1
    rejected = [p for p in comfy.recorder.requests if p.path == "/prompt" and p.status == 400]
    assert len(rejected) == 1
    assert "node 3 (KSampler).sampler_name" in failed[0]["error"]
    assert "Value not in list" in failed[0]["error"] and "'eulr'" in failed[0]["error"]


class _NoSaveImage(Catalog):
    """A server without the SaveImage node class (a trimmed or broken install)."""

    def object_info(self, inputs: list[str], class_type: str | None = None) -> dict[str, Any]:
        found = super().object_info(inputs, class_type)
        found.pop("SaveImage", None)
        return found


def test_a_missing_node_class_is_refused_with_nothing_queued(
    tmp_path: Path, run_cli: RunCli
) -> None:
    with MockComfy(catalog=_NoSaveImage()) as comfy:
        job = write_job(tmp_path, comfy, CATS)
        result = run_cli("run", str(job), "--out", str(tmp_path / "out"), expect=2)
        assert "no node class 'SaveImage'" in result.err and "Traceback" not in result.err
        assert posts(comfy) == []


# -- which backend ------------------------------------------------------------------------------


def untyped_job(tmp_path: Path, url: str) -> Path:
    job = tmp_path / "untyped.yaml"
    job.write_text(
        f'name: t\nserver: {{url: "{url}"}}\nprompts: [a cat]\nseeds: [5]\n'
        "defaults: {steps: 1, width: 64, height: 64}\n"
    )
    return job


def test_a_job_without_a_type_runs_on_whatever_kind_answers(
    comfy: MockComfy, webui: Any, tmp_path: Path, run_cli: RunCli
) -> None:
    run_cli("run", str(untyped_job(tmp_path, comfy.url)), "--out", str(tmp_path / "c"))
    (row,) = rows(tmp_path / "c")
    assert row["status"] == "ok" and row["payload"]["3"]["class_type"] == "KSampler"
    assert len(posts(comfy)) == 1
    run_cli("run", str(untyped_job(tmp_path, webui.url)), "--out", str(tmp_path / "a"))
    (row,) = rows(tmp_path / "a")
    assert row["status"] == "ok" and row["payload"]["prompt"] == "a cat"
    assert [r.path for r in webui.requests].count("/sdapi/v1/txt2img") == 1


def test_detection_comes_after_the_url_checks_and_never_mixes_kinds(
    comfy: MockComfy, webui: Any, tmp_path: Path, run_cli: RunCli
) -> None:
    # A password in the URL: refused before any request, the probe included.
    secret = comfy.url.replace("http://", "http://user:hunter2@")
    result = run_cli(
        "run", str(untyped_job(tmp_path, secret)), "--out", str(tmp_path / "s"), expect=2
    )
    assert "hunter2" not in result.err and comfy.recorder.requests == []
    # Two kinds in one run: said, and nothing generated on either.
    job = untyped_job(tmp_path, comfy.url)
    result = run_cli(
        "run",
        str(job),
        "--server",
        comfy.url,
        "--server",
        webui.url,
        "--out",
        str(tmp_path / "m"),
        expect=2,
    )
    assert "two kinds" in result.err and f"{comfy.url} (comfyui)" in result.err
    assert posts(comfy) == [] and "/sdapi/v1/txt2img" not in [r.path for r in webui.requests]


# -- a lost socket --------------------------------------------------------------------------------


def test_a_silent_socket_never_hangs_the_run_history_is_the_truth(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    comfy.inject(ws_mute=True)  # open but silent: a socket lost without a close
    out = tmp_path / "out"
    done: list[Any] = []
    runner = threading.Thread(
        target=lambda: done.append(
            run_cli("run", str(write_job(tmp_path, comfy, CATS)), "--out", str(out))
        ),
        daemon=True,
    )
    runner.start()
    runner.join(timeout=60)
    assert done, "the run hung on a silent socket"
    assert len(rows(out)) == 8 and all(r["status"] == "ok" for r in rows(out))


def test_once_the_socket_misses_a_prompts_end_the_history_is_polled_faster(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the worker waits for the socket each time: the poll interval in force.
    waits: list[float] = []
    real_wait = Listener.wait

    def wait(self: Listener, prompt_id: str, seconds: float) -> bool:
        waits.append(seconds)
        return real_wait(self, prompt_id, seconds)

    monkeypatch.setattr(Listener, "wait", wait)
    run_cli("run", str(write_job(tmp_path, comfy, CATS)), "--out", str(tmp_path / "a"))
    assert set(waits) == {POLL}  # a socket that tells: the slow poll is only a fallback
    waits.clear()
    comfy.inject(ws_mute=True)
    run_cli("run", str(write_job(tmp_path, comfy, CATS)), "--out", str(tmp_path / "b"))
    assert POLL_DEAF in waits and waits[-1] == POLL_DEAF


def test_file_names_take_the_jobs_fields_and_rows_keep_the_names_asked(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    # The request is a graph of node ids: `{steps}` is the job's steps all the same.
    body = CATS + 'output: {filename: "{steps}-{sampler_name}-{cfg_scale}-{seed}"}\n'
    body = body.replace("  steps: 2\n", "  steps: 2\n  cfg_scale: 5.5\n")
    out = tmp_path / "out"
    run_cli("run", str(write_job(tmp_path, comfy, body)), "--out", str(out))
    done = rows(out)
    assert len(done) == 8
    for row in done:
        assert row["file"].startswith(f"2-DPM++ 2M-5.5-{row['seed']}")
        assert row["asked"] == {"sampler_name": "DPM++ 2M", "scheduler": "Karras"}
        assert (row["sampler_name"], row["scheduler"]) == ("dpmpp_2m", "karras")  # as sent


def test_a_server_that_is_down_tells_no_kind_and_is_left_out(
    comfy: MockComfy, tmp_path: Path, run_cli: RunCli
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    job = untyped_job(tmp_path, comfy.url)
    out = tmp_path / "out"
    result = run_cli("run", str(job), "--server", comfy.url, "--server", down, "--out", str(out))
    assert "two kinds" not in result.err and down in result.err  # left out, and said so
    (row,) = rows(out)
    assert row["status"] == "ok" and row["server"] == comfy.url
