"""The ComfyUI backend stopped for real: SIGINT twice leaves the stand-in's queue empty and
idle; SIGKILL mid-run then a rerun makes every image exactly once. Real subprocesses against
an in-process stand-in ComfyUI on loopback; every wait is bounded.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import manifest_rows as rows
from stophelp import sigint_twice_when

from sdbatch.standin.comfyui import MockComfy

TIMEOUT = 60.0
SEEDS = list(range(1, 9))


@pytest.fixture
def comfy() -> Iterator[MockComfy]:
    with MockComfy(step_delay=0.05, seed=3) as server:  # 4 steps: 0.2 s per image
        yield server


def start_run(tmp_path: Path, comfy: MockComfy) -> tuple[subprocess.Popen[str], Path]:
    job = tmp_path / "job.yaml"
    job.write_text(
        f'name: t\nserver: {{url: "{comfy.url}", type: comfyui}}\n'
        "defaults: {checkpoint: tiny_sd15_random.safetensors, steps: 4, width: 64, height: 64}\n"
        f'prompts: ["a cat"]\nseeds: {SEEDS}\n'
    )
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sdbatch", "run", str(job), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, out


def wait_for_rows(out: Path, count: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while len(rows(out)) < count:
        assert time.monotonic() < deadline, "the run made no image in time"
        time.sleep(0.02)


def queue(comfy: MockComfy) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(comfy.url + "/queue", timeout=5).json()
    return body


def test_sigint_twice_leaves_the_queue_empty_and_the_server_idle(
    comfy: MockComfy, tmp_path: Path
) -> None:
    comfy.step_delay = 0.3  # 1.2 s per image: the stop lands mid-sampling
    proc, out = start_run(tmp_path, comfy)
    wait_for_rows(out, 1)
    # One prompt runs and one waits behind it at the server (concurrency + 1 in flight).
    code, err = sigint_twice_when(
        proc, lambda: bool(queue(comfy)["queue_pending"]), "sdbatch never kept a prompt queued"
    )
    assert code == 130, err
    assert "Traceback" not in err
    state = queue(comfy)
    assert state == {"queue_running": [], "queue_pending": []}
    remaining = requests.get(comfy.url + "/prompt", timeout=5).json()["exec_info"]
    assert remaining["queue_remaining"] == 0
    # The second signal deleted the waiting prompt (it never ran) and interrupted the running
    # one, rather than letting both run to their end.
    posted = [
        r.body["prompt_id"]
        for r in comfy.recorder.requests
        if r.method == "POST" and r.path == "/prompt"
    ]
    executions = {e.prompt_id: e for e in comfy.recorder.executions}
    assert any(p not in executions for p in posted)
    assert any(e.status == "error" for e in executions.values())
    assert len([r for r in rows(out) if r["status"] == "ok"]) < len(SEEDS)


def test_sigkill_mid_run_then_rerun_makes_every_image_exactly_once(
    comfy: MockComfy, tmp_path: Path
) -> None:
    proc, out = start_run(tmp_path, comfy)
    wait_for_rows(out, 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    before = {r["id"] for r in rows(out) if r["status"] == "ok"}
    assert 0 < len(before) < len(SEEDS)
    rerun, _ = start_run(tmp_path, comfy)
    _, err = rerun.communicate(timeout=TIMEOUT)
    assert rerun.returncode == 0, err
    ok = [r for r in rows(out) if r["status"] == "ok"]
    assert sorted(r["seed"] for r in ok) == SEEDS  # each seed once, none twice
    assert len({r["file"] for r in ok}) == len(SEEDS)
    assert all((out / r["file"]).is_file() for r in ok)


def test_sdbatch_mock_comfyui_serves_a_stand_in(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "sdbatch", "mock-comfyui", "--port", "0", "--root", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        stats = requests.get(url + "/system_stats", timeout=10).json()
        assert stats["system"]["comfyui_version"] == "0.3.64"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0


def test_ctrl_c_twice_as_a_run_ends_never_kills_it_by_the_signal(tmp_path: Path) -> None:
    # A fast server: the two Ctrl-C often land after the run's own stop handler is gone, in
    # the report or at interpreter exit, where a second one killed the process (exit -2).
    codes = []
    with MockComfy(step_delay=0, seed=3) as fast:
        for i in range(6):
            (tmp_path / str(i)).mkdir()
            proc, out = start_run(tmp_path / str(i), fast)
            wait_for_rows(out, 1)
            code, err = sigint_twice_when(proc, lambda: True, "")
            assert "Traceback" not in err
            codes.append(code)
    # 130 when the stop landed in the run; 0 when the run had ended before it (both signals
    # then met a process on its way out, which ignores them); never killed by the signal.
    assert set(codes) <= {0, 130}, codes
