"""Running sdbatch in-process against hostile input with a bound: a case that hangs fails after
LIMIT seconds instead of stalling the suite, and no case may leak a traceback."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import CliResult, RunCli

LIMIT = 60.0  # seconds any one case may take before it counts as a hang


def bounded(call: Callable[[], CliResult], seconds: float = LIMIT) -> CliResult:
    """Run `call` on a thread; fail if it has not finished in `seconds` (a hang)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # re-raised on the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    result: CliResult = box["result"]
    assert "Traceback" not in result.err + result.out
    return result


def run(run_cli: RunCli, job: Path, expect: int, *extra: str) -> CliResult:
    """`sdbatch run JOB --out JOB_DIR/out EXTRA...`, bounded, expecting exit `expect`."""
    out = job.parent / "out"
    return bounded(lambda: run_cli("run", str(job), "--out", str(out), *extra, expect=expect))
