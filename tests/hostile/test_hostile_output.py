"""Hostile output dirs, by class: links and special files planted in the dir, tampered manifest
rows, sdbatch's own names taken by something else, output dir templates, unwritable output,
`--log-file` under errors, `--traceback` anywhere, and payloads the plan holds twice.

Every case checks what applies of: the message, the exit code, no traceback, bounded time
(hang-prone cases run `sdbatch` in a subprocess with a timeout), nothing written or read outside
the output dir, and no image recorded `ok` that is not the webui's.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RunCli, write_tiny_job
from conftest import manifest_rows as rows_of

from sdbatch.cli import main
from sdbatch.errors import JobValidationError
from sdbatch.output.manifest import read_records
from sdbatch.run.progress import Console
from sdbatch.standin.a1111 import MockWebui

TIMEOUT = 60  # seconds a subprocess may take before it counts as hung


def write_job(tmp_path: Path, url: str, prompts: list[Any], seeds: Any, **extra: Any) -> Path:
    return write_tiny_job(tmp_path, url, prompts, seeds, name="hostile", **extra)


def run_sub(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`sdbatch ARGS` in a subprocess; a hang fails the test through the timeout."""
    cmd = [sys.executable, "-m", "sdbatch", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def clean(text: str) -> None:
    assert "Traceback" not in text
    assert "I/O operation on closed file" not in text


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (links not followed) and its bytes: to show nothing changed."""
    found: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(folder))] = path.read_bytes()
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the output dir, with a file someone would not want overwritten."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim.png").write_bytes(b"precious, not an image")
    return folder


# --- Links and special files planted in the output dir -----------------------------------------


def test_links_and_a_fifo_at_image_names_are_stepped_around_not_written_through(
    webui: MockWebui, tmp_path: Path, outside: Path
) -> None:
    job = write_job(tmp_path, webui.url, ["a lighthouse"], [1, 2, 3, 4])
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(outside)
    # The names the first images take (filename template {index:05d}-{seed}).
    (out / "00000-1.png").symlink_to(outside / "victim.png")
    (out / "00001-2.png").symlink_to(tmp_path / "nowhere" / "dangling.png")
    os.mkfifo(out / "00002-3.png")
    (out / "00003-4.png").symlink_to(outside)  # a link to a folder
    result = run_sub("run", str(job), "--out", str(out), "--quiet")
    clean(result.stderr)
    assert result.returncode == 0, result.stderr
    assert snapshot(outside) == before  # nothing written through a link
    rows = rows_of(out)
    assert sorted(r["status"] for r in rows) == ["ok"] * 4
    for row in rows:
        path = out / row["file"]
        assert not path.is_symlink() and path.is_file()
        assert row["file"] not in ("00000-1.png", "00001-2.png", "00002-3.png", "00003-4.png")


def test_a_linked_sheets_folder_is_refused_with_a_message_and_nothing_lands_outside(
    webui: MockWebui, tmp_path: Path, outside: Path
) -> None:
    job = write_job(tmp_path, webui.url, ["a", "b"], [1, 2], sheet={"x": "seed", "y": "prompt"})
    out = tmp_path / "out"
    out.mkdir()
    (out / "sheets").symlink_to(outside)
    before = snapshot(outside)
    result = run_sub("run", str(job), "--out", str(out))
    clean(result.stderr)
    assert result.returncode == 0, result.stderr  # pictures never change the exit code
    assert "sheets is a symbolic link" in result.stderr
    assert snapshot(outside) == before
    assert (out / "index.html").is_file()  # the gallery is still drawn


@pytest.mark.parametrize("name", ["manifest.jsonl", ".sdbatch.owner", "manifest.idx"])
def test_a_link_at_one_of_sdbatchs_own_files_stops_the_run_before_writing_through_it(
    webui: MockWebui, tmp_path: Path, outside: Path, name: str
) -> None:
    job = write_job(tmp_path, webui.url, ["x"], [1])
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(outside / "victim.png")
    before = snapshot(outside)
    result = run_sub("run", str(job), "--out", str(out))
    clean(result.stderr)
    assert result.returncode == 3, result.stderr
    assert "symbolic link" in result.stderr
    assert snapshot(outside) == before
    assert not webui.generated  # stopped before anything was sent


@contextlib.contextmanager
def a_run_holding(tmp_path: Path) -> Iterator[tuple[Path, Path, subprocess.Popen[bytes]]]:
    """(job, out, process): an `sdbatch run` in a subprocess that holds `out` (its owner file is
    there) for the whole block, killed after it."""
    with MockWebui(image_delay=0.3) as webui:
        job = write_job(tmp_path, webui.url, ["x"], {"start": 1, "count": 40})
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "sdbatch", "run", str(job), "--out", str(out), "--quiet"]
        holder = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + TIMEOUT
            while not (out / ".sdbatch.owner").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            yield job, out, holder
        finally:
            holder.kill()
            holder.wait(timeout=TIMEOUT)


def test_a_fifo_planted_as_the_lock_owner_does_not_hang_the_second_run(tmp_path: Path) -> None:
    with a_run_holding(tmp_path) as (job, out, _):
        (out / ".sdbatch.owner").unlink()
        os.mkfifo(out / ".sdbatch.owner")
        result = run_sub("run", str(job), "--out", str(out))
    assert result.returncode == 3, result.stderr
    assert "another sdbatch run (pid ?) is writing to" in result.stderr
    clean(result.stderr)


# --- Tampered manifest rows --------------------------------------------------------------------


def _tamper(out: Path, outside: Path) -> dict[str, str]:
    """Point five ok rows at files outside the rule; returns id -> the name it now holds.
    Size and mtime are set to the target's, so only the rule (not a stale stamp) rejects them."""
    rows = rows_of(out)
    victim = outside / "victim.png"
    os.symlink("/dev/zero", out / "zero.png")
    os.mkfifo(out / "fifo.png")
    os.symlink(victim, out / "link.png")
    names = [os.path.relpath(victim, out), str(victim), "zero.png", "fifo.png", "link.png"]
    st = victim.stat()
    changed = {}
    for row, name in zip(rows, names, strict=False):
        row.update(file=name, size=st.st_size, mtime_ns=st.st_mtime_ns)
        changed[row["id"]] = name
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "manifest.idx").unlink()
    return changed


