"""The command line: invalid jobs reach no server; errors are one line, never a traceback."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RunCli

from sdbatch.standin.a1111 import MockWebui

ROOT = Path(__file__).resolve().parent.parent
INVALID = sorted((ROOT / "tests" / "data" / "jobs" / "invalid").glob("*.yaml"))


def expected_position(path: Path) -> str:
    # The first line of every invalid case is `# expect: LINE:COL SUBSTRING`.
    line_col = path.read_text().splitlines()[0].split()[2]
    return f"{path}:{line_col}: "


def expected_message(path: Path) -> str:
    return path.read_text().splitlines()[0].split(maxsplit=3)[3]


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_job_exits_2_and_sends_nothing(
    path: Path, webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    result = run_cli("run", str(path), "--server", webui.url, "--out", str(tmp_path), expect=2)
    assert expected_position(path) in result.err
    assert expected_message(path) in result.err
    assert "Traceback" not in result.err
    assert webui.requests == []
    assert list(tmp_path.iterdir()) == []  # not even an output dir


def test_validate_reports_every_file(run_cli: RunCli) -> None:
    good = ROOT / "jobs" / "cats.yaml"
    result = run_cli("validate", str(good), str(INVALID[0]), str(INVALID[1]), expect=2)
    assert expected_position(INVALID[0]) in result.err
    assert expected_position(INVALID[1]) in result.err
    assert run_cli("validate", str(good)).code == 0


def test_missing_job_file_is_a_clear_error(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("plan", str(tmp_path / "nope.yaml"), expect=2)
    assert "nope.yaml" in result.err and "Traceback" not in result.err


def test_console_script_entry_point_runs() -> None:
    # `python -m sdbatch` is the same entry point as the installed `sdbatch` script.
    proc = subprocess.run(
        [sys.executable, "-m", "sdbatch", "validate", str(INVALID[0])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert expected_position(INVALID[0]) in proc.stderr
    assert "Traceback" not in proc.stderr


# What only `run`, `check` and `mock-webui` need; `--help`, `validate` and `plan` must not pay
# for importing them.
RUN_ONLY = (
    "requests",
    "urllib3",
    "tenacity",
    "PIL",
    "filelock",
    "sdbatch.backends.base",
    "sdbatch.backends.session",
    "sdbatch.backends.a1111.worker",
    "sdbatch.output.resume",
    "sdbatch.run.runner",
    "sdbatch.standin.a1111",
    "sdbatch.standin.a1111.webui",
)
# What validate and plan need, but --help does not.
JOB_ONLY = ("yaml", "jsonschema", "sdbatch.job.loader")
IMPORTED_AFTER = """
import contextlib, io, json, sys
import sdbatch.cli
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    code = sdbatch.cli.main(sys.argv[1:])
    assert code == 0, code
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize(
    ("argv", "absent"),
    [
        (["--help"], RUN_ONLY + JOB_ONLY),
        (["validate", "jobs/cats.yaml"], RUN_ONLY),
        (["plan", "jobs/sweep.yaml"], RUN_ONLY),
    ],
    ids=["help", "validate", "plan"],
)
def test_commands_without_a_server_import_no_run_only_module(
    argv: list[str], absent: tuple[str, ...]
) -> None:
    for name in absent:  # each name is a real module, so its absence below means something
        importlib.import_module(name)
    proc = subprocess.run(
        [sys.executable, "-c", IMPORTED_AFTER, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    imported = set(json.loads(proc.stdout.splitlines()[-1]))
    assert sorted(imported & set(absent)) == []
