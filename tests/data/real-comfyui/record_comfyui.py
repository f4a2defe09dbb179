"""Record, from a running real ComfyUI 0.3.64, the exchanges the shared captures lack.

Used by `trim_comfyui.py --record URL`; alone (`record_comfyui.py URL`) it prints its recordings.

Every prompt is tiny (64x64, 1-2 steps, tiny_sd15_taesd_random.safetensors). What it records:
the node classes the stand-in serves (`/object_info/{class}` with this setup's checkpoints), a
fresh and an identical prompt (WebSocket sequence, history, the PNG's raw text chunks), the
broken checkpoint's runtime error, validation errors the captures lack, /view's refusals, a
PreviewImage, a global interrupt with /queue clear, /history delete, and what a second socket
with the same clientId does once the first one closes. Nothing of ComfyUI's source is kept.
"""

from __future__ import annotations

import contextlib
import json
import struct
import sys
import time
import uuid
import zlib
from typing import Any

import requests
from websockets.sync.client import ClientConnection, connect

CLASSES = [
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "EmptyLatentImage",
    "KSampler",
    "VAEDecode",
    "SaveImage",
    "CLIPSetLastLayer",
    "LoraLoader",
    "KSamplerAdvanced",
    "LoadImage",
    "VAEEncode",
    "PreviewImage",
]
CKPT = "tiny_sd15_taesd_random.safetensors"


def graph(
    seed: int,
    steps: Any = 1,
    *,
    ckpt: str = CKPT,
    prefix: str = "rec/p",
    batch: int = 2,
    cfg: Any = 7.0,
    scheduler: str = "normal",
    width: Any = 64,
    out: str = "SaveImage",
) -> dict[str, Any]:
    save: dict[str, Any] = {"images": ["8", 0]}
    if out == "SaveImage":
        save["filename_prefix"] = prefix
    return {
        "3": {
            "class_type": "KSampler",
            "_meta": {"title": "KSampler"},
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": "euler",
                "scheduler": scheduler,
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": width, "height": 64, "batch_size": batch},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": out, "inputs": save},
    }


