"""Ctrl-C twice at a running `sdbatch run`, once the servers are as a test wants them."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

TIMEOUT = 60.0


def sigint_twice_when(
    proc: subprocess.Popen[str], ready: Callable[[], bool], never: str
) -> tuple[int, str]:
    """Wait (bounded) for `ready()`, send SIGINT twice 50 ms apart, and return the exit code
    and stderr; `never` is the failure message when the servers never get ready."""
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        assert time.monotonic() < deadline, never
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, err
