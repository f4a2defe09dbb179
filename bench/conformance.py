"""Conformance: sdbatch end to end against a live webui, one PASS/FAIL row per scenario.

Each scenario runs `sdbatch run` in its own process, as a user would, on a small job (64x64,
2 steps: seconds on a CPU), then checks the output dir, the manifest and what the server says.
The same scenarios run in CI against the stand-in (`tests/test_conformance.py`) and by hand
against the real webui, whose table goes in the README ("Tested against").

Usage: python bench/conformance.py --server URL [--kind a1111] [--keep DIR]
Exits 0 when every scenario passes, 1 otherwise. The server must have two checkpoints and one
whose name contains "nan" that produces NaNs (../shared/real-webui sets these up; the stand-in
has them with --catalog tiny). It leaves the server's model and Clip skip as it found them.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

SMALL = {"steps": 2, "width": 64, "height": 64, "sampler_name": "Euler", "scheduler": "Automatic"}
CLIP = "CLIP_stop_at_last_layers"
CHECKPOINT = "sd_model_checkpoint"


class Fail(Exception):
    """A scenario's check that did not hold; the message goes in the table."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise Fail(message)


@dataclass(frozen=True)
class Run:
    code: int
    err: str
    out: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    seconds: float

    def ok_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "ok"]

    def saved_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] in ("ok", "mismatch")]


@dataclass
class Conformance:
    url: str
    work: Path
    session: requests.Session = field(default_factory=requests.Session)
    runs: list[Run] = field(default_factory=list)  # every run whose rows are regenerated

    # --- the server -----------------------------------------------------------------------

    def get(self, path: str) -> Any:
        response = self.session.get(self.url + path, timeout=30)
        response.raise_for_status()
        return response.json()

    def set_options(self, options: Mapping[str, Any]) -> None:
        self.session.post(self.url + "/sdapi/v1/options", json=dict(options), timeout=600)

    def models(self) -> tuple[list[str], str | None]:
        names = sorted(m["model_name"] for m in self.get("/sdapi/v1/sd-models"))
        nan = next((n for n in names if "nan" in n.lower()), None)
        return [n for n in names if n != nan], nan

    def job_timestamp(self) -> str:
        return str(self.get("/sdapi/v1/progress?skip_current_image=true")["state"]["job_timestamp"])

    def idle(self) -> bool:
        state = self.get("/sdapi/v1/progress?skip_current_image=true")["state"]
        return not state.get("job_count")

    # --- sdbatch --------------------------------------------------------------------------

    def start(
        self, name: str, job: dict[str, Any], *, fresh: bool = True
    ) -> tuple[subprocess.Popen[str], Path]:
        path = self.work / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, **job}, sort_keys=False), encoding="utf-8")
        out = self.work / name
        cmd = [sys.executable, "-m", "sdbatch", "run", str(path), "--server", self.url]
        cmd += ["--out", str(out), *(["--fresh"] if fresh else [])]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return proc, out

    def finish(self, proc: subprocess.Popen[str], out: Path, started: float) -> Run:
        _, err = proc.communicate(timeout=900)
        manifest = out / "manifest.jsonl"
        rows = (
            [json.loads(line) for line in manifest.read_text().splitlines()]
            if manifest.exists()
            else []
        )
        summary_file = out / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
        return Run(proc.returncode, err, out, rows, summary, time.monotonic() - started)

    def run(
        self, name: str, job: dict[str, Any], *, regenerate: bool = True, fresh: bool = True
    ) -> Run:
        started = time.monotonic()
        proc, out = self.start(name, job, fresh=fresh)
        result = self.finish(proc, out, started)
        if regenerate:
            self.runs.append(result)
        return result


def small_job(**fields: Any) -> dict[str, Any]:
    defaults = {**SMALL, **fields.pop("defaults", {})}
    return {"defaults": defaults, **fields}


def expect_ok(run: Run, count: int) -> None:
    check(run.code == 0, f"exit {run.code}: {last_line(run.err)}")
    check(len(run.ok_rows()) == count, f"{len(run.ok_rows())} ok rows, expected {count}")
    mismatched = [r["mismatch"] for r in run.rows if r.get("mismatch")]
    check(not mismatched, f"mismatch: {mismatched[:1]}")


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def files_match(run: Run) -> None:
    for row in run.ok_rows():
        data = (run.out / row["file"]).read_bytes()
        check(hashlib.sha256(data).hexdigest() == row["sha256"], f"{row['file']}: hash differs")


# --- the scenarios ----------------------------------------------------------------------------


