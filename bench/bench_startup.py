"""Benchmark: how long the commands that need no server take to start and finish.

Times, as subprocess wall time, `python -c pass` (the interpreter alone), `sdbatch --help`,
`sdbatch validate jobs/cats.yaml` and `sdbatch plan jobs/sweep.yaml`, each run `--runs` times
after one unmeasured warm-up (so the page cache holds the .pyc files), and prints min / median /
max, and the median and the min each as a ratio to `python -c pass`'s (the min is the steadier
one on a busy machine). Whatever is above 1.0 is sdbatch's imports and work; `--help` does no
work, so its ratio is imports alone.

Usage: python bench/bench_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# jobs/ is named relative to the repo root, so every command runs from there.
ROOT = Path(__file__).resolve().parent.parent

COMMANDS: tuple[tuple[str, list[str]], ...] = (
    ("python -c pass", ["-c", "pass"]),
    ("sdbatch --help", ["-m", "sdbatch", "--help"]),
    ("sdbatch validate jobs/cats.yaml", ["-m", "sdbatch", "validate", "jobs/cats.yaml"]),
    ("sdbatch plan jobs/sweep.yaml", ["-m", "sdbatch", "plan", "jobs/sweep.yaml"]),
)


def wall_time(args: list[str]) -> float:
    start = time.perf_counter()
    # check=True: a command that fails early would look fast, so a failure stops the bench.
    subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def measure(args: list[str], runs: int) -> list[float]:
    wall_time(args)  # warm-up, not counted
    return [wall_time(args) for _ in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="measured runs per command (>= 5)")
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5")

    results = [(name, measure(cmd, args.runs)) for name, cmd in COMMANDS]
    base_median, base_min = statistics.median(results[0][1]), min(results[0][1])
    print(
        f"{'command':34} {'min ms':>8} {'median ms':>10} {'max ms':>8} "
        f"{'ratio median':>13} {'ratio min':>10}"
    )
    for name, times in results:
        median = statistics.median(times)
        print(
            f"{name:34} {min(times) * 1e3:>8.1f} {median * 1e3:>10.1f} {max(times) * 1e3:>8.1f} "
            f"{median / base_median:>13.2f} {min(times) / base_min:>10.2f}"
        )
    print(f"({args.runs} runs each after a warm-up; ratios to python -c pass)")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # Then a checkout without __pycache__ compiles sdbatch's modules on every run, which an
        # installed sdbatch does not: the figures above are higher than a user's.
        print("(PYTHONDONTWRITEBYTECODE is set: modules without a cached .pyc compile every run)")


if __name__ == "__main__":
    main()
