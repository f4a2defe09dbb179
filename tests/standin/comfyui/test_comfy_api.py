"""The stand-in ComfyUI's behaviour where the recordings hold no transcript to replay: the cache
trap in full, deterministic pictures, PNG metadata and size, the other nodes, the fault hooks,
/view's confinement, /history paging, the request log and a prompt with one bad output."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from comfyhelp import TIMEOUT, history, listening, post, request_of, run, types, until_done
from PIL import Image
from websockets.exceptions import ConnectionClosed

from sdbatch.standin.comfyui import Catalog, MockComfy

GRAPH: dict[str, Any] = request_of("own/fresh_post")["json"]["prompt"]


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


# -- the cache trap -------------------------------------------------------------------------
def test_identical_prompt_replays_old_files_that_may_be_gone() -> None:
    """An identical prompt (other node ids and PNG info too) runs nothing, writes nothing and
    names the old files; once those are deleted, /view answers 404 for what history lists."""
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        first, _ = run(comfy, ws, {"prompt": graph(), "client_id": "c"})
        written = files(comfy)
        renamed = {f"x{k}": v for k, v in graph().items()}
        for node in renamed.values():
            for name, value in node["inputs"].items():
                if isinstance(value, list):
                    node["inputs"][name] = [f"x{value[0]}", value[1]]
        body = {"prompt": renamed, "client_id": "c", "extra_data": {"extra_pnginfo": {"a": 1}}}
        again, messages = run(comfy, ws, body)
        assert files(comfy) == written
        assert images(comfy, again, "x9") == images(comfy, first)
        assert "executing" not in types(messages[:-1])
        for image in images(comfy, first):
            (comfy.output_dir / image["subfolder"] / image["filename"]).unlink()
        assert [view(comfy, i).status_code for i in images(comfy, again, "x9")] == [404, 404]


def test_only_what_changed_runs_again() -> None:
    """A new prefix re-runs SaveImage alone (the same pixels under new names); a new seed re-runs
    the sampler, the decoder and SaveImage; the cache holds only the previous prompt."""
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        run(comfy, ws, {"prompt": graph(), "client_id": "c"})
        run(comfy, ws, {"prompt": graph(n9_filename_prefix="other"), "client_id": "c"})
        run(comfy, ws, {"prompt": graph(n3_seed=12), "client_id": "c"})
        run(comfy, ws, {"prompt": graph(), "client_id": "c"})
        ran = [e.ran for e in comfy.recorder.executions]
        assert ran == [
            ("4", "5", "7", "6", "3", "8", "9"),
            ("9",),
            ("3", "8", "9"),
            ("3", "8", "9"),
        ]
        same = [comfy.output_dir / "other_00001_.png", comfy.output_dir / "rec" / "p_00001_.png"]
        pixels = []
        for path in same:
            with Image.open(path) as img:
                pixels.append(img.tobytes())
        assert pixels[0] == pixels[1]


def test_free_memory_empties_the_cache_after_the_next_prompt() -> None:
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        run(comfy, ws, {"prompt": graph(), "client_id": "c"})
        requests.post(comfy.url + "/free", json={"free_memory": True}, timeout=TIMEOUT)
        run(comfy, ws, {"prompt": graph(n3_seed=99), "client_id": "c"})  # still cached
        run(comfy, ws, {"prompt": graph(n3_seed=99), "client_id": "c"})  # cache emptied
        ran = [len(e.ran) for e in comfy.recorder.executions]
    assert ran == [7, 3, 7]


# -- pictures --------------------------------------------------------------------------------
def _pngs(comfy: MockComfy, ws: Any, g: dict[str, Any]) -> list[bytes]:
    prompt_id, _ = run(comfy, ws, {"prompt": g, "client_id": "c"})
    return [view(comfy, i).content for i in images(comfy, prompt_id)]


def test_pictures_are_deterministic_per_graph_seed_and_batch_item(tmp_path: Path) -> None:
    with MockComfy() as one, listening(one, "c") as ws:
        first = _pngs(one, ws, graph())
        other_seed = _pngs(one, ws, graph(n3_seed=12))
    with MockComfy(root=tmp_path) as two, listening(two, "c") as ws:
        again = _pngs(two, ws, graph())
    with MockComfy(seed=1) as three, listening(three, "c") as ws:
        reseeded = _pngs(three, ws, graph())
    assert first == again
    assert first[0] != first[1]  # one sampler run for the batch: two pictures
    assert not set(first) & set(other_seed)
    assert not set(first) & set(reseeded)


def test_png_size_and_text_chunks() -> None:
    """Size from EmptyLatentImage, floored to a multiple of 8 as the latent is; `prompt` is
    json.dumps of the graph as posted; extra_pnginfo keys each a JSON chunk."""
    g = graph(n5_width=100, n5_height=64, n5_batch_size=1)
    extra = {"extra_pnginfo": {"workflow": {"nodes": [1]}, "sdbatch": "row 7"}}
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        prompt_id, _ = run(comfy, ws, {"prompt": g, "client_id": "c", "extra_data": extra})
        data = view(comfy, images(comfy, prompt_id)[0]).content
    with Image.open(io.BytesIO(data)) as img:
        assert (img.format, img.size, img.mode) == ("PNG", (96, 64), "RGB")
        assert img.info == {
            "prompt": json.dumps(g),
            "workflow": '{"nodes": [1]}',
            "sdbatch": '"row 7"',
        }


def test_other_nodes_run() -> None:
    """CLIPSetLastLayer, LoraLoader, KSamplerAdvanced, LoadImage + VAEEncode, PreviewImage."""
    g = graph()
    g["10"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["4", 0],
            "clip": ["4", 1],
            "lora_name": "style.safetensors",
            "strength_model": 0.8,
            "strength_clip": 1.0,
        },
    }
    g["11"] = {
        "class_type": "CLIPSetLastLayer",
        "inputs": {"clip": ["10", 1], "stop_at_clip_layer": -2},
    }
    g["6"]["inputs"]["clip"] = ["11", 0]
    g["12"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}}
    g["13"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["12", 0], "vae": ["4", 2]}}
    g["3"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "model": ["10", 0],
            "add_noise": "enable",
            "noise_seed": 3,
            "steps": 4,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "karras",
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["13", 0],
            "start_at_step": 1,
            "end_at_step": 3,
            "return_with_leftover_noise": "disable",
        },
    }
    g["14"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    with (
        MockComfy(catalog=Catalog(loras=("style.safetensors",))) as comfy,
        listening(comfy, "c") as ws,
    ):
        prompt_id, messages = run(comfy, ws, {"prompt": g, "client_id": "c"})
        entry = history(comfy, prompt_id)
        assert entry["status"]["status_str"] == "success", entry["status"]
        assert [m["data"]["max"] for m in messages if m["type"] == "progress"] == [2, 2]
        preview = entry["outputs"]["14"]["images"]
        assert [i["type"] for i in preview] == ["temp"]
        assert view(comfy, preview[0]).status_code == 200
        with Image.open(io.BytesIO(view(comfy, entry["outputs"]["9"]["images"][0]).content)) as img:
            assert img.size == (64, 64)  # example.png's size, through VAEEncode


# -- faults and failures ---------------------------------------------------------------------
def test_injected_runtime_error_fails_at_the_sampler() -> None:
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        comfy.inject(error_next=1)
        prompt_id, messages = run(comfy, ws, {"prompt": graph(), "client_id": "c"})
        error = next(m["data"] for m in messages if m["type"] == "execution_error")
        assert (error["node_id"], error["node_type"]) == ("3", "KSampler")
        assert error["exception_type"] == "torch.OutOfMemoryError"
        assert history(comfy, prompt_id)["status"]["status_str"] == "error"
        second, _ = run(comfy, ws, {"prompt": graph(), "client_id": "c"})  # used up
        assert history(comfy, second)["status"]["status_str"] == "success"
        assert comfy.recorder.executions[1].ran == ("3", "8", "9")  # loader and texts cached


def test_injected_http_failure_queues_nothing() -> None:
    with MockComfy() as comfy:
        comfy.inject(http_fail_next=1)
        failed = post(comfy, {"prompt": graph()})
        assert (failed.status_code, failed.headers["content-type"]) == (
            500,
            "text/plain; charset=utf-8",
        )
        assert comfy.queue.remaining() == 0 and comfy.recorder.executions == []
        assert post(comfy, {"prompt": graph()}).status_code == 200


def test_muted_and_dropped_sockets() -> None:
    """`ws_mute`: the socket stays open and silent while history fills; `drop_sockets()`
    closes the client's socket from the server side."""
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        comfy.inject(ws_mute=True)
        prompt_id = post(comfy, {"prompt": graph(), "client_id": "c"}).json()["prompt_id"]
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
        assert history(comfy, prompt_id)["status"]["completed"] is True
        comfy.drop_sockets()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)


