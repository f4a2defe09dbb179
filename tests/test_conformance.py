"""bench/conformance.py against the stand-in, in CI: the scenarios the real webui passed
(README "Tested against") pass here too, and a webui that substitutes is caught."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(command: str, probe: str, *args: str) -> Iterator[str]:
    """`sdbatch COMMAND --port P ARGS` (a stand-in) in its own process, as the real server runs:
    SIGINT and timing are real. Yields its URL once `probe` answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "sdbatch", command, "--port", str(port), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(url + probe, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stand_in(*args: str) -> Iterator[str]:
    """The A1111 stand-in in its own process."""
    yield from serve("mock-webui", "/sdapi/v1/progress", *args)


@pytest.fixture
def tiny() -> Iterator[str]:
    # Steps cost time, so the hard-stop scenario has a long job to stop.
    yield from stand_in("--catalog", "tiny", "--step-delay", "0.02")


def conformance(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(ROOT / "bench" / "conformance.py"), "--server", url]
    return subprocess.run(
        [*cmd, "--keep", str(tmp_path)], capture_output=True, text=True, timeout=240
    )


def rows(output: str) -> dict[str, str]:
    table = [line.split(" | ") for line in output.splitlines() if line.startswith("| ")]
    return {cells[0].lstrip("| "): cells[1] for cells in table[1:]}


def test_every_scenario_passes_against_the_stand_in(tiny: str, tmp_path: Path) -> None:
    result = conformance(tiny, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert len(table) == 12 and set(table.values()) == {"PASS"}, result.stdout
    # It left the server as it found it.
    options = requests.get(tiny + "/sdapi/v1/options", timeout=5).json()
    assert options["CLIP_stop_at_last_layers"] == 1
    assert options["sd_model_checkpoint"].startswith("tinyC")


def test_a_webui_that_changes_the_steps_fails_the_table(tmp_path: Path) -> None:
    for url in stand_in("--catalog", "tiny", "--substitute", "steps=3"):
        result = conformance(url, tmp_path)
    assert result.returncode == 1
    table = rows(result.stdout)
    assert table["cats-like job"] == "FAIL" and table["misspelled names refused"] == "PASS"
