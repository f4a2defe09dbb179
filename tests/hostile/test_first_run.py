"""A new user's first runs, by class: where the pictures are at the end of a run, what to run
after a failed or stopped one, warnings in plain words (a mismatch, Ctrl-C), and the files a
package is expected to carry (LICENSE, CHANGELOG, py.typed).

The paths a run prints are checked against the file system, and the command it says resumes
the run is run.
"""

from __future__ import annotations

import importlib.resources
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from conftest import RunCli, write_tiny_job

from sdbatch.standin.a1111 import MockWebui

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def write_job(tmp_path: Path, url: str, prompts: list[Any], seeds: Any, **extra: Any) -> Path:
    return write_tiny_job(tmp_path, url, prompts, seeds, name="first", **extra)


def said(err: str, label: str) -> str:
    """The text after `sdbatch: LABEL: ` on the one line that has it."""
    found = [line for line in err.splitlines() if line.startswith(f"sdbatch: {label}: ")]
    assert len(found) == 1, err
    return found[0].removeprefix(f"sdbatch: {label}: ")


def resume_command(err: str) -> list[str]:
    """The command the run says resumes it, as argv (without the leading `sdbatch`)."""
    match = re.search(r"the same command resumes: (.+)$", err, re.MULTILINE)
    assert match, err
    words = shlex.split(match.group(1))
    assert words[0] == "sdbatch"
    return words[1:]


# --- Where everything is, at the end of a run --------------------------------------------------


def test_a_finished_run_names_its_gallery_as_a_link_and_its_sheets_manifest_and_summary(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    job = write_job(tmp_path, webui.url, ["a", "b"], [1, 2], sheet={"x": "seed", "y": "prompt"})
    out = tmp_path / "out"
    err = run_cli("run", str(job), "--out", str(out)).err
    link = urlparse(said(err, "gallery"))
    assert link.scheme == "file"
    assert Path(unquote(link.path)) == out / "index.html"
    assert (out / "index.html").is_file()
    sheets = said(err, "sheets").split(" (and ")[0]
    assert Path(sheets).parent.parent == out / "sheets" and Path(sheets).is_file()
    assert Path(said(err, "manifest")) == out / "manifest.jsonl"
    assert Path(said(err, "summary")) == out / "summary.json"
    assert "resumes" not in err  # nothing left to do


# --- After a failed or stopped run: the command that resumes it ---------------------------------


def test_a_failed_run_prints_the_command_that_resumes_it_and_that_command_does(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    job = write_job(tmp_path, webui.url, ["a", "b"], [1, 2])
    # A template with {time}: the rerun must name the dir this run used, not a new one.
    template = str(tmp_path / "renders" / "{name}-{time}")
    webui.inject(fail_next=1, fail_status=422, fail_message="no such script")
    first = run_cli("run", str(job), "--out", template, expect=1)
    argv = resume_command(first.err)
    assert "1 image(s) not made" in first.err
    dirs = list((tmp_path / "renders").iterdir())
    assert len(dirs) == 1 and str(dirs[0]) in argv
    time.sleep(1.1)  # {time} would now name another dir
    second = run_cli(*argv)
    assert "3 done, 1 to do" in second.err
    assert list((tmp_path / "renders").iterdir()) == dirs
    assert "resumes" not in second.err


def test_fresh_is_not_in_the_resume_command(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    job = write_job(tmp_path, webui.url, ["a"], [1, 2])
    out = tmp_path / "out"
    run_cli("run", str(job), "--out", str(out), "--quiet")
    webui.inject(fail_next=1, fail_status=422)
    first = run_cli("run", str(job), "--out", str(out), "--fresh", expect=1)
    argv = resume_command(first.err)
    assert "--fresh" not in argv and str(tmp_path / "out-2") in argv
    assert "1 done, 1 to do" in run_cli(*argv).err


def test_the_resume_command_and_the_log_never_show_credentials(
    run_cli: RunCli, tmp_path: Path
) -> None:
    log = tmp_path / "run.log"
    with MockWebui(auth=("user", "s3cret")) as webui:
        job = write_job(tmp_path, webui.url, ["a"], [1, 2])
        webui.inject(fail_next=1, fail_status=422)
        args = ("--api-auth", "user:s3cret", "--log-file", str(log))
        first = run_cli("run", str(job), "--out", str(tmp_path / "out"), *args, expect=1)
    line = [x for x in first.err.splitlines() if "resumes" in x]
    assert line and "s3cret" not in line[0] and "--api-auth" not in line[0]
    assert "credentials, which are not shown" in line[0]
    assert "s3cret" not in log.read_text()


def test_ctrl_c_is_not_called_an_error_and_the_printed_command_resumes_the_run(
    tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MockWebui(image_delay=0.2) as webui:
        write_job(tmp_path, webui.url, ["a"], {"start": 1, "count": 20})
        monkeypatch.chdir(tmp_path)  # the printed command is relative, as typed
        cmd = [sys.executable, "-m", "sdbatch", "run", "job.yaml", "--out", "out"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + TIMEOUT
        manifest = tmp_path / "out" / "manifest.jsonl"
        while time.monotonic() < deadline and not (manifest.exists() and manifest.stat().st_size):
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        stop = [line for line in err.splitlines() if "Ctrl-C" in line]
        assert stop and not any("error" in line for line in stop)
        argv = resume_command(err)
        assert argv == ["run", "job.yaml", "--out", "out"]
        rest = run_cli(*argv)
    assert "20/20 done" in rest.err


# --- Warnings in plain words -------------------------------------------------------------------


def test_a_mismatch_is_one_plain_warning_per_kind_not_an_error(
    run_cli: RunCli, tmp_path: Path
) -> None:
    with MockWebui(substitute={"sampler_name": "Euler a"}) as webui:
        job = write_job(tmp_path, webui.url, ["a", "b"], [1, 2])
        path = job.read_text().replace("steps: 2", "steps: 2\n  sampler_name: DPM++ 2M")
        job.write_text(path)
        err = run_cli("run", str(job), "--out", str(tmp_path / "out")).err
    warning = said(err, "warning")
    assert 'sampler_name "Euler a" instead of "DPM++ 2M"' in warning
    assert not any(c in warning for c in "{}[]'")  # no Python notation
    assert "error" not in err
    assert "4 image(s) were made otherwise than asked" in err


# --- What the package carries ------------------------------------------------------------------


def test_license_changelog_and_py_typed_are_there() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^license = "MIT"$', pyproject, re.MULTILINE)
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    assert "Copyright (c) 2026 the sdbatch authors" in license_text
    changelog = (ROOT / "CHANGELOG.md").read_text()
    issues = [int(n) for n in re.findall(r"^## .*\(issue (\d+)\)", changelog, re.MULTILINE)]
    # One entry per issue; newest first means by when it was resolved (issue 9 after 13), so
    # the numbers need not descend, but the unreleased work leads.
    assert issues and len(issues) == len(set(issues))
    assert re.search(r"\A# Changelog\n(?:.*\n)*?## Unreleased", changelog)
    assert importlib.resources.files("sdbatch").joinpath("py.typed").is_file()
