"""Several ComfyUI servers in one run, as for the webui (`server.urls`): one shared queue (each
image made once, every server works, each row names the server that made it and that server's
ComfyUI version, summary.json counts images per server); a server down at the start is left
out; one lost mid-run sits out while the others take its work, and takes work again once back
after its cool-down; a server whose prompts fail gets failed rows naming it; preflight names
the server that lacks a name, with nothing queued on any; Ctrl-C twice leaves every server's
queue empty. Real stand-ins on loopback; every wait is bounded.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
from conftest import CliResult, RunCli
from conftest import manifest_rows as rows
from stophelp import sigint_twice_when

from sdbatch.backends.base import Outcome, Worker
from sdbatch.backends.comfyui.connect import BACKEND
from sdbatch.job.loader import load_job
from sdbatch.plan.expand import build_plan
from sdbatch.run.dispatch import COOL_DOWN, Stopper, dispatch
from sdbatch.run.progress import Console
from sdbatch.standin.comfyui import Catalog, MockComfy

CKPT = "tiny_sd15_random.safetensors"
TAESD = "tiny_sd15_taesd_random.safetensors"
TIMEOUT = 60.0  # the bound on any one run: far above what these tiny jobs take
SMALL = f"defaults: {{checkpoint: {CKPT}, steps: 2, width: 64, height: 64, batch_size: 2}}\n"


@contextlib.contextmanager
def comfies(n: int, **options: Any) -> Iterator[list[MockComfy]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(MockComfy(seed=i, **options)) for i in range(n)]


def write_job(tmp_path: Path, servers: list[MockComfy], body: str, **server: Any) -> Path:
    settings = {"urls": [s.url for s in servers], "type": "comfyui", **server}
    job = tmp_path / "job.yaml"
    job.write_text(f"name: t\nserver: {json.dumps(settings)}\n{body}")
    return job


def summary(out: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return found


def bounded(run: Callable[[], CliResult]) -> CliResult:
    """`run()` on a thread, given TIMEOUT seconds: a run that hangs fails the test."""
    done: list[CliResult | BaseException] = []

    def target() -> None:
        try:
            done.append(run())
        except BaseException as exc:  # handed to the test's thread
            done.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert done, f"the run did not end within {TIMEOUT:g} s"
    if isinstance(done[0], BaseException):
        raise done[0]
    return done[0]


def prompt_id(row: dict[str, Any]) -> str:
    """The prompt that made a row's image: sdbatch names its files after it."""
    prefix = str(row["payload"]["9"]["inputs"]["filename_prefix"])
    return prefix.split("/")[1]


def posted(comfy: MockComfy) -> list[dict[str, Any]]:
    """The graphs sdbatch posted to `comfy` (accepted or not), in order."""
    return [r.body for r in comfy.recorder.requests if r.method == "POST" and r.path == "/prompt"]


def made(comfy: MockComfy) -> set[str]:
    """The prompts `comfy` ran to the end (images written)."""
    return {e.prompt_id for e in comfy.recorder.executions if e.status == "success"}


def queue(comfy: MockComfy) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(comfy.url + "/queue", timeout=5).json()
    return body


def version(comfy: MockComfy) -> str:
    stats = requests.get(comfy.url + "/system_stats", timeout=5).json()
    return str(stats["system"]["comfyui_version"])


# -- one shared queue -----------------------------------------------------------------------------

SHARED = SMALL + 'prompts: ["a cat", "a dog"]\nseeds: {start: 1, count: 6}\n'  # 12 x 2 images


