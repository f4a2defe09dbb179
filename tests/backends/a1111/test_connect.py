"""Know the server: preflight on every webui flavour, silent substitutions caught per image,
several webuis sharing one run, and credentials that never reach the output."""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from conftest import RunCli
from conftest import manifest_rows as rows
from PIL import Image

from sdbatch.cli import main
from sdbatch.run.progress import Console
from sdbatch.standin.a1111 import MockWebui

ROOT = Path(__file__).resolve().parents[3]
CATS = ROOT / "jobs" / "cats.yaml"
BEHAVIOURS = ["v1.10", "v1.9", "v1.8", "forge", "sdnext"]


def txt2img_requests(server: MockWebui) -> list[Any]:
    return [r for r in server.requests if r.path == "/sdapi/v1/txt2img"]


def write_job(tmp_path: Path, **job: Any) -> Path:
    path = tmp_path / "job.yaml"
    base: dict[str, Any] = {"name": "t", "prompts": ["a cat"], "seeds": [1, 2]}
    base["defaults"] = {"steps": 3, "width": 64, "height": 64}
    path.write_text(yaml.safe_dump({**base, **job}, sort_keys=False))
    return path


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_cats_job_gets_the_intended_sampler_and_schedule_everywhere(
    behaviour: str, run_cli: RunCli, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with MockWebui(behaviour=behaviour) as server:
        run_cli("run", str(CATS), "--server", server.url, "--out", str(out))
    found = rows(out)
    assert [r["status"] for r in found] == ["ok"] * 4
    for row in found:
        with Image.open(out / row["file"]) as img:
            params = img.info["parameters"]
        if behaviour == "v1.8":  # no schedule field there: the legacy combined name does it
            assert "Sampler: DPM++ 2M Karras," in params
            assert "scheduler" not in row["payload"]
        elif behaviour == "sdnext":  # no scheduler field: Karras is its sigma schedule
            assert "Sampler: DPM++ 2M," in params and "Sampler sigma: karras" in params
            assert row["payload"]["schedulers_sigma"] == "karras"
        else:
            assert "Sampler: DPM++ 2M, Schedule type: Karras," in params
        assert "Steps: 25," in params and "CFG scale: 7.5," in params


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("sampler_name", "DPM++ 2N", "DPM++ 2M"),
        ("scheduler", "Karas", "Karras"),
        ("checkpoint", "v1-5-pruned-emaonli", "v1-5-pruned-emaonly"),
    ],
)
def test_misspelled_names_fail_preflight_before_any_image(
    behaviour: str, field: str, value: str, hint: str, run_cli: RunCli, tmp_path: Path
) -> None:
    defaults = {"steps": 3, "width": 64, "height": 64, "sampler_name": "Euler", field: value}
    job = write_job(tmp_path, defaults=defaults)
    with MockWebui(behaviour=behaviour) as server:
        result = run_cli(
            "run", str(job), "--server", server.url, "--out", str(tmp_path / "o"), expect=2
        )
        assert txt2img_requests(server) == []
    assert f"{job}:" in result.err and value in result.err
    assert f"did you mean '{hint}" in result.err
    assert "Traceback" not in result.err


def test_legacy_webui_without_the_combined_name_fails_preflight(
    run_cli: RunCli, tmp_path: Path
) -> None:
    defaults = {"sampler_name": "DPM fast", "scheduler": "Karras", "width": 64, "height": 64}
    job = write_job(tmp_path, defaults=defaults)
    with MockWebui(behaviour="v1.8") as server:
        result = run_cli(
            "run", str(job), "--server", server.url, "--out", str(tmp_path / "o"), expect=2
        )
        assert txt2img_requests(server) == []
    assert "DPM fast Karras" in result.err


def test_silent_substitution_gives_mismatch_rows_never_ok(run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with MockWebui(substitute={"sampler_name": "Euler a"}) as server:
        result = run_cli("run", str(CATS), "--server", server.url, "--out", str(out))
        strict = run_cli(
            "run",
            str(CATS),
            "--server",
            server.url,
            "--out",
            str(tmp_path / "strict"),
            "--strict",
            expect=1,
        )
    found = rows(out)
    assert [r["status"] for r in found] == ["mismatch"] * 4
    assert all(r["mismatch"] == {"sampler_name": ["DPM++ 2M", "Euler a"]} for r in found)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["mismatched"]) == 4 and summary["exit_code"] == 0
    assert "did not make what was asked" in result.err
    assert "4 mismatched" in strict.err


def test_checkpoint_sweep_loads_each_model_once(run_cli: RunCli, tmp_path: Path) -> None:
    # Named as users write them (model_name); tests/run/test_run.py runs the race at the
    # checkpoint boundaries many times over.
    with MockWebui() as server:
        models = json.loads(_get(server.url + "/sdapi/v1/sd-models"))[:3]
        names = [m["model_name"] for m in models]
        job = write_job(
            tmp_path, grid={"checkpoint": names, "cfg_scale": [4, 5, 6, 7, 8]}, seeds=[1, 2]
        )
        out = tmp_path / "out"
        run_cli("run", str(job), "--server", server.url, "--out", str(out))
        loads = server.model_loads
    assert len(names) == 3
    summary = json.loads((out / "summary.json").read_text())
    # The webui starts on the first of them: two loads, and two switches counted.
    assert (loads, summary["model_switches"]) == (2, 2)
    sent = [r["payload"] for r in rows(out)]
    assert all(p["override_settings_restore_afterwards"] is False for p in sent)
    titles = {
        r["cell"]["checkpoint"]: r["payload"]["override_settings"]["sd_model_checkpoint"]
        for r in rows(out)
    }
    assert titles == {m["model_name"]: m["title"] for m in models}