def cats(c: Conformance) -> str:
    seeds = [1001, 1002, 1003, 1004]
    job = small_job(
        defaults={"negative_prompt": "blurry", "sampler_name": "DPM++ 2M", "scheduler": "Karras"},
        prompts=["a fluffy white cat lying on a wooden floor"],
        seeds=seeds,
    )
    run = c.run("cats", job)
    expect_ok(run, 4)
    check(sorted(r["seed"] for r in run.rows) == seeds, f"seeds {[r['seed'] for r in run.rows]}")
    files_match(run)
    pngs = sorted(p.name for p in run.out.glob("*.png"))
    check(pngs == sorted(r["file"] for r in run.rows), f"files {pngs}")
    for row in run.rows:
        check(row["sampler_name"] == "DPM++ 2M" and row["scheduler"] == "Karras", "schedule")
        check((row["width"], row["height"]) == (64, 64), f"size {row['width']}x{row['height']}")
    return f"4 rows, seeds 1001-1004, files and hashes agree, {run.rows[0]['server_version']}"


def batch(c: Conformance) -> str:
    job = small_job(
        defaults={"batch_size": 2, "n_iter": 2, "save_images": True},
        prompts=["a red bicycle"],
        seeds=[2000],
    )
    run = c.run("batch", job)
    expect_ok(run, 4)
    seeds = sorted(r["seed"] for r in run.rows)
    check(seeds == [2000, 2001, 2002, 2003], f"seeds {seeds}")
    pngs = list(run.out.glob("*.png"))
    check(len(pngs) == 4, f"{len(pngs)} PNGs (a grid saved?)")
    files_match(run)
    return "4 rows, seeds 2000-2003, no grid"


def checkpoint_axis(c: Conformance) -> str:
    models, _ = c.models()
    check(len(models) >= 2, f"needs two checkpoints, the server has {models}")
    pair = models[:2]
    job = small_job(grid={"checkpoint": pair}, prompts=["a lighthouse"], seeds=[3000, 3001])
    run = c.run("checkpoints", job)
    expect_ok(run, 4)
    for row in run.rows:
        check(
            row["sd_model_name"] == row["cell"]["checkpoint"], f"row names {row['sd_model_name']}"
        )
    switches = run.summary.get("model_switches")
    check(isinstance(switches, int) and 1 <= switches <= 2, f"model_switches {switches}")
    return f"{' / '.join(pair)}: each row names its model, {switches} model load(s)"


def refused(c: Conformance) -> str:
    models, _ = c.models()
    cases = {
        "sampler": {"sampler_name": "Eulr a"},
        "scheduler": {"scheduler": "Karas"},
        "checkpoint": {"checkpoint": models[0] + "x"},
    }
    before = c.job_timestamp()
    time.sleep(1.1)  # job_timestamp counts seconds: a generation now would change it
    for what, wrong in cases.items():
        run = c.run(f"refused-{what}", small_job(defaults=wrong, prompts=["a cat"], seeds=[1]))
        check(run.code == 2, f"{what}: exit {run.code}")
        check(not run.rows, f"{what}: {len(run.rows)} rows written")
        bad = next(iter(wrong.values()))
        check(repr(bad) in run.err, f"{what}: error does not name {bad!r}: {last_line(run.err)}")
    check(c.job_timestamp() == before, "the server generated something")
    c.runs = [r for r in c.runs if r.rows]
    return "misspelled sampler, scheduler, checkpoint: exit 2, nothing generated"


def legacy(c: Conformance) -> str:
    job = small_job(defaults={"sampler_name": "DPM++ 2M Karras", "scheduler": None})
    job["defaults"] = {k: v for k, v in job["defaults"].items() if v is not None}
    run = c.run("legacy", {**job, "prompts": ["a tree"], "seeds": [4000]})
    expect_ok(run, 1)
    params = run.rows[0]["parameters"]
    got = (params.get("Sampler"), params.get("Schedule type"))
    check(got == ("DPM++ 2M", "Karras"), f"infotext says {got}")
    check("DPM++ 2M Karras" in run.err, "no info line about the split")
    return "'DPM++ 2M Karras' ran as DPM++ 2M + Karras"


def leak_prevented(c: Conformance) -> str:
    job = small_job(
        prompts=[{"prompt": "a blue car", "override_settings": {CLIP: 2}}, "a green car"],
        seeds=[5000],
    )
    run = c.run("leak-prevented", job)
    expect_ok(run, 2)
    skip = {r["payload"]["prompt"]: r["parameters"].get("Clip skip") for r in run.rows}
    check(skip == {"a blue car": "2", "a green car": None}, f"Clip skip per prompt: {skip}")
    return "the prompt that set Clip skip 2 got it, the other did not"