def test_three_servers_share_one_queue_each_image_made_once(
    tmp_path: Path, run_cli: RunCli
) -> None:
    with comfies(3, step_delay=0.01) as servers:
        out = tmp_path / "out"
        job = write_job(tmp_path, servers, SHARED)
        bounded(lambda: run_cli("run", str(job), "--out", str(out)))
        by_server = {s.url: made(s) for s in servers}
        sent = [
            (g["prompt"]["6"]["inputs"]["text"], g["prompt"]["3"]["inputs"]["seed"])
            for s in servers
            for g in posted(s)
        ]
    done = rows(out)
    assert len(done) == 24 and all(r["status"] == "ok" for r in done)
    assert len({r["id"] for r in done}) == 24
    # Each (prompt, seed) was posted once, to one server, and every server had work.
    assert len(sent) == len(set(sent)) == 12
    assert all(by_server.values())
    # A row names the server that ran its prompt, as an A1111 row names its webui.
    for row in done:
        assert prompt_id(row) in by_server[row["server"]], row["server"]
    counts = collections.Counter(r["server"] for r in done)
    assert counts == {url: 2 * len(ids) for url, ids in by_server.items()}
    assert summary(out)["images_per_server"] == dict(counts)


def test_each_row_has_the_comfyui_version_of_the_server_that_made_it(
    tmp_path: Path, run_cli: RunCli
) -> None:
    with (
        MockComfy(seed=1, step_delay=0.01, version="0.3.64") as old,
        MockComfy(seed=2, step_delay=0.01, version="0.3.66") as new,
    ):
        versions = {s.url: version(s) for s in (old, new)}
        out = tmp_path / "out"
        job = write_job(tmp_path, [old, new], SHARED)
        result = bounded(lambda: run_cli("run", str(job), "--out", str(out)))
    done = rows(out)
    assert {r["server"] for r in done} == set(versions)  # both made images
    for row in done:
        assert row["server_version"] == versions[row["server"]]
    assert summary(out)["server_versions"] == versions  # and the summary, per server
    # Preflight says which server is which.
    assert all(f"{url} (ComfyUI {v})" in result.err for url, v in versions.items())


# -- a failing server -----------------------------------------------------------------------------

MANY = SMALL + 'prompts: ["a cat", "a dog"]\nseeds: {start: 1, count: 15}\n'  # 30 x 2 images


def test_a_server_stopped_mid_run_sits_out_and_the_others_finish(
    tmp_path: Path, run_cli: RunCli
) -> None:
    with comfies(3, step_delay=0.02) as servers:
        victim = servers[1]
        before: set[str] = set()

        def stop_when_busy() -> None:
            deadline = time.monotonic() + TIMEOUT
            while not made(victim) and time.monotonic() < deadline:
                time.sleep(0.01)
            victim.stop()  # mid-run: one prompt running there, one waiting behind it
            before.update(made(victim))

        killer = threading.Thread(target=stop_when_busy, daemon=True)
        killer.start()
        out = tmp_path / "out"
        job = write_job(tmp_path, servers, MANY, retries=1)
        result = bounded(lambda: run_cli("run", str(job), "--out", str(out)))
        killer.join(TIMEOUT)
        others = set().union(*(made(s) for s in servers if s is not victim))
    assert before, "the victim made nothing before it was stopped"
    assert "Traceback" not in result.err
    done = rows(out)
    assert len(done) == 60 and all(r["status"] == "ok" for r in done)
    assert len({r["id"] for r in done}) == 60  # every image once, none twice
    lost = [line for line in result.err.splitlines() if "sits out" in line]
    assert lost and all(victim.url in line for line in lost)
    for row in done:  # the victim's rows are prompts it finished before it went
        assert prompt_id(row) in (before if row["server"] == victim.url else others)
    assert any(r["server"] != victim.url for r in done)
    counts = collections.Counter(r["server"] for r in done)
    assert summary(out)["images_per_server"] == dict(counts)
    assert summary(out)["exit_code"] == 0


