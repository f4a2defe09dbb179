"""The stand-in ComfyUI's pictures: the same graph and seed give byte-identical PNGs (on any
server with the same seed), the two images of a batch differ, the size is EmptyLatentImage's
floored to a multiple of 8, the text chunks are SaveImage's, and the other nodes run."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from comfyhelp import graph, history, images, listening, run, view
from PIL import Image

from sdbatch.standin.comfyui import Catalog, MockComfy


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


def test_a_new_file_under_the_old_name_runs_again() -> None:
    """LoadImage is keyed by its file's content (its IS_CHANGED), not just by its name."""
    g = graph()
    g["12"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}}
    g["13"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["12", 0], "vae": ["4", 2]}}
    g["3"]["inputs"]["latent_image"] = ["13", 0]
    with MockComfy() as comfy, listening(comfy, "c") as ws:
        run(comfy, ws, {"prompt": g, "client_id": "c"})
        run(comfy, ws, {"prompt": g, "client_id": "c"})
        Image.new("RGB", (32, 32)).save(comfy.root / "input" / "example.png")
        prompt_id, _ = run(comfy, ws, {"prompt": g, "client_id": "c"})
        ran = [e.ran for e in comfy.recorder.executions]
        assert ran[1] == ()
        assert ran[2] == ("12", "13", "3", "8", "9")
        data = view(comfy, images(comfy, prompt_id)[0]).content
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (32, 32)
