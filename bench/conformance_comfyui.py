"""Conformance of the ComfyUI backend: `sdbatch run` end to end against a live ComfyUI (the real
0.3.64 or the stand-in), one PASS/FAIL row per scenario of issue 9.

Each scenario runs sdbatch in its own process on a tiny job (64x64, 2 steps) and checks the
output dir, the manifest and what the server says (/queue, /history, /view). The workflow
scenarios write their own API-format workflow (`WORKFLOW`, nodes titled as a user would).

Usage: python bench/conformance_comfyui.py --server URL [--checkpoint NAME] [--keep DIR]
The server must list NAME (default tiny_sd15_taesd_random.safetensors) and a checkpoint
`zz_broken.safetensors` that fails to load (../shared/real-webui sets both up; so does the
stand-in). Exits 0 when every scenario passes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from PIL import Image

TIMEOUT = 300.0
SEEDS = list(range(21, 33))


# An API-format text-to-image workflow as ComfyUI's "Export (API)" writes it, with titles.
WORKFLOW: dict[str, Any] = {
    "1": {"class_type": "CheckpointLoaderSimple", "_meta": {"title": "Model"}, "inputs": {}},
    "2": {
        "class_type": "CLIPTextEncode",
        "_meta": {"title": "Positive"},
        "inputs": {"text": "x", "clip": ["1", 1]},
    },
    "3": {
        "class_type": "CLIPTextEncode",
        "_meta": {"title": "Negative"},
        "inputs": {"text": "blurry", "clip": ["1", 1]},
    },
    "4": {
        "class_type": "EmptyLatentImage",
        "_meta": {"title": "Canvas"},
        "inputs": {"width": 64, "height": 64, "batch_size": 1},
    },
    "5": {
        "class_type": "KSampler",
        "_meta": {"title": "Sampler"},
        "inputs": {
            "seed": 0,
            "steps": 2,
            "cfg": 6.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["1", 0],
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["4", 0],
        },
    },
    "6": {
        "class_type": "VAEDecode",
        "_meta": {"title": "Decode"},
        "inputs": {"samples": ["5", 0], "vae": ["1", 2]},
    },
    "7": {
        "class_type": "SaveImage",
        "_meta": {"title": "Save"},
        "inputs": {"filename_prefix": "ComfyUI", "images": ["6", 0]},
    },
}


class Fail(Exception):
    """A check that did not hold; its message goes in the table."""


def check(ok: bool, message: str) -> None:
    if not ok:
        raise Fail(message)


class Scenarios:
    def __init__(self, url: str, checkpoint: str, work: Path) -> None:
        self.url, self.ckpt, self.work = url.rstrip("/"), checkpoint, work

    def job(self, name: str, defaults: dict[str, Any], seeds: list[int]) -> Path:
        body = {
            "name": name,
            "server": {"url": self.url, "type": "comfyui", "timeout": 120},
            "defaults": {"checkpoint": self.ckpt, "steps": 2, "width": 64, "height": 64} | defaults,
            "prompts": ["a cat"],
            "seeds": seeds,
        }
        path = self.work / f"{name}.yaml"
        path.write_text(json.dumps(body))  # JSON is YAML
        return path

    def workflow_job(self, name: str, graph: dict[str, Any], body: dict[str, Any]) -> Path:
        graph = json.loads(json.dumps(graph))
        graph["1"]["inputs"]["ckpt_name"] = self.ckpt
        (self.work / f"{name}.json").write_text(json.dumps(graph, indent=1))
        job = {
            "name": name,
            "server": {"url": self.url, "type": "comfyui", "timeout": 120},
            "workflow": f"{name}.json",
            "prompts": ["a lighthouse"],
            "seeds": [7],
        } | body
        path = self.work / f"{name}.yaml"
        path.write_text(json.dumps(job))
        return path

    def start(self, job: Path, out: Path) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "sdbatch", "run", str(job), "--out", str(out)]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def run(self, job: Path, out: Path) -> tuple[int, str]:
        proc = self.start(job, out)
        _, err = proc.communicate(timeout=TIMEOUT)
        return proc.returncode, err

    def queue_empty(self) -> bool:
        q = requests.get(self.url + "/queue", timeout=10).json()
        return not q["queue_running"] and not q["queue_pending"]

    def built_in_graph(self) -> None:
        job = self.job(
            "cats",
            {"sampler_name": "DPM++ 2M", "scheduler": "Karras", "n_iter": 2, "batch_size": 2},
            [11],
        )
        code, err = self.run(job, self.work / "cats")
        check(code == 0, f"exit {code}: {err[-200:]}")
        rows = read_rows(self.work / "cats")
        check(len(rows) == 4 and all(r["status"] == "ok" for r in rows), "not 4 ok rows")
        for r in rows:
            with Image.open(self.work / "cats" / r["file"]) as img:
                check(json.loads(img.info["prompt"]) == r["payload"], "prompt chunk != payload")
        check(sorted({r["seed"] for r in rows}) == [11, 12], "n_iter seeds are not s, s+1")

    def misspelled(self) -> None:
        before = requests.get(self.url + "/history", timeout=30).json()
        for field, bad in (
            ("sampler_name", "dpmpp_2n"),
            ("scheduler", "karas"),
            ("checkpoint", self.ckpt.replace("random", "randm")),
        ):
            code, err = self.run(self.job("bad", {field: bad}, [1]), self.work / "bad")
            check(code == 2 and "bad.yaml:" in err, f"{field}: exit {code}")
        graph = json.loads(json.dumps(WORKFLOW))
        graph["6"]["class_type"] = "VAEDecod"
        job = self.workflow_job("badclass", graph, {"defaults": {"Sampler.steps": 1}})
        code, err = self.run(job, self.work / "badclass")
        named = "no node class 'VAEDecod' (did you mean 'VAEDecode'?)" in err
        check(code == 2 and named and "badclass.yaml:" in err, f"node class: exit {code}")
        after = requests.get(self.url + "/history", timeout=30).json()
        check(len(after) == len(before) and self.queue_empty(), "something was queued")

    def user_workflow(self) -> None:
        out = self.work / "flow"
        grid = {"Sampler.steps": [1, 2], "Canvas.width": [64, 96]}
        job = self.workflow_job("flow", WORKFLOW, {"grid": grid, "defaults": {"cfg_scale": 5}})
        code, err = self.run(job, out)
        check(code == 0, f"exit {code}: {err[-200:]}")
        rows = read_rows(out)
        check(len(rows) == 4 and all(r["status"] == "ok" for r in rows), "not 4 ok rows")
        cells = set()
        for r in rows:
            graph = r["payload"]
            sampler, canvas = graph["5"]["inputs"], graph["4"]["inputs"]
            cells.add((sampler["steps"], canvas["width"]))
            check(sampler["seed"] == 7 and sampler["cfg"] == 5, "seed/cfg not in the KSampler")
            check(graph["2"]["inputs"]["text"] == "a lighthouse", "prompt not in Positive")
            check(graph["3"]["inputs"]["text"] == "blurry", "the workflow's negative was lost")
            with Image.open(out / r["file"]) as img:
                check(img.size == (canvas["width"], 64), f"size {img.size}")
                check(json.loads(img.info["prompt"]) == graph, "prompt chunk != payload")
        check(cells == {(1, 64), (1, 96), (2, 64), (2, 96)}, f"grid cells {sorted(cells)}")
        before = len(requests.get(self.url + "/history", timeout=30).json())
        code, _ = self.run(job, out)
        after = len(requests.get(self.url + "/history", timeout=30).json())
        check(code == 0 and after == before and len(read_rows(out)) == 4, "the rerun sent more")
        row = rows[-1]
        answer = requests.post(self.url + "/prompt", json={"prompt": row["payload"]}, timeout=30)
        entry = wait_history(self.url, answer.json()["prompt_id"])
        image = entry["outputs"]["7"]["images"][row["image_index"]]
        data = requests.get(self.url + "/view", params=image, timeout=30).content
        check(data == (out / row["file"]).read_bytes(), "regenerated bytes differ")

    def two_pass(self) -> None:
        graph = json.loads(json.dumps(WORKFLOW))
        graph["8"] = json.loads(json.dumps(graph["5"]))
        graph["8"]["_meta"] = {"title": "Second pass"}
        graph["8"]["inputs"].update(latent_image=["5", 0], denoise=0.5, steps=1)
        graph["6"]["inputs"]["samples"] = ["8", 0]
        body = {
            "bind": {
                "seed": ["Sampler.seed", "Second pass.seed"],
                "denoise": "Second pass.denoise",
            },
            "defaults": {"denoising_strength": 0.3},
            "grid": {"Second pass.cfg": [4, 5]},
        }
        out = self.work / "twopass"
        code, err = self.run(self.workflow_job("twopass", graph, body), out)
        check(code == 0, f"exit {code}: {err[-200:]}")
        rows = read_rows(out)
        check(len(rows) == 2 and all(r["status"] == "ok" for r in rows), "not 2 ok rows")
        for r in rows:
            first, second = r["payload"]["5"]["inputs"], r["payload"]["8"]["inputs"]
            check(first["seed"] == second["seed"] == r["seed"] == 7, "seed not in both samplers")
            check((first["denoise"], second["denoise"]) == (1.0, 0.3), "denoise misplaced")
            with Image.open(out / r["file"]) as img:
                check(json.loads(img.info["prompt"]) == r["payload"], "prompt chunk != payload")

    def regeneration(self) -> None:
        row = read_rows(self.work / "cats")[0]
        answer = requests.post(self.url + "/prompt", json={"prompt": row["payload"]}, timeout=30)
        prompt_id = answer.json()["prompt_id"]
        entry = wait_history(self.url, prompt_id)
        image = entry["outputs"]["9"]["images"][row["image_index"]]
        data = requests.get(self.url + "/view", params=image, timeout=30).content
        check(data == (self.work / "cats" / row["file"]).read_bytes(), "bytes differ")

    def rerun_after_delete(self) -> None:
        out = self.work / "cats"
        shutil.rmtree(out)
        code, err = self.run(
            self.job(
                "cats",
                {"sampler_name": "DPM++ 2M", "scheduler": "Karras", "n_iter": 2, "batch_size": 2},
                [11],
            ),
            out,
        )
        rows = read_rows(out)
        check(
            code == 0 and len(rows) == 4 and all(r["status"] == "ok" for r in rows),
            f"exit {code}: {err[-200:]}",
        )

    def broken_checkpoint(self) -> None:
        code, _ = self.run(
            self.job("broken", {"checkpoint": "zz_broken.safetensors"}, [1]), self.work / "broken"
        )
        rows = read_rows(self.work / "broken")
        check(code == 1 and bool(rows) and rows[0]["status"] == "failed", f"exit {code}")
        check("CheckpointLoaderSimple" in rows[0]["error"], rows[0]["error"][:200])

    def sigint_twice(self) -> None:
        out = self.work / "sigint"
        proc = self.start(self.job("sigint", {}, SEEDS), out)
        wait_rows(out, 1)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=TIMEOUT)
        check(proc.returncode == 130, f"exit {proc.returncode}")
        check(self.queue_empty(), "the queue is not empty")

    def sigkill_rerun(self) -> None:
        out, job = self.work / "kill", self.job("kill", {}, SEEDS)
        proc = self.start(job, out)
        wait_rows(out, 2)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=TIMEOUT)
        code, _ = self.run(job, out)
        ok = [r for r in read_rows(out) if r["status"] == "ok"]
        check(code == 0 and sorted(r["seed"] for r in ok) == SEEDS, f"exit {code}, {len(ok)}")


def read_rows(out: Path) -> list[dict[str, Any]]:
    path = out / "manifest.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_rows(out: Path, count: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while len(read_rows(out)) < count:
        check(time.monotonic() < deadline, "no image in time")
        time.sleep(0.02)


def wait_history(url: str, prompt_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        entry = requests.get(f"{url}/history/{prompt_id}", timeout=30).json()
        if entry:
            return dict(entry[prompt_id])
        time.sleep(0.1)
    raise Fail("no history")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--checkpoint", default="tiny_sd15_taesd_random.safetensors")
    parser.add_argument("--keep", help="keep the work dir here")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="sdbatch-comfy-conf-"))
    work.mkdir(parents=True, exist_ok=True)
    s = Scenarios(args.server, args.checkpoint, work)
    table: list[tuple[str, Callable[[], None]]] = [
        ("built-in graph job (n_iter 2, batch 2)", s.built_in_graph),
        ("user workflow with title-addressed grid axes (resumed, regenerated)", s.user_workflow),
        ("two-pass workflow, the seed bound to both samplers (bind:)", s.two_pass),
        (
            "misspelled sampler/scheduler/checkpoint/node class -> exit 2, nothing queued",
            s.misspelled,
        ),
        ("byte-identical regeneration from a row's payload", s.regeneration),
        ("rerun after the output files were deleted", s.rerun_after_delete),
        ("broken checkpoint -> failed row with ComfyUI's message", s.broken_checkpoint),
        ("SIGINT twice -> exit 130, queue empty", s.sigint_twice),
        ("SIGKILL mid-run then rerun -> every image once", s.sigkill_rerun),
    ]
    failed = 0
    print("| scenario | result |\n|---|---|")
    for name, scenario in table:
        try:
            scenario()
            print(f"| {name} | PASS |")
        except (Fail, requests.RequestException, subprocess.TimeoutExpired, KeyError) as exc:
            failed += 1
            print(f"| {name} | FAIL: {exc} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