def test_a_server_down_at_the_start_is_left_out_and_the_others_make_everything(
    tmp_path: Path, run_cli: RunCli
) -> None:
    with comfies(3, step_delay=0.01) as servers:
        down = servers[2]
        down.stop()  # its port now refuses connections
        out = tmp_path / "out"
        job = write_job(tmp_path, servers, SHARED, retries=1)
        result = bounded(lambda: run_cli("run", str(job), "--out", str(out)))
        made_by = {s.url: made(s) for s in servers[:2]}
        # With every server down, the run stops before anything is planned on any: exit 3.
        for server in servers[:2]:
            server.stop()
        none = run_cli("run", str(job), "--out", str(tmp_path / "none"), expect=3)
    assert any(f"leaving out {down.url}" in line for line in result.err.splitlines())
    done = rows(out)
    assert len(done) == 24 and all(r["status"] == "ok" for r in done)
    assert {r["server"] for r in done} == set(made_by) and all(made_by.values())
    assert "Traceback" not in none.err
    assert all(s.url in none.err for s in servers)


def test_a_server_back_after_its_cool_down_takes_work_again(tmp_path: Path) -> None:
    # The run loop's clock is moved on by COOL_DOWN instead of waiting it out; the server comes
    # back on its port as a fresh process would, with an empty queue and new sockets.
    shift = [0.0]
    # 0.2 s a payload: the steady server alone is far from done when the other returns.
    with MockComfy(seed=1, step_delay=0.05) as steady, MockComfy(seed=2, step_delay=0.05) as gone:
        port = gone.port
        job = load_job(write_job(tmp_path, [steady, gone], MANY, retries=1))
        connection = BACKEND.connect(job, auth=None, preflight=True, environ={})
        workers: list[Worker] = list(connection.workers)
        err = io.StringIO()
        console = Console(io.StringIO(), err)
        delivered: list[Outcome] = []
        back: list[MockComfy] = []

        def lose_then_return() -> None:
            deadline = time.monotonic() + TIMEOUT
            while not made(gone) and time.monotonic() < deadline:
                time.sleep(0.01)
            gone.stop()
            while "sits out" not in err.getvalue() and time.monotonic() < deadline:
                time.sleep(0.01)
            back.append(MockComfy(port=port, seed=2, step_delay=0.05).start())
            shift[0] = COOL_DOWN

        returning = threading.Thread(target=lose_then_return, daemon=True)
        returning.start()
        try:
            error = dispatch(
                iter(build_plan(job)),
                workers,
                delivered.append,
                Stopper(console),
                console,
                clock=lambda: time.monotonic() + shift[0],
            )
            returning.join(TIMEOUT)
            again = made(back[0])
        finally:
            for server in back:
                server.stop()
    assert error is None, err.getvalue()
    assert again, err.getvalue()
    indexes = [o.item.index for o in delivered if o.ok]
    assert sorted(indexes) == list(range(30))  # every payload once, none twice
    assert {o.server for o in delivered} == {steady.url, gone.url}


def test_a_server_whose_prompts_fail_gets_failed_rows_naming_it(
    tmp_path: Path, run_cli: RunCli
) -> None:
    with comfies(2, step_delay=0.01) as servers:
        broken, fine = servers
        broken.inject(error_next=1000)  # an out-of-memory error at every sampler
        out = tmp_path / "out"
        job = write_job(tmp_path, servers, SHARED)
        result = bounded(lambda: run_cli("run", str(job), "--out", str(out), expect=1))
        failed = [r for r in rows(out) if r["status"] == "failed"]
        ok = [r for r in rows(out) if r["status"] == "ok"]
        assert failed and ok and "Traceback" not in result.err
        assert {r["server"] for r in failed} == {broken.url}
        assert {r["server"] for r in ok} == {fine.url}
        message = broken.faults.settings.error_message
        assert all(message in r["error"] for r in failed)
        # What the user reads names the server too, not just the manifest's rows.
        told = [line for line in result.err.splitlines() if "failed on" in line]
        assert len(told) == len(failed)
        assert all(f"failed on {broken.url} " in t and message in t for t in told)
        listed = summary(out)["failed"]
        assert sorted((f["id"], f["server"]) for f in listed) == sorted(
            (r["id"], broken.url) for r in failed
        )
        # Fixed, the same command remakes just what failed.
        broken.inject(error_next=0)
        bounded(lambda: run_cli("run", str(job), "--out", str(out)))
    final = [r for r in rows(out) if r["status"] == "ok"]
    assert len(final) == 24 and len({r["id"] for r in final}) == 24