def leak_caught(c: Conformance) -> str:
    c.set_options({CLIP: 2})  # another client, or yesterday's job, left it there
    try:
        run = c.run("leak-caught", small_job(prompts=["a yellow car"], seeds=[6000, 6001]))
    finally:
        c.set_options({CLIP: 1})
    check(f"{CLIP} = 2" in run.err, f"no preflight warning: {last_line(run.err)}")
    marked = [r for r in run.saved_rows() if CLIP in (r.get("mismatch") or {})]
    check(len(marked) == 2, f"{len(marked)} of 2 rows marked")
    note = marked[0]["mismatch"][CLIP][-1]
    check("did not ask for" in str(note), f"mismatch note {note!r}")
    check(all(r["payload"]["override_settings"].get(CLIP) == 2 for r in marked), "not pinned")
    return f"preflight warned, both rows marked (exit {run.code})"


def regenerate(c: Conformance) -> str:
    # Change the server's model and Clip skip, as another client would, before posting again.
    models, _ = c.models()
    c.set_options({CHECKPOINT: models[-1], CLIP: 2})
    try:
        rows = [(run, row) for run in c.runs for row in run.saved_rows()]
        check(rows, "no rows to regenerate")
        by_payload: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for run, row in rows:
            by_payload.setdefault((str(run.out), row["payload_id"]), []).append(row)
        changed = 0
        for (out, _), group in by_payload.items():
            payload, endpoint = with_pictures(c.work, group[0]["payload"])
            if payload is None:  # its input picture was changed since: nothing to regenerate
                changed += len(group)
                continue
            response = c.session.post(c.url + endpoint, json=payload, timeout=600)
            check(response.status_code == 200, f"{response.status_code} for {group[0]['file']}")
            body = response.json()
            first = json.loads(body["info"]).get("index_of_first_image", 0)
            images = body["images"][first:]
            for row in group:
                again = base64.b64decode(images[row["image_index"]])
                check(again == (Path(out) / row["file"]).read_bytes(), f"{row['file']} differs")
    finally:
        c.set_options({CLIP: 1})
    skipped = f" ({changed} skipped: their input picture changed)" if changed else ""
    return f"{len(rows) - changed} rows from {len(c.runs)} jobs, byte-identical PNGs{skipped}"


