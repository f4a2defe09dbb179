"""Benchmark: does sdbatch keep the webui busy, and does it cost anything per image?

(a) images/s of sdbatch's pipeline vs. the plain post -> decode -> write loop (the one-off script
    sdbatch replaces) on the same payloads, against a stand-in webui in its own process with no
    generation delay: every millisecond of client overhead shows. Target ratio >= 1.0.
(b) server utilisation (time spent generating / wall time) when each image costs the server
    100 ms, for both. Target for sdbatch >= 0.98.

Usage: python bench/bench_run.py [--images N] [--rounds R]
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import tempfile
import time
from pathlib import Path

import requests
from _common import bench_job, webuis

from sdbatch.backends.a1111.connect import Fleet
from sdbatch.backends.a1111.worker import Worker
from sdbatch.job.loader import ServerConfig
from sdbatch.output.writer import RunInfo
from sdbatch.plan.expand import Plan, build_plan
from sdbatch.run.progress import Console
from sdbatch.run.runner import run_job
from sdbatch.standin.a1111 import MockWebui


def make_plan(url: str, images: int) -> Plan:
    return build_plan(bench_job(ServerConfig(url=url, timeout=60, retries=0), images))


def plain_loop(plan: Plan, out: Path) -> float:
    """The one-off script, verbatim in spirit: post, decode, write, next."""
    url = plan.job.server.url + "/sdapi/v1/txt2img"
    start = time.perf_counter()
    for item in plan:
        r = requests.post(url, json=dict(item.payload), timeout=60).json()
        (out / f"{item.index}.png").write_bytes(base64.b64decode(r["images"][0]))
    return time.perf_counter() - start


def sdbatch_run(plan: Plan, out: Path) -> float:
    console = Console(io.StringIO(), io.StringIO())
    start = time.perf_counter()
    result = run_job(
        plan,
        out,
        connection=Fleet([Worker(plan.job.server)], {}),
        console=console,
        run_info=RunInfo("bench", "d", "t"),
    )
    elapsed = time.perf_counter() - start
    assert result.saved == plan.image_count, result.summary()
    return elapsed


def throughput(images: int, rounds: int) -> tuple[float, float]:
    base: list[float] = []
    ours: list[float] = []
    with webuis(1) as (url,), tempfile.TemporaryDirectory() as tmp:
        plan = make_plan(url, images)
        plain_loop(make_plan(url, 5), Path(tmp))  # warm up both sides
        for r in range(rounds):
            for name, fn, times in (("plain", plain_loop, base), ("sdbatch", sdbatch_run, ours)):
                out = Path(tmp) / f"{name}{r}"
                out.mkdir()
                times.append(images / fn(plan, out))
    return statistics.median(base), statistics.median(ours)


def utilisation(images: int, delay: float) -> tuple[float, float]:
    results = []
    for fn in (plain_loop, sdbatch_run):
        with MockWebui(image_delay=delay) as srv, tempfile.TemporaryDirectory() as tmp:
            wall = fn(make_plan(srv.url, images), Path(tmp))
            results.append(srv.busy_seconds / wall)
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow-images", type=int, default=50)
    args = parser.parse_args()

    base, ours = throughput(args.images, args.rounds)
    u_base, u_ours = utilisation(args.slow_images, 0.1)
    rows = [
        ("(a) images/s, zero server delay", f"{base:.1f}", f"{ours:.1f}", ours / base, ">= 1.0"),
        (
            "(b) server utilisation, 100 ms/image",
            f"{u_base:.3f}",
            f"{u_ours:.3f}",
            u_ours,
            ">= 0.98",
        ),
    ]
    print(f"{'measure':40} {'plain loop':>11} {'sdbatch':>9} {'ratio':>7}  target")
    for name, b, o, ratio, target in rows:
        print(f"{name:40} {b:>11} {o:>9} {ratio:>7.3f}  {target}")
    print(
        f"({args.images} images x {args.rounds} rounds, median; 512x512 PNG; "
        f"utilisation over {args.slow_images} images)"
    )


if __name__ == "__main__":
    main()
