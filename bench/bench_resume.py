"""Benchmark: a rerun of a finished big job, as `sdbatch run` does it, pictures included.

A job of one prompt x N seeds (default 100,000) whose output dir holds the manifest, the N small
files it names, the gallery and the summary a finished run leaves. Measured, each in its own
process, min/median/max of --repeat runs, wall time and peak RSS:

- baseline: read every manifest line with json.loads and stat the file it names — the least
  any resume must do;
- sdbatch: the whole `sdbatch run JOB --out DIR --server URL` on that dir (claim, read, check
  files, walk the plan, preflight against a stand-in, nothing to send, pictures, summary).

Targets: sdbatch <= 2x the baseline and <= 100 MB peak RSS at 10^5 rows; `--rows 1000000`:
<= 10 s and <= 200 MB.

Usage: python bench/bench_resume.py [--rows N] [--repeat K]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from _common import free_port, timed

from sdbatch.job.loader import load_job
from sdbatch.plan.expand import build_plan

BASELINE = """
import json, os, sys
out = sys.argv[1]
n = 0
with open(os.path.join(out, "manifest.jsonl"), "rb") as fh:
    for line in fh:
        row = json.loads(line)
        try:
            os.stat(os.path.join(out, row["file"]))
        except OSError:
            pass
        n += 1
print(n)
"""


def populate(out: Path, job_file: Path) -> None:
    """What a finished run leaves: every file, its row, then the gallery and summary."""
    plan = build_plan(load_job(job_file))
    out.mkdir()
    with (out / "manifest.jsonl").open("w") as manifest:
        for item in plan:
            name = f"{item.index:06d}-{item.payload['seed']}.png"
            path = out / name
            path.write_bytes(b"x" * 64)
            st = path.stat()
            row = {
                "id": item.image_id(0),
                "status": "ok",
                "file": name,
                "image_index": 0,
                "seed": item.payload["seed"],
                "sha256": "0" * 64,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "width": 64,
                "height": 64,
                "sampler_name": "Euler",
                "scheduler": "Automatic",
                "sd_model_name": "v1-5-pruned-emaonly",
                "job": "bench",
                "payload_id": item.id,
                "payload_index": item.index,
                "plan": plan.fingerprint,
                "prompt_index": 0,
                "cell": {},
                "vars": {},
                "payload": dict(item.payload),
                "parameters": {"Steps": "2", "Sampler": "Euler", "Seed": str(item.payload["seed"])},
                "attempts": 1,
                "error": None,
                "mismatch": None,
            }
            manifest.write(json.dumps(row) + "\n")


def stats(values: list[float]) -> str:
    return f"{min(values):7.2f} {statistics.median(values):7.2f} {max(values):7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sdbatch", "mock-webui", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            job = {
                "name": "bench",
                "defaults": {"steps": 2, "width": 64, "height": 64, "sampler_name": "Euler"},
                "prompts": ["a lighthouse at dusk"],
                "seeds": {"start": 1, "count": args.rows},
            }
            job_file = work / "bench.yaml"
            job_file.write_text(yaml.safe_dump(job), encoding="utf-8")
            out = work / "out"
            populate(out, job_file)
            run = [sys.executable, "-m", "sdbatch", "run", str(job_file), "--out", str(out)]
            run += ["--server", f"http://127.0.0.1:{port}", "--wait", "30", "--quiet"]
            timed(run)  # the first rerun builds the pictures a finished run would have left
            base = [timed([sys.executable, "-c", BASELINE, str(out)]) for _ in range(args.repeat)]
            ours = [timed(run) for _ in range(args.repeat)]
            summary = json.loads((out / "summary.json").read_text())
    finally:
        server.terminate()
        server.wait(10)
    assert summary["skipped"] == args.rows and summary["done"] == 0, summary
    base_t, ours_t = [b[0] for b in base], [o[0] for o in ours]
    ratio = [t / statistics.median(base_t) for t in ours_t]
    print(f"{args.rows} rows, {args.repeat} runs each: min / median / max")
    print(f"{'measure':40} {'seconds':>23} {'ratio':>23} {'peak RSS MB':>23}")
    print(
        f"{'baseline: parse + stat':40} {stats(base_t):>23} {stats([1.0] * len(base_t)):>23} "
        f"{stats([b[1] for b in base]):>23}"
    )
    print(
        f"{'sdbatch run (nothing left to do)':40} {stats(ours_t):>23} {stats(ratio):>23} "
        f"{stats([o[1] for o in ours]):>23}"
    )
    print("targets: ratio <= 2 and RSS <= 100 MB at 10^5 rows; <= 10 s and <= 200 MB at 10^6")


if __name__ == "__main__":
    main()
