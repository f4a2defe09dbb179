"""The txt2img answer: grid placement, image encoding and the three-key response body."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from PIL import Image

from sdbatch.standin.a1111 import generation, images
from sdbatch.standin.a1111.errors import http_exception
from sdbatch.standin.a1111.records import GeneratedImage


def respond(
    job: generation.Job, pictures: list[Image.Image], echo: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """TextToImageResponse for the images a job produced (fewer than planned after an
    interrupt): `{"images": [...], "parameters": <request echo>, "info": "<JSON string>"}`.
    `echo` is the request as sent when it differs from what the job ran (a substitution)."""
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
    return {
        "images": encoded,
        "parameters": dict(req if echo is None else echo),
        "info": generation.info(job, texts, first),
    }


def record(job: generation.Job, index: int, time: float) -> GeneratedImage:
    """What the mock logs for image `index`: the values it really used."""
    req = job.req
    return GeneratedImage(
        prompt=req["prompt"],
        negative_prompt=req["negative_prompt"],
        seed=job.seeds[index],
        subseed=job.subseeds[index],
        width=job.size[0],
        height=job.size[1],
        steps=req["steps"],
        cfg_scale=req["cfg_scale"],
        sampler_name=job.sampler,
        schedule_type=job.schedule,
        model=job.checkpoint.title,
        job_timestamp=job.timestamp,
        index=index,
        time=time,
    )


def render(job: generation.Job, index: int) -> Image.Image:
    """The picture for image `index`, labelled with what it was made with."""
    req = job.req
    label = [
        req["prompt"][:40],
        f"seed {job.seeds[index]}",
        f"steps {req['steps']}  cfg {req['cfg_scale']}",
        job.sampler,
    ]
    return images.render(job.size[0], job.size[1], job.seeds[index], label, req["prompt"])
