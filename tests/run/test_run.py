"""End to end: job file -> plan -> worker -> writer, against the stand-in webui."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import requests
import yaml
from conftest import ImageOptions, RunCli
from PIL import Image

from sdbatch.backends.a1111.connect import Fleet
from sdbatch.backends.a1111.worker import Worker
from sdbatch.backends.base import Response
from sdbatch.job.loader import load_job
from sdbatch.output.writer import RunInfo
from sdbatch.plan.expand import build_plan
from sdbatch.run.progress import Console
from sdbatch.run.runner import run_job
from sdbatch.standin.a1111 import MockWebui

ROOT = Path(__file__).resolve().parents[2]


def manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def write_job(tmp_path: Path, **job: Any) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"name": "t", **job}, sort_keys=False))
    return path


def test_cats_job_writes_one_image_per_seed(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path, image_options: ImageOptions
) -> None:
    out = tmp_path / "cats"
    result = run_cli(
        "run", str(ROOT / "jobs" / "cats.yaml"), "--server", webui.url, "--out", str(out)
    )
    job = load_job(ROOT / "jobs" / "cats.yaml")
    seeds = list(build_plan(job).seeds)
    rows = sorted(manifest(out), key=lambda r: r["payload_index"])
    assert [r["seed"] for r in rows] == seeds
    assert all(r["status"] == "ok" for r in rows)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(r["file"] for r in rows)
    for row in rows:
        data = (out / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        with Image.open(io.BytesIO(data)) as img:
            assert img.size == (row["width"], row["height"]) == (512, 512)
            assert f"Seed: {row['seed']}," in img.info["parameters"]
        assert row["payload"]["sampler_name"] == row["sampler_name"] == "DPM++ 2M"
        assert row["scheduler"] == "Karras"
        assert row["payload"]["seed"] == row["seed"]
        assert row["server_version"] == "v1.10.1" and row["sd_model_hash"]
    assert f"{len(seeds)} images saved, 0 already done" in result.err
    # Exactly the original script's request, plus the seed sdbatch fixed and the checkpoint
    # the webui had loaded, so the row does not depend on what the webui runs later.
    sent = [r.body for r in webui.requests if r.path == "/sdapi/v1/txt2img"]
    assert len(sent) == len(seeds)
    assert min(sent, key=lambda body: body["seed"]) == {
        "negative_prompt": job.defaults["negative_prompt"],
        "steps": 25,
        "cfg_scale": 7.5,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
        "prompt": job.prompts[0].text,
        "seed": seeds[0],
        "override_settings": {
            **image_options(webui.url),
            "sd_model_checkpoint": webui.catalog.checkpoints[0].title,
        },
        "override_settings_restore_afterwards": False,
    }


def test_flaky_server_still_yields_every_image_once(webui: MockWebui, tmp_path: Path) -> None:
    webui.inject(fail_rate=0.3, reset_rate=0.1)
    job = load_job(
        write_job(
            tmp_path,
            server={"url": webui.url, "retries": 12, "timeout": 10},
            defaults={"steps": 2, "width": 64, "height": 64},
            prompts=[f"prompt {i}" for i in range(10)],
            seeds={"start": 1, "count": 4},
        )
    )
    plan = build_plan(job)
    out = tmp_path / "out"
    err = io.StringIO()
    result = run_job(
        plan,
        out,
        connection=Fleet([Worker(job.server, sleep=lambda s: None)], {}),
        console=Console(io.StringIO(), err),
        run_info=RunInfo("t", "d", "t"),
    )
    assert result.saved == 40 and result.failed == [] and result.exit_code == 0
    rows = manifest(out)
    assert len(rows) == 40 and len({r["id"] for r in rows}) == 40
    assert len(list(out.glob("*.png"))) == 40
    generated = [(g.prompt, g.seed) for g in webui.generated]
    assert len(generated) == len(set(generated)) == 40  # nothing generated twice
    assert sum(r["attempts"] > 1 for r in rows) > 0  # the faults really happened


def test_422_payload_fails_once_and_run_exits_1(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    path = write_job(
        tmp_path,
        defaults={"steps": 2, "width": 64, "height": 64},
        prompts=["fine", {"prompt": "broken", "script_name": "no such script"}, "also fine"],
        seeds=[5],
    )
    out = tmp_path / "out"
    result = run_cli("run", str(path), "--server", webui.url, "--out", str(out), expect=1)
    rows = sorted(manifest(out), key=lambda r: r["payload_index"])
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    failed = rows[1]
    assert failed["attempts"] == 1
    assert "Script 'no such script' not found" in failed["error"]
    assert "Script 'no such script' not found" in result.err
    broken = [r for r in webui.requests if r.body and r.body.get("prompt") == "broken"]
    assert len(broken) == 1


def test_plan_command_needs_no_server(run_cli: RunCli) -> None:
    result = run_cli("plan", str(ROOT / "jobs" / "sweep.yaml"), "--json")
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert "16 payloads, 16 images" in result.err
    assert [(p["steps"], p["cfg_scale"]) for p in lines][:5] == [
        (10, 3),
        (10, 5),
        (10, 7),
        (10, 9),
        (20, 3),
    ]
    limited = run_cli("plan", str(ROOT / "jobs" / "sweep.yaml"), "--limit", "2")
    assert limited.out.splitlines()[0] == "16 payloads, 16 images"
    assert len(limited.out.splitlines()) == 3


def test_unreachable_server_exits_3(run_cli: RunCli, tmp_path: Path) -> None:
    path = write_job(tmp_path, server={"retries": 0}, prompts=["x"], seeds=[1])
    result = run_cli(
        "run", str(path), "--server", "http://127.0.0.1:9", "--out", str(tmp_path / "o"), expect=3
    )
    assert "cannot reach" in result.err and "Traceback" not in result.err


SMALL = {"steps": 2, "width": 64, "height": 64}
CLIP = "CLIP_stop_at_last_layers"


def test_an_option_the_webui_holds_is_warned_about_kept_and_marked(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    # Another client (or yesterday's job) left Clip skip 2 on the webui (OBSERVED 1).
    webui.set_options({CLIP: 2})
    path = write_job(tmp_path, defaults=SMALL, prompts=["a cat"], seeds=[1, 2])
    out = tmp_path / "out"
    result = run_cli("run", str(path), "--server", webui.url, "--out", str(out))
    assert f"holds {CLIP} = 2" in result.err and "this job does not set it" in result.err
    rows = manifest(out)
    assert [r["status"] for r in rows] == ["mismatch", "mismatch"]
    for row in rows:
        asked, got, note = row["mismatch"][CLIP]
        assert (asked, got) == (1, 2) and "which this job did not ask for" in note
        assert row["parameters"]["Clip skip"] == "2"
        # Pinned in the row's payload: it makes the same image whatever the webui holds later.
        assert row["payload"]["override_settings"][CLIP] == 2
    webui.set_options({CLIP: 1})
    again = requests.post(f"{webui.url}/sdapi/v1/txt2img", json=rows[0]["payload"], timeout=10)
    assert base64.b64decode(again.json()["images"][0]) == (out / rows[0]["file"]).read_bytes()


def test_an_override_in_one_prompt_does_not_leak_into_the_next(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    prompts = [{"prompt": "a cat", "override_settings": {CLIP: 2}}, "a dog", "a cow"]
    path = write_job(tmp_path, defaults=SMALL, prompts=prompts, seeds=[1])
    out = tmp_path / "out"
    result = run_cli("run", str(path), "--server", webui.url, "--out", str(out))
    assert "holds" not in result.err
    rows = {r["payload"]["prompt"]: r for r in manifest(out)}
    assert {p: r["status"] for p, r in rows.items()} == dict.fromkeys(rows, "ok")
    skip = {p: r["parameters"].get("Clip skip") for p, r in rows.items()}
    assert skip == {"a cat": "2", "a dog": None, "a cow": None}
    # Whatever order they ran in, the webui ends up with the value of the last one sent.
    assert webui.options()[CLIP] in (1, 2)


def test_a_size_the_webui_rounds_is_a_mismatch(webui: MockWebui) -> None:
    # Validation refuses width 65, but a webui may still round (OBSERVED 5): the PNG tells.
    sent = {**SMALL, "width": 65, "prompt": "a cat", "seed": 1}
    answer = requests.post(f"{webui.url}/sdapi/v1/txt2img", json=sent, timeout=10)
    image = Fleet([], {}).decode(Response(sent, 0, answer.content))[0]
    diffs = Fleet([], {}).postcheck(webui.url, image)
    assert diffs["image_size"][:2] == ["65x64", "64x64"]
    assert "multiples of 8" in diffs["image_size"][2]


def test_no_preflight_says_it_was_skipped(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    path = write_job(tmp_path, defaults=SMALL, prompts=["a cat"], seeds=[1])
    out = tmp_path / "out"
    result = run_cli("run", str(path), "--server", webui.url, "--out", str(out), "--no-preflight")
    assert "preflight skipped" in result.err and "preflight passed" not in result.err


def test_a_checkpoint_sweep_loads_each_model_once_with_two_requests_in_flight(
    run_cli: RunCli, tmp_path: Path
) -> None:
    import random
    import time

    import pytest

    from sdbatch.backends.base import Outcome
    from sdbatch.plan.expand import PlannedPayload

    # With two requests in flight, the next checkpoint's first request used to overtake the
    # previous checkpoint's last one now and then (A, B, A, B: two loads too many), when the
    # thread sending the last one was held up between taking it and its request reaching the
    # webui (the GIL, a busy CPU). Holding a fifth of the requests there for longer than an
    # image takes makes that likelier than on a busy machine, and several runs on fresh webuis
    # give it several chances to show.
    dice = random.Random(7)
    submit = Worker.submit

    def held_up(self: Worker, item: PlannedPayload) -> Outcome:
        time.sleep(0.01 if dice.random() < 0.2 else 0)
        return submit(self, item)

    seen = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Worker, "submit", held_up)
        for run in range(10):
            here = tmp_path / str(run)
            here.mkdir()
            # Non-zero delays, so the second request in flight waits in the webui's queue.
            with MockWebui(step_delay=0.0005, image_delay=0.001) as server:
                names = [c.title for c in server.catalog.checkpoints]
                assert len(names) == 3 and server.loaded_model == names[0]
                grid = {"checkpoint": names, "cfg_scale": [1 + i / 2 for i in range(30)]}
                path = write_job(here, defaults=SMALL, prompts=["a cat"], grid=grid, seeds=[1])
                run_cli("run", str(path), "--server", server.url, "--out", str(here / "out"))
                loads = server.model_loads
            summary = json.loads((here / "out" / "summary.json").read_text())
            assert summary["done"] == 90
            seen.append((loads, summary["model_switches"]))
    # It starts on the first checkpoint, so only the other two are loaded, and sdbatch counts
    # the loads the webui made, not the checkpoints it asked for.
    assert seen == [(2, 2)] * 10, seen  # (loads, model_switches) of each run


def test_webuis_sharing_a_checkpoint_sweep_each_go_through_it_once(
    run_cli: RunCli, tmp_path: Path
) -> None:
    with MockWebui(seed=1, image_delay=0.002) as one, MockWebui(seed=2, image_delay=0.002) as two:
        names = [c.title for c in one.catalog.checkpoints]
        grid = {"checkpoint": names, "cfg_scale": [1 + i / 2 for i in range(30)]}
        path = write_job(
            tmp_path,
            server={"urls": [one.url, two.url]},
            defaults=SMALL,
            prompts=["a cat"],
            grid=grid,
            seeds=[1],
        )
        run_cli("run", str(path), "--out", str(tmp_path / "out"))
        made = [[g.model for g in server.generated] for server in (one, two)]
        loads = one.model_loads + two.model_loads
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["done"] == 90 and all(made)  # both had work
    for models in made:
        # A webui holding one checkpoint lets the next go to the other, never back and forth.
        order = [names.index(m) for m in models]
        assert order == sorted(order)
    assert summary["model_switches"] == loads


def test_a_stop_while_the_next_checkpoint_is_held_back_ends_the_run(tmp_path: Path) -> None:
    import signal
    import threading
    import time

    from sdbatch.backends.base import Outcome
    from sdbatch.run.dispatch import Stopper, dispatch

    with MockWebui(image_delay=0.4) as server:
        names = [c.title for c in server.catalog.checkpoints][:2]
        path = write_job(
            tmp_path,
            server={"url": server.url},
            defaults=SMALL,
            prompts=["a cat"],
            grid={"checkpoint": names},
            seeds=[1],
        )
        job = load_job(path)
        console = Console(io.StringIO(), io.StringIO())
        stopper = Stopper(console)
        delivered: list[Outcome] = []
        depth: list[int] = []

        def stop_once_the_first_generates() -> None:
            while server.queue_depth == 0:
                time.sleep(0.01)
            time.sleep(0.1)  # the second request would be queued at the webui by now
            depth.append(server.queue_depth)
            stopper(signal.SIGINT, None)

        stopping = threading.Thread(target=stop_once_the_first_generates)
        stopping.start()
        start = time.monotonic()
        error = dispatch(
            iter(build_plan(job)), [Worker(job.server)], delivered.append, stopper, console
        )
        stopping.join()
        assert depth == [1]  # the second was held back: it needs the other checkpoint
        assert error is None and time.monotonic() - start < 2
        assert [o.item.index for o in delivered] == [0]  # the one at the webui is saved
        assert [g.model for g in server.generated] == names[:1]