# -- preflight across servers ---------------------------------------------------------------------


class _NoDpm(Catalog):
    """A server whose KSampler lacks dpmpp_2m (an older ComfyUI, or a trimmed list)."""

    def object_info(self, inputs: list[str], class_type: str | None = None) -> dict[str, Any]:
        found = super().object_info(inputs, class_type)
        for entry in found.values():
            sampler = entry["input"]["required"].get("sampler_name")
            if sampler and isinstance(sampler[0], list):
                sampler[0] = [s for s in sampler[0] if s != "dpmpp_2m"]
        return found


def test_a_name_one_server_lacks_is_refused_naming_it_with_nothing_queued_anywhere(
    tmp_path: Path, run_cli: RunCli
) -> None:
    with (
        MockComfy() as full,
        MockComfy(catalog=Catalog(checkpoints=(CKPT,))) as no_taesd,
        MockComfy(catalog=_NoDpm()) as no_dpm,
    ):
        servers = [full, no_taesd, no_dpm]
        job = write_job(
            tmp_path,
            servers,
            f"""defaults: {{steps: 2, width: 64, height: 64, sampler_name: "DPM++ 2M"}}
grid: {{checkpoint: [{CKPT}, {TAESD}]}}
prompts: ["a cat"]
seeds: [1]
""",
        )
        result = run_cli("run", str(job), "--out", str(tmp_path / "out"), expect=2)
        states = [
            (posted(s), queue(s), requests.get(s.url + "/history", timeout=5).json())
            for s in servers
        ]
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert any(f"{job}:4:" in t and TAESD in t and no_taesd.url in t for t in lines)
    assert any(f"{job}:3:" in t and "dpmpp_2m" in t and no_dpm.url in t for t in lines)
    assert full.url not in result.err
    for sent, waiting, history in states:
        assert sent == [] and history == {}
        assert waiting == {"queue_running": [], "queue_pending": []}
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


# -- Ctrl-C twice ---------------------------------------------------------------------------------


def test_ctrl_c_twice_leaves_every_servers_queue_empty(tmp_path: Path) -> None:
    # 4 steps of 0.3 s: the second signal lands while each server samples; n_iter 2 makes each
    # payload two prompts, so a worker is mid-payload when it is stopped.
    with comfies(3, step_delay=0.3) as servers:
        job = write_job(
            tmp_path,
            servers,
            f"defaults: {{checkpoint: {CKPT}, steps: 4, width: 64, height: 64, n_iter: 2}}\n"
            'prompts: ["a cat"]\nseeds: {start: 1, count: 12}\n',
        )
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "sdbatch", "run", str(job), "--out", str(out)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            # Every server runs one of sdbatch's prompts and holds the next in its queue.
            code, err = sigint_twice_when(
                proc,
                lambda: all(queue(s)["queue_pending"] for s in servers),
                "sdbatch never kept every server busy",
            )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=TIMEOUT)
        assert code == 130, err
        assert "Traceback" not in err
        for server in servers:
            assert queue(server) == {"queue_running": [], "queue_pending": []}, server.url
            remaining = requests.get(server.url + "/prompt", timeout=5).json()["exec_info"]
            assert remaining["queue_remaining"] == 0
            ran = {e.prompt_id: e for e in server.recorder.executions}
            ids = [g["prompt_id"] for g in posted(server)]
            # The waiting prompt was deleted (it never ran), the running one interrupted.
            assert any(p not in ran for p in ids), server.url
            assert any(e.status == "error" for e in ran.values()), server.url
            # Nothing was posted once sdbatch began deleting its prompts there.
            log = server.recorder.requests
            first_delete = next(
                n for n, r in enumerate(log) if r.path == "/queue" and r.method == "POST"
            )
            assert not [r for r in log[first_delete:] if r.path == "/prompt" and r.method == "POST"]
    assert len([r for r in rows(out) if r["status"] == "ok"]) < 24
