"""Shared by the stand-in ComfyUI's tests: the real server's recordings (tests/data/real-comfyui,
see its README), a WebSocket listener, and how a stand-in's answer is held to a recorded one."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import requests
from websockets.sync.client import ClientConnection, connect

from sdbatch.standin.comfyui import Catalog, MockComfy

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "real-comfyui" / "exchanges.json"
REAL: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
TIMEOUT = 30.0
# The capture's first session had one checkpoint; its second had a garbage file named so.
CAPTURE_CATALOG = Catalog(checkpoints=("tiny_sd15_random.safetensors",))
ROUND2_CATALOG = Catalog(
    checkpoints=(
        "broken_garbage.safetensors",
        "tiny_sd15_random.safetensors",
        "tiny_sd15_taesd_random.safetensors",
    ),
    broken={"broken_garbage.safetensors": Catalog().broken["zz_broken.safetensors"]},
)


def listening(comfy: MockComfy, client_id: str) -> AbstractContextManager[ClientConnection]:
    """A WebSocket as `client_id`, its connect `status` already read."""
    return listening_url(comfy.url, client_id)


@contextmanager
def listening_url(url: str, client_id: str) -> Iterator[ClientConnection]:
    ws_url = url.replace("http://", "ws://", 1) + f"/ws?clientId={client_id}"
    with connect(ws_url, open_timeout=TIMEOUT) as ws:
        first = json.loads(ws.recv(timeout=TIMEOUT))
        assert first["type"] == "status"
        yield ws


def until_done(ws: ClientConnection, prompt_id: str, timeout: float = TIMEOUT) -> list[Any]:
    """This socket's messages up to `executing {node: null}` for `prompt_id`."""
    found: list[Any] = []
    end = time.monotonic() + timeout
    while True:
        msg = json.loads(ws.recv(timeout=max(0.01, end - time.monotonic())))
        found.append(msg)
        data = msg["data"]
        if (
            msg["type"] == "executing"
            and data.get("node") is None
            and data.get("prompt_id") == (prompt_id)
        ):
            return found


def post(comfy: MockComfy, body: Mapping[str, Any]) -> requests.Response:
    return requests.post(comfy.url + "/prompt", json=body, timeout=TIMEOUT)


def run(comfy: MockComfy, ws: ClientConnection, body: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """POST a prompt and wait for it: (prompt_id, the socket's messages)."""
    answer = post(comfy, body)
    assert answer.status_code == 200, answer.text
    prompt_id: str = answer.json()["prompt_id"]
    return prompt_id, until_done(ws, prompt_id)


def history(comfy: MockComfy, prompt_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = requests.get(f"{comfy.url}/history/{prompt_id}", timeout=TIMEOUT).json()
    return entry[prompt_id]


def shape(value: Any) -> Any:
    """Keys (in order) and JSON types, recursively: what a client may rely on besides values."""
    if isinstance(value, Mapping):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    return "number" if isinstance(value, int | float) else type(value).__name__


def neutral(value: Any, ids: Mapping[str, str] | None = None) -> Any:
    """A message or history entry with what is the server's own choice made neutral: prompt
    ids, timestamps, the temp files' random letters, tracebacks (their shape is kept), the
    order of a set."""
    ids = ids or {}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "timestamp":
                out[k] = "TIME"
            elif k == "traceback":
                out[k] = ["TRACEBACK"] if v else []
            elif k == "sid":
                out[k] = "SID"
            elif k == "current_outputs":  # the real server lists a set: any order
                out[k] = sorted(v)
            else:
                out[ids.get(k, "PROMPT_ID") if _is_id(k) else k] = neutral(v, ids)
        return out
    if isinstance(value, list):
        return [neutral(v, ids) for v in value]
    if isinstance(value, str):
        if _is_id(value):
            return ids.get(value, "PROMPT_ID")
        return re.sub(r"ComfyUI_temp_[a-z]{5}_", "ComfyUI_temp_XXXXX_", value)
    return value


def _is_id(text: str) -> bool:
    return (
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
        is not None
    )


def types(messages: list[Any]) -> list[str]:
    return [m if isinstance(m, str) else m["type"] for m in messages]


def request_of(name: str) -> dict[str, Any]:
    request: dict[str, Any] = REAL[name]["request"]
    return request


# -- graphs and outputs -------------------------------------------------------------------
GRAPH: dict[str, Any] = REAL["own/fresh_post"]["request"]["json"]["prompt"]


def graph(**changes: Any) -> dict[str, Any]:
    """The recorded text-to-image graph; `changes` as NODE_input=value (e.g. n3_seed=5)."""
    g = json.loads(json.dumps(GRAPH))
    for name, value in changes.items():
        node, _, field = name[1:].partition("_")
        g[node]["inputs"][field] = value
    return g


def files(comfy: MockComfy) -> list[str]:
    root = comfy.output_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def view(comfy: MockComfy, image: dict[str, str]) -> requests.Response:
    return requests.get(comfy.url + "/view", params=image, timeout=TIMEOUT)


def images(comfy: MockComfy, prompt_id: str, node: str = "9") -> list[dict[str, str]]:
    found: list[dict[str, str]] = history(comfy, prompt_id)["outputs"][node]["images"]
    return found


def seeded(seed: int, steps: int = 1) -> dict[str, Any]:
    """This session's recorded graph with another seed and step count."""
    g = json.loads(json.dumps(GRAPH))
    g["3"]["inputs"].update(seed=seed, steps=steps)
    return g


def until(ws: ClientConnection, kind: str) -> list[Any]:
    found = []
    while True:
        msg = json.loads(ws.recv(timeout=TIMEOUT))
        found.append(msg)
        if msg["type"] == kind:
            return found
