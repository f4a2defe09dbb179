"""Nightly runs that survive anything: resume, crash safety, locking, signals, waiting, full disks.

These tests run the real `sdbatch run` in subprocesses and kill them; the stand-in webui runs in
the test process so its request log can be read directly.
"""

from __future__ import annotations

import hashlib
import json
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RunCli
from PIL import Image

from sdbatch.output.resume import open_output
from sdbatch.standin.a1111 import MockWebui


def write_job(path: Path, url: str, prompts: list[str], seeds: Any, **extra: Any) -> Path:
    job = {
        "name": "night",
        "server": {"url": url, "retries": 3, "timeout": 30},
        "defaults": {"steps": 2, "width": 64, "height": 64},
        "prompts": prompts,
        "seeds": seeds,
        **extra,
    }
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def start_run(job: Path, out: Path, *args: str, quiet: bool = True) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "sdbatch", "run", str(job), "--out", str(out), *args]
    if quiet:
        cmd.append("--quiet")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows_of(out: Path) -> list[dict[str, Any]]:
    """Every complete manifest line parses; only a torn last line (no newline) may not."""
    path = out / "manifest.jsonl"
    if not path.exists():
        return []
    data = path.read_text()
    lines = data.split("\n")
    complete, tail = lines[:-1], lines[-1]
    rows = [json.loads(line) for line in complete]
    if tail:  # a crash mid-append: it must not parse as a row of its own
        with pytest.raises(ValueError):
            json.loads(tail)
    return rows


