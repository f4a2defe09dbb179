"""Benchmark: memory of a run does not grow with the run.

Runs `sdbatch run` (in its own process, against a stand-in in another) on one prompt x N seeds
of small images with no latency, for N = 10^3 and N = 10^5 by default, and prints each run's
peak RSS and its ratio to the smallest run's. Target: the biggest run within 1.2x of the
smallest (the gallery, the writer and the progress must not keep a row per image).

Usage: python bench/bench_memory.py [--images 1000 100000] [--batch B]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from _common import free_port, timed


def run(job_file: Path, out: Path, url: str) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "sdbatch", "run", str(job_file), "--out", str(out)]
    seconds, rss, _ = timed([*cmd, "--server", url, "--wait", "30", "--quiet"])
    return seconds, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--batch", type=int, default=4, help="images per request")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sdbatch", "mock-webui", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.images:
                job = {
                    "name": f"mem{n}",
                    "defaults": {"steps": 1, "width": 64, "height": 64, "batch_size": args.batch},
                    "prompts": ["a lighthouse at dusk"],
                    "seeds": {"start": 1, "count": n // args.batch},
                }
                job_file = Path(tmp) / f"mem{n}.yaml"
                job_file.write_text(yaml.safe_dump(job), encoding="utf-8")
                out = Path(tmp) / f"out{n}"
                seconds, rss = run(job_file, out, f"http://127.0.0.1:{port}")
                done = json.loads((out / "summary.json").read_text())["done"]
                results.append((n, done, seconds, rss))
    finally:
        server.terminate()
        server.wait(10)
    base = results[0][3]
    print(f"{'images':>8} {'saved':>8} {'seconds':>8} {'peak RSS MB':>12} {'ratio':>6}")
    for n, done, seconds, rss in results:
        print(f"{n:>8} {done:>8} {seconds:>8.1f} {rss:>12.1f} {rss / base:>6.2f}")
    print("target: every ratio <= 1.2")


if __name__ == "__main__":
    main()