class Recorder:
    def __init__(self, url: str) -> None:
        self.url = url
        self.found: dict[str, Any] = {}

    def call(
        self, name: str | None, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> requests.Response:
        r = requests.request(method, self.url + path, json=body, data=raw, timeout=600)
        try:
            parsed: Any = r.json()
        except ValueError:
            parsed = r.text
        if name:
            request = {"method": method, "path": path, "json": body}
            if raw is not None:
                request["raw"] = raw.decode("latin-1")
            self.found[name] = {
                "request": request,
                "status": r.status_code,
                "content_type": r.headers.get("content-type"),
                "body": parsed,
            }
        return r

    def run(self, name: str, ws: ClientConnection, cid: str, body: dict[str, Any]) -> str:
        """POST body, collect this socket's messages until `executing {node: null}`."""
        pid = self.call(f"{name}_post", "POST", "/prompt", {**body, "client_id": cid}).json()[
            "prompt_id"
        ]
        msgs = collect(ws, pid)
        self.found[f"{name}_ws"] = msgs
        self.call(f"{name}_history", "GET", f"/history/{pid}")
        return pid


def collect(ws: ClientConnection, pid: str, limit: float = 300) -> list[Any]:
    msgs: list[Any] = []
    end = time.monotonic() + limit
    while time.monotonic() < end:
        m = ws.recv(timeout=end - time.monotonic())
        if isinstance(m, bytes):
            msgs.append("BINARY")
            continue
        msg = json.loads(m)
        msgs.append(msg)
        data = msg.get("data", {})
        if msg["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == pid:
            return msgs
    raise TimeoutError(pid)


def text_chunks(png: bytes) -> list[list[Any]]:
    found: list[list[Any]] = []
    i = 8
    while i < len(png):
        (n,) = struct.unpack(">I", png[i : i + 4])
        kind, data = png[i + 4 : i + 8], png[i + 8 : i + 8 + n]
        if kind == b"tEXt":
            key, value = data.split(b"\0", 1)
            found.append([key.decode("latin-1"), value.decode("latin-1")])
        elif kind not in (b"IDAT",):
            found.append([kind.decode(), zlib.crc32(data)])
        i += 12 + n
    return found


def record(url: str) -> dict[str, Any]:
    rec = Recorder(url.rstrip("/"))
    for cls in CLASSES:
        rec.call(f"object_info/{cls}", "GET", f"/object_info/{cls}")
    for path in (
        "/models/checkpoints",
        "/models/loras",
        "/models/nope",
        "/embeddings",
        "/system_stats",
        "/queue",
        "/prompt",
        "/history/nope",
    ):
        rec.call(f"get{path}", "GET", path)
    cid = "rec-" + uuid.uuid4().hex[:8]
    with connect(f"{url.replace('http', 'ws', 1)}/ws?clientId={cid}") as ws:
        rec.found["ws_connect"] = [json.loads(ws.recv(timeout=10))]
        pid = rec.run("fresh", ws, cid, {"prompt": graph(11, 2)})
        images = rec.found["fresh_history"]["body"][pid]["outputs"]["9"]["images"]
        first = images[0]
        view = requests.get(f"{rec.url}/view", params=first, timeout=60)
        rec.found["fresh_view"] = {
            "status": view.status_code,
            "headers": dict(view.headers),
            "chunks": text_chunks(view.content),
        }
        rec.run("identical", ws, cid, {"prompt": graph(11, 2)})
        rec.run(
            "pnginfo",
            ws,
            cid,
            {
                "prompt": graph(12, 1),
                "extra_data": {"extra_pnginfo": {"workflow": {"nodes": []}, "sdbatch": "x"}},
            },
        )
        images = rec.found["pnginfo_history"]["body"]
        (entry,) = images.values()
        view = requests.get(
            f"{rec.url}/view", params=entry["outputs"]["9"]["images"][0], timeout=60
        )
        rec.found["pnginfo_view"] = {
            "status": view.status_code,
            "chunks": text_chunks(view.content),
        }
        rec.run("preview", ws, cid, {"prompt": graph(12, 1, out="PreviewImage")})
        rec.run("broken", ws, cid, {"prompt": graph(11, 1, ckpt="zz_broken.safetensors")})
        rec.run("after_broken", ws, cid, {"prompt": graph(13, 1)})
        for name, g in {
            "cfg_above_max": graph(1, cfg=1000.0),
            "cfg_not_float": graph(1, cfg="x"),
            "bad_scheduler": graph(1, scheduler="karras2"),
            "width_below_min": graph(1, width=8),
            "width_float_string": graph(1, width="64.5"),
        }.items():
            rec.call(f"invalid_{name}", "POST", "/prompt", {"prompt": g, "client_id": cid})
        rec.call("invalid_prompt_list", "POST", "/prompt", {"prompt": [], "client_id": cid})
        rec.call(
            "invalid_no_class_type",
            "POST",
            "/prompt",
            {"prompt": {**graph(1), "10": {"inputs": {}}}},
        )
        rec.call("invalid_non_json", "POST", "/prompt", raw=b"{not json")
        wrong_type, bad_link, missing_image = graph(1), graph(1), graph(1)
        wrong_type["3"]["inputs"]["model"] = ["4", 1]  # a CLIP where a MODEL goes
        bad_link["3"]["inputs"]["model"] = ["4"]
        missing_image["12"] = {"class_type": "LoadImage", "inputs": {"image": "nope.png"}}
        missing_image["13"] = {"class_type": "PreviewImage", "inputs": {"images": ["12", 0]}}
        for name, g in {
            "wrong_link_type": wrong_type,
            "bad_link": bad_link,
            "missing_image": missing_image,
        }.items():
            rec.call(f"invalid_{name}", "POST", "/prompt", {"prompt": g, "client_id": cid})
        two = graph(14)
        two["20"] = {
            "class_type": "SaveImage",
            "inputs": {"images": ["21", 0], "filename_prefix": "b"},
        }
        two["21"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0]}}
        rec.run("one_bad_output", ws, cid, {"prompt": two})
        rec.run("steps_as_string", ws, cid, {"prompt": graph(15, "1")})
        for name, query in {
            "dotdot": "filename=../x.png",
            "abs": "filename=/etc/passwd",
            "bad_type": "filename=x.png&type=bogus",
            "subfolder_escape": "filename=x.png&subfolder=../..",
            "missing": "filename=nope.png&type=output",
        }.items():
            rec.call(f"view_{name}", "GET", f"/view?{query}")
        # A long prompt, two queued behind it, /queue clear, then a global interrupt.
        long_pid = rec.call(
            "long_post", "POST", "/prompt", {"prompt": graph(21, 40), "client_id": cid}
        ).json()["prompt_id"]
        for seed in (22, 23):
            rec.call(
                f"queued_{seed}_post",
                "POST",
                "/prompt",
                {"prompt": graph(seed, 1), "client_id": cid},
            )
        time.sleep(1)
        rec.call("queue_busy", "GET", "/queue")
        rec.call("queue_clear", "POST", "/queue", {"clear": True})
        rec.call("queue_after_clear", "GET", "/queue")
        msgs = []
        while True:  # wait for the first sampler step
            m = json.loads(ws.recv(timeout=300))
            msgs.append(m)
            if m["type"] == "progress":
                break
        rec.call("interrupt_global", "POST", "/interrupt")
        rec.found["interrupt_ws"] = msgs + collect(ws, long_pid)
        rec.call("interrupt_history", "GET", f"/history/{long_pid}")
        rec.call("history_delete", "POST", "/history", {"delete": [long_pid]})
        rec.call("history_after_delete", "GET", f"/history/{long_pid}")
    # Two sockets with one clientId: the second takes over; then the first closes.
    sid = "rec-steal-" + uuid.uuid4().hex[:6]
    ws_url = f"{url.replace('http', 'ws', 1)}/ws?clientId={sid}"
    with connect(ws_url) as first, connect(ws_url) as second:
        first.recv(timeout=10)
        second.recv(timeout=10)
        first.close()
        time.sleep(0.5)
        pid = rec.call(None, "POST", "/prompt", {"prompt": graph(31, 1), "client_id": sid}).json()[
            "prompt_id"
        ]
        got: list[Any] = []
        with contextlib.suppress(TimeoutError):
            got = collect(second, pid, limit=120)
        rec.found["steal_then_first_closes"] = {
            "second_got": [m if isinstance(m, str) else m["type"] for m in got]
        }
    return rec.found


if __name__ == "__main__":
    print(json.dumps(record(sys.argv[1]), indent=1))
