"""Benchmark: several webuis sharing one run, and model loads of a checkpoint sweep.

(a) images/s with 1, 2, 4 and 8 stand-in webuis, each in its own process, each image costing
    the webui 100 ms; printed as a ratio to one webui. Target: >= 0.95 x N.
(b) model loads the stand-in counts for a 3-checkpoint x 30-cell job. Target: 3.

Usage: python bench/bench_servers.py [--images N]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import requests
from _common import bench_job, webuis

from sdbatch.backends.a1111.connect import connect
from sdbatch.job.loader import Axis, Job, ServerConfig
from sdbatch.output.writer import RunInfo
from sdbatch.plan.expand import build_plan
from sdbatch.run.progress import Console
from sdbatch.run.runner import run_job
from sdbatch.standin.a1111 import MockWebui

DELAY = 0.1


def job(urls: list[str], images: int, grid: tuple[Axis, ...] = ()) -> Job:
    server = ServerConfig(url=urls[0], urls=tuple(urls), timeout=60, retries=0)
    return bench_job(server, images, prompt="a lighthouse at dusk", size=64, grid=grid)


def images_per_second(urls: list[str], images: int) -> float:
    the_job = job(urls, images)
    plan = build_plan(the_job)
    fleet = connect(the_job)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_job(
            plan,
            Path(tmp),
            connection=fleet,
            console=Console(io.StringIO(), io.StringIO()),
            run_info=RunInfo("bench", "d", "t"),
        )
        elapsed = time.perf_counter() - start
    assert result.saved == images, result.summary()
    return images / elapsed


def naive_loads(names: list[str]) -> int:
    """Baseline: the same 90 images sent cell by cell with the checkpoint changing fastest and
    the webui's default restore_afterwards, as a hand-written loop would."""
    with MockWebui() as server:
        for cfg in range(1, 31):
            for name in names:
                payload = {
                    "prompt": "a lighthouse at dusk",
                    "seed": 1,
                    "steps": 20,
                    "width": 64,
                    "height": 64,
                    "cfg_scale": cfg,
                    "override_settings": {"sd_model_checkpoint": name},
                }
                requests.post(server.url + "/sdapi/v1/txt2img", json=payload, timeout=60)
        return server.model_loads


def model_loads() -> tuple[int, int, int]:
    with MockWebui() as server, tempfile.TemporaryDirectory() as tmp:
        names = [
            m["model_name"]
            for m in requests.get(server.url + "/sdapi/v1/sd-models", timeout=10).json()
        ][:3]
        cells = (("checkpoint", tuple(names)), ("cfg_scale", tuple(range(1, 31))))
        the_job = job([server.url], 1, grid=cells)
        fleet = connect(the_job)
        result = run_job(
            build_plan(the_job),
            Path(tmp),
            connection=fleet,
            console=Console(io.StringIO(), io.StringIO()),
            run_info=RunInfo("bench", "d", "t"),
        )
        assert result.saved == 90, result.summary()
        return naive_loads(names), server.model_loads, result.model_switches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="images per webui")
    args = parser.parse_args()
    rates = {}
    for n in (1, 2, 4, 8):
        with webuis(n, DELAY) as urls:
            rates[n] = images_per_second(urls, args.images * n)
    print(f"{'webuis':>7} {'images/s':>9} {'ratio to 1':>11} {'target':>7}")
    for n, rate in rates.items():
        print(f"{n:>7} {rate:>9.2f} {rate / rates[1]:>11.2f} {0.95 * n:>7.2f}")
    naive, loads, switches = model_loads()
    print(
        f"model loads, 3 checkpoints x 30 cells: sdbatch {loads} (it counted {switches} "
        f"switches), checkpoint-innermost loop {naive}, ratio {loads / naive:.3f}; target <= 3 "
        "(the stand-in starts with one of the three loaded)"
    )
    print(f"({args.images} images per webui, {DELAY * 1000:.0f} ms per image, 64x64)")


if __name__ == "__main__":
    main()
