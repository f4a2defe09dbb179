"""What the ComfyUI worker collected, as images, and the post-check of each.

Entry points: `decode(response, max_pixels=...) -> list[GeneratedImage]` (on the writer's
thread) and `compare(image) -> {field: [asked, got]}`. ComfyUI returns no "info": the seed,
sampler, scheduler and checkpoint of an image are those of the graph sent (`payload`), which
SaveImage also writes into the PNG's `prompt` chunk. The post-check holds the two together:
a file whose chunk is another graph is a stale or foreign file (the cache trap, C12), and a
size other than the graph's latent is not what was asked (a workflow that resizes between its
latent and its SaveImage is not size-checked: translation.asked_size). The worker's record
says where the graph keeps the seed, sampler and checkpoint; no node id is assumed here.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from typing import Any

from PIL import Image

from sdbatch.backends.base import DecodeError, GeneratedImage, Response
from sdbatch.backends.imagecheck import check_image
from sdbatch.backends.limits import DEFAULT_MAX_IMAGE_PIXELS


def _chunk(data: bytes) -> Any:
    """The PNG's `prompt` text chunk as JSON; None when absent or unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            text = img.info.get("prompt")
        return json.loads(text) if isinstance(text, str) else None
    except (OSError, ValueError):
        return None


def decode(
    response: Response, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> list[GeneratedImage]:
    try:
        record = json.loads(response.body)
        files = record["images"]
        seed = int(record["seed"])
        version = str(record.get("version", ""))
        sampler = dict(record["sampler"])
        expected = int(record["expected"])
        recorded = record.get("size")
        asked = [int(recorded[0]), int(recorded[1])] if recorded else None
    except (ValueError, KeyError, TypeError) as exc:
        raise DecodeError(f"the worker's record of the answer is broken: {exc}") from exc
    graph = response.payload
    used = {
        "sampler_name": sampler.get("sampler_name"),
        "scheduler": sampler.get("scheduler"),
        "sd_model_name": record.get("checkpoint"),
        "sd_model_hash": None,  # ComfyUI names checkpoints by file only
        "server_version": version or None,
        "parameters": {k: v for k, v in sampler.items() if not isinstance(v, list)},
    }
    if len(files) != expected:
        raise DecodeError(f"ComfyUI saved {len(files)} images, {expected} were asked")
    images = []
    for i, ref in enumerate(files):
        try:
            data = base64.b64decode(ref["data"], validate=True)
        except (binascii.Error, KeyError, TypeError) as exc:
            raise DecodeError(f"image {i} of the answer is not base64: {exc}") from exc
        size = check_image(data, max_pixels=max_pixels, name=str(ref.get("filename")))
        info = {
            "prompt_id": record.get("prompt_id"),
            "filename": ref.get("filename"),
            "subfolder": ref.get("subfolder"),
            "png_prompt": _chunk(data),
            "asked_size": asked,
        }
        images.append(
            GeneratedImage(
                response.first_image + i, data, seed, graph, info, None, used, size, False
            )
        )
    return images


def compare(image: GeneratedImage) -> dict[str, list[Any]]:
    """{field: [asked, got]} for what the file says otherwise than the graph sent."""
    mismatch: dict[str, list[Any]] = {}
    if image.info.get("png_prompt") != dict(image.payload):
        mismatch["prompt_chunk"] = ["the graph sent", "another graph (a stale or foreign file)"]
    asked = image.info.get("asked_size")  # None: the workflow resizes on the way
    if asked is not None and list(image.size) != asked:
        mismatch["size"] = [asked, list(image.size)]
    return mismatch
