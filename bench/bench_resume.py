"""Benchmark: how long a rerun takes to find what is left of a big job before its first request.

A 100,000-image job (one prompt x 100,000 seeds) whose output dir holds a 100,000-row manifest
and the 100,000 small files it names; 1% of them deleted, so there is something left to do.
Measured: claiming the dir and reading the manifest (`open_output`, which stats every file) plus
walking the plan for the ids left (`todo`). Baseline, in the same run: only reading and parsing
the manifest's lines, the least any resume must do. Target: <= 2 s.

Usage: python bench/bench_resume.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from _common import bench_job

from sdbatch.job.loader import ServerConfig
from sdbatch.output.resume import open_output, todo
from sdbatch.plan.expand import Plan, build_plan


def make_plan(rows: int) -> Plan:
    return build_plan(bench_job(ServerConfig(), rows))


def populate(out: Path, plan: Plan) -> int:
    """Write the files and the manifest a finished run would have left; delete 1% of files."""
    missing = 0
    with (out / "manifest.jsonl").open("w") as manifest:
        for item in plan:
            name = f"{item.index:06d}-{item.payload['seed']}.png"
            path = out / name
            path.write_bytes(b"x" * 64)
            st = path.stat()
            row = {
                "id": item.image_id(0),
                "status": "ok",
                "job": "bench",
                "file": name,
                "seed": item.payload["seed"],
                "sha256": "0" * 64,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "payload": dict(item.payload),
            }
            manifest.write(json.dumps(row) + "\n")
            if item.index % 100 == 0:
                os.unlink(path)
                missing += 1
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    plan = make_plan(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        missing = populate(out, plan)

        start = time.perf_counter()
        with (out / "manifest.jsonl").open() as fh:
            parsed = sum(1 for line in fh if json.loads(line))
        baseline = time.perf_counter() - start

        start = time.perf_counter()
        state = open_output(out, "bench")
        left = todo(plan, state.done)
        found = time.perf_counter() - start
        state.release()

    assert parsed == args.rows and left.images == missing, (left.images, missing)
    print(f"{'measure':44} {'seconds':>8} {'ratio':>7}  target")
    print(f"{'baseline: parse every manifest line':44} {baseline:>8.3f} {1.0:>7.2f}")
    print(
        f"{'sdbatch: lock, read, stat files, walk plan':44} {found:>8.3f} "
        f"{found / baseline:>7.2f}  <= 2 s"
    )
    print(f"({args.rows} rows, {missing} images left to do)")


if __name__ == "__main__":
    main()
