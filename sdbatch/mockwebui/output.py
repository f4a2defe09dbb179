"""The txt2img answer: grid placement, image encoding and the three-key response body."""

from __future__ import annotations

import base64
from typing import Any

from PIL import Image

from sdbatch.mockwebui import generation, images
from sdbatch.mockwebui.errors import http_exception


def respond(job: generation.Job, pictures: list[Image.Image]) -> dict[str, Any]:
    """TextToImageResponse for the images a job produced (fewer than planned after an
    interrupt): `{"images": [...], "parameters": <request echo>, "info": "<JSON string>"}`."""
    req, opts = job.req, job.opts
    texts = [generation.infotext(job, i) for i in range(len(pictures))]
    returned, first = list(pictures), 0
    unwanted = len(pictures) < 2 and opts["grid_only_if_multiple"]
    # The API sets do_not_save_grid = not save_images, so only save_images brings a grid; its
    # infotext is the first image's with the main prompt.
    if opts["return_grid"] and req["save_images"] and not unwanted:
        returned.insert(0, images.grid(pictures))
        texts.insert(0, generation.infotext(job, 0))
        first = 1
    encoded: list[str] = []
    if req["send_images"]:
        fmt = str(opts["samples_format"]).lower()
        if fmt not in images.FORMATS:  # checked only now, after generation, like the webui
            raise http_exception(500, "Invalid image format")
        for picture, text in zip(returned, texts, strict=True):
            data = images.encode(
                picture,
                fmt,
                text if opts["enable_pnginfo"] else None,
                quality=int(opts["jpeg_quality"]),
                lossless=bool(opts["webp_lossless"]),
            )
            encoded.append(base64.b64encode(data).decode("ascii"))
    return {"images": encoded, "parameters": dict(req), "info": generation.info(job, texts, first)}
