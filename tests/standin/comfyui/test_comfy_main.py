"""`python -m sdbatch.standin.comfyui`: a real subprocess that prints its URL, serves, takes
faults over HTTP (`/mock/...`), and stops on SIGTERM (and on SIGINT) with exit 0 and no
traceback; a taken port is a one-line error."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
import requests
from comfyhelp import graph, listening_url, until_done

TIMEOUT = 30


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sdbatch.standin.comfyui", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_until_signalled(sig: signal.Signals) -> None:
    proc = start("--step-delay", "0.01")
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        stats = requests.get(url + "/system_stats", timeout=TIMEOUT).json()
        assert stats["system"]["comfyui_version"] == "0.3.64"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_taken_port_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "sdbatch.standin.comfyui", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    assert proc.returncode == 3
    assert proc.stderr.startswith(f"cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in proc.stderr


def test_faults_and_log_over_http() -> None:
    """A separate process is steered through /mock/faults and read through /mock/log."""
    proc = start()
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        bad = requests.post(url + "/mock/faults", json={"nope": 1}, timeout=TIMEOUT)
        assert (bad.status_code, bad.json()) == (400, {"error": "unknown fault setting(s): nope"})
        settings = requests.post(url + "/mock/faults", json={"error_next": 1}, timeout=TIMEOUT)
        assert settings.json()["error_next"] == 1
        with listening_url(url, "m") as ws:
            answer = requests.post(
                url + "/prompt", json={"prompt": graph(), "client_id": "m"}, timeout=TIMEOUT
            )
            messages = until_done(ws, answer.json()["prompt_id"])
        assert "execution_error" in [m["type"] for m in messages]
        log = requests.get(url + "/mock/log", timeout=TIMEOUT).json()
        assert [e["status"] for e in log["executions"]] == ["error"]
        assert ("POST", "/prompt", 200) in [
            (r["method"], r["path"], r["status"]) for r in log["requests"]
        ]
        proc.terminate()
        proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 0