def test_resume_never_trusts_or_opens_a_row_pointing_outside_at_a_link_or_a_fifo(
    tmp_path: Path, outside: Path
) -> None:
    with MockWebui(seed=3) as webui:
        job = write_job(tmp_path, webui.url, ["a lighthouse"], [1, 2, 3, 4, 5, 6])
        out = tmp_path / "out"
        first = run_sub("run", str(job), "--out", str(out), "--quiet")
        assert first.returncode == 0, first.stderr
        changed = _tamper(out, outside)
        made = len(webui.generated)
        result = run_sub("run", str(job), "--out", str(out))
        clean(result.stderr)
        assert result.returncode == 0, result.stderr
        assert "1 done, 5 to do" in result.stderr  # the five tampered rows count as not done
        assert "is an absolute path" in result.stderr
        assert "leads outside the output dir" in result.stderr
        assert len(webui.generated) - made == 5
    latest = {r["id"]: r for r in rows_of(out)}
    for ident in changed:
        assert latest[ident]["status"] == "ok"
        assert (out / latest[ident]["file"]).is_file()
        assert not (out / latest[ident]["file"]).is_symlink()


@pytest.mark.parametrize("field", ["payload_index", "image_index"])
def test_a_row_claiming_a_huge_position_is_not_trusted_nor_allocated(
    tmp_path: Path, field: str
) -> None:
    with MockWebui(seed=3) as webui:
        job = write_job(tmp_path, webui.url, ["a lighthouse"], [1, 2, 3])
        out = tmp_path / "out"
        assert run_sub("run", str(job), "--out", str(out), "--quiet").returncode == 0
        rows = rows_of(out)
        rows[0][field] = 10**12  # its plan fingerprint still matches
        (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (out / "manifest.idx").unlink()
        made = len(webui.generated)
        result = run_sub("run", str(job), "--out", str(out))
        clean(result.stderr)
        assert result.returncode == 0, result.stderr
        assert "2 done, 1 to do" in result.stderr
        assert len(webui.generated) == made + 1


def test_a_nesting_bomb_or_odd_types_in_the_manifest_are_rows_skipped_not_tracebacks(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    job = write_job(tmp_path, webui.url, ["a lighthouse"], [1, 2])
    out = tmp_path / "out"
    run_cli("run", str(job), "--out", str(out), "--quiet")
    rows = rows_of(out)
    rows[0].update(file=42, id=["not", "a", "string"], image_index="0")
    lines = [json.dumps(r) + "\n" for r in rows]
    lines.insert(1, "[" * 100_000 + "]" * 100_000 + "\n")  # json.loads: RecursionError
    (out / "manifest.jsonl").write_text("".join(lines))
    (out / "manifest.idx").unlink()
    rerun = run_cli("run", str(job), "--out", str(out))
    assert "1 done, 1 to do" in rerun.err
    gallery = run_cli("gallery", str(out))
    clean(rerun.err + gallery.err)


def test_gallery_and_sheets_never_show_or_open_a_tampered_row(
    webui: MockWebui, tmp_path: Path, outside: Path
) -> None:
    job = write_job(tmp_path, webui.url, ["a lighthouse"], [1, 2, 3, 4, 5, 6])
    out = tmp_path / "out"
    assert run_sub("run", str(job), "--out", str(out), "--quiet").returncode == 0
    changed = _tamper(out, outside)
    gallery = run_sub("gallery", str(out))
    clean(gallery.stderr)
    assert gallery.returncode == 0, gallery.stderr
    page = (out / "index.html").read_text()
    for name in changed.values():
        assert f'href="{name}"' not in page and f'src="{name}"' not in page
    assert page.count("not shown: ") == 5
    assert "row" in gallery.stderr and "not shown" in gallery.stderr
    sheet = run_sub("sheet", str(out), "--x", "seed")
    clean(sheet.stderr)
    assert sheet.returncode == 0, sheet.stderr


# --- sdbatch's own names taken by something else -----------------------------------------------


def test_a_folder_named_like_a_temporary_file_is_a_clear_error(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    job = write_job(tmp_path, webui.url, ["x"], [1])
    out = tmp_path / "out"
    (out / ".00000-1.png.123.tmp").mkdir(parents=True)
    result = run_cli("run", str(job), "--out", str(out), expect=3)
    assert "is a folder named like a temporary file of sdbatch" in result.err
    clean(result.err)
    assert not webui.generated


def test_a_manifest_that_is_a_folder_is_a_clear_error_for_run_and_gallery(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    job = write_job(tmp_path, webui.url, ["x"], [1])
    out = tmp_path / "out"
    (out / "manifest.jsonl").mkdir(parents=True)
    result = run_cli("run", str(job), "--out", str(out), expect=3)
    assert "manifest.jsonl is not a regular file" in result.err
    gallery = run_cli("gallery", str(out), expect=2)
    assert "manifest.jsonl is not a regular file" in gallery.err
    clean(result.err + gallery.err)


def test_temporary_files_of_sheets_and_pages_killed_mid_write_are_swept(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    job = write_job(tmp_path, webui.url, ["a", "b"], [1], sheet={"x": "prompt"})
    out = tmp_path / "out"
    run_cli("run", str(job), "--out", str(out), "--quiet")
    # What a sheet or page killed mid-write leaves: `.NAME.PID.tmp` beside its target.
    left = [out / ".index.html.4242.tmp", out / "sheets" / ".sheet-all.png.4242.tmp"]
    for path in left:
        path.write_bytes(b"half a file")
    run_cli("run", str(job), "--out", str(out), "--quiet")
    assert [p for p in left if p.exists()] == []


# --- Output dir templates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("renders/{job}", "{job} is not a field it can use"),
        ("renders/{name.__class__}", "{name.__class__} is not a field it can use"),
        ("renders/{name[0]}", "{name[0]} is not a field it can use"),
        ("renders/{name!r}", "{name!r} is not a field it can use"),
        ("renders/{0}", "{0} is not a field it can use"),
        ("renders/{", "Single '{' encountered"),
    ],
)
def test_an_out_template_may_use_only_its_documented_names(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path, template: str, message: str
) -> None:
    job = write_job(tmp_path, webui.url, ["x"], [1])
    out = str(tmp_path / template)
    result = run_cli("run", str(job), "--out", out, expect=2)
    assert message in result.err
    assert "use {name}, {date}, {time}" in result.err or "Single" in message
    assert "hostile" not in result.err  # nothing was evaluated into the message
    assert not (tmp_path / "renders").exists()
    assert not webui.requests


def test_a_job_named_dot_dot_cannot_move_its_output_dir(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job's name comes from its file name when it has none: `...yaml` is named `..`.
    job = tmp_path / "...yaml"
    spec = {"server": {"url": webui.url}, "defaults": {"steps": 2}, "prompts": ["x"], "seeds": [1]}
    job.write_text(yaml.safe_dump(spec))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = run_cli("run", str(job), "--out", "renders/{name}", expect=2)
    clean(result.err)
    assert list(work.iterdir()) == []  # nothing written into the working dir
    assert not webui.generated


# --- Unwritable output -------------------------------------------------------------------------
# Tests run as root, which file permissions do not stop, and a read-only mount needs privileges
# CI may not have; a path running through a regular file, or a folder where a file must go,
# fails the same way for root.


def test_sheets_and_gallery_that_cannot_be_written_are_clear_errors(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    job = write_job(tmp_path, webui.url, ["a", "b"], [1, 2])
    out = tmp_path / "out"
    run_cli("run", str(job), "--out", str(out), "--quiet")
    (out / "sheets").write_text("a file where the sheets folder goes")
    sheet = run_cli("sheet", str(out), "--x", "seed", expect=3)
    assert "cannot write" in sheet.err and "sheets" in sheet.err
    # The page's temporary name, taken by a folder: the gallery cannot be written.
    (out / f".index.html.{os.getpid()}.tmp").mkdir()
    gallery = run_cli("gallery", str(out), expect=3)
    assert "cannot write" in gallery.err and "index.html" in gallery.err
    clean(sheet.err + gallery.err)


# --- --log-file under errors -------------------------------------------------------------------


def test_log_file_errors_keep_their_exit_codes_and_reach_the_log(
    run_cli: RunCli, tmp_path: Path
) -> None:
    log = tmp_path / "night.log"
    unreachable = write_job(tmp_path, "http://127.0.0.1:9", ["x"], [1])
    args = ("--out", str(tmp_path / "o"), "--quiet", "--log-file", str(log))
    first = run_cli("run", str(unreachable), *args, expect=3)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nprompts: [x]\nseeds: [1]\ndefaults: {steps: -3}\n")
    second = run_cli("run", str(bad), *args, expect=2)
    text = log.read_text()
    assert "cannot reach the webui" in text
    assert "invalid job file" in text and "bad.yaml:4" in text
    clean(first.err + second.err + text)


def test_log_file_on_a_locked_dir_exits_3_with_the_reason_in_the_log(tmp_path: Path) -> None:
    with a_run_holding(tmp_path) as (job, out, holder):
        log = tmp_path / "night.log"
        result = run_sub("run", str(job), "--out", str(out), "--log-file", str(log))
    assert result.returncode == 3, result.stderr
    assert f"another sdbatch run (pid {holder.pid})" in log.read_text()
    clean(result.stderr + log.read_text())


def test_a_log_file_that_takes_nothing_is_a_clear_error(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    job = write_job(tmp_path, webui.url, ["x"], [1])
    result = run_cli(
        "run", str(job), "--out", str(tmp_path / "o"), "--log-file", "/dev/full", expect=3
    )
    assert "cannot write log file /dev/full: No space left on device" in result.err
    clean(result.err)
    assert not webui.generated


# --- --traceback anywhere ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "validate"])
def test_traceback_is_accepted_after_the_command(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nprompts: [x]\nseeds: [1]\ndefaults: {steps: -3}\n")
    argv = [command, str(bad), "--traceback"]  # before the command, it always worked
    with pytest.raises(JobValidationError):  # re-raised, as --traceback asks
        main(argv, Console(io.StringIO(), io.StringIO()))


# --- Payloads the plan holds twice -------------------------------------------------------------


def test_identical_payloads_survive_a_crash_and_every_reader_agrees_on_their_count(
    tmp_path: Path,
) -> None:
    """Two identical prompts: every planned image is made once, recorded once and shown, even
    when the run is killed (SIGKILL) half-way and resumed."""
    with MockWebui(image_delay=0.15, seed=5) as webui:
        job = write_job(tmp_path, webui.url, ["a cat", "a dog", "a cat"], [1, 2, 3, 4])
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "sdbatch", "run", str(job), "--out", str(out), "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:  # past the first "a cat" block, before the second
            path = out / "manifest.jsonl"
            if path.exists() and path.read_text().count("\n") >= 5:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=TIMEOUT)
        done_before = {r["id"] for r in rows_of(out)}
        assert 0 < len(done_before) < 12
        rerun = run_sub("run", str(job), "--out", str(out))
        clean(rerun.stderr)
        assert rerun.returncode == 0, rerun.stderr
        assert "12 payloads, 12 images" in rerun.stderr
        assert "payload #8 (prompt 3) is the same as payload #0 (prompt 1)" in rerun.stderr
    ok = [r for r in rows_of(out) if r["status"] == "ok"]
    assert len({r["id"] for r in ok}) == 12
    assert sorted(r["payload_index"] for r in ok) == list(range(12))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] + summary["done"] == 12
    records = read_records(out)  # what the gallery and sheets read
    assert len(records) == 12 and all(r.ok for r in records)
    page = (out / "index.html").read_text()
    assert all(f'"{r["file"]}"' in page for r in ok)
