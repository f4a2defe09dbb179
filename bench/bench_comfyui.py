"""Benchmark: does sdbatch keep a ComfyUI server busy, and does it beat the plain loop?

A stand-in ComfyUI in its own process (so the client's time is not its), each image costing it
~100 ms (4 sampler steps x 25 ms, 64x64). The same plan of one prompt x `--images` seeds is run
(a) by sdbatch (`run_job` through the ComfyUI backend, built-in graph, batch_size 1; a fresh
`connect` per round, its preflight outside the timing as bench_run.py builds its Fleet outside,
and printed apart; the WebSocket opens inside) and
(b) by the plain loop the batch tools run: for each prompt POST /prompt, poll /history/{id}
every 20 ms until it is there, GET /view, write the file, next. Both post the same graphs, each
with a fresh `filename_prefix` as sdbatch gives them (a prompt identical to the one before would
be replayed from ComfyUI's cache, free, and prove nothing).

Server utilisation = the time the stand-in spent executing prompts (its own per-prompt start
and end, read from GET /mock/log) / the client's wall time. Rounds alternate the two ways on
the one server; medians are printed, with the ratios sdbatch / plain loop. Targets: sdbatch's
utilisation >= 0.98; images/s ratio >= 1.0.

One more row, not a target: sdbatch when its WebSocket stays open but says nothing (the
stand-in's `ws_mute` fault: a socket lost without a close, a proxy that drops the frames), so
only its /history polling (worker.POLL, then POLL_DEAF once the socket has missed a prompt)
tells it a prompt is done; `--silent-images` of them, once, against the plain loop's median.

Usage: python bench/bench_comfyui.py [--images N] [--rounds R] [--silent-images N]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from _common import bench_job, comfyui

from sdbatch.backends.comfyui.connect import Servers, connect
from sdbatch.backends.comfyui.translation import SAVE
from sdbatch.job.loader import Job, ServerConfig
from sdbatch.output.writer import RunInfo
from sdbatch.plan.expand import Plan, build_plan
from sdbatch.run.progress import Console
from sdbatch.run.runner import run_job

STEPS, STEP_DELAY = 4, 0.025  # 100 ms of sampling per image
SIZE = 64
POLL = 0.02  # the plain loop's /history poll: often, to be fair to it
TIMEOUT = 60.0


def make_job(url: str, images: int) -> Job:
    job = bench_job(ServerConfig(url=url, type="comfyui", timeout=TIMEOUT, retries=0), images)
    return dataclasses.replace(
        job,
        defaults={**job.defaults, "steps": STEPS, "width": SIZE, "height": SIZE, "batch_size": 1},
    )


def busy_seconds(url: str) -> list[float]:
    """Seconds the stand-in spent on each prompt it ran so far, in order."""
    log = requests.get(url + "/mock/log", timeout=TIMEOUT).json()
    return [e["ended"] - e["started"] for e in log["executions"]]


def plain_loop(url: str, graphs: list[dict[str, Any]], out: Path) -> float:
    """The batch tools' loop: post one prompt, wait for its history, download, write, next."""
    session = requests.Session()
    start = time.perf_counter()
    for index, graph in enumerate(graphs):
        answer = session.post(url + "/prompt", json={"prompt": graph}, timeout=TIMEOUT)
        prompt_id = answer.json()["prompt_id"]
        deadline = time.monotonic() + TIMEOUT
        while prompt_id not in (
            entry := session.get(f"{url}/history/{prompt_id}", timeout=TIMEOUT).json()
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"plain loop: no history for {prompt_id} in {TIMEOUT:g} s")
            time.sleep(POLL)
        image = entry[prompt_id]["outputs"][SAVE]["images"][0]
        data = session.get(url + "/view", params=image, timeout=TIMEOUT).content
        (out / f"{index:05d}.png").write_bytes(data)
    return time.perf_counter() - start


def sdbatch_run(plan: Plan, servers: Servers, out: Path) -> float:
    start = time.perf_counter()
    result = run_job(
        plan,
        out,
        connection=servers,
        console=Console(io.StringIO(), io.StringIO()),
        run_info=RunInfo("bench", "d", "t"),
    )
    elapsed = time.perf_counter() - start
    assert result.saved == plan.image_count, result.summary()
    return elapsed


def mute(url: str, muted: bool) -> None:
    body = {"ws_mute": True} if muted else {"clear": True}
    requests.post(url + "/mock/faults", json=body, timeout=TIMEOUT).raise_for_status()


