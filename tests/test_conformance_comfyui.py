"""bench/conformance_comfyui.py against the ComfyUI stand-in, in CI: the scenarios the real
ComfyUI 0.3.64 passed pass here too, and a server that fails its prompts fails the table."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from test_conformance import ROOT, serve
from test_conformance import rows as cells


@pytest.fixture
def comfy() -> Iterator[str]:
    yield from serve("mock-comfyui", "/system_stats", "--step-delay", "0.05")


def rows(output: str) -> dict[str, str]:
    """scenario -> result of the two-column table."""
    return {name: result.rstrip(" |") for name, result in cells(output).items()}


def conformance(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(ROOT / "bench" / "conformance_comfyui.py"), "--server", url]
    return subprocess.run(
        [*cmd, "--keep", str(tmp_path)], capture_output=True, text=True, timeout=240
    )


def test_every_scenario_passes_against_the_stand_in(comfy: str, tmp_path: Path) -> None:
    result = conformance(comfy, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert len(table) == 9 and set(table.values()) == {"PASS"}, result.stdout
    # SIGINT twice and the rest left nothing of sdbatch's queued.
    queue = requests.get(comfy + "/queue", timeout=5).json()
    assert queue["queue_pending"] == [] and queue["queue_running"] == []


def test_a_server_whose_prompts_fail_fails_the_table(comfy: str, tmp_path: Path) -> None:
    requests.post(comfy + "/mock/faults", json={"error_next": 1000}, timeout=5).raise_for_status()
    result = conformance(comfy, tmp_path)
    assert result.returncode == 1
    table = rows(result.stdout)
    assert table["built-in graph job (n_iter 2, batch 2)"].startswith("FAIL")
