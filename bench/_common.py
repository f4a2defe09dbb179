"""What the benchmark scripts share: stand-in webuis in their own processes, and the job they run.

Imported as a sibling module: running `python bench/bench_x.py` puts `bench/` on `sys.path`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from sdbatch.job.loader import Axis, Job, OutputSpec, PromptSpec, SeedSpec, ServerConfig

PROMPT = "a lighthouse at dusk, oil painting"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def webuis(n: int, image_delay: float | None = None, *args: str) -> Iterator[list[str]]:
    """`n` stand-in webuis, each in its own process (so the client's time is not theirs), each
    answering /progress before their URLs are yielded; stopped on the way out."""
    procs, urls = [], []
    try:
        for _ in range(n):
            port = free_port()
            cmd = [sys.executable, "-m", "sdbatch", "mock-webui", "--port", str(port)]
            if image_delay is not None:
                cmd += ["--image-delay", str(image_delay)]
            cmd += args
            procs.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            for _ in range(200):
                try:
                    requests.get(url + "/sdapi/v1/progress", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.05)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


@contextlib.contextmanager
def comfyui(step_delay: float) -> Iterator[str]:
    """One stand-in ComfyUI in its own process, `step_delay` seconds per sampler step; its URL
    (which it prints once it listens) is yielded; stopped on the way out."""
    cmd = [sys.executable, "-m", "sdbatch.standin.comfyui", "--port", "0"]
    cmd += ["--step-delay", str(step_delay)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip() if proc.stdout else ""
        if not url.startswith("http://"):
            raise SystemExit(f"{cmd} did not start (exit {proc.wait(10)})")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB and stderr of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} exited {proc.returncode}: {err[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, err


def bench_job(
    server: ServerConfig,
    images: int,
    *,
    prompt: str = PROMPT,
    size: int = 512,
    grid: tuple[Axis, ...] = (),
) -> Job:
    """One prompt x `images` seeds (1, 2, ...) at `size` x `size`, crossed with `grid`."""
    defaults: dict[str, Any] = {"steps": 20, "width": size, "height": size, "sampler_name": "Euler"}
    return Job(
        path=Path("bench.yaml"),
        name="bench",
        server=server,
        defaults=defaults,
        prompts=(PromptSpec(prompt),),
        grid=grid,
        seeds=SeedSpec(start=1, count=images),
        extra_fields={},
        output=OutputSpec(),
    )