def with_pictures(work: Path, payload: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """A row's payload as the webui takes it: img2img's recorded pictures ({file, sha256})
    read back from the job's folder, or None when a file no longer has that hash."""
    if "init_images" not in payload:
        return payload, "/sdapi/v1/txt2img"
    sent = dict(payload)
    for key in ("init_images", "mask"):
        refs = payload.get(key)
        if refs is None:
            continue
        encoded = []
        for ref in refs if isinstance(refs, list) else [refs]:
            data = (work / ref["file"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != ref["sha256"]:
                return None, ""
            encoded.append(base64.b64encode(data).decode("ascii"))
        sent[key] = encoded if isinstance(refs, list) else encoded[0]
    return sent, "/sdapi/v1/img2img"


def make_pictures(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"pic{i}.png"
        Image.new("RGB", (64, 64), (40 * i, 120, 220 - 30 * i)).save(path)
        paths.append(path)
    return paths


def img2img_folder(c: Conformance) -> str:
    pictures = make_pictures(c.work / "img2img-pics", 6)
    job = small_job(
        inputs={"dir": "img2img-pics"},
        prompts=["a watercolor of {input}"],
        grid={"denoising_strength": [0.3, 0.6]},
        seeds=[8000],
    )
    del job["defaults"]["width"], job["defaults"]["height"]  # from the pictures
    first = c.run("img2img", job, regenerate=False)
    expect_ok(first, 12)
    files_match(first)
    for row in first.rows:
        (ref,) = row["payload"]["init_images"]
        digest = hashlib.sha256((c.work / ref["file"]).read_bytes()).hexdigest()
        check(ref["sha256"] == digest, f"{row['file']}: input hash {ref['sha256']}")
        check(
            row["parameters"].get("Denoising strength") == str(row["cell"]["denoising_strength"]),
            f"{row['file']}: infotext {row['parameters'].get('Denoising strength')}",
        )
        check((row["width"], row["height"]) == (64, 64), f"size {row['width']}x{row['height']}")
    before = c.job_timestamp()
    time.sleep(1.1)
    again = c.run("img2img", job, regenerate=False, fresh=False)
    check(
        again.code == 0 and len(again.rows) == 12,
        f"rerun: exit {again.code}, {len(again.rows)} rows",
    )
    check(c.job_timestamp() == before, "the rerun generated something")
    from PIL import Image

    Image.new("RGB", (64, 64), (250, 10, 10)).save(pictures[3])
    third = c.run("img2img", job, fresh=False)
    new = third.rows[12:]
    check(
        third.code == 0 and len(new) == 2, f"after a change: exit {third.code}, {len(new)} new rows"
    )
    digest = hashlib.sha256(pictures[3].read_bytes()).hexdigest()
    check({r["payload"]["init_images"][0]["sha256"] for r in new} == {digest}, "new rows' input")
    return "12 rows with input hashes; rerun sent nothing; one picture changed: its 2 rows rerun"


def img2img_unknown_lora(c: Conformance) -> str:
    make_pictures(c.work / "img2img-pics", 1)
    job = small_job(
        inputs={"files": ["img2img-pics/pic0.png"]},
        prompts=["a cat <lora:add_detail:0.8>"],
        defaults={"denoising_strength": 0.5},
        seeds=[1],
    )
    before = c.job_timestamp()
    time.sleep(1.1)
    run = c.run("img2img-lora", job, regenerate=False)
    check(run.code == 2 and not run.rows, f"exit {run.code}, {len(run.rows)} rows")
    check("unknown LoRA 'add_detail'" in run.err, f"error: {last_line(run.err)}")
    check(c.job_timestamp() == before, "the server generated something")
    return "<lora:add_detail:0.8> with img2img: exit 2, nothing generated"


def hard_stop(c: Conformance) -> str:
    job = small_job(defaults={"steps": 80}, prompts=["a slow one"], seeds=[7000, 7001, 7002])
    started = time.monotonic()
    proc, out = c.start("hard-stop", job)
    deadline = time.monotonic() + 120
    while c.idle():
        check(time.monotonic() < deadline and proc.poll() is None, "the job never started")
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    run = c.finish(proc, out, started)
    stopped = time.monotonic()
    while not c.idle():
        check(time.monotonic() - stopped < 3, "the server is still busy 3 s after sdbatch exited")
        time.sleep(0.1)
    hard = run.summary.get("hard_stop")
    check(hard, f"summary.json has no hard_stop (exit {run.code})")
    check(len(run.ok_rows()) < 3, "nothing was stopped")
    return f"exit {run.code}, server idle on exit, hard_stop {json.dumps(hard)}"


def nan_model(c: Conformance) -> str:
    _, nan = c.models()
    check(nan is not None, "the server has no checkpoint whose name contains 'nan'")
    run = c.run(
        "nan",
        small_job(defaults={"checkpoint": nan}, prompts=["a cat"], seeds=[8000]),
        regenerate=False,
    )
    check(run.code != 0, "exit 0")
    check(len(run.rows) == 1 and run.rows[0]["status"] == "failed", f"rows {run.rows}")
    row = run.rows[0]
    check("NansException" in str(row["error"]), f"error {row['error']!r}")
    check(row["attempts"] <= 2, f"{row['attempts']} attempts")
    return f"failed row after {row['attempts']} attempts, {run.seconds:.1f} s"


SCENARIOS: list[tuple[str, Callable[[Conformance], str]]] = [
    ("cats-like job", cats),
    ("batch 2 x n_iter 2, save_images", batch),
    ("checkpoint axis", checkpoint_axis),
    ("misspelled names refused", refused),
    ("legacy combined name", legacy),
    ("option leak prevented", leak_prevented),
    ("option leak caught", leak_caught),
    ("img2img over a folder, resumed", img2img_folder),
    ("img2img: unknown LoRA refused", img2img_unknown_lora),
    ("rows regenerate their images", regenerate),
    ("SIGINT twice leaves the server idle", hard_stop),
    ("NaN model fails fast", nan_model),
]


def run_all(url: str, work: Path) -> Iterator[tuple[str, bool, str]]:
    c = Conformance(url.rstrip("/"), work)
    options = c.get("/sdapi/v1/options")
    try:
        for name, scenario in SCENARIOS:
            try:
                yield name, True, scenario(c)
            except Fail as exc:
                yield name, False, str(exc)
            except Exception as exc:  # a broken scenario is a FAIL row, not a lost table
                yield name, False, f"{type(exc).__name__}: {exc}"
    finally:
        c.set_options({k: options[k] for k in (CHECKPOINT, CLIP) if k in options})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="the webui's URL")
    parser.add_argument("--kind", choices=["a1111"], default="a1111")
    parser.add_argument("--keep", type=Path, help="keep the jobs and output dirs here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"conformance: {args.server} ({args.kind})")
        print("| scenario | result | detail |\n|---|---|---|")
        failed = 0
        for name, ok, detail in run_all(args.server, work):
            failed += not ok
            print(f"| {name} | {'PASS' if ok else 'FAIL'} | {detail} |", flush=True)
    print(f"{len(SCENARIOS) - failed}/{len(SCENARIOS)} PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