def test_prefix_leaving_the_output_folder_fails_at_run_time(tmp_path: Path) -> None:
    with MockComfy(root=tmp_path / "root") as comfy, listening(comfy, "c") as ws:
        body = {"prompt": graph(n9_filename_prefix="../../x"), "client_id": "c"}
        messages = run(comfy, ws, body)[1]
        error = next(m["data"] for m in messages if m["type"] == "execution_error")
        assert "outside the output folder" in error["exception_message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_view_serves_the_file_and_refuses_escapes(tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(b"not for clients")
    with MockComfy(root=tmp_path / "root") as comfy, listening(comfy, "c") as ws:
        prompt_id, _ = run(comfy, ws, {"prompt": graph(), "client_id": "c"})
        image = images(comfy, prompt_id)[0]
        data = view(comfy, image).content
        assert (
            hashlib.sha256(data).digest()
            == hashlib.sha256(
                (comfy.output_dir / image["subfolder"] / image["filename"]).read_bytes()
            ).digest()
        )
        escapes = [
            {"filename": "secret.png", "subfolder": "../..", "type": "output"},
            {"filename": "../../secret.png", "type": "output"},
            {"filename": "secret.png", "subfolder": "/", "type": "output"},
        ]
        assert [view(comfy, e).status_code for e in escapes] == [403, 400, 403]


def test_one_bad_output_of_two_still_queues_with_node_errors() -> None:
    """comfyui-api.md C2: the valid output runs; the 200 lists the bad one's errors."""
    g = graph()
    g["20"] = {"class_type": "SaveImage", "inputs": {"images": ["21", 0], "filename_prefix": "b"}}
    g["21"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}
    g["21"]["inputs"].pop("vae")
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        answer = post(comfy, {"prompt": g, "client_id": "c"}).json()
        assert list(answer["node_errors"]) == ["21"]
        assert answer["node_errors"]["21"]["dependent_outputs"] == ["20"]
        until_done(ws, answer["prompt_id"])
        assert list(history(comfy, answer["prompt_id"])["outputs"]) == ["9"]


# -- history, routes, log --------------------------------------------------------------------
def test_history_paging_clear_api_prefix_and_request_log() -> None:
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        ids = [run(comfy, ws, {"prompt": graph(n3_seed=s), "client_id": "c"})[0] for s in (1, 2, 3)]
        last_two = requests.get(comfy.url + "/api/history?max_items=2", timeout=TIMEOUT).json()
        assert list(last_two) == ids[1:]
        page = requests.get(comfy.url + "/history?max_items=1&offset=0", timeout=TIMEOUT).json()
        assert list(page) == ids[:1]
        requests.post(comfy.url + "/api/history", json={"clear": True}, timeout=TIMEOUT)
        assert requests.get(comfy.url + "/history", timeout=TIMEOUT).json() == {}
        assert requests.get(comfy.url + "/nope", timeout=TIMEOUT).status_code == 404
        posts = [r for r in comfy.recorder.requests if (r.method, r.path) == ("POST", "/prompt")]
        assert [r.body["prompt"]["3"]["inputs"]["seed"] for r in posts] == [1, 2, 3]
        assert [r.status for r in comfy.recorder.requests if r.path == "/ws"] == [101]
