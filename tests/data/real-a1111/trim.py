"""Rebuild exchanges.json from the real webui's recorded answers.

Usage: python tests/data/real-a1111/trim.py [CAPTURE.tar.gz ...] [--record URL [--only img2img]]

Reads the captures that ../shared/real-webui/captured/ holds (one JSON per call, recorded from
the unmodified AUTOMATIC1111 v1.10.1) and keeps what the golden tests compare: the request, the
status, the content type, the body without its base64 images, `info` as the server ordered it,
and each PNG's format, size, mode and text chunks. `--record URL` adds this session's own
recordings from a running real webui (the NaN model's answer, a float Clip skip, img2img,
a missing LoRA); `--only img2img` records just that group and keeps the other own recordings.
Nothing of the webui's source is kept, only its answers.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import img2img_calls  # beside this script
import requests
from PIL import Image

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parents[2].parent / "shared" / "real-webui" / "captured" / "a1111-v1.10.1.tar.gz"
SKIP = {"g_script-info", "g_cmd-flags", "g_memory"}  # large, and nothing sdbatch reads


def trim(record: dict[str, Any]) -> dict[str, Any]:
    body = record.get("body")
    out: dict[str, Any] = {
        "request": record["request"],
        "status": record["status"],
        "content_type": record.get("headers", {}).get("content-type"),
    }
    if isinstance(body, dict) and isinstance(body.get("images"), list):
        out["image_count"] = len(body["images"])
        body = {k: v for k, v in body.items() if k != "images"}
        body["parameters"] = echoed(body.get("parameters"))
        if "info" in body:
            body["info"] = record.get("info_parsed", json.loads(body["info"]))
    out["body"] = body
    out["images"] = [
        {k: meta[k] for k in ("format", "size", "mode", "text")}
        for meta in record.get("images_meta") or []
    ]
    return out


def echoed(parameters: Any) -> Any:
    """img2img's echo with `include_init_images` carries the pictures back: kept as a count."""
    if isinstance(parameters, dict) and isinstance(parameters.get("init_images"), list):
        return {**parameters, "init_images": len(parameters["init_images"])}
    return parameters


