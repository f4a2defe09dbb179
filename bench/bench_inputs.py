"""Planning an img2img job over a 10,000-picture folder: time and memory must not grow with the
pictures' bytes.

Two folders of N pictures each: small distinct PNGs (16x16, ~80 bytes) and large ones (copies
of one 320x320 noise PNG, ~300 KB each: thousands of times the bytes, 3 GB for N = 10,000).
Each measurement is a child process with the same imports (Python start-up included in every
row, so the ratios are fair), best of two, so the files are in the page cache: reading all
bytes is timed at its cheapest.

- stat floor: `os.stat` of every picture, the least any plan that notices a changed picture
  must do;
- plan: `load_job` + `build_plan` + counting, as `sdbatch plan` does before printing;
- read all: every byte of every picture read, which a plan that hashed or decoded pictures up
  front would at least do.

Usage: python bench/bench_inputs.py [--pictures N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from _common import timed
from PIL import Image


def child(mode: str, target: str) -> None:
    if mode == "plan":
        from sdbatch.job.loader import load_job
        from sdbatch.plan.expand import build_plan

        plan = build_plan(load_job(target))
        assert plan.payload_count == len(plan.pictures) > 0
    elif mode == "stat":
        for entry in os.scandir(target):
            os.stat(entry.path)
    elif mode == "read":
        for entry in os.scandir(target):
            with open(entry.path, "rb") as file:
                while file.read(1 << 20):
                    pass


def make_folders(root: Path, count: int) -> tuple[Path, Path]:
    small, large = root / "small", root / "large"
    small.mkdir()
    large.mkdir()
    for i in range(count):
        Image.new("RGB", (16, 16), (i % 256, i // 256 % 256, 7)).save(small / f"{i:05d}.png")
    noise = random.Random(1).randbytes(320 * 320 * 3)
    big = root / "big.png"
    Image.frombytes("RGB", (320, 320), noise).save(big, compress_level=1)
    for i in range(count):
        shutil.copyfile(big, large / f"{i:05d}.png")
    for name in ("small", "large"):
        (root / f"{name}.yaml").write_text(
            f"name: {name}\ninputs: {{dir: {name}}}\nprompts: ['{{input}}, oil painting']\n"
            "defaults: {steps: 20, denoising_strength: 0.5}\nseeds: [1]\n",
            encoding="utf-8",
        )
    return small, large


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small, large = make_folders(root, args.pictures)
        sizes = {p: sum(f.stat().st_size for f in p.iterdir()) for p in (small, large)}

        def measure(mode: str, target: Path) -> tuple[float, float]:
            runs = [timed([sys.executable, __file__, "--child", mode, str(target)])[:2]]
            runs += [timed([sys.executable, __file__, "--child", mode, str(target)])[:2]]
            return min(r[0] for r in runs), max(r[1] for r in runs)  # best of two, warm cache

        rows = {
            "stat floor, small": measure("stat", small),
            "plan, small": measure("plan", root / "small.yaml"),
            "plan, large": measure("plan", root / "large.yaml"),
            "read all, small": measure("read", small),
            "read all, large": measure("read", large),
        }
    base_s, base_mb = rows["stat floor, small"]
    small_mb, large_gb = sizes[small] / 1e6, sizes[large] / 1e9
    print(f"{args.pictures} pictures: small {small_mb:.1f} MB, large {large_gb:.1f} GB")
    print("| measurement | seconds | peak RSS MB | time vs stat floor | RSS vs stat floor |")
    print("|---|---|---|---|---|")
    for name, (seconds, mb) in rows.items():
        print(
            f"| {name} | {seconds:.2f} | {mb:.0f} | {seconds / base_s:.2f}x | {mb / base_mb:.2f}x |"
        )
    plan_s, plan_mb = rows["plan, small"]
    large_s, large_mb = rows["plan, large"]
    print(
        f"plan large / plan small: time {large_s / plan_s:.2f}x, RSS {large_mb / plan_mb:.2f}x "
        f"for {sizes[large] / sizes[small]:.0f}x the bytes"
    )
    print(f"read all large / plan large: {rows['read all, large'][0] / large_s:.2f}x the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