def _get(url: str) -> str:
    return requests.get(url, timeout=10).text


@contextlib.contextmanager
def webuis(n: int, **options: Any) -> Iterator[list[MockWebui]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(MockWebui(seed=i, **options)) for i in range(n)]


def _many(tmp_path: Path, servers: list[MockWebui], count: int) -> Path:
    return write_job(
        tmp_path,
        server={"urls": [s.url for s in servers], "retries": 1, "timeout": 30},
        prompts=["a cat", "a dog"],
        seeds={"start": 1, "count": count // 2},
        defaults={"steps": 2, "width": 64, "height": 64},
    )


def test_four_webuis_share_200_images_each_made_once(run_cli: RunCli, tmp_path: Path) -> None:
    with webuis(4, step_delay=0.005) as servers:
        job = _many(tmp_path, servers, 200)
        out = tmp_path / "out"
        run_cli("run", str(job), "--out", str(out))
        made = [(g.prompt, g.seed) for s in servers for g in s.generated]
        share = [len(s.generated) for s in servers]
    assert len(made) == len(set(made)) == 200
    assert all(n > 0 for n in share)
    assert len([r for r in rows(out) if r["status"] == "ok"]) == 200
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["images_per_server"].values()) == sorted(share)


def test_losing_a_webui_mid_run_finishes_on_the_others(run_cli: RunCli, tmp_path: Path) -> None:
    with webuis(4, step_delay=0.01) as servers:
        job = _many(tmp_path, servers, 200)
        out = tmp_path / "out"
        victim = servers[1]

        def kill_when_busy() -> None:
            while len(victim.generated) < 5:
                time.sleep(0.01)
            victim.stop()

        killer = threading.Thread(target=kill_when_busy)
        killer.start()
        result = run_cli("run", str(job), "--out", str(out))
        killer.join()
    found = rows(out)
    assert len({r["id"] for r in found if r["status"] == "ok"}) == 200
    assert "sits out" in result.err


def test_secrets_never_reach_output_or_logs(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    log = tmp_path / "run.log"
    monkeypatch.setenv("PROXY_TOKEN", "t0ps3cret")
    job = write_job(tmp_path, server={"headers": {"X-Proxy-Token": "${PROXY_TOKEN}"}})
    with MockWebui(auth=("user", "s3cret")) as server:
        result = run_cli(
            "run",
            str(job),
            "--server",
            server.url,
            "--out",
            str(out),
            "--api-auth",
            "user:s3cret",
            "--log-file",
            str(log),
        )
        wrong = run_cli(
            "run",
            str(job),
            "--server",
            server.url,
            "--out",
            str(tmp_path / "w"),
            "--api-auth",
            "user:wrong",
            expect=None,
        )
        monkeypatch.setenv("SDBATCH_API_AUTH", "user:s3cret")
        by_env = run_cli("run", str(job), "--server", server.url, "--out", str(tmp_path / "e"))
    assert len(rows(out)) == 2
    assert wrong.code != 0 and "wrong" not in wrong.err
    everything = [result.err, result.out, wrong.err, by_env.err, log.read_text()]
    for path in [*out.rglob("*"), *(tmp_path / "e").rglob("*")]:
        if path.is_file():
            everything.append(path.read_bytes().decode("latin-1"))
    for text in everything:
        assert "s3cret" not in text and "t0ps3cret" not in text


def test_credentials_in_the_url_are_refused(run_cli: RunCli, tmp_path: Path) -> None:
    job = write_job(tmp_path)
    result = run_cli(
        "run",
        str(job),
        "--server",
        "http://user:s3cret@127.0.0.1:9",
        "--out",
        str(tmp_path / "o"),
        expect=2,
    )
    assert "s3cret" not in result.err and "--api-auth" in result.err


def test_check_command(run_cli: RunCli, webui: MockWebui) -> None:
    result = run_cli("check", str(CATS), "--server", webui.url)
    assert "ok on" in result.out
    assert txt2img_requests(webui) == []


def test_terminal_progress_shows_the_sampling_step(tmp_path: Path) -> None:
    job = write_job(tmp_path, seeds=[1], defaults={"steps": 15, "width": 64, "height": 64})
    err = io.StringIO()
    with MockWebui(step_delay=0.15) as server:  # one image, 2.25 s: the bar polls once a second
        code = main(
            ["run", str(job), "--server", server.url, "--out", str(tmp_path / "o")],
            Console(io.StringIO(), err, is_tty=True),
        )
        polls = [r for r in server.requests if r.path.startswith("/sdapi/v1/progress")]
    assert code == 0
    assert re.search(r"step \d+/15", err.getvalue()), err.getvalue()
    assert polls and all(r.query == "skip_current_image=true" for r in polls)