def measure(images: int, rounds: int, silent: int) -> dict[str, dict[str, float]]:
    """Per way of running: median images/s, utilisation and server ms per image."""
    found: dict[str, dict[str, list[float]]] = {
        name: {"rate": [], "util": [], "ms": []} for name in ("plain", "sdbatch")
    }
    preflight: list[float] = []
    with comfyui(STEP_DELAY) as url, tempfile.TemporaryDirectory() as tmp:
        job = make_job(url, images)
        plan = build_plan(job)
        translation = connect(job).workers[0].translation
        # The same prompts for the plain loop, each with a fresh prefix as sdbatch gives them.
        graphs = [translation.graph(p.payload, p.payload["seed"], uuid.uuid4().hex) for p in plan]
        warm = Path(tmp) / "warm"
        warm.mkdir()
        plain_loop(url, graphs[:5], warm)  # the server's first prompts (its caches, imports)
        for r in range(rounds):
            for name in found:
                out = Path(tmp) / f"{name}{r}"
                before = len(busy_seconds(url))
                if name == "plain":
                    out.mkdir()
                    wall = plain_loop(url, graphs, out)
                else:  # a fresh connection per round; its socket opens within the timing
                    start = time.perf_counter()
                    servers = connect(job)
                    preflight.append(time.perf_counter() - start)
                    wall = sdbatch_run(plan, servers, out)
                busy = busy_seconds(url)[before:]
                assert len(busy) == images, f"{name}: the server ran {len(busy)} prompts"
                found[name]["rate"].append(images / wall)
                found[name]["util"].append(sum(busy) / wall)
                found[name]["ms"].append(sum(busy) / images * 1000)
        if silent:
            plan = build_plan(make_job(url, silent))
            servers = connect(job)
            before = len(busy_seconds(url))
            mute(url, True)
            try:
                wall = sdbatch_run(plan, servers, Path(tmp) / "silent")
            finally:
                mute(url, False)
            busy = busy_seconds(url)[before:]
            found["silent"] = {"rate": [silent / wall], "util": [sum(busy) / wall]}
            found["silent"]["ms"] = [sum(busy) / silent * 1000]
    medians = {n: {k: statistics.median(v) for k, v in m.items()} for n, m in found.items()}
    medians["sdbatch"]["preflight"] = statistics.median(preflight)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--silent-images", type=int, default=20, help="images with a silent socket (0: none)"
    )
    args = parser.parse_args()
    if args.images < 1 or args.rounds < 1 or args.silent_images < 0:
        parser.error("--images and --rounds must be at least 1, --silent-images at least 0")
    found = measure(args.images, args.rounds, args.silent_images)
    base, ours = found["plain"], found["sdbatch"]
    rows = [
        (
            "images/s",
            f"{base['rate']:.2f}",
            f"{ours['rate']:.2f}",
            ours["rate"] / base["rate"],
            ">= 1.0",
        ),
        (
            "server utilisation",
            f"{base['util']:.3f}",
            f"{ours['util']:.3f}",
            ours["util"] / base["util"],
            "sdbatch's >= 0.98",
        ),
        (
            "server ms per image",
            f"{base['ms']:.1f}",
            f"{ours['ms']:.1f}",
            ours["ms"] / base["ms"],
            "~1.0 (same work)",
        ),
    ]
    if "silent" in found:
        quiet = found["silent"]
        for what, key, form in (("images/s", "rate", ".2f"), ("utilisation", "util", ".3f")):
            rows.append(
                (
                    f"{what}, silent socket",
                    f"{base[key]:{form}}",
                    f"{quiet[key]:{form}}",
                    quiet[key] / base[key],
                    f"none ({args.silent_images} images, once)",
                )
            )
    print(f"{'measure':27} {'plain loop':>11} {'sdbatch':>9} {'ratio':>7}  target")
    for name, b, o, ratio, target in rows:
        print(f"{name:27} {b:>11} {o:>9} {ratio:>7.3f}  {target}")
    print(
        f"utilisation >= 0.98: {'yes' if ours['util'] >= 0.98 else 'NO'} "
        f"(sdbatch {ours['util']:.3f}); stand-in ComfyUI, {STEPS} steps x "
        f"{STEP_DELAY * 1000:g} ms, {SIZE}x{SIZE}; {args.images} images x {args.rounds} "
        f"rounds, median; plain loop polls /history every {POLL * 1000:g} ms; sdbatch's "
        f"preflight (/system_stats, /object_info), not timed: {ours['preflight'] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