def check_invariants(out: Path) -> set[int]:
    """No ok row without its file, no half image under a final name. Returns the done seeds."""
    ok = [r for r in rows_of(out) if r["status"] == "ok"]
    for row in ok:
        data = (out / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
    for png in out.glob("*.png"):
        with Image.open(png) as img:
            img.load()  # a truncated file would raise here
    return {r["seed"] for r in ok}


def wait_idle(server: MockWebui) -> None:
    """Requests of a killed client still run in the webui; let them finish before the next run,
    so every generation seen afterwards belongs to the next run."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.queue_depth == 0:
            time.sleep(0.05)
            if server.queue_depth == 0:
                return
        time.sleep(0.02)
    raise AssertionError("the stand-in never went idle")


def test_sigkill_at_20_random_moments_loses_and_repeats_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261125)
    with MockWebui(image_delay=0.02, seed=7) as server:
        job = write_job(
            tmp_path / "job.yaml", server.url, ["a lighthouse"], {"start": 1, "count": 60}
        )
        out = tmp_path / "out"
        for _ in range(20):
            done_before = check_invariants(out) if out.exists() else set()
            wait_idle(server)
            seen = len(server.generated)
            proc = start_run(job, out)
            time.sleep(rng.uniform(0.3, 1.5))
            proc.kill()
            proc.communicate(timeout=30)
            wait_idle(server)
            regenerated = {g.seed for g in server.generated[seen:]} & done_before
            assert regenerated == set(), f"images generated again: {sorted(regenerated)}"
        done_before = check_invariants(out)
        seen = len(server.generated)
        final = start_run(job, out)
        _, err = final.communicate(timeout=120)
        assert final.returncode == 0, err
        assert not ({g.seed for g in server.generated[seen:]} & done_before)
    rows = rows_of(out)
    assert [r["status"] for r in rows] == ["ok"] * 60
    assert sorted(r["seed"] for r in rows) == list(range(1, 61))
    assert len(list(out.glob("*.png"))) == 60
    assert check_invariants(out) == set(range(1, 61))
    assert not list(out.glob(".*.tmp"))


def test_second_run_on_the_same_dir_is_refused_until_the_first_dies(tmp_path: Path) -> None:
    with MockWebui(image_delay=0.2) as server:
        job = write_job(tmp_path / "job.yaml", server.url, ["x"], {"start": 1, "count": 30})
        out = tmp_path / "out"
        first = start_run(job, out)
        deadline = time.monotonic() + 30
        while not (out / "manifest.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = start_run(job, out)
        _, err = second.communicate(timeout=10)  # it does not wait for the lock
        assert second.returncode == 3
        assert f"another sdbatch run (pid {first.pid}) is writing to {out}" in err
        first.kill()
        first.communicate(timeout=10)
        wait_idle(server)
        third = start_run(job, out)
        _, err = third.communicate(timeout=120)
        assert third.returncode == 0, err
    assert len([r for r in rows_of(out) if r["status"] == "ok"]) == 30


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finishes_in_flight_work_then_rerun_completes(
    tmp_path: Path, signum: int, code: int
) -> None:
    with MockWebui(image_delay=0.1) as server:
        job = write_job(tmp_path / "job.yaml", server.url, ["x"], {"start": 1, "count": 20})
        out = tmp_path / "out"
        proc = start_run(job, out)
        deadline = time.monotonic() + 30
        while len(rows_of(out)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == code, err
        summary = json.loads((out / "summary.json").read_text())
        assert summary["exit_code"] == code
        assert summary["signal"] == signal.Signals(signum).name
        done = check_invariants(out)
        assert 3 <= len(done) < 20
        # Everything the webui generated for this run was saved: nothing was left in flight.
        wait_idle(server)
        assert {g.seed for g in server.generated} == done
        rerun = start_run(job, out, quiet=False)
        _, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        assert f"{len(done)} done, {20 - len(done)} to do" in err
    assert check_invariants(out) == set(range(1, 21))
    assert len(rows_of(out)) == 20


def test_second_sigint_interrupts_the_webui(tmp_path: Path) -> None:
    with MockWebui(step_delay=0.5) as server:  # 10 steps: 5 s per image
        job = write_job(tmp_path / "job.yaml", server.url, ["x"], [1, 2, 3], defaults={"steps": 10})
        out = tmp_path / "out"
        proc = start_run(job, out)
        deadline = time.monotonic() + 30
        while server.queue_depth == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err
        # Left to itself the webui would now run the request queued behind the interrupted
        # one for 5 s (OBSERVED 8); sdbatch interrupted that one too before it exited.
        assert server.queue_depth == 0
        interrupts = [r for r in server.requests if r.path == "/sdapi/v1/interrupt"]
        assert len(interrupts) >= 2
        assert "it is idle" in err
    # The interrupted image is partial: it must not be recorded as done.
    assert [r for r in rows_of(out) if r["status"] == "ok"] == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 130
    assert summary["hard_stop"]["requests_left"] == 0
    assert summary["hard_stop"]["webui_idle"] is True
    assert summary["hard_stop"]["interrupts"] == len(interrupts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_wait_for_a_server_that_comes_up_late(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    job = write_job(tmp_path / "job.yaml", url, ["x"], [1, 2])
    server = MockWebui(port=port)
    timer = threading.Timer(5.0, server.start)
    timer.start()
    try:
        proc = start_run(job, tmp_path / "out", "--wait", "30")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert len(server.generated) == 2
    finally:
        timer.cancel()
        server.stop()


def test_no_server_within_wait_exits_3(run_cli: RunCli, tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.yaml", f"http://127.0.0.1:{free_port()}", ["x"], [1])
    result = run_cli("run", str(job), "--wait", "1", "--out", str(tmp_path / "o"), expect=3)
    assert "did not answer within 1 s" in result.err


def test_editing_one_prompt_regenerates_exactly_its_images(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    prompts = ["a red fox", "a grey wolf", "a brown bear"]
    job = write_job(tmp_path / "job.yaml", webui.url, prompts, [1, 2])
    run_cli("run", str(job), "--out", str(out))
    assert len(webui.generated) == 6
    write_job(
        tmp_path / "job.yaml", webui.url, ["a red fox", "a white wolf", "a brown bear"], [1, 2]
    )
    result = run_cli("run", str(job), "--out", str(out))
    assert sorted((g.prompt, g.seed) for g in webui.generated[6:]) == [
        ("a white wolf", 1),
        ("a white wolf", 2),
    ]
    assert "4 done, 2 to do" in result.err
    again = run_cli("run", str(job), "--out", str(out))
    assert len(webui.generated) == 8 and "6 done, 0 to do" in again.err


def test_a_deleted_or_changed_image_is_made_again(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", webui.url, ["x"], [1, 2, 3])
    run_cli("run", str(job), "--out", str(out))
    rows = rows_of(out)
    (out / rows[0]["file"]).unlink()
    (out / rows[1]["file"]).write_bytes(b"not the image")
    result = run_cli("run", str(job), "--out", str(out))
    assert "1 done, 2 to do" in result.err
    remade = [rows[0]["seed"], rows[1]["seed"]]
    assert sorted(g.seed for g in webui.generated) == sorted([1, 2, 3, *remade])
    latest = {r["id"]: r for r in rows_of(out)}  # later rows supersede earlier ones
    assert sorted(r["seed"] for r in latest.values()) == [1, 2, 3]
    for row in latest.values():
        data = (out / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
    # The changed file is the user's now: it is left alone, the new image gets its own name.
    assert (out / rows[1]["file"]).read_bytes() == b"not the image"


def test_fresh_starts_a_new_dir(webui: MockWebui, run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", webui.url, ["x"], [1])
    run_cli("run", str(job), "--out", str(out))
    result = run_cli("run", str(job), "--out", str(out), "--fresh")
    assert (tmp_path / "out-2" / "manifest.jsonl").exists()
    assert f"writing to {tmp_path / 'out-2'}" in result.err
    assert len(webui.generated) == 2


def test_torn_manifest_line_is_ignored_and_cut(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    good = {"id": "a", "status": "ok", "file": "gone.png", "job": "night"}
    (out / "manifest.jsonl").write_text(json.dumps(good) + '\n{"id": "b", "stat')
    (out / ".00001-2.png.123.tmp").write_bytes(b"half")
    state = open_output(out, "night")
    try:
        assert state.torn_lines == 1 and not state.done  # gone.png is missing
        assert (out / "manifest.jsonl").read_text() == json.dumps(good) + "\n"
        assert not (out / ".00001-2.png.123.tmp").exists()
    finally:
        state.release()


def test_another_jobs_dir_is_refused(webui: MockWebui, run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_cli("run", str(write_job(tmp_path / "a.yaml", webui.url, ["x"], [1])), "--out", str(out))
    other = tmp_path / "b.yaml"
    other.write_text((tmp_path / "a.yaml").read_text().replace("name: night", "name: day"))
    result = run_cli("run", str(other), "--out", str(out), expect=2)
    assert "holds the manifest of job 'night', not 'day'" in result.err


def _limit_file_size() -> None:
    # Every file this process writes stops growing at 20 kB: a disk that fills up mid-run
    # (the manifest gets there after a dozen rows).
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_full_disk_is_a_clear_error_and_nothing_false_is_recorded(tmp_path: Path) -> None:
    with MockWebui() as server:
        job = write_job(
            tmp_path / "job.yaml",
            server.url,
            ["x"],
            {"start": 1, "count": 40},
            defaults={"steps": 2, "width": 256, "height": 256},
        )
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "sdbatch", "run", str(job), "--out", str(out)]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=60, preexec_fn=_limit_file_size
        )
    assert proc.returncode == 3, proc.stderr
    assert "File too large" in proc.stderr and "Traceback" not in proc.stderr
    check_invariants(out)


def test_unwritable_output_exits_3(webui: MockWebui, run_cli: RunCli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    job = write_job(tmp_path / "job.yaml", webui.url, ["x"], [1])
    result = run_cli("run", str(job), "--out", str(blocker / "out"), expect=3)
    assert "cannot write to" in result.err
    assert webui.generated == []


def test_log_file_gets_timestamped_lines(webui: MockWebui, run_cli: RunCli, tmp_path: Path) -> None:
    log = tmp_path / "night.log"
    job = write_job(tmp_path / "job.yaml", webui.url, ["x"], [1, 2])
    run_cli("run", str(job), "--out", str(tmp_path / "out"), "--quiet", "--log-file", str(log))
    lines = log.read_text().splitlines()
    assert any("2 images saved" in line for line in lines)
    assert all(line[:4].isdigit() and line[4] == "-" for line in lines)


def test_rows_in_force_stream_as_the_whole_list_decides(tmp_path: Path) -> None:
    from sdbatch.output.manifest import InForce, _record, in_force, iter_rows

    rows = [
        {"id": "p1", "payload_id": "p1", "status": "failed", "payload_index": 1},
        {"id": "a", "payload_id": "p0", "status": "ok", "file": "a.png", "payload_index": 0},
        {"id": "b", "payload_id": "p1", "status": "ok", "file": "b.png", "payload_index": 1},
        {"id": "p2", "payload_id": "p2", "status": "failed", "payload_index": 2},
        {
            "id": "a",
            "payload_id": "p0",
            "status": "mismatch",
            "file": "a-1.png",
            "payload_index": 0,
        },
        {"id": "c", "payload_id": "p2", "status": "ok", "file": "c.png", "payload_index": 2},
        {"id": "p2", "payload_id": "p2", "status": "failed", "payload_index": 2},
    ]
    out = tmp_path / "out"
    out.mkdir()
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"id": "torn'
    (out / "manifest.jsonl").write_text(text)
    whole = in_force(_record(r, n) for n, _, r in iter_rows(out / "manifest.jsonl") if r)
    streamed = InForce(out)
    assert [(r.id, r.status, r.file) for r in streamed] == [(r.id, r.status, r.file) for r in whole]
    assert len(streamed) == len(whole) == 4
    assert [r.id for r in whole] == ["a", "b", "c", "p2"]  # p1 made later; p2 failed again


def test_a_resume_by_position_and_by_payload_agree(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    job = write_job(tmp_path / "job.yaml", webui.url, ["a cat", "a dog"], [1, 2])
    out = tmp_path / "out"
    run_cli("run", str(job), "--out", str(out))
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len({r["plan"] for r in rows}) == 1  # every row names the plan it came from
    # Rows of another plan (an older sdbatch, or an edit elsewhere) are found by payload id.
    (out / "manifest.jsonl").write_text(
        "".join(json.dumps({**r, "plan": "0" * 16}) + "\n" for r in rows)
    )
    generated = len(webui.generated)
    result = run_cli("run", str(job), "--out", str(out))
    assert "4 done, 0 to do" in result.err and len(webui.generated) == generated


def _done(out: Path) -> int:
    state = open_output(out, "night")
    try:
        return state.done.count
    finally:
        state.release()


def test_the_index_answers_as_the_manifest_does_and_a_stale_one_is_not_used(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    job = write_job(tmp_path / "job.yaml", webui.url, ["a cat", "a dog"], {"start": 1, "count": 4})
    out = tmp_path / "out"
    run_cli("run", str(job), "--out", str(out))
    index = out / "manifest.idx"
    assert len(index.read_text().splitlines()) == 1 + 8  # a header and one entry per image
    assert _done(out) == 8
    index.unlink()
    assert _done(out) == 8 and index.exists()  # rebuilt from the manifest by that resume
    # The manifest cut back by two rows (and one other row appended): the index's last entry
    # no longer stands there, so it is not used; the two images are made again.
    lines = (out / "manifest.jsonl").read_text().splitlines(keepends=True)
    other = json.dumps({"id": "x", "status": "failed", "job": "night", "payload_id": "x"}) + "\n"
    (out / "manifest.jsonl").write_text("".join(lines[:-2]) + other)
    generated = len(webui.generated)
    result = run_cli("run", str(job), "--out", str(out))
    assert "6 done, 2 to do" in result.err and len(webui.generated) == generated + 2
    # An index beside another manifest is ignored too.
    (out / "manifest.jsonl").write_text(lines[0])
    assert _done(out) == 1


@pytest.mark.parametrize(
    "layers",
    [
        "defaults: {batch_size: 3}\n",  # the same images in every payload: counted from masks
        "defaults: {batch_size: 2}\ngrid: {n_iter: [1, 3]}\n",  # varying: the plan is walked
    ],
    ids=["uniform", "varying"],
)
def test_what_is_left_is_the_same_counted_or_walked(tmp_path: Path, layers: str) -> None:
    from sdbatch.job.loader import load_job
    from sdbatch.output.done import Done, Masks, todo
    from sdbatch.plan.expand import build_plan

    job = tmp_path / "job.yaml"
    job.write_text(f"name: t\nprompts: [a, b]\nseeds: [1, 2, 3]\n{layers}", encoding="utf-8")
    plan = build_plan(load_job(job))
    rng = random.Random(7)
    masks = Masks()
    finished: dict[int, set[int]] = {}
    for item in plan:
        for image in range(item.image_count):
            if rng.random() < 0.6:
                masks.add(item.index, image)
                finished.setdefault(item.index, set()).add(image)
    masks.add(1, 7)  # an image index this payload does not have: never counted as done
    left = todo(plan, Done(by_index=masks))
    expected_done = sum(len(v) for v in finished.values())
    assert (left.done_images, left.images) == (expected_done, plan.image_count - expected_done)
    complete = [i.index for i in plan if len(finished.get(i.index, ())) == i.image_count]
    assert [i.index for i in left.payloads()] == [i.index for i in plan if i.index not in complete]
    assert bool(complete) and len(complete) < plan.payload_count  # both kinds were drawn


def test_thumbnails_are_made_as_images_land_not_after_the_last(tmp_path: Path) -> None:
    # A run killed half-way never draws its gallery, yet every image it saved already has its
    # thumbnail: they are made on the writer's thread while the webui works on the next ones.
    with MockWebui(image_delay=0.3) as server:
        job = write_job(
            tmp_path / "job.yaml",
            server.url,
            ["a cat"],
            list(range(1, 9)),
            defaults={
                "steps": 2,
                "width": 320,
                "height": 320,  # over the 256 px of a thumbnail
            },
        )
        out = tmp_path / "out"
        proc = start_run(job, out)
        deadline = time.monotonic() + 30
        while len([r for r in rows_of(out) if r["status"] == "ok"]) < 3:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.2)  # the writer makes a row's thumbnail right after the row lands
        proc.kill()
        proc.communicate(timeout=10)  # reaps it and closes its pipes
        wait_idle(server)
    saved = [r for r in rows_of(out) if r["status"] == "ok"]
    assert not (out / "index.html").exists() and 3 <= len(saved) < 8
    thumbs = sorted(p.name for p in (out / "thumbs").glob("*.jpg"))
    assert len(thumbs) >= len(saved) - 1  # the last row may have landed just before the kill
    for name in thumbs:
        with Image.open(out / "thumbs" / name) as img:
            assert max(img.size) == 256
