"""Benchmark: does sdbatch keep the webui busy, and does it cost anything per image?

(a) images/s of sdbatch's pipeline vs. the plain post -> decode -> write loop (the one-off script
    sdbatch replaces) on the same payloads, against a stand-in webui in its own process with no
    generation delay, answering 512x512 noise PNGs (~0.8 MB, the size of real pictures): every
    millisecond of client overhead shows. Also the client's CPU per image (user + sys of this
    process / images). sdbatch runs twice: as it is (txt2img answers uncompressed) and with
    `server.gzip: true` (what it did before: the webui gzips every answer). Target ratio >= 1.0.
(b) server utilisation (time spent generating / wall time) when each image costs the server
    100 ms, for both. Target for sdbatch >= 0.98.

Usage: python bench/bench_run.py [--images N] [--rounds R]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
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


def make_plan(url: str, images: int, gzip: bool = False) -> Plan:
    server = ServerConfig(url=url, timeout=60, retries=0, gzip=gzip)
    return build_plan(bench_job(server, images))


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


def throughput(images: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Per way of running: (median images/s, median client CPU ms per image)."""
    rates: dict[str, list[float]] = {"plain": [], "sdbatch": [], "sdbatch, gzip": []}
    cpu: dict[str, list[float]] = {name: [] for name in rates}
    with webuis(1, None, "--noise") as (url,), tempfile.TemporaryDirectory() as tmp:
        plans = {"plain": make_plan(url, images), "sdbatch": make_plan(url, images)}
        plans["sdbatch, gzip"] = make_plan(url, images, gzip=True)
        plain_loop(make_plan(url, 5), Path(tmp))  # warm up both sides
        for r in range(rounds):
            for name in rates:
                fn = plain_loop if name == "plain" else sdbatch_run
                out = Path(tmp) / f"{name.replace(', ', '-')}{r}"
                out.mkdir()
                before = os.times()
                rates[name].append(images / fn(plans[name], out))
                after = os.times()
                used = after.user - before.user + after.system - before.system
                cpu[name].append(used / images * 1000)
    return {n: (statistics.median(rates[n]), statistics.median(cpu[n])) for n in rates}


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

    found = throughput(args.images, args.rounds)
    base, ours = found["plain"][0], found["sdbatch"][0]
    u_base, u_ours = utilisation(args.slow_images, 0.1)
    gz_rate, gz_cpu = found["sdbatch, gzip"]
    rows = [
        ("(a) images/s, zero server delay", f"{base:.1f}", f"{ours:.1f}", ours / base, ">= 1.0"),
        (
            "    same, sdbatch with gzip (before)",
            f"{base:.1f}",
            f"{gz_rate:.1f}",
            gz_rate / base,
            "",
        ),
        (
            "    client CPU ms/image",
            f"{found['plain'][1]:.2f}",
            f"{found['sdbatch'][1]:.2f}",
            found["sdbatch"][1] / found["plain"][1],
            "",
        ),
        (
            "    client CPU ms/image, gzip (before)",
            f"{found['plain'][1]:.2f}",
            f"{gz_cpu:.2f}",
            gz_cpu / found["plain"][1],
            "",
        ),
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
        f"({args.images} images x {args.rounds} rounds, median; 512x512 noise PNG; "
        f"utilisation over {args.slow_images} images)"
    )


if __name__ == "__main__":
    main()
