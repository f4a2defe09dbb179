"""Benchmark: several webuis sharing one run, and model loads of a checkpoint sweep.

(a) images/s with 1, 2, 4, 8 and 16 stand-in webuis (`--servers`), each in its own process,
    each image costing the webui 100 ms; printed as a ratio to one webui. Target: >= 0.95 x N,
    >= 0.9 x N from 16 on, where one writer thread saves every webui's 10 images/s.
(b) model loads the stand-in counts for a 3-checkpoint x 30-cell job, and the switches sdbatch
    counted, min / median / max over `--repeat` runs on fresh stand-ins (the race that sent a
    checkpoint's first request ahead of the previous one's last showed in some runs only).
    Target: 2 loads in every run (the stand-in starts with the first checkpoint loaded), and
    as many switches counted.

Usage: python bench/bench_servers.py [--images N] [--servers 1,2,4,8,16] [--repeat R]
"""

from __future__ import annotations

import argparse
import io
import statistics
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
# (b): short, so the repeats are quick, but non-zero, so the second request in flight waits in
# the webui's queue as it does on a real GPU.
SWEEP_DELAY = 0.01


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


def sweep_names() -> list[str]:
    with MockWebui() as server:
        models = requests.get(server.url + "/sdapi/v1/sd-models", timeout=10).json()
    return [m["model_name"] for m in models][:3]


def sweep_loads(names: list[str]) -> tuple[int, int]:
    """One 3 x 30 sweep on a fresh stand-in: (loads it counted, switches sdbatch counted)."""
    with MockWebui(image_delay=SWEEP_DELAY) as server, tempfile.TemporaryDirectory() as tmp:
        cells = (("checkpoint", tuple(names)), ("cfg_scale", tuple(range(1, 31))))
        the_job = job([server.url], 1, grid=cells)
        result = run_job(
            build_plan(the_job),
            Path(tmp),
            connection=connect(the_job),
            console=Console(io.StringIO(), io.StringIO()),
            run_info=RunInfo("bench", "d", "t"),
        )
        assert result.saved == 90, result.summary()
        return server.model_loads, result.model_switches


def spread(values: list[int]) -> str:
    return f"{min(values)} / {statistics.median(values):g} / {max(values)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="images per webui")
    parser.add_argument(
        "--servers", default="1,2,4,8,16", help="webui counts to try, comma-separated"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of the sweep, at least 5")
    args = parser.parse_args()
    counts = sorted({int(n) for n in args.servers.split(",")} | {1})  # 1: the ratios' base
    if args.repeat < 5:
        parser.error("--repeat must be at least 5")
    rates = {}
    for n in counts:
        with webuis(n, DELAY) as urls:
            rates[n] = images_per_second(urls, args.images * n)
    print(f"{'webuis':>7} {'images/s':>9} {'ratio to 1':>11} {'target':>7}")
    for n, rate in rates.items():
        target = (0.95 if n < 16 else 0.9) * n
        print(f"{n:>7} {rate:>9.2f} {rate / rates[1]:>11.2f} {target:>7.2f}")
    print(f"({args.images} images per webui, {DELAY * 1000:.0f} ms per image, 64x64)")
    names = sweep_names()
    runs = [sweep_loads(names) for _ in range(args.repeat)]
    loads, switches = [r[0] for r in runs], [r[1] for r in runs]
    naive = naive_loads(names)
    print(
        f"model loads, 3 checkpoints x 30 cells, {args.repeat} runs, min / median / max: "
        f"sdbatch {spread(loads)} (it counted {spread(switches)} switches; "
        f"{sum(a != b for a, b in runs)} run(s) counted otherwise than loaded); "
        f"checkpoint-innermost loop {naive}, ratio {statistics.median(loads) / naive:.3f}; "
        f"target 2 in every run (the stand-in starts with the first of the three loaded), "
        f"{SWEEP_DELAY * 1000:.0f} ms per image"
    )


if __name__ == "__main__":
    main()