def from_tarball(path: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.name.endswith(".json"):
                continue
            parts = Path(member.name).parts[1:]  # below the version folder
            name = "/".join(parts)[: -len(".json")]
            data = json.load(tar.extractfile(member))  # type: ignore[arg-type]
            if Path(name).name in SKIP:
                continue
            found[name] = trim(data) if isinstance(data, dict) and "request" in data else data
    return found


def record(url: str, only: str | None = None) -> dict[str, dict[str, Any]]:
    """This session's own recordings: the calls the captures lack (`only`: one group)."""
    if only == "img2img":
        return record_img2img(url)
    if only == "probe":
        return record_probe(url)
    models = requests.get(f"{url}/sdapi/v1/sd-models", timeout=30).json()
    nan = next(m["title"] for m in models if "nan" in m["model_name"].lower())
    payload = {
        "prompt": "a cat",
        "steps": 2,
        "width": 64,
        "height": 64,
        "seed": 123,
        "override_settings": {"sd_model_checkpoint": nan},
        "override_settings_restore_afterwards": True,
    }
    found = {}
    response = requests.post(f"{url}/sdapi/v1/txt2img", json=payload, timeout=600)
    found["own/nan_model"] = exchange("POST", "/sdapi/v1/txt2img", payload, response)
    # Clip skip as a float in override_settings (as /options reports it) breaks every later
    # request until /options sets it again.
    small = {
        "prompt": "a cat",
        "steps": 2,
        "width": 64,
        "height": 64,
        "seed": 1,
        "sampler_name": "Euler",
        "override_settings_restore_afterwards": False,
    }
    steps = [
        ("clip_float_0_reset", "/sdapi/v1/options", {"CLIP_stop_at_last_layers": 1}),
        (
            "clip_float_1_override",
            "/sdapi/v1/txt2img",
            {**small, "override_settings": {"CLIP_stop_at_last_layers": 2.0}},
        ),
        ("clip_float_2_plain", "/sdapi/v1/txt2img", small),
        (
            "clip_float_3_int_override",
            "/sdapi/v1/txt2img",
            {**small, "override_settings": {"CLIP_stop_at_last_layers": 2}},
        ),
        ("clip_float_4_options_get", "/sdapi/v1/options", None),
        ("clip_float_5_reset", "/sdapi/v1/options", {"CLIP_stop_at_last_layers": 1}),
        ("clip_float_6_plain", "/sdapi/v1/txt2img", small),
        (
            "clip_float_7_int_override",
            "/sdapi/v1/txt2img",
            {**small, "override_settings": {"CLIP_stop_at_last_layers": 2}},
        ),
        ("clip_float_8_options_get", "/sdapi/v1/options", None),
        ("clip_float_9_reset", "/sdapi/v1/options", {"CLIP_stop_at_last_layers": 1}),
    ]
    for name, path, body in steps:
        method = "GET" if body is None else "POST"
        response = requests.request(method, url + path, json=body, timeout=600)
        found[f"own/{name}"] = exchange(method, path, body, response)
    found.update(record_img2img(url))
    found.update(record_extranets(url))
    found.update(record_probe(url))
    return found


def record_probe(url: str) -> dict[str, dict[str, Any]]:
    """GET /system_stats, sdbatch's probe when a job names no server type: ComfyUI answers it
    with its `system` record, the webui with a 404."""
    response = requests.get(f"{url}/system_stats", timeout=30)
    return {"own/system_stats_probe": exchange("GET", "/system_stats", None, response)}


def record_img2img(url: str) -> dict[str, dict[str, Any]]:
    """POST /sdapi/v1/img2img with each of img2img_calls.py's bodies."""
    found = {}
    for name, payload in img2img_calls.calls(url):
        response = requests.post(f"{url}/sdapi/v1/img2img", json=payload, timeout=600)
        found[f"own/img2img_{name}"] = exchange("POST", "/sdapi/v1/img2img", payload, response)
    return found


def record_extranets(url: str) -> dict[str, dict[str, Any]]:
    """A prompt naming a LoRA the webui does not have (it has none): 200, the tag kept in the
    prompt, no `Lora hashes` — the only trace an API client gets of the dropped LoRA."""
    payload = {
        "prompt": "a cat <lora:missing:0.8>",
        "steps": 2,
        "width": 64,
        "height": 64,
        "seed": 1,
        "sampler_name": "Euler",
    }
    response = requests.post(f"{url}/sdapi/v1/txt2img", json=payload, timeout=600)
    return {"own/lora_missing": exchange("POST", "/sdapi/v1/txt2img", payload, response)}


def exchange(method: str, path: str, payload: Any, response: requests.Response) -> dict[str, Any]:
    body = response.json()
    images = []
    for b64 in body.get("images") or [] if isinstance(body, dict) else []:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as img:
            images.append(
                {
                    "format": img.format,
                    "size": list(img.size),
                    "mode": img.mode,
                    "text": dict(img.info),
                }
            )
    raw = {
        "request": {"method": method, "path": path, "json": payload},
        "status": response.status_code,
        "headers": dict(response.headers),
        "body": body,
        "images_meta": images,
    }
    return trim(raw)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("captures", nargs="*", type=Path, default=[DEFAULT])
    parser.add_argument("--record", metavar="URL")
    parser.add_argument("--only", choices=["img2img", "probe"], help="record just this group")
    args = parser.parse_args()
    target = HERE / "exchanges.json"
    found: dict[str, Any] = {}
    for path in args.captures:
        found.update(from_tarball(path))
    if (not args.record or args.only) and target.exists():  # keep earlier own recordings
        found.update(
            {k: v for k, v in json.loads(target.read_text()).items() if k.startswith("own/")}
        )
    if args.record:
        found.update(record(args.record.rstrip("/"), args.only))
    target.write_text(json.dumps(found, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(found)} exchanges -> {target} ({target.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
